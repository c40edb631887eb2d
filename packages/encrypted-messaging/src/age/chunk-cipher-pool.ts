import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { CHUNK_SIZE, TAG_SIZE } from './payload-stream.js'

/**
 * Worker threads that seal or open whole blocks of STREAM chunks. STREAM nonces are a
 * counter, so blocks are independent: on two cores a large file seals at about twice
 * the speed of one thread. The workers hold no state between jobs and are unref'd and
 * stopped after a short idle time, so they never keep a process alive.
 *
 * The worker is inline source (node:crypto only) so it runs the same from the sources
 * under test and from the bundle, with no extra file to ship or resolve.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const crypto = require('node:crypto')
const CHUNK = ${CHUNK_SIZE}, TAG = ${TAG_SIZE}, ENC = CHUNK + TAG
function nonce(counter, last) { const n = Buffer.alloc(12); n.writeUIntBE(counter, 5, 6); n[11] = last ? 1 : 0; return n }
function open(key, counter, last, chunk) {
  const d = crypto.createDecipheriv('chacha20-poly1305', key, nonce(counter, last), { authTagLength: TAG })
  d.setAuthTag(chunk.subarray(chunk.length - TAG))
  const body = d.update(chunk.subarray(0, chunk.length - TAG))
  try { d.final() } catch { body.fill(0); return undefined }
  return body
}
parentPort.on('message', (job) => {
  const key = Buffer.from(job.key)
  const data = Buffer.from(job.buffer, job.offset, job.length)
  const parts = []
  let failure
  if (job.mode === 'seal') {
    // Straight into one transferable output buffer: no concatenation, one copy per chunk.
    const count = job.final ? Math.max(1, Math.ceil(data.length / CHUNK)) : data.length / CHUNK
    const out = Buffer.allocUnsafeSlow(data.length + count * TAG)
    let offset = 0
    for (let i = 0; i < count; i++) {
      const last = job.final && i === count - 1
      const c = crypto.createCipheriv('chacha20-poly1305', key, nonce(job.counter + i, last), { authTagLength: TAG })
      const body = c.update(data.subarray(i * CHUNK, (i + 1) * CHUNK)); c.final()
      body.copy(out, offset); offset += body.length
      c.getAuthTag().copy(out, offset); offset += TAG
    }
    key.fill(0)
    parentPort.postMessage({ id: job.id, buffer: out.buffer, offset: out.byteOffset, length: offset }, [out.buffer])
    return
  } else {
    const count = job.final ? Math.max(1, Math.ceil(data.length / ENC)) : data.length / ENC
    for (let i = 0; i < count && failure === undefined; i++) {
      const chunk = data.subarray(i * ENC, (i + 1) * ENC)
      const counter = job.counter + i
      if (!(job.final && i === count - 1)) {
        const body = open(key, counter, false, chunk)
        if (body === undefined) failure = 'corrupted'; else parts.push(body)
        continue
      }
      if (chunk.length < TAG) { failure = 'truncated'; break }
      const body = open(key, counter, true, chunk)
      if (body === undefined) failure = chunk.length === ENC && open(key, counter, false, chunk) !== undefined ? 'truncated' : 'corrupted'
      else if (body.length === 0 && counter > 0) failure = 'empty-last'
      else parts.push(body)
    }
  }
  key.fill(0)
  if (failure !== undefined) { for (const p of parts) p.fill(0); parentPort.postMessage({ id: job.id, failure }); return }
  let total = 0
  for (const p of parts) total += p.length
  const out = Buffer.allocUnsafeSlow(total)
  let offset = 0
  for (const p of parts) { p.copy(out, offset); offset += p.length }
  parentPort.postMessage({ id: job.id, buffer: out.buffer, offset: 0, length: total }, [out.buffer])
})
`

export type BlockFailure = 'corrupted' | 'truncated' | 'empty-last'

export interface BlockJob {
  readonly mode: 'seal' | 'open'
  readonly key: Uint8Array
  /** STREAM counter of the block's first chunk. */
  readonly counter: number
  /** Whole chunks, except in the final block. The buffer is transferred (unusable afterwards). */
  readonly data: Uint8Array
  readonly final: boolean
}

export type BlockResult = { readonly data: Uint8Array } | { readonly failure: BlockFailure }

interface PendingJob {
  resolve(result: BlockResult): void
  reject(error: Error): void
}

const IDLE_MS = 2000

class ChunkCipherPool {
  readonly #size: number
  #workers: Worker[] = []
  #next = 0
  #ids = 0
  #pending = new Map<number, PendingJob>()
  #idleTimer: NodeJS.Timeout | undefined

  constructor(size: number) {
    this.#size = size
  }

  run(job: BlockJob): Promise<BlockResult> {
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
    if (this.#workers.length === 0) this.#start()
    const worker = this.#workers[this.#next++ % this.#workers.length] as Worker
    const id = this.#ids++
    return new Promise<BlockResult>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      // Only referenced while work is outstanding.
      worker.ref()
      const { buffer, byteOffset, byteLength } = job.data
      worker.postMessage(
        { id, mode: job.mode, key: job.key.slice(), counter: job.counter, final: job.final, buffer, offset: byteOffset, length: byteLength },
        [buffer as ArrayBuffer],
      )
    })
  }

  #start(): void {
    for (let i = 0; i < this.#size; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true })
      worker.unref()
      worker.on('message', (message: { id: number; buffer?: ArrayBuffer; offset?: number; length?: number; failure?: BlockFailure }) => {
        const pending = this.#pending.get(message.id)
        this.#pending.delete(message.id)
        if (this.#pending.size === 0) this.#idle()
        if (pending === undefined) return
        if (message.failure !== undefined) pending.resolve({ failure: message.failure })
        else pending.resolve({ data: new Uint8Array(message.buffer as ArrayBuffer, message.offset ?? 0, message.length) })
      })
      worker.on('error', (error) => this.#crash(error))
      worker.on('exit', () => {
        this.#workers = this.#workers.filter((w) => w !== worker)
      })
      this.#workers.push(worker)
    }
  }

  #idle(): void {
    for (const worker of this.#workers) worker.unref()
    this.#idleTimer = setTimeout(() => void this.stop(), IDLE_MS)
    this.#idleTimer.unref()
  }

  #crash(error: Error): void {
    const pending = [...this.#pending.values()]
    this.#pending.clear()
    for (const job of pending) job.reject(error)
    void this.stop()
  }

  async stop(): Promise<void> {
    const workers = this.#workers
    this.#workers = []
    await Promise.all(workers.map((worker) => worker.terminate()))
  }
}

let shared: ChunkCipherPool | undefined

/** The process-wide pool: one worker per core beyond the first, at least two. */
export function chunkCipherPool(): ChunkCipherPool {
  shared ??= new ChunkCipherPool(Math.max(2, Math.min(availableParallelism(), 8)))
  return shared
}
