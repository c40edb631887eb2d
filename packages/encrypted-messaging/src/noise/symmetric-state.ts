import { hash, hmac, wipe, type HashName } from '../crypto.js'
import { CipherState } from './cipher-state.js'

export type NoiseHash = 'BLAKE2b' | 'SHA256'

const HASHES: Record<NoiseHash, { name: HashName; length: number }> = {
  BLAKE2b: { name: 'blake2b512', length: 64 },
  SHA256: { name: 'sha256', length: 32 },
}

/** A Noise SymmetricState (spec §5.2): chaining key, handshake hash and a CipherState. */
export class SymmetricState {
  readonly #hash: { name: HashName; length: number }
  readonly cipher = new CipherState()
  #ck: Uint8Array
  #h: Uint8Array

  constructor(protocolName: string, hashChoice: NoiseHash) {
    this.#hash = HASHES[hashChoice]
    const name = new TextEncoder().encode(protocolName)
    if (name.length <= this.#hash.length) {
      this.#h = new Uint8Array(this.#hash.length)
      this.#h.set(name)
    } else {
      this.#h = hash(this.#hash.name, name)
    }
    this.#ck = new Uint8Array(this.#h)
  }

  get handshakeHash(): Uint8Array {
    return new Uint8Array(this.#h)
  }

  /** Noise's HKDF (spec §4.3): HMAC-based, two or three outputs of HASHLEN bytes. */
  #hkdf(inputKeyMaterial: Uint8Array, outputs: 2 | 3): Uint8Array[] {
    const tempKey = hmac(this.#hash.name, this.#ck, inputKeyMaterial)
    const first = hmac(this.#hash.name, tempKey, new Uint8Array([1]))
    const second = hmac(this.#hash.name, tempKey, first, new Uint8Array([2]))
    const result = [first, second]
    if (outputs === 3) result.push(hmac(this.#hash.name, tempKey, second, new Uint8Array([3])))
    wipe(tempKey)
    return result
  }

  mixKey(inputKeyMaterial: Uint8Array): void {
    const [ck, tempK] = this.#hkdf(inputKeyMaterial, 2) as [Uint8Array, Uint8Array]
    wipe(this.#ck)
    this.#ck = ck
    this.cipher.initializeKey(tempK.subarray(0, 32))
    wipe(tempK)
  }

  mixHash(data: Uint8Array): void {
    this.#h = hash(this.#hash.name, this.#h, data)
  }

  mixKeyAndHash(inputKeyMaterial: Uint8Array): void {
    const [ck, tempH, tempK] = this.#hkdf(inputKeyMaterial, 3) as [Uint8Array, Uint8Array, Uint8Array]
    wipe(this.#ck)
    this.#ck = ck
    this.mixHash(tempH)
    this.cipher.initializeKey(tempK.subarray(0, 32))
    wipe(tempK)
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.cipher.encryptWithAd(this.#h, plaintext)
    this.mixHash(ciphertext)
    return ciphertext
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array | undefined {
    const plaintext = this.cipher.decryptWithAd(this.#h, ciphertext)
    if (plaintext === undefined) return undefined
    this.mixHash(ciphertext)
    return plaintext
  }

  /** The two transport CipherStates (initiator→responder, responder→initiator). */
  split(): [CipherState, CipherState] {
    const [k1, k2] = this.#hkdf(new Uint8Array(0), 2) as [Uint8Array, Uint8Array]
    const result: [CipherState, CipherState] = [new CipherState(k1.subarray(0, 32)), new CipherState(k2.subarray(0, 32))]
    wipe(k1)
    wipe(k2)
    wipe(this.#ck)
    this.cipher.destroy()
    return result
  }
}
