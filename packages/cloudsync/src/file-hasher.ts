import { closeSync, openSync, readSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { Chunker, chunkParametersFor, CHUNK_HASH_LENGTH, GearScanner, type Chunk, type ChunkParameters } from './chunker.js'

export interface FileChunks {
  readonly size: number
  readonly chunkHashes: Uint8Array
  readonly chunkLengths: number[]
  /** The average chunk size the file was cut with. */
  readonly chunkSize: number
}

/** A run of chunks as one worker cut it: offsets, lengths and hashes, packed for transfer. */
export interface ChunkChain {
  readonly offsets: Float64Array
  readonly lengths: Uint32Array
  readonly hashes: Uint8Array
}

export function packChunks(chunks: readonly Chunk[]): { chunkHashes: Uint8Array; chunkLengths: number[] } {
  const chunkHashes = new Uint8Array(chunks.length * CHUNK_HASH_LENGTH)
  chunks.forEach((chunk, index) => chunkHashes.set(chunk.hash, index * CHUNK_HASH_LENGTH))
  return { chunkHashes, chunkLengths: chunks.map((chunk) => chunk.length) }
}

function packChain(chunks: readonly Chunk[]): ChunkChain {
  const offsets = new Float64Array(chunks.length)
  const lengths = new Uint32Array(chunks.length)
  const hashes = new Uint8Array(chunks.length * CHUNK_HASH_LENGTH)
  chunks.forEach((chunk, index) => {
    offsets[index] = chunk.offset
    lengths[index] = chunk.length
    hashes.set(chunk.hash, index * CHUNK_HASH_LENGTH)
  })
  return { offsets, lengths, hashes }
}

/** What the hasher reads through: a file handle on the main thread, plain blocking reads in a worker (no thread hop per read). */
interface Reader {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> | { bytesRead: number }
  close(): Promise<void> | void
}

async function openReader(path: string, blocking: boolean): Promise<Reader> {
  if (!blocking) return open(path, 'r')
  const fd = openSync(path, 'r')
  return {
    read: (buffer, offset, length, position) => ({ bytesRead: readSync(fd, buffer, offset, length, position) }),
    close: () => closeSync(fd),
  }
}

/**
 * Cuts the bytes of `handle` from `start` as if a chunk began there, hashing each chunk,
 * until a chunk ends at or after `until` (or the file ends). Reads go straight into the
 * scanner's window: no copy between the disk and the Gear loop.
 */
async function cutFrom(handle: Reader, start: number, until: number, parameters: ChunkParameters, scanner: GearScanner, signal?: AbortSignal): Promise<{ chunks: Chunk[]; end: number }> {
  const chunker = new Chunker(parameters, scanner)
  const chunks: Chunk[] = []
  let position = start
  for (;;) {
    signal?.throwIfAborted()
    const { bytesRead } = await handle.read(scanner.window, 0, scanner.window.length, position)
    if (bytesRead === 0) break
    position += bytesRead
    for (const chunk of chunker.pushWindow(bytesRead)) {
      chunks.push({ ...chunk, offset: chunk.offset + start })
      if (chunk.offset + start + chunk.length >= until) return { chunks, end: chunk.offset + start + chunk.length }
    }
  }
  for (const chunk of chunker.finish()) chunks.push({ ...chunk, offset: chunk.offset + start })
  return { chunks, end: position }
}

/** Chunks and hashes a whole file in constant memory. */
export async function hashFile(path: string, expectedSize: number, previousChunkSize?: number, scanner: GearScanner = new GearScanner(), signal?: AbortSignal, blocking = false): Promise<FileChunks> {
  const handle = await openReader(path, blocking)
  try {
    const parameters = chunkParametersFor(expectedSize, previousChunkSize)
    const { chunks, end } = await cutFrom(handle, 0, Number.POSITIVE_INFINITY, parameters, scanner, signal)
    return { size: end, chunkSize: parameters.averageSize, ...packChunks(chunks) }
  } finally {
    await handle.close()
  }
}

/**
 * One segment of a file cut in parallel: the chain of chunks that starts at `start` as
 * if a chunk began there, running `overlap` bytes past `end` (the next segment's start),
 * where it is expected to meet the next segment's chain (see stitchChains).
 */
export async function hashSegment(path: string, start: number, end: number, overlap: number, parameters: ChunkParameters, scanner: GearScanner = new GearScanner(), signal?: AbortSignal, blocking = false): Promise<ChunkChain> {
  const handle = await openReader(path, blocking)
  try {
    return packChain((await cutFrom(handle, start, end + overlap, parameters, scanner, signal)).chunks)
  } finally {
    await handle.close()
  }
}

/**
 * The file's true chunks from chains cut in parallel from segment starts. Chain 0 is true
 * from offset 0; at each of its chunk boundaries past the next segment's start, if that
 * boundary is also one of the next chain's, the two are the same from there on (a chunk's
 * end depends only on where it starts), so the stitch switches chains. Where no boundary
 * is shared within the overlap, it returns where to continue cutting one chain alone.
 */
export function stitchChains(chains: readonly ChunkChain[], starts: readonly number[]): { offsets: number[]; lengths: number[]; hashes: Uint8Array[]; resumeAt?: number } {
  const offsets: number[] = []
  const lengths: number[] = []
  const hashes: Uint8Array[] = []
  let chain = 0
  let index = 0
  for (;;) {
    const current = chains[chain] as ChunkChain
    if (index >= current.offsets.length) {
      // This chain is used up: the file ends here (last chain), or nothing met the next one.
      if (chain === chains.length - 1) return { offsets, lengths, hashes }
      const position = offsets.length === 0 ? 0 : (offsets[offsets.length - 1] as number) + (lengths[lengths.length - 1] as number)
      return { offsets, lengths, hashes, resumeAt: position }
    }
    const offset = current.offsets[index] as number
    const next = chains[chain + 1]
    if (next !== undefined && offset >= (starts[chain + 1] as number)) {
      const met = binarySearch(next.offsets, offset)
      if (met >= 0) {
        chain++
        index = met
        continue
      }
    }
    offsets.push(offset)
    lengths.push(current.lengths[index] as number)
    hashes.push(current.hashes.subarray(index * CHUNK_HASH_LENGTH, (index + 1) * CHUNK_HASH_LENGTH))
    index++
  }
}

function binarySearch(sorted: Float64Array, value: number): number {
  let low = 0
  let high = sorted.length - 1
  while (low <= high) {
    const middle = (low + high) >>> 1
    const found = sorted[middle] as number
    if (found === value) return middle
    if (found < value) low = middle + 1
    else high = middle - 1
  }
  return -1
}
