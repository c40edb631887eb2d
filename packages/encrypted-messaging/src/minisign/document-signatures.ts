import { basename } from 'node:path'
import { constantTimeEqual, createHasher, ed25519Verify, hash, ready, ED25519_PUBLIC_KEY_LENGTH } from '../crypto.js'
import { SignatureInvalidError, SignatureLegacyError, SignatureMalformedError, SignerMismatchError, throwIfAborted, type AbortOptions } from '../errors.js'
import { encodePublicId, parsePublicId } from '../identity/public-id.js'
import type { Signer } from '../interfaces/key-agreement.js'
import { domainTag } from '../wire/constants.js'
import {
  decodePublicKeyFile,
  decodeSignatureFile,
  encodePublicKeyFile,
  encodeSignatureFile,
  formatKeyId,
  MINISIGN_KEY_ID_LENGTH,
  MINISIGN_PREHASHED_ALGORITHM,
  type MinisignPublicKey,
} from '../wire/minisign-format.js'

/** What a signature says about the document, as the original's signed documents did. */
export const SIGNATURE_SCOPES = ['accept', 'reject', 'viewed'] as const
export type SignatureScope = (typeof SIGNATURE_SCOPES)[number]

/** A document to sign or verify: bytes, or a stream of chunks (hashed in constant memory). */
export type DocumentSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>

/** Legacy (non-prehashed) signatures need the whole document in memory; bounded. */
const MAX_LEGACY_DOCUMENT_LENGTH = 256 * 1024 * 1024

export interface SignDocumentOptions extends AbortOptions {
  /** What the signer means by signing: accept, reject or viewed. Omitted: a plain signature. */
  scope?: SignatureScope
  /** The document's file name, recorded (base name only) in the trusted comment. */
  fileName?: string
  /** Signing time; defaults to now. */
  timestamp?: Date
  /** The untrusted comment line (not covered by the signature). */
  untrustedComment?: string
  /**
   * The whole trusted comment, as `minisign -S -t` takes it (one line): it replaces the
   * fields CloudBox writes (time, file, signer, scope), so it cannot go with `scope`.
   */
  trustedComment?: string
}

export interface VerifyDocumentOptions extends AbortOptions {
  /**
   * Also accept legacy (not prehashed, `Ed`) signatures, made by `minisign -S -l` or very
   * old minisign (default false, as `minisign -H` requires). Even then, a legacy signature
   * whose trusted comment says the file was hashed is refused: it is a prehashed signature
   * relabelled to verify for another document (the hash itself).
   */
  allowLegacy?: boolean
}

/** What a valid signature proves: every field comes from the signed trusted comment. */
export interface VerifiedSignature {
  /** The full trusted comment. */
  trustedComment: string
  /** The signing key's minisign key ID, as minisign prints it. */
  keyId: string
  /** The public ID of the verifying key. */
  signerId: string
  timestamp?: Date
  fileName?: string
  scope?: string
  /** True for minisign's default BLAKE2b-prehashed signatures ("ED"). */
  prehashed: boolean
}

/**
 * The minisign key ID of a CloudBox key: the first 8 bytes of a domain-separated
 * BLAKE2b-512 of the public key, so it is the same on every device that holds the phrase.
 */
export function minisignKeyId(publicKey: Uint8Array): Uint8Array {
  return hash('blake2b512', domainTag('minisign-key-id'), publicKey).slice(0, MINISIGN_KEY_ID_LENGTH)
}

/** The minisign public key file (`minisign.pub`) of an Ed25519 public key, for `minisign -V -p`. */
export function formatMinisignPublicKey(publicKey: Uint8Array): string {
  if (publicKey.length !== ED25519_PUBLIC_KEY_LENGTH) throw new RangeError('An Ed25519 public key is 32 bytes')
  const keyId = minisignKeyId(publicKey)
  return encodePublicKeyFile({ keyId, publicKey, untrustedComment: `minisign public key ${formatKeyId(keyId)}` })
}

/**
 * A minisign public key from a `.pub` file's text, its base64 line, or a CloudBox public ID.
 * @throws {InvalidKeyError | InvalidPublicIdError} when it is none of those.
 */
export function parseSignerKey(text: string): MinisignPublicKey {
  const trimmed = text.trim()
  if (/^cb1/i.test(trimmed)) {
    const publicKey = parsePublicId(trimmed)
    return { publicKey, keyId: minisignKeyId(publicKey), untrustedComment: '' }
  }
  return decodePublicKeyFile(text)
}

function isAsyncIterable(value: unknown): value is AsyncIterable<Uint8Array> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value
}

async function* chunks(source: DocumentSource): AsyncIterable<Uint8Array> {
  if (source instanceof Uint8Array) yield source
  else if (isAsyncIterable(source)) yield* source
  else yield* source
}

async function prehash(source: DocumentSource, signal?: AbortSignal): Promise<Uint8Array> {
  const hasher = createHasher('blake2b512')
  for await (const chunk of chunks(source)) {
    throwIfAborted(signal)
    hasher.update(chunk)
  }
  return hasher.digest()
}

async function wholeDocument(source: DocumentSource, signal?: AbortSignal): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let length = 0
  for await (const chunk of chunks(source)) {
    throwIfAborted(signal)
    length += chunk.length
    if (length > MAX_LEGACY_DOCUMENT_LENGTH) {
      throw new SignatureMalformedError('Legacy (non-prehashed) minisign signatures are only checked for documents up to 256 MiB; ask the signer to sign again with a current minisign or CloudBox.')
    }
    parts.push(chunk)
  }
  return Buffer.concat(parts)
}

// Values in the trusted comment are tab-separated `key:value` fields, one line.
function commentValue(value: string): string {
  return value.replace(/[\t\r\n\0]/g, ' ')
}

