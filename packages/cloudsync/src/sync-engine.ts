import { lstatSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { MessageChannel } from '@cloudbox/encrypted-messaging'
import { EngineStoppedError, isSyncError, MassDeleteError, NoPeerError, SyncError } from './errors.js'
import type { OwnWrite } from './file-assembler.js'
import { FolderIndex, type FileRecord } from './folder-index.js'
import { lockFolder } from './folder-lock.js'
import { FolderWatcher } from './folder-watcher.js'
import { hashPool } from './hash-pool.js'
import { loadIgnoreRules, type IgnoreRules } from './ignore-rules.js'
import { STATE_DIR } from './paths.js'
import { FolderScanner, type ScanResult } from './scanner.js'
import { SyncSession, type SessionHost } from './session.js'
import { StatusStream, type EngineState } from './status.js'
import { checkVersionPolicy, VersionStore, type VersionPolicy } from './version-store.js'

export interface SyncEngineOptions {
  /** The folder to sync. Its `.cloudbox/` subfolder holds the engine's state. */
  readonly folder: string
  /** This device's name in version vectors: 1–64 letters, digits, `-` or `_`. */
  readonly deviceId: string
  /** Both sides of a session must name the same folder. */
  readonly folderId: string
  /** Share of files a single scan may delete before deletions pause (default 0.5). */
  readonly maxDeleteShare?: number
  /** Bytes the folder may hold; downloads beyond stop with ERR_QUOTA_EXCEEDED. */
  readonly quotaBytes?: number
  /** Watch the folder for changes (default true); full rescans also run every `rescanIntervalMs`. */
  readonly watch?: boolean
  /** Between full rescans (default: 10 min with the native watcher, else 60 s). */
  readonly rescanIntervalMs?: number
  /** Bytes of chunks asked for and not yet written, per session (default 16 MiB). */
  readonly windowBytes?: number
  /**
   * Permission bits removed from files this engine writes for a peer, as a shell's umask
   * (default: this process's umask, read from /proc where it can be, else 0o022). A peer's
   * 0777 becomes 0755 here.
   */
  readonly umask?: number
  /**
   * What is kept of files a peer's change replaces or deletes, under `.cloudbox/versions/`
   * (default: staggered for 30 days, at most a tenth of the disk; `{ policy: { kind: 'off' } }`
   * keeps nothing).
   */
  readonly versions?: { readonly policy?: VersionPolicy; readonly maxDiskShare?: number }
}

/** Unreadable files each peer is told of at most (the local status lists them all). */
const MAX_TOLD_PEERS = 100
/** Quiet time after the watcher's last deletion before its deletions are judged together. */
const DELETE_QUIET_MS = 1_000
/** The longest a deletion the watcher saw waits for that quiet. */
const DELETE_WAIT_MAX_MS = 5_000
/** How long the engine's own writes are remembered for the watcher's report of them. */
const OWN_WRITE_MS = 10_000

/** Who is at the other end of a session. */
export interface ConnectOptions {
  /**
   * The peer's device name as proven by the channel (the public ID its key
   * authenticated), never as the peer claims it: a hello naming anyone else closes the
   * session, so no peer can speak for another device's progress.
   */
  readonly peer: string
}

/** The process's umask without process.umask() (deprecated for reading): Linux shows it in /proc. */
function processUmask(): number {
  try {
    const match = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))
    if (match !== null) return parseInt(match[1] as string, 8) & 0o777
  } catch {
    // Not Linux: the usual default.
  }
  return 0o022
}

/** One at a time, in call order. */
class Mutex {
  #tail: Promise<unknown> = Promise.resolve()
  run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(work)
    this.#tail = next.catch(() => {})
    return next
  }
}

/**
 * The sync engine of one folder. Scans and watches the folder, keeps its index, and
 * syncs with any number of peers, each over a {@link MessageChannel}. Scans never hold up
 * downloads: each path is worked on by one task at a time, and a scan that meets a file a
 * download just installed leaves it alone.
 */
