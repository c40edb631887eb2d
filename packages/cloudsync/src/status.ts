import type { SyncError } from './errors.js'

export type EngineState = 'stopped' | 'scanning' | 'syncing' | 'idle' | 'paused' | 'error'

/** Every status event of an engine, discriminated by `type`. */
export type SyncEvent =
  | { type: 'state'; state: EngineState }
  | { type: 'scan'; scannedFiles: number; hashedFiles: number; hashedBytes: number; changed: number; deleted: number }
  | { type: 'progress'; path: string; fileBytes: number; fileSize: number; doneBytes: number; totalBytes: number; doneFiles: number; totalFiles: number; bytesPerSecond: number; etaSeconds: number | undefined }
  | { type: 'file'; path: string; action: 'downloaded' | 'deleted' | 'renamed-local-copy' | 'metadata'; bytesFromPeer: number; bytesReused: number }
  | { type: 'conflict'; path: string; copy: string; kept: 'local' | 'remote' }
  | { type: 'error'; error: SyncError; path?: string }
  | { type: 'delete-guard'; paths: readonly string[] }
  | { type: 'peer'; device: string; state: 'connected' | 'in-sync' | 'disconnected'; reason?: Error; root?: Uint8Array }
  | { type: 'latency'; device: string; milliseconds: number }
  /** The peer refused one of this side's files (the reason is the peer's error code). */
  | { type: 'peer-error'; device: string; code: string; message: string; path?: string }
  /** The peer's progress applying this side's changes. */
  | { type: 'peer-status'; device: string; state: 'syncing' | 'idle'; pendingFiles: number; pendingBytes: number }


/**
 * A typed event stream: listeners (`on`) and async iteration (each iterator gets every
 * event from when it starts; a slow iterator keeps at most `buffer` events, dropping the
 * oldest progress events first).
 */
export class StatusStream<Event extends { type: string } = SyncEvent> {
  readonly #listeners = new Set<(event: Event) => void>()
  readonly #iterators = new Set<{ queue: Event[]; wake?: () => void }>()
  #closed = false
  readonly #buffer: number

  constructor(buffer = 1000) {
    this.#buffer = buffer
  }

  on(listener: (event: Event) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  emit(event: Event): void {
    for (const listener of this.#listeners) {
      try {
        listener(event)
      } catch {
        // A failing listener must not break the engine.
      }
    }
    for (const iterator of this.#iterators) {
      iterator.queue.push(event)
      if (iterator.queue.length > this.#buffer) {
        const index = iterator.queue.findIndex((queued) => queued.type === 'progress')
        iterator.queue.splice(index >= 0 ? index : 0, 1)
      }
      iterator.wake?.()
    }
  }

  close(): void {
    this.#closed = true
    for (const iterator of this.#iterators) iterator.wake?.()
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Event, void, undefined> {
    const state: { queue: Event[]; wake?: () => void } = { queue: [] }
    this.#iterators.add(state)
    try {
      for (;;) {
        const next = state.queue.shift()
        if (next !== undefined) {
          yield next
          continue
        }
        if (this.#closed) return
        await new Promise<void>((resolve) => {
          state.wake = resolve
        })
        state.wake = undefined
      }
    } finally {
      this.#iterators.delete(state)
    }
  }
}
