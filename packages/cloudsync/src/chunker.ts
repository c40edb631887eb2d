import { createHash } from 'node:crypto'
import { GEAR_WASM } from './generated/gear-wasm.js'

/**
 * Content-defined chunking: FastCDC (Xia et al., 2016/2020) with a 32-bit Gear hash,
 * cut-point skipping below the minimum size and normalized chunking (a harder mask
 * before the average size, an easier one after), so an insertion or deletion moves only
 * the chunks around it. The Gear loop runs in WebAssembly (wasm/gear.ts, about 2 GB/s
 * where JavaScript reaches 0.5); each chunk is identified by its SHA-256 (native
 * node:crypto).
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

/** The smallest and largest average chunk sizes (powers of two). */
export const MIN_AVERAGE = 64 * 1024
export const MAX_AVERAGE = 4 * 1024 * 1024
/** Chunks per file the average aims at for large files. */
const CHUNKS_PER_FILE = 8192

// The Gear table: 256 fixed pseudo-random 32-bit values, derived (not stored) so every
// peer computes the same boundaries and chunks deduplicate across devices.
const GEAR = (() => {
  const table = new Uint32Array(256)
  for (let i = 0; i < 256; i++) table[i] = createHash('sha256').update(`cloudbox/gear/v1/${i}`).digest().readUInt32BE(0)
  return table
})()

/** A mask of `bits` ones in the high bits, where a left-shifting Gear hash mixes best. */
function highMask(bits: number): number {
  return bits <= 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
}

function parametersOf(average: number): ChunkParameters {
  return { minSize: average / 2, averageSize: average, maxSize: average * 4 }
}

/**
 * Chunk sizes for a file of `size` bytes: an average of 64 KiB up to 512 MiB (dedupe
 * across files is worth little below that, and every chunk costs a request and an index
 * entry), then growing to keep about 8,192 chunks, up to 4 MiB; minimum half the average,
 * maximum four times. A file below the minimum is one chunk. A file that had chunks
 * before keeps their average while its size stays within 4× of that class, so an edit
 * that crosses a size threshold does not re-cut (and resend) the whole file; every device
 * holds the same previous record, so all agree.
 */
export function chunkParametersFor(size: number, previousAverage?: number): ChunkParameters {
  if (previousAverage !== undefined && previousAverage >= MIN_AVERAGE && previousAverage <= MAX_AVERAGE && 2 ** Math.round(Math.log2(previousAverage)) === previousAverage) {
    const nominal = previousAverage * CHUNKS_PER_FILE
    const fitsBelow = previousAverage === MIN_AVERAGE || size >= nominal / 8
    const fitsAbove = previousAverage === MAX_AVERAGE || size <= nominal * 4
    if (fitsBelow && fitsAbove) return parametersOf(previousAverage)
  }
  let average = MIN_AVERAGE
  while (average < MAX_AVERAGE && average * CHUNKS_PER_FILE < size) average *= 2
  return parametersOf(average)
}

interface GearExports {
  readonly memory: WebAssembly.Memory
  next(from: number, end: number, length: number, min: number, average: number, max: number, maskSmall: number, maskLarge: number): number
  getHash(): number
  setHash(value: number): void
}

const GEAR_MODULE = new WebAssembly.Module(Buffer.from(GEAR_WASM, 'base64'))
/** Where the data window starts in a scanner's memory (after the table). */
const DATA_OFFSET = 4096

/**
 * One instance of the Gear loop with its own memory: a window of `windowSize` bytes the
 * caller fills (`window`), then scans. Not shared between concurrent streams.
 */
export class GearScanner {
  readonly window: Buffer
  readonly #exports: GearExports

  constructor(windowSize = 1024 * 1024) {
    const pages = Math.ceil((DATA_OFFSET + windowSize) / 65536)
    const instance = new WebAssembly.Instance(GEAR_MODULE, { env: { abort: () => { throw new Error('gear: abort') } } })
    this.#exports = instance.exports as unknown as GearExports
    const memory = this.#exports.memory
    if (memory.buffer.byteLength < pages * 65536) memory.grow(pages - memory.buffer.byteLength / 65536)
    new Uint32Array(memory.buffer, 0, 256).set(GEAR)
    this.window = Buffer.from(memory.buffer, DATA_OFFSET, windowSize)
  }

