import { open, type FileHandle } from 'node:fs/promises'
import { Chunker, chunkParametersFor, CHUNK_HASH_LENGTH, type Chunk } from './chunker.js'

const READ_SIZE = 1024 * 1024

export interface FileChunks {
  readonly size: number
  readonly chunkHashes: Uint8Array
  readonly chunkLengths: number[]
  /** The average chunk size the file was cut with. */
  readonly chunkSize: number
}

export function packChunks(chunks: readonly Chunk[]): { chunkHashes: Uint8Array; chunkLengths: number[] } {
  const chunkHashes = new Uint8Array(chunks.length * CHUNK_HASH_LENGTH)
  chunks.forEach((chunk, index) => chunkHashes.set(chunk.hash, index * CHUNK_HASH_LENGTH))
  return { chunkHashes, chunkLengths: chunks.map((chunk) => chunk.length) }
}

/** Chunks and hashes a file in constant memory (1 MiB reads). */
export async function hashFile(path: string, expectedSize: number, previousChunkSize?: number, signal?: AbortSignal): Promise<FileChunks> {
  const handle: FileHandle = await open(path, 'r')
  try {
    const parameters = chunkParametersFor(expectedSize, previousChunkSize)
    const chunker = new Chunker(parameters)
    const chunks: Chunk[] = []
    let size = 0
    // One buffer for the whole file: the chunker hashes as it goes and keeps no reference,
    // so reusing it avoids a gigabyte of short-lived allocations for a large file.
    const buffer = Buffer.allocUnsafeSlow(READ_SIZE)
    for (;;) {
      signal?.throwIfAborted()
      const { bytesRead } = await handle.read(buffer, 0, READ_SIZE, null)
      if (bytesRead === 0) break
      size += bytesRead
      for (const chunk of chunker.push(buffer.subarray(0, bytesRead))) chunks.push(chunk)
    }
    chunks.push(...chunker.finish())
    return { size, chunkSize: parameters.averageSize, ...packChunks(chunks) }
  } finally {
    await handle.close()
  }
}
