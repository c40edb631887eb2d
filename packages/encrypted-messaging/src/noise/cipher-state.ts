import { chachaDecrypt, chachaEncrypt, wipe } from '../crypto.js'
import { NonceExhaustedError } from '../errors.js'

/** Noise's reserved nonce 2^64-1, used only by Rekey(). */
const REKEY_NONCE = new Uint8Array([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
/** Our counters are JS numbers: exact up to 2^53, far beyond what rekeying lets happen. */
const MAX_NONCE = Number.MAX_SAFE_INTEGER

/** Noise ChaChaPoly nonce: 32 zero bits, then the 64-bit counter little-endian. */
function nonceBytes(n: number): Uint8Array {
  const nonce = new Uint8Array(12)
  const view = new DataView(nonce.buffer)
  view.setUint32(4, n >>> 0, true)
  view.setUint32(8, Math.floor(n / 2 ** 32), true)
  return nonce
}

/** A Noise CipherState (spec §5.1) over ChaCha20-Poly1305. */
export class CipherState {
  #key: Uint8Array | undefined
  #nonce = 0
  #destroyed = false

  constructor(key?: Uint8Array) {
    if (key !== undefined) this.initializeKey(key)
  }

  initializeKey(key: Uint8Array): void {
    wipe(this.#key)
    this.#key = key.slice(0, 32)
    this.#nonce = 0
  }

  hasKey(): boolean {
    return this.#key !== undefined
  }

  get nonce(): number {
    return this.#nonce
  }

  #assertUsable(): void {
    // A destroyed state must never fall back to "no key" (which passes plaintext through).
    if (this.#destroyed) throw new Error('This CipherState was destroyed')
  }

  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    this.#assertUsable()
    if (this.#key === undefined) return plaintext
    if (this.#nonce >= MAX_NONCE) throw new NonceExhaustedError()
    const ciphertext = chachaEncrypt(this.#key, nonceBytes(this.#nonce), plaintext, ad)
    this.#nonce++
    return ciphertext
  }

  /** The plaintext, or undefined when authentication fails (the nonce does not advance then). */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | undefined {
    this.#assertUsable()
    if (this.#key === undefined) return ciphertext
    if (this.#nonce >= MAX_NONCE) throw new NonceExhaustedError()
    const plaintext = chachaDecrypt(this.#key, nonceBytes(this.#nonce), ciphertext, ad)
    if (plaintext !== undefined) this.#nonce++
    return plaintext
  }

  /** Rekey() (spec §11.3): the new key is ENCRYPT(k, 2^64-1, "", zeros(32)), first 32 bytes. */
  rekey(): void {
    if (this.#key === undefined) return
    const next = chachaEncrypt(this.#key, REKEY_NONCE, new Uint8Array(32)).slice(0, 32)
    wipe(this.#key)
    this.#key = next
  }

  destroy(): void {
    wipe(this.#key)
    this.#key = undefined
    this.#destroyed = true
  }
}
