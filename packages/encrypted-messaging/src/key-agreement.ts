import { wipe, x25519, x25519PublicKey, X25519_KEY_LENGTH } from './crypto.js'
import type { KeyAgreement } from './interfaces/key-agreement.js'

/**
 * A {@link KeyAgreement} over a raw X25519 secret. Internal: used for parsed age
 * identities, ephemeral keys and test vectors. The secret is copied and kept private.
 */
export class X25519KeyAgreement implements KeyAgreement {
  readonly x25519PublicKey: Uint8Array
  readonly #secret: Uint8Array

  constructor(secretKey: Uint8Array) {
    if (!(secretKey instanceof Uint8Array) || secretKey.length !== X25519_KEY_LENGTH) {
      throw new RangeError(`An X25519 secret key must be ${X25519_KEY_LENGTH} bytes`)
    }
    this.#secret = secretKey.slice()
    this.x25519PublicKey = x25519PublicKey(this.#secret)
  }

  agree(peerPublicKey: Uint8Array): Uint8Array | undefined {
    if (peerPublicKey.length !== X25519_KEY_LENGTH) return undefined
    return x25519(this.#secret, peerPublicKey)
  }

  /** A copy of the secret, for the explicit age identity export only. */
  exportSecret(): Uint8Array {
    return this.#secret.slice()
  }

  /** Overwrites the secret; the object is unusable afterwards. */
  destroy(): void {
    wipe(this.#secret)
  }
}
