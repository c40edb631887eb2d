import { VaultCorruptedError, VaultUnsupportedVersionError } from './errors.js'

/**
 * The vault file, byte by byte (integers big-endian):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 8 | magic `CBVAULT\0` |
 * | 8 | 2 | format version (1) |
 * | 10 | 1 | KDF: 1 = Argon2id v1.3 |
 * | 11 | 1 | reserved, 0 |
 * | 12 | 4 | Argon2id opslimit (iterations) |
 * | 16 | 4 | Argon2id memlimit (bytes) |
 * | 20 | 16 | salt |
 * | 36 | 24 | XChaCha20-Poly1305 nonce (fresh on every write) |
 * | 60 | n+16 | ciphertext of the entries, with bytes 0–59 as associated data |
 *
 * Entries (the plaintext): u32 count, then per entry u16 name length, UTF-8 name,
 * u32 value length, value; names sorted and unique, nothing after the last entry.
 */

export const VAULT_MAGIC = Buffer.from('CBVAULT\0', 'latin1')
export const VAULT_VERSION = 1
export const KDF_ARGON2ID13 = 1
export const HEADER_LENGTH = 60
export const SALT_LENGTH = 16
export const NONCE_LENGTH = 24
export const TAG_LENGTH = 16

/** Bounds on KDF parameters read from a file, so a hostile file cannot ask for 100 GB of memory. */
export const KDF_LIMITS = { minOps: 1, maxOps: 64, minMem: 8 * 1024, maxMem: 1024 * 1024 * 1024 } as const

export interface KdfParameters {
  readonly opsLimit: number
  readonly memLimit: number
}

export interface VaultHeader extends KdfParameters {
  readonly salt: Uint8Array
  readonly nonce: Uint8Array
}

export function encodeHeader(header: VaultHeader): Uint8Array {
  const out = Buffer.alloc(HEADER_LENGTH)
  VAULT_MAGIC.copy(out, 0)
  out.writeUInt16BE(VAULT_VERSION, 8)
  out.writeUInt8(KDF_ARGON2ID13, 10)
  out.writeUInt32BE(header.opsLimit, 12)
  out.writeUInt32BE(header.memLimit, 16)
  out.set(header.salt, 20)
  out.set(header.nonce, 36)
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

/** @throws {VaultCorruptedError | VaultUnsupportedVersionError} */
export function decodeHeader(file: Uint8Array): VaultHeader {
  const bytes = Buffer.from(file.buffer, file.byteOffset, file.byteLength)
  if (bytes.length < 10 || !bytes.subarray(0, 8).equals(VAULT_MAGIC)) throw new VaultCorruptedError('This file is not a CloudBox vault (wrong magic bytes) or is truncated. It was left as it is.')
  const version = bytes.readUInt16BE(8)
  if (version !== VAULT_VERSION) throw new VaultUnsupportedVersionError(`The vault file has format version ${version}; this CloudBox reads version ${VAULT_VERSION}. Update CloudBox to open it.`)
  if (bytes.length < HEADER_LENGTH + TAG_LENGTH) throw new VaultCorruptedError('The vault file is truncated. It was left as it is: restore it from a backup, or restore your identity from its recovery phrase.')
  if (bytes.readUInt8(10) !== KDF_ARGON2ID13 || bytes.readUInt8(11) !== 0) throw new VaultCorruptedError('The vault file names an unknown key derivation; it is damaged. It was left as it is.')
  const opsLimit = bytes.readUInt32BE(12)
  const memLimit = bytes.readUInt32BE(16)
  if (opsLimit < KDF_LIMITS.minOps || opsLimit > KDF_LIMITS.maxOps || memLimit < KDF_LIMITS.minMem || memLimit > KDF_LIMITS.maxMem) {
    throw new VaultCorruptedError('The vault file asks for key-derivation costs outside safe bounds; it is damaged or hostile. It was left as it is.')
  }
  return { opsLimit, memLimit, salt: file.slice(20, 36), nonce: file.slice(36, 60) }
}

export function encodeEntries(entries: ReadonlyMap<string, Uint8Array>): Uint8Array {
  const names = [...entries.keys()].sort()
  const parts: Buffer[] = []
  const count = Buffer.alloc(4)
  count.writeUInt32BE(names.length)
  parts.push(count)
  for (const name of names) {
    const nameBytes = Buffer.from(name, 'utf8')
    const value = entries.get(name) as Uint8Array
    const head = Buffer.alloc(2)
    head.writeUInt16BE(nameBytes.length)
    const length = Buffer.alloc(4)
    length.writeUInt32BE(value.length)
    parts.push(head, nameBytes, length, Buffer.from(value))
  }
  const out = Buffer.concat(parts)
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

/** @throws {VaultCorruptedError} on any deviation (only a buggy writer could cause one). */
export function decodeEntries(plaintext: Uint8Array): Map<string, Uint8Array> {
  const bytes = Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength)
  const corrupted = () => new VaultCorruptedError('The vault decrypted but its contents are malformed. It was left as it is: restore it from a backup.')
  const entries = new Map<string, Uint8Array>()
  if (bytes.length < 4) throw corrupted()
  const count = bytes.readUInt32BE(0)
  let offset = 4
  let previous: string | undefined
  for (let i = 0; i < count; i++) {
    if (offset + 2 > bytes.length) throw corrupted()
    const nameLength = bytes.readUInt16BE(offset)
    offset += 2
    if (offset + nameLength + 4 > bytes.length) throw corrupted()
    const name = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(offset, offset + nameLength))
    offset += nameLength
    const valueLength = bytes.readUInt32BE(offset)
    offset += 4
    if (offset + valueLength > bytes.length) throw corrupted()
    if (previous !== undefined && name <= previous) throw corrupted()
    entries.set(name, Uint8Array.from(bytes.subarray(offset, offset + valueLength)))
    offset += valueLength
    previous = name
  }
  if (offset !== bytes.length) throw corrupted()
  return entries
}