export class SyncEngine {
  readonly status = new StatusStream()
  readonly options: SyncEngineOptions
  /** Permission bits never given to a file written for a peer. */
  readonly umask: number
  #index: FolderIndex | undefined
  #releasePool: () => void = () => {}
  #unlock: () => void = () => {}
  /** Missing files whose deletion the mass-delete guard holds back. */
  #held: readonly string[] = []
  #unreadable: readonly string[] = []
  /** Unreadable files the peers were told of, by path. */
  readonly #toldPeers = new Map<string, SyncError>()
  #rules: IgnoreRules | undefined
  #scanner: FolderScanner | undefined
  readonly #scans = new Mutex()
  /** Scans running (at most one: they take #scans), for the sessions' indexEnd. */
  #scanning = 0
  readonly #paths = new Map<string, Promise<unknown>>()
  readonly #sessions = new Set<SyncSession>()
  #state: EngineState = 'stopped'
  #watcher: FolderWatcher | undefined
  #rescanTimer: NodeJS.Timeout | undefined
  /** What this engine wrote to the folder lately, in order (see #notOwn). */
  readonly #ownWrites = new Map<string, OwnWrite & { readonly at: number }>()
  /** Files the watcher saw go, judged together once deletions stop coming (see #settleDeletes). */
  readonly #gone = new Set<string>()
  #goneSince: number | undefined
  #goneTimer: NodeJS.Timeout | undefined
  #abort = new AbortController()
  #quotaBytes: number | undefined
  #versions: VersionStore | undefined
  #pruneTimer: NodeJS.Timeout | undefined

