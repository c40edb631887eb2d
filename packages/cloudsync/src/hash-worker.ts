/**
 * Worker thread entry (built as dist/hash-worker.js): chunks and hashes files off the
 * main thread. One request at a time per worker: `{ id, path, size, previousChunkSize }`
 * → `{ id, result }` or `{ id, error: { code, message } }`.
 */
import { parentPort } from 'node:worker_threads'
import { hashFile } from './file-hasher.js'

parentPort?.on('message', (job: { id: number; path: string; size: number; previousChunkSize?: number }) => {
  hashFile(job.path, job.size, job.previousChunkSize).then(
    (result) => parentPort?.postMessage({ id: job.id, result }, [result.chunkHashes.buffer as ArrayBuffer]),
    (error: NodeJS.ErrnoException) => parentPort?.postMessage({ id: job.id, error: { code: error.code, message: error.message } }),
  )
})
