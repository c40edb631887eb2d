import nodeCrypto from 'node:crypto'
import { hkdf, hmac, wipe } from '../crypto.js'
import { AgePayloadCorruptedError, AgeTruncatedError } from '../errors.js'

/**
 * The age payload: a 16-byte nonce, then STREAM chunks of 64 KiB of plaintext, each
 * ChaCha20-Poly1305 under HKDF-SHA256(file key, nonce, "payload") with the nonce
 * `11-byte big-endian counter ‖ last flag`. Only full chunks precede the last one;
 * the last chunk is empty only when the whole plaintext is.
 */

export const CHUNK_SIZE = 64 * 1024
export const TAG_SIZE = 16
export const ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
export const PAYLOAD_NONCE_LENGTH = 16

export function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Uint8Array {
  return hkdf('sha256', fileKey, nonce, 'payload', 32)
}

export function headerMacKey(fileKey: Uint8Array): Uint8Array {
  return hkdf('sha256', fileKey, new Uint8Array(0), 'header', 32)
}

export function headerMac(fileKey: Uint8Array, macInput: Uint8Array): Uint8Array {
  const key = headerMacKey(fileKey)
  try {
    return hmac('sha256', key, macInput)
  } finally {
    wipe(key)
  }
}

/** The STREAM nonce for chunk `counter`; counters stay far below 2^53 in practice. */
function chunkNonce(counter: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12)
  nonce.writeUIntBE(counter, 5, 6)
  nonce[11] = last ? 1 : 0
  return nonce
}

// Bulk path: node:crypto directly, one cipher object per 64 KiB chunk (microseconds).
function sealChunk(key: Buffer, counter: number, last: boolean, plaintext: Uint8Array): Buffer {
  const cipher = nodeCrypto.createCipheriv('chacha20-poly1305', key, chunkNonce(counter, last), { authTagLength: TAG_SIZE })
  const body = cipher.update(plaintext)
  cipher.final()
  return Buffer.concat([body, cipher.getAuthTag()], body.length + TAG_SIZE)
}

function openChunk(key: Buffer, counter: number, last: boolean, ciphertext: Uint8Array): Buffer | undefined {
  const bodyLength = ciphertext.length - TAG_SIZE
  const decipher = nodeCrypto.createDecipheriv('chacha20-poly1305', key, chunkNonce(counter, last), { authTagLength: TAG_SIZE })
  decipher.setAuthTag(ciphertext.subarray(bodyLength))
  const body = decipher.update(ciphertext.subarray(0, bodyLength))
  try {
    decipher.final()
  } catch {
    body.fill(0)
    return undefined
  }
  return body
}

/** Collects bytes and hands back whole pieces without copying when it can. */
class ByteQueue {
  #parts: Uint8Array[] = []
  length = 0

  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    this.#parts.push(bytes)
    this.length += bytes.length
  }

  /** Removes and returns the first `count` bytes (count ≤ length). */
  take(count: number): Uint8Array {
    const first = this.#parts[0]
    if (first !== undefined && first.length >= count) {
      this.length -= count
      if (first.length === count) this.#parts.shift()
      else this.#parts[0] = first.subarray(count)
      return first.subarray(0, count)
    }
    // Many small parts (a source yielding single bytes queues 65,536 of them per chunk):
    // walk them by index and drop the used ones in one splice. Array#shift per part
    // moves the whole remaining array each time, quadratic in the number of parts
    // (seconds per chunk for one-byte pieces).
    const out = new Uint8Array(count)
    let filled = 0
    let used = 0
    while (filled < count) {
      const part = this.#parts[used] as Uint8Array
      const n = Math.min(part.length, count - filled)
      out.set(n === part.length ? part : part.subarray(0, n), filled)
      filled += n
      if (n === part.length) used++
      else this.#parts[used] = part.subarray(n)
    }
    this.#parts.splice(0, used)
    this.length -= count
    return out
  }
}

/** Encrypts a plaintext stream into STREAM chunks; push any sizes, then finish once. */
export class PayloadEncryptor {
  readonly #key: Buffer
  readonly #queue = new ByteQueue()
  #counter = 0
  #finished = false

  /** @param key the payload key, {@link payloadKey} of the file key and nonce. */
  constructor(key: Uint8Array) {
    this.#key = Buffer.from(key)
  }

  /** Encrypted chunks that are complete; one full chunk is held back until more data or finish. */
  push(plaintext: Uint8Array): Buffer[] {
    if (this.#finished) throw new Error('The payload encryptor is finished')
    this.#queue.push(plaintext)
    const out: Buffer[] = []
    // Strictly more than one chunk: the last full chunk may turn out to be the final one.
    while (this.#queue.length > CHUNK_SIZE) out.push(sealChunk(this.#key, this.#counter++, false, this.#queue.take(CHUNK_SIZE)))
    return out
  }

  finish(): Buffer {
    if (this.#finished) throw new Error('The payload encryptor is finished')
    this.#finished = true
    const last = sealChunk(this.#key, this.#counter++, true, this.#queue.take(this.#queue.length))
    this.#key.fill(0)
    return last
  }
}

/** Decrypts STREAM chunks; releases a chunk's plaintext only after it authenticated. */
export class PayloadDecryptor {
  readonly #key: Buffer
  readonly #queue = new ByteQueue()
  #counter = 0
  #finished = false

  /** @param key the payload key, {@link payloadKey} of the file key and nonce. */
  constructor(key: Uint8Array) {
    this.#key = Buffer.from(key)
  }

  push(ciphertext: Uint8Array): Buffer[] {
    if (this.#finished) throw new Error('The payload decryptor is finished')
    this.#queue.push(ciphertext)
    const out: Buffer[] = []
    while (this.#queue.length > ENCRYPTED_CHUNK_SIZE) {
      const chunk = this.#queue.take(ENCRYPTED_CHUNK_SIZE)
      const plaintext = openChunk(this.#key, this.#counter, false, chunk)
      if (plaintext === undefined) {
        this.#fail()
        // A full chunk that authenticates as the last one means data was appended.
        throw new AgePayloadCorruptedError()
      }
      this.#counter++
      out.push(plaintext)
    }
    return out
  }

  /** The last chunk's plaintext. @throws when the stream is cut, tampered with or extended. */
  finish(): Buffer {
    if (this.#finished) throw new Error('The payload decryptor is finished')
    this.#finished = true
    const rest = this.#queue.take(this.#queue.length)
    try {
      if (rest.length < TAG_SIZE) throw new AgeTruncatedError()
      const plaintext = openChunk(this.#key, this.#counter, true, rest)
      if (plaintext === undefined) {
        if (rest.length === ENCRYPTED_CHUNK_SIZE && openChunk(this.#key, this.#counter, false, rest) !== undefined) throw new AgeTruncatedError()
        throw new AgePayloadCorruptedError()
      }
      if (plaintext.length === 0 && this.#counter > 0) throw new AgePayloadCorruptedError('The sealed file ends with an empty chunk, which age forbids; it was modified.')
      return plaintext
    } finally {
      this.#key.fill(0)
    }
  }

  #fail(): void {
    this.#finished = true
    this.#key.fill(0)
  }
}
