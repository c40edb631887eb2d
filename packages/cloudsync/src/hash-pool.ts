import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { chunkParametersFor, CHUNK_HASH_LENGTH, GearScanner, type ChunkParameters } from './chunker.js'
import { hashFile, hashSegment, stitchChains, type ChunkChain, type FileChunks } from './file-hasher.js'
import type { FileJob, HashError } from './hash-worker.js'

// Built next to the bundle. Run from sources (tests), it is absent and hashing stays on
// the calling thread; the built package (what users get) always has it.
const WORKER_URL = new URL('./hash-worker.js', import.meta.url)
const IDLE_MS = 2000
/** Files at least this large are cut in parallel, one segment per worker. */
export const PARALLEL_MIN_SIZE = 32 * 1024 * 1024
/** Small files go to a worker many to a message (a message per file costs more than hashing it). */
const BATCH_FILES = 16
const BATCH_BYTES = 4 * 1024 * 1024

interface Pending {
  resolve(result: unknown): void
  reject(error: Error): void
}

type Job = { kind: 'files'; files: FileJob[] } | { kind: 'segment'; path: string; start: number; end: number; overlap: number; parameters: ChunkParameters }

interface Batch {
  readonly files: FileJob[]
  readonly waiters: { resolve(result: FileChunks): void; reject(error: Error): void }[]
  bytes: number
}

const asError = (failure: HashError['error']) => Object.assign(new Error(failure.message), { code: failure.code })

/**
 * Worker threads that chunk and hash files, so scanning uses every core and never blocks
 * the event loop: one worker per core (while they hash, the main thread mostly waits for
 * them), each cutting one file at a time; a large file is cut by all of them at once, in
 * segments stitched into the same chunks as one pass would give. Workers are unref'd
 * and stop after a short idle time.
 */
class HashPool {
  readonly size = Math.max(1, Math.min(availableParallelism(), 4))
  #workers: { worker: Worker; busy: number }[] = []
  #pending = new Map<number, Pending>()
  #ids = 0
  #idle: NodeJS.Timeout | undefined
  #batch: Batch | undefined
  #users = 0
  readonly available = existsSync(fileURLToPath(WORKER_URL))

