/**
 * Something that holds an X25519 secret and agrees keys with it, without handing the
 * secret out. An `Identity` is one; so is a parsed `AGE-SECRET-KEY-1…` string.
 * Noise and age take this, never raw secret bytes.
 */
export interface KeyAgreement {
  /** The 32-byte X25519 public key. */
  readonly x25519PublicKey: Uint8Array
  /**
   * X25519(secret, peerPublicKey). Returns undefined when the result is all zero
   * (a low-order peer key), which callers must treat as failure.
   */
  agree(peerPublicKey: Uint8Array): Uint8Array | undefined
}

/** Something that holds an Ed25519 secret and signs with it. */
export interface Signer {
  /** The 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  /** A 64-byte Ed25519 signature of `message`. */
  sign(message: Uint8Array): Uint8Array
}
