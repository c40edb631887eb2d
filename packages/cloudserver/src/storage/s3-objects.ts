/**
 * The formats an S3 back end writes. The object store sees only these:
 * - chunk objects `c/<name>`: AES-256-GCM of a piece of a file, padded (Padmé), named
 *   by a keyed hash of the plaintext (so equal content is stored once and names reveal
 *   nothing); the key is derived from the name and the length is bound as associated
 *   data, so a chunk cannot be swapped for another or shortened;
 * - the index `index`: every file's chunk list, folders, staged uploads and drop-box
 *   records, encrypted, padded and signed with the server's Ed25519 key, with a
 *   generation number that a local state file checks against rollback;
 * - drop-box objects `s/<id>.age`: age files sealed by the sender for the recipients,
 *   stored as they came (the server cannot open them either).
 * Specified in the README ("S3 formats").
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, createPublicKey, hkdfSync, randomBytes, verify as verifySignature, type KeyObject } from 'node:crypto'
import type { Identity } from '@cloudbox/encrypted-messaging'
import { errors } from '../errors.js'

const CHUNK_LABEL = Buffer.from('cloudbox/s3 chunk v1\0')
const INDEX_LABEL = Buffer.from('cloudbox/s3 index v1\0')
const INDEX_MAGIC = Buffer.from('CBXI')
const INDEX_VERSION = 1
/** magic ‖ version ‖ generation u64 ‖ nonce */
const INDEX_HEADER = 4 + 1 + 8 + 12
const TAG = 16
const SIGNATURE = 64
const ZERO_NONCE = Buffer.alloc(12)

export interface StorageKeys {
  /** Keyed hash for chunk names. */
  names: Buffer
  /** Per-chunk encryption keys are derived from this and the chunk's name. */
  data: Buffer
  /** Encrypts the index. */
  index: Buffer
  /** Verifies the index's signature (the server's Ed25519 public key). */
  verifier: KeyObject
}

/**
 * The storage key of a server, derived from its identity: an Ed25519 signature is
 * deterministic (RFC 8032), so signing a fixed, domain-separated label that is never
 * signed for anything else yields the same secret at every start, from the recovery
 * phrase alone, without another secret to keep.
 */
export function storageKeyOf(identity: Identity): Buffer {
  return createHash('sha256').update(identity.sign(Buffer.from(`cloudbox/s3 storage key v1\0${identity.publicId}`))).digest()
}

export function deriveStorageKeys(root: Uint8Array, publicKey: Uint8Array): StorageKeys {
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', root, 'cloudbox/s3 storage v1', info, 32))
  return {
    names: derive('chunk names'),
    data: derive('chunk data'),
    index: derive('index'),
    verifier: createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' }),
  }
}

/**
 * Padmé (Nikitin et al., PETS 2019): rounds a length up so that it leaks O(log log L)
 * bits, at most 12 % more bytes (about 3 % for a 4 MiB chunk).
 */
export function padme(length: number): number {
  if (length < 2) return length
  const e = Math.floor(Math.log2(length))
  const s = Math.floor(Math.log2(e)) + 1
  const mask = 2 ** (e - s) - 1
  return Math.ceil(length / (mask + 1)) * (mask + 1)
}

/** The object name of a chunk: hex of HMAC-SHA256 over its plaintext. */
export function chunkName(keys: StorageKeys, plaintext: Uint8Array): string {
  return createHmac('sha256', keys.names).update(plaintext).digest('hex')
}

function chunkCipherKey(keys: StorageKeys, name: string): Buffer {
  return createHmac('sha256', keys.data).update(name).digest()
}

function chunkAad(name: string, length: number): Buffer {
  const aad = Buffer.alloc(CHUNK_LABEL.length + 64 + 4)
  CHUNK_LABEL.copy(aad)
  aad.write(name, CHUNK_LABEL.length, 'latin1')
  aad.writeUInt32BE(length, CHUNK_LABEL.length + 64)
  return aad
}

/**
 * Seals one chunk. Each key encrypts exactly one plaintext (the key is derived from the
 * name, which is derived from the content), so a fixed nonce is safe.
 */
