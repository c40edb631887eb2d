import { constantTimeEqual, randomBytes, wipe } from '../crypto.js'
import { AgeHeaderMacError, AgeHeaderInvalidError, AgeNoMatchingIdentityError, AgeTruncatedError, AgeUnsupportedError, throwIfAborted, type AbortOptions } from '../errors.js'
import type { KeyAgreement } from '../interfaces/key-agreement.js'
import { parseRecipient } from '../identity/recipient.js'
import { ArmorDecoder, ArmorEncoder, looksArmored } from './armor.js'
import { findHeaderEnd, formatHeader, formatHeaderWithoutMac, parseHeader, type ParsedHeader } from './header.js'
import { headerMac, PayloadDecryptor, PayloadEncryptor, payloadKey, PAYLOAD_NONCE_LENGTH } from './payload-stream.js'
import { FILE_KEY_LENGTH, unwrapFileKey, wrapFileKey, X25519_STANZA_TYPE } from './x25519-stanza.js'

/** Whom to seal for: an X25519 public key, a public ID (`cb1…`) or an age recipient (`age1…`). */
export type AgeRecipient = Uint8Array | string

export interface SealOptions {
  /** Write age's ASCII armor (PEM-like text) instead of binary. */
  readonly armor?: boolean
}

export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>

const encoder = new TextEncoder()

function recipientKeys(recipients: readonly AgeRecipient[]): Uint8Array[] {
  if (!Array.isArray(recipients) || recipients.length === 0) throw new RangeError('Seal for at least one recipient')
  return recipients.map((recipient) => (typeof recipient === 'string' ? parseRecipient(recipient) : recipient))
}

/** A new file key's header bytes and payload nonce (`prefix`), and the payload key. Internal. */
export function startSealing(recipients: readonly AgeRecipient[]): { prefix: Uint8Array; key: Uint8Array } {
  const keys = recipientKeys(recipients)
  const fileKey = randomBytes(FILE_KEY_LENGTH)
  try {
    const stanzas = keys.map((key) => wrapFileKey(fileKey, key))
    const mac = headerMac(fileKey, encoder.encode(formatHeaderWithoutMac(stanzas)))
    const header = formatHeader(stanzas, mac)
    const nonce = randomBytes(PAYLOAD_NONCE_LENGTH)
    const prefix = new Uint8Array(header.length + nonce.length)
    prefix.set(header, 0)
    prefix.set(nonce, header.length)
    return { prefix, key: payloadKey(fileKey, nonce) }
  } finally {
    wipe(fileKey)
  }
}

/** The file key of a parsed header, after checking its MAC. Internal. */
export function fileKeyOf(header: ParsedHeader, identities: readonly KeyAgreement[]): Uint8Array {
  const types = new Set(header.stanzas.map((stanza) => stanza.type))
  if (types.has('scrypt') && header.stanzas.length > 1) {
    throw new AgeHeaderInvalidError('This is not a valid age-encrypted file: a passphrase stanza must be its only stanza.')
  }
  let fileKey: Uint8Array | undefined
  search: for (const identity of identities) {
    for (const stanza of header.stanzas) {
      if (stanza.type !== X25519_STANZA_TYPE) continue
      fileKey = unwrapFileKey(stanza, identity)
      if (fileKey !== undefined) break search
    }
  }
  if (fileKey === undefined) {
    if (types.has('scrypt')) throw new AgeUnsupportedError('This file is sealed with a passphrase (age -p); CloudBox opens only files sealed to keys. Open it with `age -d`.')
    if (!types.has(X25519_STANZA_TYPE)) {
      throw new AgeUnsupportedError(`This file is sealed only to recipient types CloudBox does not support (${[...types].join(', ')}), such as age plugins.`)
    }
    throw new AgeNoMatchingIdentityError()
  }
  if (fileKey.length !== FILE_KEY_LENGTH || !constantTimeEqual(headerMac(fileKey, header.macInput), header.mac)) {
    wipe(fileKey)
    throw new AgeHeaderMacError()
  }
  return fileKey
}