function parseTrustedComment(comment: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const field of comment.split('\t')) {
    const colon = field.indexOf(':')
    if (colon > 0 && !fields.has(field.slice(0, colon))) fields.set(field.slice(0, colon), field.slice(colon + 1))
  }
  return fields
}

/**
 * Signs a document in minisign's format (BLAKE2b-prehashed Ed25519) so that
 * `minisign -V` verifies it. The trusted comment carries the time, file name,
 * the signer's public ID and the scope. Returns the `.minisig` file text.
 *
 * @throws {RangeError} for an unknown scope.
 * @example
 * const signature = await signDocument(identity, fs.createReadStream('contract.pdf'), { fileName: 'contract.pdf', scope: 'accept' })
 * fs.writeFileSync('contract.pdf.minisig', signature)
 */
export async function signDocument(signer: Signer, document: DocumentSource, options: SignDocumentOptions = {}): Promise<string> {
  if (options.scope !== undefined && !SIGNATURE_SCOPES.includes(options.scope)) {
    throw new RangeError(`A signature scope is one of ${SIGNATURE_SCOPES.join(', ')}`)
  }
  if (options.trustedComment !== undefined) {
    if (options.scope !== undefined) throw new RangeError('A trusted comment of your own replaces the one that carries the scope: give one or the other.')
    if (/[\r\n]/.test(options.trustedComment) || Buffer.byteLength(options.trustedComment) > 1024) throw new RangeError('A trusted comment is one line of at most 1,024 bytes.')
  }
  const digest = await prehash(document, options.signal)
  const signature = signer.sign(digest)
  const seconds = Math.floor((options.timestamp ?? new Date()).getTime() / 1000)
  const fields = [`timestamp:${seconds}`]
  if (options.fileName !== undefined) fields.push(`file:${commentValue(basename(options.fileName))}`)
  fields.push('hashed', `signer:${encodePublicId(signer.publicKey)}`)
  if (options.scope !== undefined) fields.push(`scope:${options.scope}`)
  const trustedComment = options.trustedComment ?? fields.join('\t')
  const globalSignature = signer.sign(Buffer.concat([signature, Buffer.from(trustedComment, 'utf8')]))
  return encodeSignatureFile({
    algorithm: MINISIGN_PREHASHED_ALGORITHM,
    keyId: minisignKeyId(signer.publicKey),
    signature,
    trustedComment,
    globalSignature,
    untrustedComment: options.untrustedComment ?? 'signature from CloudBox secret key',
  })
}

/**
 * Verifies a minisign signature of a document, made by CloudBox or by `minisign -S`
 * (prehashed; legacy ones only with `allowLegacy`), against the expected signer.
 *
 * @param signer the expected signer: a public ID (`cb1…`), a minisign public key file's text or line,
 *   or a parsed key.
 * @throws {SignatureMalformedError} when the signature file cannot be parsed.
 * @throws {SignatureLegacyError} for a legacy signature, unless `allowLegacy` (never for one relabelled).
 * @throws {SignerMismatchError} when another key made the signature.
 * @throws {SignatureInvalidError} when the document or the trusted comment was altered.
 * @example
 * const verified = await verifyDocument(fs.createReadStream('contract.pdf'), signatureText, 'cb1…')
 * console.log(verified.scope, verified.timestamp)
 */
export async function verifyDocument(
  document: DocumentSource,
  signatureText: string,
  signer: string | MinisignPublicKey,
  options: VerifyDocumentOptions = {},
): Promise<VerifiedSignature> {
  await ready()
  const key = typeof signer === 'string' ? parseSignerKey(signer) : signer
  const parsed = decodeSignatureFile(signatureText)
  if (!constantTimeEqual(parsed.keyId, key.keyId)) {
    throw new SignerMismatchError(`The signature was made by key ${formatKeyId(parsed.keyId)}, not by the signer you named (key ${formatKeyId(key.keyId)}).`)
  }
  const prehashed = parsed.algorithm === MINISIGN_PREHASHED_ALGORITHM
  // The algorithm bytes are not signed: a prehashed signature relabelled as legacy verifies
  // for the 64-byte hash as a document. Legacy only when asked for, and never for a
  // signature that says it was made over a hash.
  if (!prehashed && (options.allowLegacy !== true || /(^|\t)hashed(\t|$)/.test(parsed.trustedComment))) {
    throw new SignatureLegacyError()
  }
  const message = prehashed ? await prehash(document, options.signal) : await wholeDocument(document, options.signal)
  if (!ed25519Verify(key.publicKey, message, parsed.signature)) throw new SignatureInvalidError()
  const commentBytes = Buffer.from(parsed.trustedComment, 'utf8')
  if (!ed25519Verify(key.publicKey, Buffer.concat([parsed.signature, commentBytes]), parsed.globalSignature)) {
    throw new SignatureInvalidError('The signature\'s trusted comment was changed after signing.')
  }
  const signerId = encodePublicId(key.publicKey)
  const fields = parseTrustedComment(parsed.trustedComment)
  const claimedSigner = fields.get('signer')
  if (claimedSigner !== undefined && claimedSigner.toLowerCase() !== signerId) {
    throw new SignerMismatchError('The signature names another signer than the key that made it.')
  }
  const seconds = fields.get('timestamp')
  const result: VerifiedSignature = { trustedComment: parsed.trustedComment, keyId: formatKeyId(parsed.keyId), signerId, prehashed }
  if (seconds !== undefined && /^\d{1,15}$/.test(seconds)) result.timestamp = new Date(Number(seconds) * 1000)
  const fileName = fields.get('file')
  if (fileName !== undefined) result.fileName = fileName
  const scope = fields.get('scope')
  if (scope !== undefined) result.scope = scope
  return result
}