  constructor(options: SyncEngineOptions) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(options.deviceId)) throw new RangeError('deviceId: 1–64 letters, digits, "-" or "_"')
    if (typeof options.folderId !== 'string' || options.folderId.length === 0 || options.folderId.length > 128) throw new RangeError('folderId: 1–128 characters')
    if (options.umask !== undefined && (!Number.isInteger(options.umask) || options.umask < 0 || options.umask > 0o777)) throw new RangeError('umask: permission bits, 0 to 0o777')
    if (options.windowBytes !== undefined && (!Number.isSafeInteger(options.windowBytes) || options.windowBytes < 1)) throw new RangeError('windowBytes: a positive number of bytes')
    if (options.versions?.policy !== undefined) checkVersionPolicy(options.versions.policy)
    this.options = options
    this.umask = options.umask ?? processUmask()
    this.quotaBytes = options.quotaBytes
  }

  get state(): EngineState {
    return this.#state
  }

  get folder(): string {
    return this.options.folder
  }

  get deviceId(): string {
    return this.options.deviceId
  }

  /** Bytes the folder may hold (undefined: no limit); changeable while running. */
  get quotaBytes(): number | undefined {
    return this.#quotaBytes
  }

  set quotaBytes(bytes: number | undefined) {
    if (bytes !== undefined && (!Number.isSafeInteger(bytes) || bytes < 0)) throw new RangeError('quotaBytes: a whole number of bytes ≥ 0')
    this.#quotaBytes = bytes
  }

  /** The index root: equal on two engines exactly when their folders are in sync. */
  get root(): Uint8Array {
    return this.#requireIndex().root()
  }

  /** A snapshot of the index records (tombstones included), in path order. */
  records(): FileRecord[] {
    return [...this.#requireIndex().records()]
  }

  /** Live files in the folder per the index, and their bytes. */
  get usage(): { readonly files: number; readonly bytes: number } {
    return this.#requireIndex().live
  }

  /** Live bytes in the folder per the index. */
  usedBytes(): number {
    return this.usage.bytes
  }

  /** The versions kept of this folder's replaced and deleted files (while started). */
  get versions(): VersionStore {
    if (this.#versions === undefined) throw new EngineStoppedError()
    return this.#versions
  }

  #requireIndex(): FolderIndex {
    if (this.#index === undefined) throw new EngineStoppedError()
    return this.#index
  }

  #setState(state: EngineState): void {
    if (this.#state === state) return
    this.#state = state
    this.status.emit({ type: 'state', state })
  }

  /**
   * Opens the index, scans the folder, and starts watching it. `onOpen` runs once the index
   * is open, before the scan: sessions connected from then on get the records as the scan
   * commits them, so a transfer need not wait for the whole folder to be scanned.
   */
  async start(options: { readonly onOpen?: () => void } = {}): Promise<void> {
    if (this.#index !== undefined) return
    this.#abort = new AbortController()
    const unlock = lockFolder(this.folder, join(this.folder, STATE_DIR))
    let index: FolderIndex
    try {
      index = await FolderIndex.open(join(this.folder, STATE_DIR), (error) => this.status.emit({ type: 'error', error }))
    } catch (error) {
      unlock()
      throw error
    }
    this.#index = index
    this.#unlock = unlock
    this.#releasePool = hashPool.use()
    try {
      this.#versions = VersionStore.open(this.folder, { ...this.options.versions, deviceId: this.deviceId })
      this.#pruneVersions()
      this.#pruneTimer = setInterval(() => this.#pruneVersions(), 3_600_000)
      this.#pruneTimer.unref()
      this.#rules = await loadIgnoreRules(this.folder)
      this.#scanner = new FolderScanner(this.folder, index, () => this.#rules as IgnoreRules, {
        deviceId: this.deviceId,
        umask: this.umask,
        ...(this.options.maxDeleteShare === undefined ? {} : { maxDeleteShare: this.options.maxDeleteShare }),
        signal: this.#abort.signal,
        onCommitted: () => this.#announceAll(),
        onFileError: (error) => {
          this.#emitError(error)
          this.#tellPeers(error)
        },
      })
      options.onOpen?.()
      await this.scan()
      let native = false
      if (this.options.watch !== false) {
        const watcher = new FolderWatcher(this.folder, (paths) => {
          const changed = this.#notOwn(paths)
          if (changed.length > 0) void this.#scanChanged(changed, true).catch(() => {})
        })
        if (await watcher.start()) {
          this.#watcher = watcher
          native = watcher.native
        }
      }
      this.#rescanTimer = setInterval(() => void this.scan().catch(() => {}), this.options.rescanIntervalMs ?? (native ? 600_000 : 60_000))
      this.#rescanTimer.unref()
    } catch (error) {
      clearInterval(this.#pruneTimer)
      await Promise.all([...this.#sessions].map((session) => session.close()))
      this.#versions?.close()
      this.#versions = undefined
      index.close()
      this.#index = undefined
      this.#releasePool()
      this.#unlock()
      throw error
    }
  }

  /** Stops watching, closes every session and the index. Files are left as they are. */
  async stop(): Promise<void> {
    const index = this.#index
    if (index === undefined) return
    this.#abort.abort()
    clearInterval(this.#rescanTimer)
    clearTimeout(this.#goneTimer)
    this.#gone.clear()
    this.#ownWrites.clear()
    await this.#watcher?.stop()
    this.#watcher = undefined
    await Promise.all([...this.#sessions].map((session) => session.close()))
    // Let a scan that is under way notice the abort before the index goes.
    await this.#scans.run(async () => {})
    await Promise.allSettled([...this.#paths.values()])
    clearInterval(this.#pruneTimer)
    this.#versions?.close()
    this.#versions = undefined
    index.close()
    this.#index = undefined
    this.#releasePool()
    this.#unlock()
    this.#setState('stopped')
    this.status.close()
  }

  /** Lets the deletions held back by the mass-delete guard go ahead, and rescans. */
  confirmDeletes(): Promise<ScanResult> {
    return this.#scan({ confirmDeletes: true })
  }

  /** Files and folders the last scan could not read (skipped with ERR_FILE_UNREADABLE; tried again each scan). */
  get unreadable(): readonly string[] {
    return this.#unreadable
  }

  /** Files missing here whose deletion the mass-delete guard holds back (empty when it holds none). */
  get heldDeletes(): readonly string[] {
    return this.#held
  }

  /**
   * The other way out of the mass-delete guard: brings the held files back from a connected
   * peer (the versions both sides agree on) instead of deleting them everywhere, then
   * rescans so the guard lets go. Files that cannot be fetched are listed in `failed` and
   * stay held (nothing is deleted then).
   * @throws {NoPeerError} when no peer is connected.
   */
  async restoreHeldDeletes(): Promise<{ restored: string[]; failed: { path: string; error: SyncError }[] }> {
    const index = this.#requireIndex()
    const session = [...this.#sessions].find((candidate) => candidate.ready)
    if (session === undefined) throw new NoPeerError()
    const restored: string[] = []
    const failed: { path: string; error: SyncError }[] = []
    const queue = [...this.#held]
    // Many at once, so the peer's chunks stream instead of one round trip per file.
    const worker = async () => {
      for (let path = queue.shift(); path !== undefined; path = queue.shift()) {
        const record = index.get(path)
        if (record === undefined || record.deleted) continue
        try {
          await session.restore(record)
          restored.push(path)
        } catch (error) {
          const typed = isSyncError(error) ? error : new SyncError('ERR_CHUNK_UNAVAILABLE', `${path} could not be brought back: ${(error as Error).message}`, { path, cause: error })
          failed.push({ path, error: typed })
          this.#emitError(typed)
        }
      }
    }
    await Promise.all(Array.from({ length: 32 }, worker))
    if (failed.length === 0) await this.scan()
    else {
      const left = new Set(failed.map((failure) => failure.path))
      this.#held = this.#held.filter((path) => left.has(path))
    }
    return { restored, failed }
  }

  /** Rescans the whole folder now (reading only what changed), then tells connected peers. */
  scan(): Promise<ScanResult> {
    return this.#scan({})
  }

  #scan(overrides: { confirmDeletes?: boolean }): Promise<ScanResult> {
    return this.#scans.run(async () => {
      const scanner = this.#scanner
      if (scanner === undefined || this.#index === undefined) throw new EngineStoppedError()
      this.#setState('scanning')
      return this.#whileScanning(async () => {
        this.#rules = await loadIgnoreRules(this.folder)
        const result = await scanner.scan(overrides)
        this.#reportScan(result)
        return result
      })
    })
  }

  /** The paths a watcher saw change (`watched`), or that a session asks about, and only those. */
  #scanChanged(paths: string[], watched = false): Promise<ScanResult> {
    return this.#scans.run(async () => {
      const scanner = this.#scanner
      if (scanner === undefined || this.#index === undefined) throw new EngineStoppedError()
      return this.#whileScanning(async () => {
        if (paths.some((path) => path === '.cloudboxignore' || path === '.cloudboxignore.local')) this.#rules = await loadIgnoreRules(this.folder)
        const result = await scanner.scanPaths(paths, {}, watched ? (gone) => this.#settleDeletes(gone) : undefined)
        if (result.changed.length > 0 || result.deleted.length > 0 || result.pausedDeletes.length > 0) this.#reportScan(result, false)
        return result
      })
    })
  }

  #wrote(path: string, what: OwnWrite): void {
    if (this.#watcher === undefined) return
    this.#ownWrites.delete(path)
    this.#ownWrites.set(path, { ...what, at: Date.now() })
  }

  /**
   * The watcher's paths less those the engine wrote itself (downloads installed, deletions
   * applied) that the disk still shows as it left them: rescanning them
   * found nothing, and cost a receiving server a twentieth of its time (an index read and
   * the scan's turn per file). A path changed since is scanned as usual, and so is a folder
   * the engine made (files put there before the watcher watches it come with it only).
   */
  #notOwn(paths: string[]): string[] {
    if (this.#ownWrites.size === 0) return paths
    const now = Date.now()
    for (const [path, own] of this.#ownWrites) {
      if (now - own.at < OWN_WRITE_MS) break
      this.#ownWrites.delete(path)
    }
    return paths.filter((path) => {
      const own = this.#ownWrites.get(path)
      if (own === undefined) return true
      const info = lstatSync(join(this.folder, path), { throwIfNoEntry: false })
      if (own.kind === 'gone') return info !== undefined
      return !(info !== undefined && info.isFile() && info.ino === own.ino && info.mtimeMs === own.mtimeMs && info.size === own.size)
    })
  }

  /**
   * Deletions the watcher reports wait until none came for {@link DELETE_QUIET_MS} (at most
   * {@link DELETE_WAIT_MAX_MS} after the first), then are judged at once: an `rm -rf` or an
   * unmount reaches the watcher in several batches, and the first, judged alone, would be a
   * small deletion that the mass-delete guard lets go to every device.
   */
  #settleDeletes(paths: readonly string[]): void {
    for (const path of paths) this.#gone.add(path)
    this.#goneSince ??= Date.now()
    clearTimeout(this.#goneTimer)
    const wait = Math.max(0, Math.min(DELETE_QUIET_MS, this.#goneSince + DELETE_WAIT_MAX_MS - Date.now()))
    this.#goneTimer = setTimeout(() => {
      const gone = [...this.#gone]
      this.#gone.clear()
      this.#goneSince = undefined
      this.#goneTimer = undefined
      void this.#scanChanged(gone).catch(() => {})
    }, wait)
  }

  /** Runs a scan marked as running (sessions hold their indexEnd meanwhile), then lets the held ones go. */
  async #whileScanning<T>(work: () => Promise<T>): Promise<T> {
    this.#scanning++
    try {
      return await work()
    } finally {
      this.#scanning--
      // An indexEnd held back during the scan goes now, whatever the outcome. Only then: a
      // receiving server's watcher scans after each batch of its own installs, and a root
      // for each cost it 28 ms a second.
      for (const session of this.#sessions) session.afterScan()
    }
  }

  #reportScan(result: ScanResult, full = true): void {
    if (full) {
      this.#unreadable = result.unreadable
      // Readable again: a later failure of the same file is news for the peers again.
      const still = new Set(result.unreadable)
      for (const path of this.#toldPeers.keys()) if (!still.has(path)) this.#toldPeers.delete(path)
    }
    else {
      // A path scan (the watcher's) that read a file it could not before: no longer unreadable.
      const read = new Set(result.changed)
      for (const path of read) this.#toldPeers.delete(path)
      const unreadable = new Set([...this.#unreadable.filter((path) => !read.has(path)), ...result.unreadable])
      if (unreadable.size !== this.#unreadable.length || result.unreadable.length > 0) this.#unreadable = [...unreadable]
    }
    this.status.emit({ type: 'scan', scannedFiles: result.scannedFiles, hashedFiles: result.hashedFiles, hashedBytes: result.hashedBytes, changed: result.changed.length, deleted: result.deleted.length })
    if (result.pausedDeletes.length > 0) {
      this.#held = [...new Set([...this.#held, ...result.pausedDeletes])]
      this.status.emit({ type: 'delete-guard', paths: result.pausedDeletes })
      const held = this.#heldError()
      this.status.emit({ type: 'error', error: held })
      // The peers' --once must not call the folders equal while files are missing here.
      for (const session of this.#sessions) session.reportError(held)
      this.#setState('paused')
    } else {
      if (full) this.#held = []
      this.#setState(this.#held.length > 0 ? 'paused' : this.#sessions.size > 0 ? 'syncing' : 'idle')
    }
    this.#announceAll()
  }

  /** Old versions go by the policy; a failure (a full disk) is reported and tried again in an hour. */
  #pruneVersions(): void {
    try {
      this.#versions?.prune()
    } catch (error) {
      this.#emitError(new SyncError('ERR_DISK_FULL', `Old versions could not be cleaned up: ${(error as Error).message}`, { cause: error }))
    }
  }

  #announceAll(): void {
    for (const session of this.#sessions) session.announce()
  }

  /**
   * Syncs with a peer over `channel` until it closes. Bad input from the peer closes this
   * session only; the engine and other sessions go on.
   */
  connect(channel: MessageChannel, options: ConnectOptions): SyncSession {
    const index = this.#requireIndex()
    if (typeof options?.peer !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(options.peer)) throw new RangeError('connect(channel, { peer }): the peer\'s proven device name, 1–64 letters, digits, "-" or "_"')
    if (options.peer === this.deviceId) throw new RangeError('connect(): the peer cannot be this device')
    const session = new SyncSession(this.#host(index), channel, options.peer)
    this.#sessions.add(session)
    // The peer's owner sees which of this device's files cannot leave it, and why.
    for (const error of this.#toldPeers.values()) session.reportError(error)
    if (this.#held.length > 0) session.reportError(this.#heldError())
    this.#setState(this.#held.length > 0 ? 'paused' : 'syncing')
    void session.closed.then(() => {
      this.#sessions.delete(session)
      if (this.#index !== undefined && this.#state !== 'paused' && this.#sessions.size === 0) this.#setState('idle')
    })
    return session
  }

  #host(index: FolderIndex): SessionHost {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const engine = this
    return {
      folder: this.folder,
      deviceId: this.deviceId,
      folderId: this.options.folderId,
      index,
      status: this.status,
      umask: this.umask,
      ...(this.#versions === undefined ? {} : { versions: this.#versions }),
      wrote: (path, what) => this.#wrote(path, what),
      get quotaBytes() {
        return engine.quotaBytes
      },
      get scanning() {
        return engine.#scanning > 0
      },
      windowBytes: this.options.windowBytes,
      ignores: (path) => this.#rules?.ignores(path, false) ?? false,
      withPath: (path, work) => this.#withPath(path, work),
      emitError: (error) => this.#emitError(error),
      changed: () => this.#announceAll(),
      rescan: (paths) => this.#scanChanged(paths).then(
        () => {},
        () => {},
      ),
    }
  }

  /** Runs `work` for `path` after whatever else runs for it (downloads, installs, deletions). */
  #withPath<T>(path: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#paths.get(path) ?? Promise.resolve()
    const next = previous.then(work, work)
    const settled = next.catch(() => {})
    this.#paths.set(path, settled)
    void settled.then(() => {
      if (this.#paths.get(path) === settled) this.#paths.delete(path)
    })
    return next
  }

  #heldError(): MassDeleteError {
    return new MassDeleteError(`A scan would delete ${this.#held.length} files at once; deletions are held until you choose: let them go everywhere (cloudbox sync DIR --confirm-deletes, the status page's button, or confirmDeletes()), or bring the files back from the cloud (--restore-deleted, or restoreHeldDeletes()).`)
  }

  /** A file here that cannot be read: each peer hears of it once (until it is readable again). */
  #tellPeers(error: SyncError): void {
    const path = error.path
    if (path === undefined || this.#toldPeers.has(path) || this.#toldPeers.size >= MAX_TOLD_PEERS) return
    this.#toldPeers.set(path, error)
    for (const session of this.#sessions) session.reportError(error)
  }

  #emitError(error: SyncError): void {
    this.status.emit({ type: 'error', error, ...(error.path === undefined ? {} : { path: error.path }) })
  }
}

export { SyncSession }
