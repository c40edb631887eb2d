/**
 * Worker thread entry (built as dist/hash-worker.js): chunks and hashes files off the
 * main thread, one job at a time with one Gear scanner whose window is the read buffer.
 * `{ id, kind: 'file', path, size, previousChunkSize? }` → `{ id, result: FileChunks }`;
 * `{ id, kind: 'segment', path, start, end, overlap, parameters }` → `{ id, result: ChunkChain }`;
 * failures → `{ id, error: { code, message } }`.
 */
import { parentPort } from 'node:worker_threads'
import { GearScanner, type ChunkParameters } from './chunker.js'
import { hashFile, hashSegment } from './file-hasher.js'

type Job =
  | { id: number; kind: 'file'; path: string; size: number; previousChunkSize?: number }
  | { id: number; kind: 'segment'; path: string; start: number; end: number; overlap: number; parameters: ChunkParameters }

const scanner = new GearScanner()
let queue: Promise<void> = Promise.resolve()

parentPort?.on('message', (job: Job) => {
  queue = queue.then(async () => {
    try {
      if (job.kind === 'file') {
        const result = await hashFile(job.path, job.size, job.previousChunkSize, scanner)
        parentPort?.postMessage({ id: job.id, result }, [result.chunkHashes.buffer as ArrayBuffer])
      } else {
        const result = await hashSegment(job.path, job.start, job.end, job.overlap, job.parameters, scanner)
        parentPort?.postMessage({ id: job.id, result }, [result.offsets.buffer as ArrayBuffer, result.lengths.buffer as ArrayBuffer, result.hashes.buffer as ArrayBuffer])
      }
    } catch (error) {
      parentPort?.postMessage({ id: job.id, error: { code: (error as NodeJS.ErrnoException).code, message: (error as Error).message } })
    }
  })
})
