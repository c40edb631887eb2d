import { bech32m } from '@scure/base'
import { ED25519_PUBLIC_KEY_LENGTH, ed25519PublicKeyToX25519 } from '../crypto.js'
import { CryptoNotReadyError, InvalidPublicIdError } from '../errors.js'

/** Human-readable prefix of a public ID: `cb1…`. */
export const PUBLIC_ID_PREFIX = 'cb'

/**
 * The public ID of an Ed25519 public key: bech32m with prefix `cb` (61 characters,
 * lowercase). The checksum catches typos; parsing is case-insensitive.
 * @throws {RangeError} when publicKey is not 32 bytes.
 * @example
 * encodePublicId(identity.publicKey) // 'cb1…'
 */
export function encodePublicId(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_PUBLIC_KEY_LENGTH) {
    throw new RangeError(`A public key must be ${ED25519_PUBLIC_KEY_LENGTH} bytes`)
  }
  return bech32m.encode(PUBLIC_ID_PREFIX, bech32m.toWords(publicKey))
}

/**
 * The Ed25519 public key inside a public ID. Accepts any letter case and
 * surrounding white space; refuses mixed case (as bech32m requires).
 * @throws {InvalidPublicIdError} on a wrong prefix, checksum, length, or a key that is not a curve point.
 * @example
 * const key = parsePublicId('cb1…')
 */
export function parsePublicId(text: string): Uint8Array {
  if (typeof text !== 'string') throw new TypeError('A public ID must be a string')
  const trimmed = text.trim()
  // bech32 forbids mixed case; a typed ID is either all upper or all lower.
  if (trimmed !== trimmed.toLowerCase() && trimmed !== trimmed.toUpperCase()) throw new InvalidPublicIdError()
  const normalized = trimmed.toLowerCase()
  if (!normalized.startsWith(`${PUBLIC_ID_PREFIX}1`)) throw new InvalidPublicIdError()
  let key: Uint8Array
  try {
    const decoded = bech32m.decode(normalized as `${string}1${string}`)
    if (decoded.prefix !== PUBLIC_ID_PREFIX) throw new Error('prefix')
    key = bech32m.fromWords(decoded.words)
  } catch (error) {
    throw new InvalidPublicIdError(undefined, { cause: error })
  }
  if (key.length !== ED25519_PUBLIC_KEY_LENGTH || ed25519PublicKeyToX25519(key) === undefined) {
    throw new InvalidPublicIdError()
  }
  return key
}

/** True when `text` parses as a public ID. */
export function isPublicId(text: string): boolean {
  try {
    parsePublicId(text)
    return true
  } catch (error) {
    // "Not loaded yet" is not "not an ID".
    if (error instanceof CryptoNotReadyError) throw error
    return false
  }
}

/** A short form of a public ID for logs and lists (`cb1qwer…tyui`); not unique, never for lookups. */
export function shortPublicId(publicId: string): string {
  return publicId.length <= 16 ? publicId : `${publicId.slice(0, 10)}…${publicId.slice(-4)}`
}
