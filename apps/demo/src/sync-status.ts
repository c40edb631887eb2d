/**
 * What a running `cloudbox sync` is doing, for `cloudbox status` in another process: one
 * small JSON file per synced folder in `<home>/run/`, rewritten (atomically) when something
 * changes and at least every few seconds, and removed when the sync stops. A file whose
 * process is gone is reported as not running.
 */
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { CloudBox, CloudBoxEvent } from '@cloudbox/cloudbox'
import { isProcessAlive } from '@cloudbox/securestorage/durable-file'

export interface SyncStatus {
  readonly pid: number
  readonly folder: string
  readonly cloud: { readonly id: string; readonly name: string }
  readonly startedAt: number
  readonly updatedAt: number
  readonly connection: 'connecting' | 'connected' | 'disconnected'
  readonly inSync: boolean
  readonly lastInSyncAt: number | null
  readonly engine: string
  /** Left to download here, and left for the cloud to apply of this device's changes. */
  readonly pending: { readonly download: Amount; readonly upload: Amount }
  readonly heldDeletes: number
  readonly unreadable: readonly string[]
  readonly errors: readonly { readonly at: number; readonly code: string; readonly message: string; readonly path?: string }[]
}
interface Amount {
  readonly files: number
  readonly bytes: number
}

const RUN_DIR = 'run'
const REFRESH_MS = 5_000
const WRITE_DELAY_MS = 200
const MAX_ERRORS = 20

const statusPath = (home: string, folder: string) => join(home, RUN_DIR, `sync-${createHash('sha256').update(folder).digest('hex').slice(0, 16)}.json`)

/** Keeps the status file of one running sync up to date from its box's events. */
export class SyncStatusWriter {
  readonly #path: string
  readonly #box: CloudBox
  #status: { -readonly [K in keyof SyncStatus]: SyncStatus[K] }
  #timer: NodeJS.Timeout | undefined
  #refresh: NodeJS.Timeout | undefined
  #unsubscribe: (() => void) | undefined

  constructor(home: string, folder: string, cloud: { id: string; name: string }, box: CloudBox) {
    this.#path = statusPath(home, folder)
    this.#box = box
    const now = Date.now()
    this.#status = {
      pid: process.pid,
      folder,
      cloud,
      startedAt: now,
      updatedAt: now,
      connection: 'connecting',
      inSync: false,
      lastInSyncAt: null,
      engine: 'stopped',
      pending: { download: { files: 0, bytes: 0 }, upload: { files: 0, bytes: 0 } },
      heldDeletes: 0,
      unreadable: [],
      errors: [],
    }
  }

  start(): void {
    mkdirSync(join(this.#path, '..'), { recursive: true, mode: 0o700 })
    this.#unsubscribe = this.#box.status.on((event) => this.#take(event))
    this.#refresh = setInterval(() => this.#write(), REFRESH_MS)
    this.#refresh.unref()
    this.#write()
  }

  stop(): void {
    this.#unsubscribe?.()
    clearInterval(this.#refresh)
    clearTimeout(this.#timer)
    rmSync(this.#path, { force: true })
  }

  #error(code: string, message: string, path?: string): void {
    this.#status.errors = [...this.#status.errors, { at: Date.now(), code, message, ...(path === undefined ? {} : { path }) }].slice(-MAX_ERRORS)
  }

  #take(event: CloudBoxEvent): void {
    const status = this.#status
    if (event.type === 'connection') {
      status.connection = event.state
      if (event.state !== 'connected') status.inSync = false
      if (event.error !== undefined) this.#error(event.error.code, event.error.message)
    } else if (event.type === 'session-error' || event.type === 'refused') {
      this.#error(event.error.code, event.error.message)
    } else if (event.type === 'retry') {
      if (event.error !== undefined) this.#error(event.error.code, `${event.error.message} (retry ${event.attempt} in ${Math.round(event.delayMs / 1000)} s)`)
    } else if (event.type === 'sync') {
      const inner = event.event
      switch (inner.type) {
        case 'state':
          status.engine = inner.state
          break
        case 'progress':
          status.pending = { ...status.pending, download: { files: inner.totalFiles - inner.doneFiles, bytes: inner.totalBytes - inner.doneBytes } }
          if (inner.doneFiles < inner.totalFiles) status.inSync = false
          break
        case 'peer-status':
          status.pending = { ...status.pending, upload: { files: inner.pendingFiles, bytes: inner.pendingBytes } }
          if (inner.pendingFiles > 0) status.inSync = false
          break
        case 'peer':
          if (inner.state === 'in-sync') {
            status.inSync = true
            status.lastInSyncAt = Date.now()
            status.pending = { download: { files: 0, bytes: 0 }, upload: { files: 0, bytes: 0 } }
          } else status.inSync = false
          if (inner.reason !== undefined) this.#error((inner.reason as { code?: string }).code ?? 'ERR_SYNC', inner.reason.message)
          break
        case 'scan':
          if (inner.changed > 0 || inner.deleted > 0) status.inSync = false
          break
        case 'error':
          this.#error(inner.error.code, inner.error.message, inner.path)
          break
        case 'peer-error':
          this.#error(inner.code, `the cloud refused it: ${inner.message}`, inner.path)
          break
        case 'delete-guard':
          status.inSync = false
          break
        default:
          return
      }
    } else return
    this.#timer ??= setTimeout(() => this.#write(), WRITE_DELAY_MS)
  }

  #write(): void {
    this.#timer = undefined
    const engine = this.#box.engine
    const status = this.#status
    status.updatedAt = Date.now()
    if (engine !== undefined && engine.state !== 'stopped') {
      status.heldDeletes = engine.heldDeletes.length
      status.unreadable = engine.unreadable.slice(0, 100)
    }
    const temporary = `${this.#path}.${process.pid}.tmp`
    try {
      writeFileSync(temporary, `${JSON.stringify(status)}\n`, { mode: 0o600 })
      renameSync(temporary, this.#path)
    } catch {
      // A full disk or a removed home: status is a courtesy, sync goes on.
    }
  }
}

/** The syncs that run (or ran and died) with `home`, newest first. */
export function readSyncStatuses(home: string): (SyncStatus & { running: boolean })[] {
  const dir = join(home, RUN_DIR)
  let names: string[]
  try {
    names = readdirSync(dir).filter((name) => /^sync-[0-9a-f]{16}\.json$/.test(name))
  } catch {
    return []
  }
  const statuses: (SyncStatus & { running: boolean })[] = []
  for (const name of names) {
    try {
      const status = JSON.parse(readFileSync(join(dir, name), 'utf8')) as SyncStatus
      statuses.push({ ...status, running: isProcessAlive(status.pid) })
    } catch {
      // Half-written by a process that died: skip it.
    }
  }
  return statuses.sort((a, b) => b.startedAt - a.startedAt)
}
