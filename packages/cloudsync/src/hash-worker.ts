/**
 * Worker thread entry (built as dist/hash-worker.js): chunks and hashes files off the
 * main thread, one job at a time with one Gear scanner whose window is the read buffer.
 * Reads block this thread (it has nothing else to do), which spares a thread-pool hop
 * per read.
 * `{ id, kind: 'files', files: [{ path, size, previousChunkSize? }] }` → `{ id, results: (FileChunks | { error })[] }`;
 * `{ id, kind: 'segment', path, start, end, overlap, parameters }` → `{ id, result: ChunkChain }`;
 * failures of a whole job → `{ id, error: { code, message } }`.
 */
import { parentPort } from 'node:worker_threads'
import { GearScanner, type ChunkParameters } from './chunker.js'
import { hashFile, hashSegment, type FileChunks } from './file-hasher.js'

export interface FileJob {
  readonly path: string
  readonly size: number
  readonly previousChunkSize?: number
}

export type HashError = { readonly error: { readonly code?: string; readonly message: string } }

type Job =
  | { id: number; kind: 'files'; files: FileJob[] }
  | { id: number; kind: 'segment'; path: string; start: number; end: number; overlap: number; parameters: ChunkParameters }

const scanner = new GearScanner()
let queue: Promise<void> = Promise.resolve()

const failure = (error: unknown): HashError => ({ error: { code: (error as NodeJS.ErrnoException).code, message: (error as Error).message } })

parentPort?.on('message', (job: Job) => {
  queue = queue.then(async () => {
    try {
      if (job.kind === 'files') {
        const results: (FileChunks | HashError)[] = []
        const transfer: ArrayBuffer[] = []
        for (const file of job.files) {
          try {
            const result = await hashFile(file.path, file.size, file.previousChunkSize, scanner, undefined, true)
            results.push(result)
            transfer.push(result.chunkHashes.buffer as ArrayBuffer)
          } catch (error) {
            results.push(failure(error))
          }
        }
        parentPort?.postMessage({ id: job.id, results }, transfer)
      } else {
        const result = await hashSegment(job.path, job.start, job.end, job.overlap, job.parameters, scanner, undefined, true)
        parentPort?.postMessage({ id: job.id, result }, [result.offsets.buffer as ArrayBuffer, result.lengths.buffer as ArrayBuffer, result.hashes.buffer as ArrayBuffer])
      }
    } catch (error) {
      parentPort?.postMessage({ id: job.id, ...failure(error) })
    }
  })
})
