import { bech32 } from '@scure/base'
import { X25519_KEY_LENGTH, randomBytes, wipe } from '../crypto.js'
import { InvalidKeyError } from '../errors.js'
import { X25519KeyAgreement } from '../key-agreement.js'

/** bech32 prefix of an age X25519 recipient (`age1…`). */
export const AGE_RECIPIENT_PREFIX = 'age'
/** bech32 prefix of an age X25519 identity (`AGE-SECRET-KEY-1…`, written upper case). */
export const AGE_IDENTITY_PREFIX = 'age-secret-key-'

function decodeBech32(text: string, prefix: string, what: string): Uint8Array {
  const trimmed = text.trim()
  // bech32 forbids mixed case; both all-lower and all-upper are valid spellings.
  if (trimmed !== trimmed.toLowerCase() && trimmed !== trimmed.toUpperCase()) {
    throw new InvalidKeyError(`This ${what} mixes upper and lower case; copy it exactly as age printed it.`)
  }
  const normalized = trimmed.toLowerCase()
  if (!normalized.startsWith(`${prefix}1`)) {
    throw new InvalidKeyError(`"${trimmed.slice(0, 24)}…" is not an age ${what}: it must start with ${prefix === AGE_RECIPIENT_PREFIX ? 'age1' : 'AGE-SECRET-KEY-1'}.`)
  }
  let words: number[]
  try {
    const decoded = bech32.decode(normalized as `${string}1${string}`, 256)
    if (decoded.prefix !== prefix) throw new Error('prefix')
    words = decoded.words
  } catch (error) {
    throw new InvalidKeyError(`This age ${what} is damaged (bad checksum or characters); copy it again.`, { cause: error })
  }
  let key: Uint8Array
  try {
    key = bech32.fromWords(words)
  } catch (error) {
    throw new InvalidKeyError(`This age ${what} has non-canonical padding.`, { cause: error })
  }
  if (key.length !== X25519_KEY_LENGTH) {
    throw new InvalidKeyError(`This age ${what} holds ${key.length} bytes instead of ${X25519_KEY_LENGTH}.`)
  }
  return key
}

/**
 * The X25519 public key of an age recipient string (`age1…`).
 * Plugin recipients (`age1yubikey1…`) have another prefix and are refused.
 * @throws {InvalidKeyError} on a wrong prefix, checksum or length.
 * @example
 * const key = parseAgeRecipient('age1…')
 */
export function parseAgeRecipient(text: string): Uint8Array {
  if (typeof text !== 'string') throw new TypeError('An age recipient must be a string')
  return decodeBech32(text, AGE_RECIPIENT_PREFIX, 'recipient')
}

/** The age recipient string (`age1…`) of a 32-byte X25519 public key. */
export function formatAgeRecipient(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== X25519_KEY_LENGTH) {
    throw new RangeError(`An X25519 public key must be ${X25519_KEY_LENGTH} bytes`)
  }
  return bech32.encode(AGE_RECIPIENT_PREFIX, bech32.toWords(publicKey), 256)
}

/**
 * The age identity string (`AGE-SECRET-KEY-1…`) of a 32-byte X25519 secret.
 * This is a secret: callers export it only on an explicit user request.
 */
export function formatAgeIdentity(secretKey: Uint8Array): string {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== X25519_KEY_LENGTH) {
    throw new RangeError(`An X25519 secret key must be ${X25519_KEY_LENGTH} bytes`)
  }
  return bech32.encode(AGE_IDENTITY_PREFIX, bech32.toWords(secretKey), 256).toUpperCase()
}

/**
 * A key agreement for an age identity string (`AGE-SECRET-KEY-1…`).
 * @throws {InvalidKeyError} when it is not a valid X25519 age identity.
 */
export function parseAgeIdentity(text: string): X25519KeyAgreement {
  if (typeof text !== 'string') throw new TypeError('An age identity must be a string')
  const secret = decodeBech32(text, AGE_IDENTITY_PREFIX, 'identity')
  try {
    return new X25519KeyAgreement(secret)
  } finally {
    wipe(secret)
  }
}

/**
 * Every identity in an age identity file, as `age-keygen` writes it: one
 * `AGE-SECRET-KEY-1…` per line, `#` comments and blank lines ignored.
 * @throws {InvalidKeyError} naming the first bad line, or when the file holds no identity.
 */
export function parseAgeIdentityFile(text: string): X25519KeyAgreement[] {
  const identities: X25519KeyAgreement[] = []
  const lines = text.split(/\r?\n/)
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    if (/^AGE-PLUGIN-/i.test(line)) {
      throw new InvalidKeyError(`Line ${index + 1} of the identity file is an age plugin identity; only X25519 identities (AGE-SECRET-KEY-1…) are supported.`)
    }
    try {
      identities.push(parseAgeIdentity(line))
    } catch (error) {
      for (const identity of identities) identity.destroy()
      throw new InvalidKeyError(`Line ${index + 1} of the identity file is not an age identity (AGE-SECRET-KEY-1…).`, { cause: error })
    }
  }
  if (identities.length === 0) throw new InvalidKeyError('The identity file holds no age identity (AGE-SECRET-KEY-1…).')
  return identities
}

/** A fresh random age identity, as `age-keygen` makes one. */
export function generateAgeIdentity(): X25519KeyAgreement {
  const secret = randomBytes(X25519_KEY_LENGTH)
  try {
    return new X25519KeyAgreement(secret)
  } finally {
    wipe(secret)
  }
}
