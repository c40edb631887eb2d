import { derivePath } from 'ed25519-hd-key'
import { formatAgeIdentity, formatAgeRecipient } from '../age/keys.js'
import {
  ed25519KeyPairFromSeed,
  ed25519SecretKeyToX25519,
  ed25519Sign,
  wipe,
  x25519,
  x25519PublicKey,
  X25519_KEY_LENGTH,
} from '../crypto.js'
import type { KeyAgreement, Signer } from '../interfaces/key-agreement.js'
import { NODE_KEY_PATH, subCloudKeyPath } from './derivation-paths.js'
import { assertRecoveryPhrase, generateRecoveryPhrase, mnemonicToSeed } from './mnemonic.js'
import { encodePublicId } from './public-id.js'

/** Options of {@link Identity.fromRecoveryPhrase}. */
export interface IdentityOptions {
  /** The optional BIP39 passphrase ("25th word"). A different passphrase gives a different identity. */
  passphrase?: string
  /** Derive a sub-cloud key (`m/7331'/1'/N'`) instead of the node key. */
  subCloud?: number
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/**
 * A node's key pair, derived from a 24-word recovery phrase like a hardware wallet:
 * Ed25519 signs, and the X25519 key converted from it agrees keys (Noise, age).
 *
 * The secret never leaves this object except through the explicit exports
 * {@link Identity.exportRecoveryPhrase} and {@link Identity.exportAgeIdentity}.
 * APIs across CloudBox take an `Identity`, never raw secret bytes.
 *
 * @example
 * const { identity, recoveryPhrase } = Identity.generate()
 * console.log(identity.publicId) // cb1…
 * const signature = identity.sign(new TextEncoder().encode('hello'))
 */
/**
 * The X25519 secret of each identity, for this package's own use where a library needs
 * the key itself (HPKE in api/api-envelope.ts). Not exported from the package: the
 * secret never leaves it. Wiped with the identity.
 */
export const x25519SecretOf = new WeakMap<Identity, Uint8Array>()

export class Identity implements KeyAgreement, Signer {
  /** Ed25519 public key (32 bytes). */
  readonly publicKey: Uint8Array
  /** The public ID (`cb1…`): the Ed25519 public key in bech32m. */
  readonly publicId: string
  /** X25519 public key converted from the Ed25519 key (32 bytes). */
  readonly x25519PublicKey: Uint8Array
  /** The SLIP-0010 path this key was derived at. */
  readonly derivationPath: string

  readonly #secretKey: Uint8Array
  readonly #x25519SecretKey: Uint8Array
  readonly #recoveryPhrase: string
  readonly #passphrase: string
  #destroyed = false

  private constructor(recoveryPhrase: string, passphrase: string, derivationPath: string) {
    const seed = mnemonicToSeed(recoveryPhrase, passphrase)
    const derived = derivePath(derivationPath, toHex(seed))
    wipe(seed)
    const pair = ed25519KeyPairFromSeed(derived.key)
    wipe(derived.key)
    wipe(derived.chainCode)
    this.#secretKey = pair.secretKey
    this.#x25519SecretKey = ed25519SecretKeyToX25519(pair.secretKey)
    x25519SecretOf.set(this, this.#x25519SecretKey)
    this.#recoveryPhrase = recoveryPhrase
    this.#passphrase = passphrase
    this.publicKey = pair.publicKey
    this.publicId = encodePublicId(pair.publicKey)
    this.x25519PublicKey = x25519PublicKey(this.#x25519SecretKey)
    this.derivationPath = derivationPath
  }

  /**
   * A new identity with a fresh 24-word recovery phrase. Show the phrase to the user once;
   * it is the only backup of the key.
   */
  static generate(options: { passphrase?: string } = {}): { identity: Identity; recoveryPhrase: string } {
    const recoveryPhrase = generateRecoveryPhrase()
    return { identity: new Identity(recoveryPhrase, options.passphrase ?? '', NODE_KEY_PATH), recoveryPhrase }
  }

  /**
   * The identity of a recovery phrase: the node key, or a sub-cloud key with `subCloud`.
   * @throws {InvalidMnemonicError} when the phrase is not 24 valid BIP39 English words.
   * @throws {RangeError} for an invalid sub-cloud index.
   */
  static fromRecoveryPhrase(recoveryPhrase: string, options: IdentityOptions = {}): Identity {
    const normalized = assertRecoveryPhrase(recoveryPhrase)
    const path = options.subCloud === undefined ? NODE_KEY_PATH : subCloudKeyPath(options.subCloud)
    return new Identity(normalized, options.passphrase ?? '', path)
  }

  /** The identity of sub-cloud `index`, from the same recovery phrase. */
  subCloud(index: number): Identity {
    this.#assertUsable()
    return new Identity(this.#recoveryPhrase, this.#passphrase, subCloudKeyPath(index))
  }

  /** The age recipient (`age1…`) of this identity's X25519 key: what others seal files to. */
  get ageRecipient(): string {
    return formatAgeRecipient(this.x25519PublicKey)
  }

  /** A 64-byte Ed25519 signature of `message`. */
  sign(message: Uint8Array): Uint8Array {
    this.#assertUsable()
    return ed25519Sign(this.#secretKey, message)
  }

  /** X25519 key agreement with a peer's X25519 public key; undefined for a low-order key. */
  agree(peerPublicKey: Uint8Array): Uint8Array | undefined {
    this.#assertUsable()
    if (peerPublicKey.length !== X25519_KEY_LENGTH) return undefined
    return x25519(this.#x25519SecretKey, peerPublicKey)
  }

  /**
   * Explicit export: the recovery phrase, which recovers this key and every other key of
   * the same phrase (node and sub-clouds). Handle it like the key itself.
   */
  exportRecoveryPhrase(): string {
    this.#assertUsable()
    return this.#recoveryPhrase
  }

  /** Explicit export of the BIP39 passphrase the identity was derived with ('' when none). */
  exportPassphrase(): string {
    this.#assertUsable()
    return this.#passphrase
  }

  /**
   * Explicit export: this key's X25519 secret as an age identity (`AGE-SECRET-KEY-1…`),
   * so the `age` tool can open files sealed to {@link Identity.ageRecipient}.
   */
  exportAgeIdentity(): string {
    this.#assertUsable()
    return formatAgeIdentity(this.#x25519SecretKey)
  }

  /** Overwrites the secret keys held by this object; it cannot sign or decrypt afterwards. */
  destroy(): void {
    wipe(this.#secretKey)
    wipe(this.#x25519SecretKey)
    this.#destroyed = true
  }

  get destroyed(): boolean {
    return this.#destroyed
  }

  #assertUsable(): void {
    if (this.#destroyed) throw new TypeError('This identity was destroyed; load it again from its storage')
  }

  // Keep secrets out of console.log, util.inspect and JSON.
  toJSON(): { publicId: string; derivationPath: string } {
    return { publicId: this.publicId, derivationPath: this.derivationPath }
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Identity { ${this.publicId} at ${this.derivationPath} }`
  }
}
