import { parseAgeRecipient } from '../age/keys.js'
import { ed25519PublicKeyToX25519 } from '../crypto.js'
import { InvalidKeyError } from '../errors.js'
import { parsePublicId } from './public-id.js'

/**
 * The X25519 key to seal files to, from either form a user may hold: a CloudBox
 * public ID (`cb1…`, converted from its Ed25519 key) or an age recipient (`age1…`).
 * @throws {InvalidKeyError | InvalidPublicIdError} when it is neither.
 * @example
 * const keys = ['cb1…', 'age1…'].map(parseRecipient)
 */
export function parseRecipient(text: string): Uint8Array {
  const trimmed = text.trim()
  if (/^cb1/i.test(trimmed)) {
    const key = ed25519PublicKeyToX25519(parsePublicId(trimmed))
    if (key === undefined) throw new InvalidKeyError('This public ID has no X25519 form; it cannot receive sealed files.')
    return key
  }
  if (/^age1/i.test(trimmed)) return parseAgeRecipient(trimmed)
  throw new InvalidKeyError(`"${trimmed.slice(0, 20)}" is not a recipient: give a CloudBox public ID (cb1…) or an age recipient (age1…).`)
}
