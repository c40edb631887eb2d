import { chachaDecrypt, chachaEncrypt, hkdf, randomBytes, wipe, x25519, x25519PublicKey, X25519_KEY_LENGTH } from '../crypto.js'
import { AgeHeaderInvalidError } from '../errors.js'
import type { KeyAgreement } from '../interfaces/key-agreement.js'
import { decodeBase64Strict, encodeBase64Unpadded, type Stanza } from './header.js'

/** The age X25519 recipient type (age-encryption.org/v1/X25519). */
export const X25519_STANZA_TYPE = 'X25519'
const WRAP_INFO = 'age-encryption.org/v1/X25519'
const ZERO_NONCE = new Uint8Array(12)
export const FILE_KEY_LENGTH = 16

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/** Wraps the file key to one recipient's X25519 public key with a fresh ephemeral key. */
export function wrapFileKey(fileKey: Uint8Array, recipient: Uint8Array): Stanza {
  if (!(recipient instanceof Uint8Array) || recipient.length !== X25519_KEY_LENGTH) {
    throw new RangeError(`A recipient must be a ${X25519_KEY_LENGTH}-byte X25519 public key`)
  }
  const ephemeral = randomBytes(X25519_KEY_LENGTH)
  try {
    const share = x25519PublicKey(ephemeral)
    const shared = x25519(ephemeral, recipient)
    if (shared === undefined) throw new RangeError('This recipient key is a low-order point; nobody could open the file')
    const wrapKey = hkdf('sha256', shared, concat(share, recipient), WRAP_INFO, 32)
    const body = chachaEncrypt(wrapKey, ZERO_NONCE, fileKey)
    wipe(shared)
    wipe(wrapKey)
    return { type: X25519_STANZA_TYPE, args: [encodeBase64Unpadded(share)], body }
  } finally {
    wipe(ephemeral)
  }
}

/**
 * The file key from an X25519 stanza, or undefined when the stanza is for another key.
 * @throws {AgeHeaderInvalidError} when the stanza is malformed.
 */
export function unwrapFileKey(stanza: Stanza, identity: KeyAgreement): Uint8Array | undefined {
  const [shareText] = stanza.args
  const share = stanza.args.length === 1 && shareText !== undefined ? decodeBase64Strict(shareText) : undefined
  if (share === undefined || share.length !== X25519_KEY_LENGTH) throw new AgeHeaderInvalidError('This is not a valid age-encrypted file: an X25519 stanza has a malformed share.')
  if (stanza.body.length !== FILE_KEY_LENGTH + 16) throw new AgeHeaderInvalidError('This is not a valid age-encrypted file: an X25519 stanza body has the wrong length.')
  const shared = identity.agree(share)
  if (shared === undefined) throw new AgeHeaderInvalidError('This is not a valid age-encrypted file: an X25519 stanza has a low-order share.')
  const wrapKey = hkdf('sha256', shared, concat(share, identity.x25519PublicKey), WRAP_INFO, 32)
  wipe(shared)
  const fileKey = chachaDecrypt(wrapKey, ZERO_NONCE, stanza.body)
  wipe(wrapKey)
  return fileKey
}