export function identityList(identities: KeyAgreement | readonly KeyAgreement[]): readonly KeyAgreement[] {
  const list = Array.isArray(identities) ? identities : [identities as KeyAgreement]
  if (list.length === 0) throw new RangeError('Open with at least one identity')
  return list
}

/**
 * Seals `plaintext` for the recipients in the age v1 format, in memory.
 * For large data use {@link sealStream} or `sealFile`.
 * @example
 * const sealed = sealBytes(data, ['cb1…', 'age1…'])
 */
export function sealBytes(plaintext: Uint8Array, recipients: readonly AgeRecipient[], options: SealOptions = {}): Uint8Array {
  const { prefix, key } = startSealing(recipients)
  const encryptor = new PayloadEncryptor(key)
  wipe(key)
  const binary = Buffer.concat([prefix, ...encryptor.push(plaintext), encryptor.finish()])
  if (options.armor !== true) return new Uint8Array(binary.buffer, binary.byteOffset, binary.byteLength)
  const armor = new ArmorEncoder()
  return plain(Buffer.concat([armor.push(binary), armor.finish()]))
}

/**
 * Opens an age file (binary or armored) held in memory.
 * @throws {AgeNoMatchingIdentityError | AgeHeaderInvalidError | AgeHeaderMacError | AgePayloadCorruptedError | AgeTruncatedError | AgeUnsupportedError}
 */
export function openBytes(sealed: Uint8Array, identities: KeyAgreement | readonly KeyAgreement[]): Uint8Array {
  let binary: Uint8Array = sealed
  if (looksArmored(sealed.subarray(0, 64))) {
    const armor = new ArmorDecoder()
    binary = Buffer.concat([...armor.push(sealed), ...armor.finish()])
  }
  const end = findHeaderEnd(binary)
  if (end === undefined) throw headerCutError(binary)
  const fileKey = fileKeyOf(parseHeader(binary.subarray(0, end)), identityList(identities))
  try {
    if (binary.length < end + PAYLOAD_NONCE_LENGTH) throw new AgeTruncatedError()
    const decryptor = new PayloadDecryptor(payloadKey(fileKey, binary.subarray(end, end + PAYLOAD_NONCE_LENGTH)))
    const out = Buffer.concat([...decryptor.push(binary.subarray(end + PAYLOAD_NONCE_LENGTH)), decryptor.finish()])
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
  } finally {
    wipe(fileKey)
  }
}

export function headerCutError(bytes: Uint8Array): Error {
  // Too short to hold a header at all, or a header that never reaches its MAC line.
  return bytes.length === 0 ? new AgeHeaderInvalidError('This file is empty; it is not an age-encrypted file.') : (parseHeaderPrefixIsAge(bytes) ? new AgeTruncatedError('The sealed file is cut off inside its header: download or copy it again.') : new AgeHeaderInvalidError())
}

function parseHeaderPrefixIsAge(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, 19)).toString('latin1')
  return 'age-encryption.org/'.startsWith(head) || head.startsWith('age-encryption.org/')
}

/**
 * Seals a stream for the recipients; yields the sealed file in pieces. Memory stays
 * constant whatever the size. The source may yield chunks of any size; do not reuse a
 * chunk's memory after handing it over.
 * @example
 * await pipeline(createReadStream(src), (source) => sealStream(source, ['cb1…']), createWriteStream(dst))
 */
export async function* sealStream(source: ByteSource, recipients: readonly AgeRecipient[], options: SealOptions & AbortOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const batch of sealBatches(source, recipients, options)) for (const piece of batch) yield plain(piece)
}