  /**
   * Marks an engine as using the pool; the returned function ends that use. When the last
   * user is done and nothing is pending, the workers go at once: a program that syncs once
   * and exits must not wait out the idle timer (idle workers held it for 2 s).
   */
  use(): () => void {
    this.#users++
    let released = false
    return () => {
      if (released) return
      released = true
      this.#users--
      if (this.#users === 0 && this.#pending.size === 0 && this.#batch === undefined) {
        clearTimeout(this.#idle)
        void this.stop()
      }
    }
  }

  /** Chunks and hashes one file (in parallel segments when it is large; with others in a batch when it is small). */
  async hash(path: string, size: number, previousChunkSize: number | undefined): Promise<FileChunks> {
    const segments = this.available ? Math.min(this.size, Math.floor(size / (PARALLEL_MIN_SIZE / 2))) : 1
    if (segments < 2) {
      if (!this.available) return hashFile(path, size, previousChunkSize)
      return this.#batched({ path, size, ...(previousChunkSize === undefined ? {} : { previousChunkSize }) })
    }
    const parameters = chunkParametersFor(size, previousChunkSize)
    return cutInSegments(size, parameters, segments, (start, end, overlap) => this.#run<ChunkChain>({ kind: 'segment', path, start, end, overlap, parameters }))
  }

  /** Joins the open batch (sent when full, or once the current tick's callers have joined). */
  #batched(file: FileJob): Promise<FileChunks> {
    return new Promise((resolve, reject) => {
      let batch = this.#batch
      if (batch === undefined) {
        batch = { files: [], waiters: [], bytes: 0 }
        this.#batch = batch
        const open = batch
        setImmediate(() => this.#flush(open))
      }
      batch.files.push(file)
      batch.waiters.push({ resolve, reject })
      batch.bytes += file.size
      if (batch.files.length >= BATCH_FILES || batch.bytes >= BATCH_BYTES) this.#flush(batch)
    })
  }

  #flush(batch: Batch): void {
    if (this.#batch !== batch) return
    this.#batch = undefined
    this.#run<(FileChunks | HashError)[]>({ kind: 'files', files: batch.files }).then(
      (results) =>
        results.forEach((result, i) => {
          const waiter = batch.waiters[i] as Batch['waiters'][number]
          if ('error' in result) waiter.reject(asError(result.error))
          else waiter.resolve({ ...result, chunkHashes: new Uint8Array(result.chunkHashes) })
        }),
      (error: Error) => {
        for (const waiter of batch.waiters) waiter.reject(error)
      },
    )
  }

  #run<T>(job: Job): Promise<T> {
    clearTimeout(this.#idle)
    if (this.#workers.length === 0) this.#start()
    const slot = this.#workers.reduce((best, candidate) => (candidate.busy < best.busy ? candidate : best))
    const id = this.#ids++
    slot.busy++
    slot.worker.ref()
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (result: unknown) => void, reject })
      slot.worker.postMessage({ id, ...job })
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
      // Small heaps: a worker holds its scanner window and one chunk list at a time.
      const worker = new Worker(WORKER_URL, { resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 } })
      worker.unref()
      worker.on('message', (message: { id: number; results?: (FileChunks | HashError)[]; result?: ChunkChain; error?: HashError['error'] }) => {
        const pending = this.#pending.get(message.id)
        this.#pending.delete(message.id)
        if (pending === undefined) return
        if (message.results !== undefined) pending.resolve(message.results)
        else if (message.result !== undefined) {
          const result = message.result
          pending.resolve({ offsets: new Float64Array(result.offsets.buffer), lengths: new Uint32Array(result.lengths.buffer), hashes: new Uint8Array(result.hashes.buffer) })
        } else pending.reject(asError(message.error ?? { message: 'hashing failed' }))
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

/**
 * A file cut in `segments` parallel chains (see stitchChains), giving exactly the chunks of
 * one pass. Segments start on multiples of the largest chunk: in data without cut points
 * (zeros), every chain then cuts on the same grid and they still meet.
 */
async function cutInSegments(size: number, parameters: ChunkParameters, segments: number, cut: (start: number, end: number, overlap: number) => Promise<ChunkChain>): Promise<FileChunks> {
  const step = Math.ceil(size / segments / parameters.maxSize) * parameters.maxSize
  const starts = Array.from({ length: segments }, (_, i) => i * step).filter((start) => start < size)
  const chains = await Promise.all(starts.map((start, i) => cut(start, starts[i + 1] ?? size, 16 * parameters.maxSize)))
  const { lengths, hashes, resumeAt } = stitchChains(chains, starts)
  if (resumeAt !== undefined) {
    // No shared boundary within the overlap (very rare): the rest in one pass.
    const rest = await cut(resumeAt, Number.POSITIVE_INFINITY, 0)
    for (let i = 0; i < rest.lengths.length; i++) {
      lengths.push(rest.lengths[i] as number)
      hashes.push(rest.hashes.subarray(i * CHUNK_HASH_LENGTH, (i + 1) * CHUNK_HASH_LENGTH))
    }
  }
  const chunkHashes = new Uint8Array(hashes.length * CHUNK_HASH_LENGTH)
  hashes.forEach((hash, i) => chunkHashes.set(hash, i * CHUNK_HASH_LENGTH))
  return { size: lengths.reduce((sum, length) => sum + length, 0), chunkSize: parameters.averageSize, chunkHashes, chunkLengths: lengths }
}

/** The parallel path on the calling thread, with `segments` chains (tests check it gives one pass's chunks). */
export function hashInSegments(path: string, size: number, segments: number, previousChunkSize?: number): Promise<FileChunks> {
  const parameters = chunkParametersFor(size, previousChunkSize)
  const scanner = new GearScanner()
  let queue: Promise<unknown> = Promise.resolve()
  // One scanner, so one chain at a time.
  return cutInSegments(size, parameters, segments, (start, end, overlap) => {
    const next = queue.then(() => hashSegment(path, start, end, overlap, parameters, scanner))
    queue = next.catch(() => {})
    return next
  })
}
