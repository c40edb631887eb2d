/**
 * What the status page shows, gathered from the box's event stream while the server runs:
 * sync progress, recent transfers and errors, which devices are connected, and the images
 * that arrived. The page reads snapshots of it and a live feed of its changes.
 */
import type { CloudBox, CloudBoxEvent } from '@cloudbox/cloudbox'
import type { StorageBackend } from '../storage/storage-backend.js'
import { Thumbnails } from '../thumbnails.js'

export interface BoardTransfer {
  at: number
  path: string
  /** `sync`: arrived from a device by sync; `upload`: through the REST API; `deleted`: removed by sync. */
  via: 'sync' | 'upload' | 'deleted'
  /** Bytes that crossed the network (for sync, the rest was reused from local data). */
  bytes: number
  reusedBytes: number
  device?: string
}

export interface BoardError {
  at: number
  code: string
  message: string
  path?: string
  device?: string
}

export interface BoardProgress {
  at: number
  path: string
  doneBytes: number
  totalBytes: number
  doneFiles: number
  totalFiles: number
  bytesPerSecond: number
  etaSeconds?: number
  /** False once the batch finished (the last figures stay visible). */
  active: boolean
}

export interface BoardPeer {
  state: 'connected' | 'in-sync' | 'disconnected'
  since: number
  latencyMs?: number
  transport?: string
}

/** A change the live feed pushes: progress as it moves, or "something else changed, refresh". */
export type BoardChange = { type: 'progress'; progress: BoardProgress } | { type: 'changed'; event: string }

export class StatusBoard {
  readonly startedAt = Date.now()
  readonly #box: CloudBox
  readonly #storage: StorageBackend
  readonly #limit: number
  readonly #transfers: BoardTransfer[] = []
  readonly #errors: BoardError[] = []
  readonly #images: string[] = []
  readonly #peers = new Map<string, BoardPeer>()
  readonly #listeners = new Set<(change: BoardChange) => void>()
  #progress: BoardProgress | undefined
  #receivedBytes = 0
  #unsubscribe: (() => void) | undefined

  constructor(box: CloudBox, storage: StorageBackend, options: { history?: number } = {}) {
    this.#box = box
    this.#storage = storage
    this.#limit = options.history ?? 50
  }

  start(): void {
    this.#unsubscribe ??= this.#box.status.on((event) => this.#take(event))
    void this.#seedImages()
  }

  stop(): void {
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    this.#listeners.clear()
  }

