import { createHash } from 'node:crypto'

/**
 * Content-defined chunking: FastCDC (Xia et al., 2016/2020) with a 32-bit Gear hash,
 * cut-point skipping below the minimum size and normalized chunking (a harder mask
 * before the average size, an easier one after), so an insertion or deletion moves only
 * the chunks around it. Each chunk is identified by its SHA-256 (native node:crypto).
 */

export const CHUNK_HASH_LENGTH = 32

export interface ChunkParameters {
  readonly minSize: number
  readonly averageSize: number
  readonly maxSize: number
}

export interface Chunk {
  readonly offset: number
  readonly length: number
  /** SHA-256 of the chunk's bytes. */
  readonly hash: Uint8Array
}

// The Gear table: 256 fixed pseudo-random 32-bit values, derived (not stored) so every
// peer computes the same boundaries and chunks deduplicate across devices.
// Kept as int32 so the hot loop stays in small-integer arithmetic.
const GEAR = (() => {
  const table = new Int32Array(256)
  for (let i = 0; i < 256; i++) {
    const digest = createHash('sha256').update(`cloudbox/gear/v1/${i}`).digest()
    table[i] = digest.readInt32BE(0)
  }
  return table
})()

/** A mask of `bits` ones in the high bits, where a left-shifting Gear hash mixes best. */
function highMask(bits: number): number {
  return bits <= 0 ? 0 : (0xffffffff << (32 - bits)) | 0
}

export const MIN_AVERAGE = 8 * 1024
export const MAX_AVERAGE = 1024 * 1024

function parametersOf(average: number): ChunkParameters {
  return { minSize: average / 4, averageSize: average, maxSize: average * 8 }
}

/**
 * Chunk sizes for a file of `size` bytes: the average grows with the file (about 8,192
 * chunks for a large file) between 8 KiB and 1 MiB; minimum a quarter, maximum 8× the
 * average. A file that had chunks before keeps their average while its size stays within
 * 4× of that class, so an edit that crosses a size threshold does not re-cut (and resend)
 * the whole file; every device holds the same previous record, so all agree.
 */
export function chunkParametersFor(size: number, previousAverage?: number): ChunkParameters {
  if (previousAverage !== undefined && previousAverage >= MIN_AVERAGE && previousAverage <= MAX_AVERAGE && 2 ** Math.round(Math.log2(previousAverage)) === previousAverage) {
    const nominal = previousAverage * 8192
    const fitsBelow = previousAverage === MIN_AVERAGE || size >= nominal / 8
    const fitsAbove = previousAverage === MAX_AVERAGE || size <= nominal * 4
    if (fitsBelow && fitsAbove) return parametersOf(previousAverage)
  }
  let average = MIN_AVERAGE
  while (average < MAX_AVERAGE && average * 8192 < size) average *= 2
  return parametersOf(average)
}

/**
 * Cuts a byte stream into content-defined chunks. Push data in pieces of any size (the
 * result does not depend on how the stream is split), then call finish().
 */
export class Chunker {
  readonly #min: number
  readonly #average: number
  readonly #max: number
  readonly #maskSmall: number
  readonly #maskLarge: number
  #length = 0
  #hash = 0
  #offset = 0
  #hasher = createHash('sha256')

  constructor(parameters: ChunkParameters) {
    const bits = Math.round(Math.log2(parameters.averageSize))
    if (2 ** bits !== parameters.averageSize || parameters.minSize < 64 || parameters.minSize > parameters.averageSize || parameters.maxSize < parameters.averageSize) {
      throw new RangeError('Chunk sizes: the average must be a power of two, min ≤ average ≤ max, min ≥ 64')
    }
    this.#min = parameters.minSize
    this.#average = parameters.averageSize
    this.#max = parameters.maxSize
    // Normalization level 2: two bits harder before the average, two easier after.
    this.#maskSmall = highMask(bits + 2)
    this.#maskLarge = highMask(bits - 2)
  }

  push(data: Uint8Array): Chunk[] {
    const chunks: Chunk[] = []
    let start = 0
    let i = 0
    const end = data.length
    while (i < end) {
      const toMin = this.#min - this.#length
      if (toMin > 0) {
        // Cut-point skipping: no boundary can fall before the minimum size.
        const skip = Math.min(toMin, end - i)
        i += skip
        this.#length += skip
        continue
      }
      let hash = this.#hash
      let length = this.#length
      let cut = -1
      // Before the average size the harder mask applies, after it the easier one
      // (normalized chunking); two loops keep the per-byte work to a lookup, a shift, a test.
      if (length < this.#average) {
        const small = this.#maskSmall
        const stop = Math.min(end, i + (this.#average - length))
        const from = i
        while (i < stop) {
          hash = ((hash << 1) + (GEAR[data[i] as number] as number)) | 0
          i++
          if ((hash & small) === 0) {
            cut = i
            break
          }
        }
        length += i - from
      }
      if (cut < 0 && length >= this.#average) {
        const large = this.#maskLarge
        const stop = Math.min(end, i + (this.#max - length))
        const from = i
        while (i < stop) {
          hash = ((hash << 1) + (GEAR[data[i] as number] as number)) | 0
          i++
          if ((hash & large) === 0) {
            cut = i
            break
          }
        }
        length += i - from
        if (cut < 0 && length >= this.#max) cut = i
      }
      this.#hash = hash
      this.#length = length
      if (cut >= 0) {
        this.#hasher.update(data.subarray(start, cut))
        chunks.push(this.#emit())
        start = cut
      }
    }
    if (start < end) this.#hasher.update(data.subarray(start, end))
    return chunks
  }

  /** The last chunk (none for an empty stream). */
  finish(): Chunk[] {
    return this.#length > 0 ? [this.#emit()] : []
  }

  #emit(): Chunk {
    const chunk = { offset: this.#offset, length: this.#length, hash: new Uint8Array(this.#hasher.digest()) }
    this.#offset += this.#length
    this.#length = 0
    this.#hash = 0
    this.#hasher = createHash('sha256')
    return chunk
  }
}

/** Chunks of a whole buffer (tests, small data). */
export function chunkBytes(data: Uint8Array, parameters: ChunkParameters = chunkParametersFor(data.length)): Chunk[] {
  const chunker = new Chunker(parameters)
  return [...chunker.push(data), ...chunker.finish()]
}
