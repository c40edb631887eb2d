import { createHash } from 'node:crypto'
import { ChunkMismatchError, ChunkUnavailableError, SyncProtocolError } from './errors.js'
import type { ChunkNeed } from './file-assembler.js'
import { MAX_REQUESTS_PER_MESSAGE } from './protocol.js'

/** A fetch request as it goes on the wire. */
export interface FetchRequest {
  readonly id: number
  readonly path: string
  readonly offset: number
  readonly length: number
}

/** Chunk needs waiting to be asked for, per session: files beyond wait to enqueue theirs. */
const MAX_QUEUED_NEEDS = 16_384

export interface SchedulerOptions {
  /** Bytes asked for and not yet written, per session (default 16 MiB). */
  readonly windowBytes?: number
  /** Sends one fetch message. */
  readonly fetch: (requests: FetchRequest[]) => Promise<void>
  /** Each chunk that arrived and was checked (bytes for progress). */
  readonly onChunk?: (need: ChunkNeed) => void
}

interface Pending {
  readonly need: ChunkNeed
  readonly resolve: () => void
  readonly reject: (error: Error) => void
}

/**
 * What to request from the peer and how much at once: chunk needs from every file being
 * assembled wait in one queue and go out many to a fetch message, while the bytes asked
 * for and not yet written stay under the window, so the peer streams without waiting on
 * round trips and neither side holds more than a window of data. Each arriving chunk is
 * checked against its hash before it is written; a wrong one closes the session.
 */
export class TransferScheduler {
  readonly #options: SchedulerOptions
  readonly #window: number
  readonly #queue: { need: ChunkNeed; resolve: () => void; reject: (error: Error) => void }[] = []
  readonly #pending = new Map<number, Pending>()
  #inFlight = 0
  #nextId = 1
  #closed: Error | undefined
  #pumping = false
  #soon: NodeJS.Immediate | undefined
  #roomWaiters: (() => void)[] = []

  constructor(options: SchedulerOptions) {
    this.#options = options
    this.#window = options.windowBytes ?? 16 * 1024 * 1024
  }

  /** Bytes asked for and not yet written. */
  get inFlight(): number {
    return this.#inFlight
  }

  /** Resolves when the queue has room for more needs (a file enqueues its needs as it goes, not all at once). */
  room(): Promise<void> {
    if (this.#queue.length < MAX_QUEUED_NEEDS || this.#closed !== undefined) return Promise.resolve()
    return new Promise((resolve) => this.#roomWaiters.push(resolve))
  }

  #wakeRoom(): void {
    if (this.#queue.length >= MAX_QUEUED_NEEDS && this.#closed === undefined) return
    const waiters = this.#roomWaiters
    this.#roomWaiters = []
    for (const wake of waiters) wake()
  }

  /** Asks for a chunk; resolves once it arrived, matched its hash and was written. */
  fetch(need: ChunkNeed): Promise<void> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed)
    return new Promise((resolve, reject) => {
      this.#queue.push({ need, resolve, reject })
      // The needs of files opened in this turn go out together (128 tiny files at once
      // would otherwise make 128 fetch messages of one request each).
      if (this.#soon === undefined) {
        this.#soon = setImmediate(() => {
          this.#soon = undefined
          this.#pump()
        })
      }
    })
  }

  #pump(): void {
    if (this.#pumping || this.#closed !== undefined) return
    this.#pumping = true
    try {
      // Requests go out in batches of at least a quarter window: a refill per written chunk
      // would turn the stream into one small request and one small answer per chunk.
      while (this.#queue.length > 0 && (this.#inFlight === 0 || this.#inFlight + Math.max(this.#window / 4, this.#queue[0]?.need.length ?? 0) <= this.#window)) {
        const requests: FetchRequest[] = []
        while (requests.length < MAX_REQUESTS_PER_MESSAGE && this.#queue.length > 0) {
          const next = this.#queue[0] as { need: ChunkNeed; resolve: () => void; reject: (error: Error) => void }
          if (this.#inFlight > 0 && this.#inFlight + next.need.length > this.#window) break
          this.#queue.shift()
          const id = this.#nextId++
          this.#pending.set(id, next)
          this.#inFlight += next.need.length
          requests.push({ id, path: next.need.file.remote.path, offset: next.need.offset, length: next.need.length })
        }
        if (requests.length === 0) break
        this.#options.fetch(requests).catch((error: Error) => this.close(error))
      }
    } finally {
      this.#pumping = false
      this.#wakeRoom()
    }
  }

  /** Chunks from a data message. @throws {SyncProtocolError | ChunkMismatchError} for one that was never asked for or is wrong. */
  received(chunks: readonly (readonly [number, Uint8Array])[]): void {
    for (const [id, bytes] of chunks) {
      const pending = this.#pending.get(id)
      if (pending === undefined) throw new SyncProtocolError('The peer answered a request that was never made.')
      this.#pending.delete(id)
      const { need } = pending
      if (bytes.length !== need.length || !createHash('sha256').update(bytes).digest().equals(need.hash)) {
        pending.reject(new ChunkMismatchError())
        throw new ChunkMismatchError(undefined, { path: need.file.target })
      }
      this.#options.onChunk?.(need)
      void need.file.write(need, bytes).then(() => {
        this.#inFlight -= need.length
        pending.resolve()
        this.#pump()
      })
    }
  }

  /** Requests the peer cannot serve: those files will resume on a later pass. */
  missing(ids: readonly number[]): void {
    for (const id of ids) {
      const pending = this.#pending.get(id)
      if (pending === undefined) throw new SyncProtocolError('The peer answered a request that was never made.')
      this.#pending.delete(id)
      this.#inFlight -= pending.need.length
      pending.reject(new ChunkUnavailableError(undefined, { path: pending.need.file.target }))
    }
    this.#pump()
  }

  /** Fails everything queued and in flight (the session ended). */
  close(reason: Error = new ChunkUnavailableError('The peer disconnected during a transfer; the file will resume on reconnection.')): void {
    if (this.#closed !== undefined) return
    this.#closed = reason
    clearImmediate(this.#soon)
    this.#soon = undefined
    for (const { reject } of this.#queue.splice(0)) reject(reason)
    for (const { reject } of this.#pending.values()) reject(reason)
    this.#pending.clear()
    this.#inFlight = 0
    this.#wakeRoom()
  }
}
