import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { hashFile, type FileChunks } from './file-hasher.js'

// Built next to the bundle. Run from sources (tests), it is absent and hashing stays on
// the calling thread; the built package (what users get) always has it.
const WORKER_URL = new URL('./hash-worker.js', import.meta.url)
const IDLE_MS = 2000

interface Pending {
  resolve(result: FileChunks): void
  reject(error: Error): void
}

/**
 * Worker threads that chunk and hash files, so scanning uses every core and never
 * blocks the event loop. Workers are unref'd and stop after a short idle time.
 */
class HashPool {
  // One core stays with the event loop (I/O, the protocol); the others hash.
  readonly size = Math.max(1, Math.min(availableParallelism() - 1, 4))
  #workers: { worker: Worker; busy: number }[] = []
  #pending = new Map<number, Pending>()
  #ids = 0
  #idle: NodeJS.Timeout | undefined
  readonly available = existsSync(fileURLToPath(WORKER_URL))

  hash(path: string, size: number, previousChunkSize: number | undefined): Promise<FileChunks> {
    if (!this.available) return hashFile(path, size, previousChunkSize)
    clearTimeout(this.#idle)
    if (this.#workers.length === 0) this.#start()
    const slot = this.#workers.reduce((best, candidate) => (candidate.busy < best.busy ? candidate : best))
    const id = this.#ids++
    slot.busy++
    slot.worker.ref()
    return new Promise<FileChunks>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      slot.worker.postMessage({ id, path, size, ...(previousChunkSize === undefined ? {} : { previousChunkSize }) })
    }).finally(() => {
      slot.busy--
      if (slot.busy === 0) slot.worker.unref()
      if (this.#pending.size === 0) {
        this.#idle = setTimeout(() => void this.stop(), IDLE_MS)
        this.#idle.unref()
      }
    })
  }

  #start(): void {
    for (let i = 0; i < this.size; i++) {
      // Small heaps: a worker holds one 1 MiB read buffer and a chunk list at a time.
      const worker = new Worker(WORKER_URL, { resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 } })
      worker.unref()
      worker.on('message', (message: { id: number; result?: FileChunks; error?: { code?: string; message: string } }) => {
        const pending = this.#pending.get(message.id)
        this.#pending.delete(message.id)
        if (pending === undefined) return
        if (message.result !== undefined) pending.resolve({ ...message.result, chunkHashes: new Uint8Array(message.result.chunkHashes) })
        else pending.reject(Object.assign(new Error(message.error?.message ?? 'hashing failed'), { code: message.error?.code }))
      })
      worker.on('error', (error) => {
        for (const pending of this.#pending.values()) pending.reject(error)
        this.#pending.clear()
        void this.stop()
      })
      this.#workers.push({ worker, busy: 0 })
    }
  }

  async stop(): Promise<void> {
    const workers = this.#workers
    this.#workers = []
    await Promise.all(workers.map(({ worker }) => worker.terminate()))
  }
}

export const hashPool = new HashPool()
