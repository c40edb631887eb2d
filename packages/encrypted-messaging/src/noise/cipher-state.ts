import { chachaDecrypt, chachaEncrypt, wipe } from '../crypto.js'
import { NonceExhaustedError } from '../errors.js'

/** Noise's reserved nonce 2^64-1: never used for a message, only by Rekey() (spec §5.1, §11.3). */
export const MAX_NONCE = 2n ** 64n - 1n
const EMPTY = new Uint8Array(0)

/** Noise ChaChaPoly nonce (spec §12.3): 32 zero bits, then the 64-bit counter little-endian. */
function nonceBytes(n: bigint): Uint8Array {
  const nonce = new Uint8Array(12)
  new DataView(nonce.buffer).setBigUint64(4, n, true)
  return nonce
}

const REKEY_NONCE = nonceBytes(MAX_NONCE)

/**
 * A Noise CipherState (spec §5.1) over ChaCha20-Poly1305: a key and a 64-bit counter
 * nonce. The nonce 2^64-1 is reserved: reaching it is NonceExhaustedError, never a wrap.
 */
export class CipherState {
  #key: Uint8Array | undefined
  #nonce = 0n
  #destroyed = false

  constructor(key?: Uint8Array) {
    if (key !== undefined) this.initializeKey(key)
  }

  /** InitializeKey(key): also resets the nonce to 0. */
  initializeKey(key: Uint8Array): void {
    if (key.length !== 32) throw new RangeError('A CipherState key is 32 bytes')
    wipe(this.#key)
    this.#key = new Uint8Array(key)
    this.#nonce = 0n
  }

  hasKey(): boolean {
    return this.#key !== undefined
  }

  /** The next nonce (the count of messages this state encrypted or decrypted). */
  get nonce(): bigint {
    return this.#nonce
  }

  /** SetNonce(nonce) (spec §5.1). Out-of-order transports and tests only. */
  setNonce(nonce: bigint): void {
    if (nonce < 0n || nonce > MAX_NONCE) throw new RangeError('A Noise nonce is a 64-bit unsigned integer')
    this.#nonce = nonce
  }

  #assertUsable(): void {
    // A destroyed state must never fall back to "no key" (which passes plaintext through).
    if (this.#destroyed) throw new Error('This CipherState was destroyed')
  }

  /** EncryptWithAd: ciphertext ‖ tag, or the plaintext itself while there is no key. The plaintext may come in parts (encrypted as their concatenation). */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array | readonly Uint8Array[]): Uint8Array {
    this.#assertUsable()
    if (this.#key === undefined) return plaintext instanceof Uint8Array ? plaintext : new Uint8Array(Buffer.concat(plaintext))
    if (this.#nonce >= MAX_NONCE) throw new NonceExhaustedError()
    const ciphertext = chachaEncrypt(this.#key, nonceBytes(this.#nonce), plaintext, ad)
    this.#nonce++
    return ciphertext
  }

  /** DecryptWithAd: the plaintext, or undefined when authentication fails (the nonce does not advance then). */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | undefined {
    this.#assertUsable()
    if (this.#key === undefined) return ciphertext
    if (this.#nonce >= MAX_NONCE) throw new NonceExhaustedError()
    const plaintext = chachaDecrypt(this.#key, nonceBytes(this.#nonce), ciphertext, ad)
    if (plaintext !== undefined) this.#nonce++
    return plaintext
  }

  /**
   * Rekey() (spec §11.3, §12.3): k = the first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros(32)).
   * The nonce is not reset.
   */
  rekey(): void {
    this.#assertUsable()
    if (this.#key === undefined) return
    const next = chachaEncrypt(this.#key, REKEY_NONCE, new Uint8Array(32), EMPTY).subarray(0, 32).slice()
    wipe(this.#key)
    this.#key = next
  }

  destroy(): void {
    wipe(this.#key)
    this.#key = undefined
    this.#destroyed = true
  }
}