  /** Live changes; returns the unsubscribe function. */
  on(listener: (change: BoardChange) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** A file stored through the REST API (the API's uploads report here). */
  uploaded(path: string, bytes: number, device: string): void {
    this.#push(this.#transfers, { at: Date.now(), path, via: 'upload', bytes, reusedBytes: 0, device })
    this.#receivedBytes += bytes
    this.#image(path)
    this.#emit({ type: 'changed', event: 'upload' })
  }

  get progress(): BoardProgress | undefined {
    return this.#progress
  }

  get transfers(): readonly BoardTransfer[] {
    return this.#transfers
  }

  get errors(): readonly BoardError[] {
    return this.#errors
  }

  get peers(): ReadonlyMap<string, BoardPeer> {
    return this.#peers
  }

  get receivedBytes(): number {
    return this.#receivedBytes
  }

  /** Is `path` among the images the page may show? (No I/O: the thumbnail route asks per image.) */
  showsImage(path: string): boolean {
    return this.#images.includes(path)
  }

  /** The newest images that exist now (newest first). */
  async images(): Promise<string[]> {
    const present: string[] = []
    for (const path of this.#images) {
      if (present.length === 12) break
      if (await this.#storage.stat(path).then((entry) => entry.type === 'file', () => false)) present.push(path)
    }
    return present
  }

  #take(event: CloudBoxEvent): void {
    const now = Date.now()
    switch (event.type) {
      case 'connection':
        if (event.state === 'connecting') return
        this.#peers.set(event.peer, { ...this.#peers.get(event.peer), state: event.state === 'connected' ? 'connected' : 'disconnected', since: now, ...(event.transport === undefined ? {} : { transport: event.transport }) })
        if (event.error !== undefined) this.#error({ at: now, ...event.error, device: event.peer })
        break
      case 'latency': {
        const peer = this.#peers.get(event.peer)
        if (peer !== undefined) peer.latencyMs = event.milliseconds
        return this.#emit({ type: 'changed', event: 'latency' })
      }
      case 'pairing':
        if (event.outcome === 'refused') this.#error({ at: now, code: event.error?.code ?? 'ERR_PIN_REJECTED', message: event.error?.message ?? 'A device gave a wrong PIN.', device: event.device })
        break
      case 'session-error':
        this.#error({ at: now, ...event.error, ...(event.peer === undefined ? {} : { device: event.peer }) })
        break
      case 'hub':
        if (event.error !== undefined) this.#error({ at: now, ...event.error })
        break
      case 'sync':
        this.#sync(event.event, now)
        if (event.event.type === 'progress') return
        break
      case 'device':
      case 'state':
        break
      default:
        return
    }
    this.#emit({ type: 'changed', event: event.type })
  }

  #sync(event: Extract<CloudBoxEvent, { type: 'sync' }>['event'], now: number): void {
    switch (event.type) {
      case 'progress': {
        this.#progress = { at: now, path: event.path, doneBytes: event.doneBytes, totalBytes: event.totalBytes, doneFiles: event.doneFiles, totalFiles: event.totalFiles, bytesPerSecond: event.bytesPerSecond, ...(event.etaSeconds === undefined ? {} : { etaSeconds: event.etaSeconds }), active: event.doneFiles < event.totalFiles }
        this.#emit({ type: 'progress', progress: this.#progress })
        return
      }
      case 'file':
        if (event.action === 'downloaded' || event.action === 'deleted') {
          this.#push(this.#transfers, { at: now, path: event.path, via: event.action === 'deleted' ? 'deleted' : 'sync', bytes: event.bytesFromPeer, reusedBytes: event.bytesReused })
          this.#receivedBytes += event.bytesFromPeer
          if (event.action === 'downloaded') this.#image(event.path)
        }
        return
      case 'peer': {
        const previous = this.#peers.get(event.device)
        this.#peers.set(event.device, { ...previous, state: event.state, since: now })
        // In sync means the batch finished; a disconnect leaves it where it stopped.
        if (event.state === 'in-sync' && this.#progress !== undefined) this.#progress = { ...this.#progress, doneBytes: this.#progress.totalBytes, doneFiles: this.#progress.totalFiles, active: false }
        if (event.state === 'disconnected' && this.#progress !== undefined) this.#progress = { ...this.#progress, active: false }
        if (event.reason !== undefined) this.#error({ at: now, code: (event.reason as { code?: string }).code ?? 'ERR_SYNC', message: event.reason.message, device: event.device })
        return
      }
      case 'conflict':
        this.#error({ at: now, code: 'CONFLICT', message: `Both sides changed it; kept the ${event.kept} version, the other is ${event.copy}.`, path: event.path })
        return
      case 'error':
        this.#error({ at: now, code: event.error.code, message: event.error.message, ...(event.path === undefined ? {} : { path: event.path }) })
        return
      case 'peer-error':
        this.#error({ at: now, code: event.code, message: event.message, device: event.device, ...(event.path === undefined ? {} : { path: event.path }) })
        return
      default:
        return
    }
  }

  #error(error: BoardError): void {
    this.#push(this.#errors, { at: error.at, code: error.code, message: error.message, ...(error.path === undefined ? {} : { path: error.path }), ...(error.device === undefined ? {} : { device: error.device }) })
  }

  #push<T>(list: T[], item: T): void {
    list.unshift(item)
    if (list.length > this.#limit) list.length = this.#limit
  }

  #image(path: string): void {
    if (!Thumbnails.isImage(path)) return
    const at = this.#images.indexOf(path)
    if (at >= 0) this.#images.splice(at, 1)
    this.#images.unshift(path)
    if (this.#images.length > 48) this.#images.length = 48
  }

  #emit(change: BoardChange): void {
    for (const listener of this.#listeners) listener(change)
  }

  /** Images already in the cloud when the server started: the newest of a bounded walk. */
  async #seedImages(): Promise<void> {
    const found: { path: string; modified: number }[] = []
    const folders = ['']
    let visited = 0
    while (folders.length > 0 && visited < 2_000) {
      const entries = await this.#storage.list(folders.shift()!).catch(() => [])
      for (const entry of entries) {
        visited += 1
        if (entry.type === 'folder') folders.push(entry.path)
        else if (Thumbnails.isImage(entry.name)) found.push(entry)
      }
    }
    found.sort((a, b) => b.modified - a.modified)
    for (const { path } of found.slice(0, 48)) if (!this.#images.includes(path)) this.#images.push(path)
  }
}