/** Public APIs hand out plain Uint8Arrays, never Buffers (which compare and serialize differently). */
function plain(bytes: Uint8Array): Uint8Array {
  return Buffer.isBuffer(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes
}

/** As {@link sealStream}, yielding arrays of pieces so writers can use writev. Internal. */
export async function* sealBatches(source: ByteSource, recipients: readonly AgeRecipient[], options: SealOptions & AbortOptions = {}): AsyncGenerator<Uint8Array[], void, undefined> {
  throwIfAborted(options.signal)
  const { prefix, key } = startSealing(recipients)
  const encryptor = new PayloadEncryptor(key)
  wipe(key)
  const armor = options.armor === true ? new ArmorEncoder() : undefined
  const emit = (pieces: Uint8Array[]): Uint8Array[] => (armor === undefined ? pieces : [armor.push(Buffer.concat(pieces))])
  yield emit([prefix])
  for await (const chunk of source) {
    throwIfAborted(options.signal)
    const pieces = encryptor.push(chunk)
    if (pieces.length > 0) yield emit(pieces)
  }
  const last = emit([encryptor.finish()])
  if (armor !== undefined) last.push(armor.finish())
  yield last
}

/**
 * Opens a sealed stream (binary or armored) with the first identity that is a
 * recipient. Plaintext is yielded only after each chunk authenticated; a cut or
 * extended file throws at its end, so write to a temporary place and keep the result
 * only when the stream completes (as `openFile` does).
 */
export async function* openStream(source: ByteSource, identities: KeyAgreement | readonly KeyAgreement[], options: AbortOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const batch of openBatches(source, identities, options)) for (const piece of batch) yield plain(piece)
}

/** As {@link openStream}, yielding arrays of pieces. Internal. */
export async function* openBatches(source: ByteSource, identities: KeyAgreement | readonly KeyAgreement[], options: AbortOptions = {}): AsyncGenerator<Uint8Array[], void, undefined> {
  const list = identityList(identities)
  throwIfAborted(options.signal)
  let armor: ArmorDecoder | undefined
  let decided = false
  let pending: Uint8Array[] = []
  let pendingLength = 0
  let fileKey: Uint8Array | undefined
  let decryptor: PayloadDecryptor | undefined
  try {
    const feed = (bytes: Uint8Array): Uint8Array[] => {
      if (decryptor !== undefined) return decryptor.push(bytes)
      pending.push(bytes)
      pendingLength += bytes.length
      const joined = pending.length === 1 ? (pending[0] as Uint8Array) : Buffer.concat(pending)
      pending = [joined]
      if (fileKey === undefined) {
        const end = findHeaderEnd(joined)
        if (end === undefined) return []
        fileKey = fileKeyOf(parseHeader(joined.subarray(0, end)), list)
        pending = [joined.subarray(end)]
        pendingLength = joined.length - end
      }
      if (pendingLength < PAYLOAD_NONCE_LENGTH) return []
      const rest = pending[0] as Uint8Array
      const key = payloadKey(fileKey, rest.subarray(0, PAYLOAD_NONCE_LENGTH))
      decryptor = new PayloadDecryptor(key)
      wipe(key)
      pending = []
      return decryptor.push(rest.subarray(PAYLOAD_NONCE_LENGTH))
    }
    const decode = (bytes: Uint8Array): Uint8Array[] => {
      if (armor === undefined) return feed(bytes)
      return armor.push(bytes).flatMap(feed)
    }
    let head: Uint8Array[] = []
    for await (const chunk of source) {
      throwIfAborted(options.signal)
      if (!decided) {
        // Decide armor or binary on the first 64 bytes.
        head.push(chunk)
        const joined = Buffer.concat(head)
        if (joined.length < 64) {
          head = [joined]
          continue
        }
        decided = true
        head = []
        if (looksArmored(joined)) armor = new ArmorDecoder()
        const out = decode(joined)
        if (out.length > 0) yield out
        continue
      }
      const out = decode(chunk)
      if (out.length > 0) yield out
    }
    if (!decided) {
      const joined = Buffer.concat(head)
      if (looksArmored(joined)) armor = new ArmorDecoder()
      const out = decode(joined)
      if (out.length > 0) yield out
    }
    if (armor !== undefined) {
      const out = armor.finish().flatMap(feed)
      if (out.length > 0) yield out
    }
    if (fileKey === undefined) throw headerCutError(pending[0] ?? new Uint8Array(0))
    if (decryptor === undefined) throw new AgeTruncatedError()
    yield [decryptor.finish()]
  } finally {
    wipe(fileKey)
  }
}