export function sealChunk(keys: StorageKeys, name: string, plaintext: Uint8Array): Buffer {
  const cipher = createCipheriv('aes-256-gcm', chunkCipherKey(keys, name), ZERO_NONCE)
  cipher.setAAD(chunkAad(name, plaintext.length))
  const padded = padme(plaintext.length)
  const parts = [cipher.update(plaintext)]
  if (padded > plaintext.length) parts.push(cipher.update(Buffer.alloc(padded - plaintext.length)))
  parts.push(cipher.final(), cipher.getAuthTag())
  return Buffer.concat(parts, padded + TAG)
}

/** Opens a chunk that the index says holds `length` bytes under `name`. */
export function openChunk(keys: StorageKeys, name: string, length: number, sealed: Uint8Array): Buffer {
  if (sealed.length !== padme(length) + TAG) throw errors.storageIntegrity(`chunk ${name.slice(0, 16)}… has the wrong size`)
  const decipher = createDecipheriv('aes-256-gcm', chunkCipherKey(keys, name), ZERO_NONCE)
  decipher.setAAD(chunkAad(name, length))
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG))
  try {
    const plain = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG)), decipher.final()])
    return plain.subarray(0, length)
  } catch {
    throw errors.storageIntegrity(`chunk ${name.slice(0, 16)}… does not authenticate`)
  }
}

/** Encrypts, pads and signs the index document. */
export function sealIndex(keys: StorageKeys, identity: Identity, generation: number, document: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(document))
  const plaintext = Buffer.alloc(padme(4 + json.length))
  plaintext.writeUInt32BE(json.length)
  json.copy(plaintext, 4)
  const header = Buffer.alloc(INDEX_HEADER)
  INDEX_MAGIC.copy(header)
  header[4] = INDEX_VERSION
  header.writeBigUInt64BE(BigInt(generation), 5)
  randomBytes(12).copy(header, 13)
  const cipher = createCipheriv('aes-256-gcm', keys.index, header.subarray(13))
  cipher.setAAD(header)
  const body = Buffer.concat([header, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()])
  const signature = identity.sign(Buffer.concat([INDEX_LABEL, body]))
  return Buffer.concat([body, signature])
}

/** Checks the signature, then decrypts. Returns the generation and the document. */
export function openIndex(keys: StorageKeys, sealed: Uint8Array): { generation: number; document: unknown } {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength)
  if (bytes.length < INDEX_HEADER + TAG + SIGNATURE + 4 || !bytes.subarray(0, 4).equals(INDEX_MAGIC)) throw errors.storageIntegrity('the index is not a CloudBox index')
  if (bytes[4] !== INDEX_VERSION) throw errors.storageIntegrity(`the index has version ${bytes[4]}, which this version cannot read`)
  const body = bytes.subarray(0, bytes.length - SIGNATURE)
  if (!verifySignature(null, Buffer.concat([INDEX_LABEL, body]), keys.verifier, bytes.subarray(bytes.length - SIGNATURE))) {
    throw errors.storageIntegrity('the index is not signed by this server')
  }
  const header = body.subarray(0, INDEX_HEADER)
  const decipher = createDecipheriv('aes-256-gcm', keys.index, header.subarray(13))
  decipher.setAAD(header)
  decipher.setAuthTag(body.subarray(body.length - TAG))
  let plaintext: Buffer
  try {
    plaintext = Buffer.concat([decipher.update(body.subarray(INDEX_HEADER, body.length - TAG)), decipher.final()])
  } catch {
    // Signed by this server's key but not decryptable with its storage key: another key was configured.
    throw errors.storageIntegrity('the index does not decrypt with this storage key')
  }
  const length = plaintext.readUInt32BE(0)
  if (length > plaintext.length - 4) throw errors.storageIntegrity('the index is malformed')
  return { generation: Number(header.readBigUInt64BE(5)), document: JSON.parse(plaintext.subarray(4, 4 + length).toString()) }
}

/** What the local state file remembers of the last index written or read (rollback check). */
export function indexDigest(sealed: Uint8Array): string {
  return createHash('sha256').update(sealed).digest('hex')
}