  /** See wasm/gear.ts `next`; offsets are into `window`. */
  next(from: number, end: number, length: number, hash: number, parameters: CutRules): { cut: number; hash: number } {
    this.#exports.setHash(hash)
    const at = this.#exports.next(DATA_OFFSET + from, DATA_OFFSET + end, length, parameters.min, parameters.average, parameters.max, parameters.maskSmall, parameters.maskLarge)
    return { cut: at < 0 ? -1 : at - DATA_OFFSET, hash: this.#exports.getHash() >>> 0 }
  }
}

interface CutRules {
  readonly min: number
  readonly average: number
  readonly max: number
  readonly maskSmall: number
  readonly maskLarge: number
}

function cutRules(parameters: ChunkParameters): CutRules {
  const bits = Math.round(Math.log2(parameters.averageSize))
  if (2 ** bits !== parameters.averageSize || parameters.minSize < 64 || parameters.minSize > parameters.averageSize || parameters.maxSize < parameters.averageSize) {
    throw new RangeError('Chunk sizes: the average must be a power of two, min ≤ average ≤ max, min ≥ 64')
  }
  // Normalization level 2: two bits harder before the average, two easier after.
  return { min: parameters.minSize, average: parameters.averageSize, max: parameters.maxSize, maskSmall: highMask(bits + 2), maskLarge: highMask(bits - 2) }
}

let shared: GearScanner | undefined

/**
 * Cuts a byte stream into content-defined chunks. Push data in pieces of any size (the
 * result does not depend on how the stream is split), then call finish(). Pieces are
 * copied into a scanner's window (one shared per thread: push() is synchronous); a
 * caller that reads straight into `scanner.window` uses pushWindow() and skips the copy.
 */
export class Chunker {
  readonly #rules: CutRules
  readonly #scanner: GearScanner
  #length = 0
  #hash = 0
  #offset = 0
  #hasher = createHash('sha256')

  constructor(parameters: ChunkParameters, scanner?: GearScanner) {
    this.#rules = cutRules(parameters)
    this.#scanner = scanner ?? (shared ??= new GearScanner())
  }

  /** Bytes of the stream seen so far. */
  get position(): number {
    return this.#offset + this.#length
  }

  push(data: Uint8Array): Chunk[] {
    const chunks: Chunk[] = []
    const window = this.#scanner.window
    for (let at = 0; at < data.length; at += window.length) {
      const piece = data.subarray(at, Math.min(data.length, at + window.length))
      window.set(piece)
      this.#scan(piece.length, chunks, piece)
    }
    return chunks
  }

  /** The first `length` bytes of the scanner's window, which the caller filled. */
  pushWindow(length: number): Chunk[] {
    const chunks: Chunk[] = []
    this.#scan(length, chunks, this.#scanner.window)
    return chunks
  }

  #scan(end: number, chunks: Chunk[], bytes: Uint8Array): void {
    let start = 0
    while (start < end) {
      const { cut, hash } = this.#scanner.next(start, end, this.#length, this.#hash, this.#rules)
      if (cut < 0) {
        this.#hasher.update(bytes.subarray(start, end))
        this.#length += end - start
        this.#hash = hash
        return
      }
      this.#hasher.update(bytes.subarray(start, cut))
      this.#length += cut - start
      chunks.push(this.#emit())
      start = cut
    }
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

/**
 * The same cut rules in plain JavaScript, one byte at a time: the reference the
 * WebAssembly loop is tested against. Returns the chunk lengths.
 */
export function referenceCutLengths(data: Uint8Array, parameters: ChunkParameters): number[] {
  const { min, average, max, maskSmall, maskLarge } = cutRules(parameters)
  const lengths: number[] = []
  let start = 0
  while (start < data.length) {
    let i = start + min
    let hash = 0
    let cut = -1
    for (const [stop, mask] of [[start + average, maskSmall], [start + max, maskLarge]] as const) {
      for (; cut < 0 && i < Math.min(stop, data.length); ) {
        hash = ((hash << 1) + (GEAR[data[i] as number] as number)) >>> 0
        i++
        if ((hash & mask) === 0) cut = i
      }
    }
    const end = cut < 0 ? Math.min(start + max, data.length) : cut
    lengths.push(end - start)
    start = end
  }
  return lengths
}
