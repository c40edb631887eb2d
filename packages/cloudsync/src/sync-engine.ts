import { createHash } from 'node:crypto'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { lstat, mkdir, open, rename, stat, unlink, utimes, chmod, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { MessageChannel } from '@cloudbox/encrypted-messaging'
import { fsyncDirectory } from '@cloudbox/securestorage/durable-file'
import { CHUNK_HASH_LENGTH } from './chunker.js'
import {
  CaseClashError,
  ChunkMismatchError,
  ChunkUnavailableError,
  DiskFullError,
  EngineStoppedError,
  FolderMismatchError,
  isSyncError,
  MassDeleteError,
  QuotaExceededError,
  SyncError,
  SyncProtocolError,
  UnsafePathError,
} from './errors.js'
import { chunkHashAt, FolderIndex, type FileRecord } from './folder-index.js'
import { loadIgnoreRules, type IgnoreRules } from './ignore-rules.js'
import { conflictName, STATE_DIR, validateRelativePath } from './paths.js'
import { MAX_RECORDS_PER_MESSAGE, recordProblem, syncCodec, type SyncMessage, type WireRecord } from './protocol.js'
import { scanFolder, tombstone, type ScanResult } from './scanner.js'
import { StatusStream, type EngineState } from './status.js'
import { bump, compareVersions, mergeVersions, type VersionVector } from './version-vector.js'

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
  /** Watch the folder for changes (default true); rescans also run every `rescanIntervalMs`. */
  readonly watch?: boolean
  readonly rescanIntervalMs?: number
  /** Chunk requests in flight per session (default 16). */
  readonly requestWindow?: number
  /**
   * Permission bits removed from files this engine writes for a peer, as a shell's umask
   * (default: this process's umask, read from /proc where it can be, else 0o022). A peer's
   * 0777 becomes 0755 here.
   */
  readonly umask?: number
}

/** Who is at the other end of a session. */
export interface ConnectOptions {
  /**
   * The peer's device name as proven by the channel (the public ID its key
   * authenticated), never as the peer claims it: a hello naming anyone else closes the
   * session, so no peer can speak for another device's progress.
   */
  readonly peer: string
}

const MAX_BYTES_IN_FLIGHT = 16 * 1024 * 1024
/** Records a peer may send before its indexEnd (they wait in memory until then). */
export const MAX_QUEUED_RECORDS = 500_000
/** Bytes of such records (paths and chunk lists, counted as decoded). */
export const MAX_QUEUED_RECORD_BYTES = 64 * 1024 * 1024
/** Chunk requests from a peer waiting to be served; its window is far smaller. */
export const MAX_QUEUED_REQUESTS = 1024
/** Files downloaded at the same time within one pass. */
const FILES_IN_PARALLEL = 8
const FIRST_RETRY_MS = 2_000
const MAX_RETRY_MS = 60_000

class Mutex {
  #tail: Promise<unknown> = Promise.resolve()
  run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(work)
    this.#tail = next.catch(() => {})
    return next
  }
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
const sha256 = (bytes: Uint8Array) => new Uint8Array(createHash('sha256').update(bytes).digest())
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0
const versionKey = (version: VersionVector) => JSON.stringify(Object.entries(version).sort())
/** What a queued record holds in memory, roughly. */
const recordBytes = (record: WireRecord) => 2 * record.path.length + record.chunkHashes.length + 8 * record.chunkLengths.length + 256

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

function isDiskFull(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}

/**
 * The sync engine of one folder. Scans and watches the folder, keeps its index, and
 * syncs with any number of peers, each over a {@link MessageChannel}.
 */
export class SyncEngine {
  readonly status = new StatusStream()
  readonly options: SyncEngineOptions
  #index: FolderIndex | undefined
  #rules: IgnoreRules | undefined
  readonly #lock = new Mutex()
  readonly #sessions = new Set<SyncSession>()
  #state: EngineState = 'stopped'
  #watcher: FSWatcher | undefined
  #rescanTimer: NodeJS.Timeout | undefined
  #debounce: NodeJS.Timeout | undefined
  #confirmDeletes = false
  #abort = new AbortController()

  /** Permission bits never given to a file written for a peer. */
  readonly umask: number

  constructor(options: SyncEngineOptions) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(options.deviceId)) throw new RangeError('deviceId: 1–64 letters, digits, "-" or "_"')
    if (typeof options.folderId !== 'string' || options.folderId.length === 0 || options.folderId.length > 128) throw new RangeError('folderId: 1–128 characters')
    if (options.umask !== undefined && (!Number.isInteger(options.umask) || options.umask < 0 || options.umask > 0o777)) throw new RangeError('umask: permission bits, 0 to 0o777')
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

  #quotaBytes: number | undefined

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

  /** A snapshot of the index records (tombstones included). */
  records(): FileRecord[] {
    return this.#requireIndex().records()
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

  /** Loads the index, scans the folder, and starts watching it. */
  async start(): Promise<void> {
    if (this.#index !== undefined) return
    this.#abort = new AbortController()
    this.#index = await FolderIndex.load(join(this.folder, STATE_DIR), (error) => this.status.emit({ type: 'error', error }))
    this.#rules = await loadIgnoreRules(this.folder)
    await this.scan()
    if (this.options.watch !== false) this.#startWatching()
    this.#rescanTimer = setInterval(() => void this.scan().catch(() => {}), this.options.rescanIntervalMs ?? 60_000)
    this.#rescanTimer.unref()
  }

  #startWatching(): void {
    try {
      this.#watcher = watch(this.folder, { recursive: true }, (_event, name) => {
        if (typeof name === 'string' && (name === STATE_DIR || name.startsWith(`${STATE_DIR}/`))) return
        clearTimeout(this.#debounce)
        this.#debounce = setTimeout(() => void this.scan().catch(() => {}), 250)
      })
      this.#watcher.on('error', () => {
        // Watching is an optimisation; the periodic rescan still finds every change.
        this.#watcher?.close()
        this.#watcher = undefined
      })
    } catch {
      this.#watcher = undefined
    }
  }

  /** Stops watching, closes every session and saves the index. Files are left as they are. */
  async stop(): Promise<void> {
    if (this.#index === undefined) return
    this.#abort.abort()
    this.#watcher?.close()
    this.#watcher = undefined
    clearInterval(this.#rescanTimer)
    clearTimeout(this.#debounce)
    await Promise.all([...this.#sessions].map((session) => session.close()))
    await this.#lock.run(async () => {
      await this.#index?.save()
      this.#index = undefined
    })
    this.#setState('stopped')
    this.status.close()
  }

  /** Lets the deletions held back by the mass-delete guard go ahead, and rescans. */
  async confirmDeletes(): Promise<ScanResult> {
    this.#confirmDeletes = true
    try {
      return await this.scan()
    } finally {
      this.#confirmDeletes = false
    }
  }

  /** Rescans now (incremental), then sends the changes to connected peers. */
  scan(): Promise<ScanResult> {
    return this.#lock.run(async () => {
      const index = this.#requireIndex()
      this.#setState('scanning')
      this.#rules = await loadIgnoreRules(this.folder)
      const result = await scanFolder(this.folder, index, this.#rules, {
        deviceId: this.deviceId,
        umask: this.umask,
        ...(this.options.maxDeleteShare === undefined ? {} : { maxDeleteShare: this.options.maxDeleteShare }),
        confirmDeletes: this.#confirmDeletes,
        signal: this.#abort.signal,
      })
      await index.save()
      this.status.emit({ type: 'scan', scannedFiles: result.scannedFiles, hashedFiles: result.hashedFiles, hashedBytes: result.hashedBytes, changed: result.changed.length, deleted: result.deleted.length })
      if (result.pausedDeletes.length > 0) {
        this.status.emit({ type: 'delete-guard', paths: result.pausedDeletes })
        this.status.emit({ type: 'error', error: new MassDeleteError(`A scan would delete ${result.pausedDeletes.length} files at once; deletions are paused. Call confirmDeletes() if this is intended.`) })
        this.#setState('paused')
      } else {
        this.#setState(this.#sessions.size > 0 ? 'syncing' : 'idle')
      }
      // A session whose channel closes meanwhile reports that from its own loop.
      for (const session of this.#sessions) session.announce().catch(() => {})
      return result
    })
  }

  /**
   * Syncs with a peer over `channel` until it closes. Bad input from the peer closes this
   * session only; the engine and other sessions go on.
   */
  connect(channel: MessageChannel, options: ConnectOptions): SyncSession {
    this.#requireIndex()
    if (typeof options?.peer !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(options.peer)) throw new RangeError('connect(channel, { peer }): the peer\'s proven device name, 1–64 letters, digits, "-" or "_"')
    if (options.peer === this.deviceId) throw new RangeError('connect(): the peer cannot be this device')
    const session = new SyncSession(this, channel, options.peer)
    this.#sessions.add(session)
    this.#setState('syncing')
    void session.closed.then(() => {
      this.#sessions.delete(session)
      if (this.#index !== undefined && this.#state !== 'paused') this.#setState('idle')
    })
    return session
  }

  // ---- internals shared with sessions ----

  /** @internal */
  get index(): FolderIndex {
    return this.#requireIndex()
  }

  /** @internal */
  runLocked<T>(work: () => Promise<T>): Promise<T> {
    return this.#lock.run(work)
  }

  /** @internal A chunk's bytes from the local folder, checked against its hash. */
  async readLocalChunk(hash: Uint8Array): Promise<Uint8Array | undefined> {
    const index = this.#requireIndex()
    const location = index.locateChunk(hash)
    if (location === undefined) return undefined
    let handle: FileHandle | undefined
    try {
      handle = await open(join(this.folder, location.path), 'r')
      const buffer = Buffer.alloc(location.length)
      const { bytesRead } = await handle.read(buffer, 0, location.length, location.offset)
      if (bytesRead !== location.length) return undefined
      if (sameBytes(sha256(buffer), hash)) return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
      // The file changed since it was indexed: rebuild the locations on next use.
      index.forgetChunkLocations()
      return undefined
    } catch {
      index.forgetChunkLocations()
      return undefined
    } finally {
      await handle?.close()
    }
  }

  /** @internal Does this device's ignore rules leave `path` out of sync? */
  ignores(path: string): boolean {
    return this.#rules?.ignores(path, false) ?? false
  }

  /** @internal */
  emitError(error: SyncError): void {
    this.status.emit({ type: 'error', error, ...(error.path === undefined ? {} : { path: error.path }) })
  }

  /** @internal Live bytes in the folder per the index. */
  usedBytes(): number {
    return this.#requireIndex().files().reduce((sum, record) => sum + record.size, 0)
  }
}

interface PendingRequest {
  resolve(bytes: Uint8Array | undefined): void
  reject(error: Error): void
  hash: Uint8Array
}

/** One peer connection of an engine. */
export class SyncSession {
  readonly closed: Promise<Error | undefined>
  #device: string | undefined
  readonly #peer: string
  readonly #engine: SyncEngine
  readonly #channel: MessageChannel
  readonly #pending = new Map<number, PendingRequest>()
  #nextId = 1
  readonly #queue: WireRecord[] = []
  #queuedBytes = 0
  #queuedRequests = 0
  #applying: Promise<void> | undefined
  #peerUpTo = -1
  #sentUpTo = -1
  #wantedSince = -1
  #failedThisPass = false
  /** Records a pass could not apply because the disk was full: tried again. Other failures are the peer's to fix (it sends a newer record). */
  #retry: WireRecord[] = []
  #retryTimer: ReturnType<typeof setTimeout> | undefined
  #retryDelayMs = FIRST_RETRY_MS
  #closing = false
  readonly #fromPeer = new Map<string, string>()
  #sending: Promise<unknown> = Promise.resolve()
  #serving: Promise<void> = Promise.resolve()
  #progress = { doneBytes: 0, totalBytes: 0, doneFiles: 0, totalFiles: 0, started: 0 }
  /** Bytes of chunk data received from the peer (for figures). */
  bytesReceived = 0
  bytesReused = 0

  constructor(engine: SyncEngine, channel: MessageChannel, peer: string) {
    this.#engine = engine
    this.#channel = channel
    this.#peer = peer
    this.closed = this.#run()
  }

  get device(): string | undefined {
    return this.#device
  }

  #send<Kind extends Parameters<typeof syncCodec.encode>[0]>(kind: Kind, body: Parameters<typeof syncCodec.encode<Kind>>[1]): Promise<void> {
    const bytes = syncCodec.encode(kind, body)
    const next = this.#sending.then(() => this.#channel.send(bytes))
    this.#sending = next.catch(() => {})
    return next
  }

  async close(reason?: Error): Promise<void> {
    this.#closing = true
    await this.#channel.close(reason).catch(() => {})
    await this.closed
  }

  async #run(): Promise<Error | undefined> {
    const engine = this.#engine
    let failure: Error | undefined
    try {
      await this.#send('hello', { folder: engine.options.folderId, device: engine.deviceId, root: engine.root, sequence: engine.index.sequence })
      for await (const raw of this.#channel) {
        let message: SyncMessage
        try {
          message = syncCodec.decode(raw)
        } catch (error) {
          throw new SyncProtocolError(undefined, { cause: error })
        }
        await this.#handle(message)
      }
    } catch (error) {
      failure = error as Error
      if (!this.#closing) {
        if (isSyncError(error)) engine.emitError(error)
        await this.#channel.close(error as Error).catch(() => {})
      }
    } finally {
      for (const pending of this.#pending.values()) pending.reject(failure ?? new ChunkUnavailableError('The peer disconnected during a transfer; the file will resume on reconnection.'))
      this.#pending.clear()
      // After the last pass, which may have scheduled one (a firing during it does nothing).
      await this.#applying?.catch(() => {})
      clearTimeout(this.#retryTimer)
      if (this.#device !== undefined) engine.status.emit({ type: 'peer', device: this.#device, state: 'disconnected', ...(failure === undefined ? {} : { reason: failure }) })
    }
    return this.#closing ? undefined : failure
  }

  async #handle(message: SyncMessage): Promise<void> {
    const engine = this.#engine
    switch (message.kind) {
      case 'hello': {
        if (this.#device !== undefined) throw new SyncProtocolError('The peer said hello twice; the session was closed.')
        if (message.body.folder !== engine.options.folderId) throw new FolderMismatchError()
        if (message.body.device !== this.#peer) throw new SyncProtocolError(`The peer proved it is ${this.#peer} but said it is ${message.body.device.slice(0, 64)}; the session was closed.`)
        this.#device = message.body.device
        engine.status.emit({ type: 'peer', device: this.#device, state: 'connected' })
        await this.#send('want', { since: engine.index.peerSequence(this.#device) })
        await this.#send('ping', { t: Date.now() })
        return
      }
      case 'want':
        this.#requireHello()
        this.#wantedSince = message.body.since
        this.#sentUpTo = message.body.since
        await this.announce()
        return
      case 'index':
        this.#requireHello()
        // They wait for indexEnd in memory: a peer that never sends it must not fill it.
        for (const record of message.body.records) {
          this.#queuedBytes += recordBytes(record)
          this.#queue.push(record)
        }
        if (this.#queue.length > MAX_QUEUED_RECORDS || this.#queuedBytes > MAX_QUEUED_RECORD_BYTES) {
          throw new SyncProtocolError(`The peer sent over ${MAX_QUEUED_RECORDS} index records or ${MAX_QUEUED_RECORD_BYTES >> 20} MiB of them without ending the batch; the session was closed.`)
        }
        return
      case 'indexEnd': {
        this.#requireHello()
        // Each applied batch ends with an announce, so an indexEnd that brings nothing new
        // must not start another batch: two peers would trade empty batches forever.
        const advanced = message.body.sequence > this.#peerUpTo
        this.#peerUpTo = Math.max(this.#peerUpTo, message.body.sequence)
        if (advanced || this.#queue.length > 0) this.#kickApplier()
        return
      }
      case 'request': {
        // One chunk at a time: each waits for the channel to take the previous one, so a
        // window of requests never means a window of chunks in memory.
        this.#requireHello()
        const { id, hash } = message.body
        if (++this.#queuedRequests > MAX_QUEUED_REQUESTS) throw new SyncProtocolError(`The peer asked for over ${MAX_QUEUED_REQUESTS} chunks without reading the answers; the session was closed.`)
        this.#serving = this.#serving.then(() => this.#serve(id, hash)).finally(() => this.#queuedRequests--)
        return
      }
      case 'data':
      case 'missing': {
        const pending = this.#pending.get(message.body.id)
        if (pending === undefined) throw new SyncProtocolError('The peer answered a request that was never made.')
        this.#pending.delete(message.body.id)
        if (message.kind === 'missing') return pending.resolve(undefined)
        if (!sameBytes(sha256(message.body.bytes), pending.hash)) {
          const error = new ChunkMismatchError()
          pending.reject(error)
          throw error
        }
        this.bytesReceived += message.body.bytes.length
        return pending.resolve(message.body.bytes)
      }
      case 'ack':
        this.#requireHello()
        if (sameBytes(message.body.root, engine.root)) engine.status.emit({ type: 'peer', device: this.#device as string, state: 'in-sync', root: message.body.root })
        return
      case 'ping':
        await this.#send('pong', { t: message.body.t })
        return
      case 'error':
        this.#requireHello()
        engine.status.emit({ type: 'peer-error', device: this.#device as string, code: message.body.code, message: message.body.message, ...(message.body.path === undefined ? {} : { path: message.body.path }) })
        return
      case 'status':
        this.#requireHello()
        engine.status.emit({ type: 'peer-status', device: this.#device as string, ...message.body })
        return
      case 'pong':
        engine.status.emit({ type: 'latency', device: this.#device ?? '', milliseconds: Math.max(0, Date.now() - message.body.t) })
        return
    }
  }

  #requireHello(): void {
    if (this.#device === undefined) throw new SyncProtocolError('The peer sent a message before hello; the session was closed.')
  }

  /** Sends the records changed since what the peer has, then indexEnd. */
  async announce(): Promise<void> {
    if (this.#device === undefined || this.#wantedSince < 0) return
    const index = this.#engine.index
    const records = index.changedSince(this.#sentUpTo).filter((record) => this.#fromPeer.get(record.path) !== versionKey(record.version))
    this.#sentUpTo = index.sequence
    for (let i = 0; i < records.length; i += MAX_RECORDS_PER_MESSAGE) {
      const batch = records.slice(i, i + MAX_RECORDS_PER_MESSAGE).map((record) => ({
        path: record.path,
        size: record.size,
        mtimeMs: Math.floor(record.mtimeMs),
        mode: record.mode,
        chunkHashes: record.chunkHashes,
        chunkLengths: [...record.chunkLengths],
        chunkSize: record.chunkSize,
        version: record.version,
        deleted: record.deleted,
        sequence: record.sequence,
      }))
      await this.#send('index', { records: batch })
    }
    await this.#send('indexEnd', { sequence: index.sequence, root: index.root() })
  }

  async #serve(id: number, hash: Uint8Array): Promise<void> {
    try {
      const bytes = await this.#engine.readLocalChunk(hash)
      if (bytes === undefined) await this.#send('missing', { id })
      else await this.#send('data', { id, bytes })
    } catch {
      // The channel closed; the session loop reports it.
    }
  }

  #windowCount = 0
  #windowBytes = 0
  #windowWaiters: (() => void)[] = []

  async #acquireWindow(length: number): Promise<void> {
    const limit = this.#engine.options.requestWindow ?? 16
    while (this.#windowCount >= limit || (this.#windowCount > 0 && this.#windowBytes + length > MAX_BYTES_IN_FLIGHT)) {
      await new Promise<void>((resolve) => this.#windowWaiters.push(resolve))
    }
    this.#windowCount++
    this.#windowBytes += length
  }

  #releaseWindow(length: number): void {
    this.#windowCount--
    this.#windowBytes -= length
    const waiters = this.#windowWaiters
    this.#windowWaiters = []
    for (const wake of waiters) wake()
  }

  #request(hash: Uint8Array): Promise<Uint8Array | undefined> {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, hash })
      this.#send('request', { id, hash }).catch(reject)
    })
  }

  #kickApplier(): void {
    if (this.#applying !== undefined) return
    this.#applying = this.#applyQueue().catch((error: unknown) => {
      // The channel closing mid-batch is a disconnect, which the session loop reports; the
      // next session resumes the batch.
      if (this.#closing || (error as { code?: unknown }).code === 'ERR_CHANNEL_CLOSED') return
      // Saving the index can fail too (a full disk): report it; the next pass retries.
      this.#engine.emitError(isSyncError(error) ? error : isDiskFull(error) ? new DiskFullError(undefined, { cause: error }) : new SyncError('ERR_SYNC_PROTOCOL', `Applying the peer's changes failed: ${(error as Error).message}`, { cause: error }))
    }).finally(() => {
      this.#applying = undefined
      if (this.#queue.length > 0) this.#kickApplier()
    })
  }

  async #applyQueue(): Promise<void> {
    const engine = this.#engine
    // What failed last time goes first; a newer record of the same path comes after it
    // (applied in order below), and an older one is ignored by the version check.
    const records = [...this.#retry.splice(0), ...this.#queue.splice(0)]
    this.#queuedBytes = 0
    const upTo = this.#peerUpTo
    this.#failedThisPass = false
    const again: WireRecord[] = []
    // Additions first, deletions last: a rename then finds its data in the old file.
    records.sort((a, b) => Number(a.deleted) - Number(b.deleted))
    const downloads = records.filter((record) => !record.deleted)
    this.#progress = { doneBytes: 0, totalBytes: downloads.reduce((sum, record) => sum + record.size, 0), doneFiles: 0, totalFiles: downloads.length, started: Date.now() }
    await this.#send('status', { state: 'syncing', pendingFiles: records.length, pendingBytes: this.#progress.totalBytes }).catch(() => {})
    let diskFull = false
    const applyOne = async (record: WireRecord) => {
      if (this.#closing) return
      if (diskFull) {
        again.push(record)
        return
      }
      try {
        await this.#apply(record)
      } catch (error) {
        this.#failedThisPass = true
        if (isDiskFull(error) || (error instanceof SyncError && error.code === 'ERR_DISK_FULL')) {
          again.push(record)
          // Stop this pass: nothing more can be written; partial files stay to resume from.
          if (!diskFull) engine.emitError(isSyncError(error) ? error : new DiskFullError(undefined, { path: record.path, cause: error }))
          diskFull = true
        } else if (isSyncError(error)) engine.emitError(error)
        else if (!this.#closing) engine.emitError(new SyncError('ERR_SYNC_PROTOCOL', `Could not apply ${record.path}: ${(error as Error).message}`, { path: record.path, cause: error }))
        // Tell the peer too, so its owner sees why the file did not arrive.
        if (isSyncError(error) && !this.#closing) {
          await this.#send('error', { code: error.code, message: error.message.slice(0, 1000), path: record.path.slice(0, 4096).replace(/\u0000/g, '') }).catch(() => {})
        }
      }
    }
    // Several files at once (their chunk requests share the window), so small files do not
    // wait on one round trip each; a path is never worked on twice at the same time.
    const additions = records.filter((record) => !record.deleted)
    const seenPaths = new Set<string>()
    const parallel = additions.filter((record) => (seenPaths.has(record.path) ? false : (seenPaths.add(record.path), true)))
    const sequential = additions.filter((record) => !parallel.includes(record))
    let cursor = 0
    await Promise.all(Array.from({ length: Math.min(FILES_IN_PARALLEL, parallel.length) }, async () => {
      while (cursor < parallel.length) await applyOne(parallel[cursor++] as WireRecord)
    }))
    for (const record of sequential) await applyOne(record)
    for (const record of records.filter((r) => r.deleted)) await applyOne(record)
    if (this.#closing) return
    this.#scheduleRetry(again)
    await engine.runLocked(async () => {
      if (!this.#failedThisPass && this.#queue.length === 0) engine.index.setPeerSequence(this.#device as string, upTo)
      await engine.index.save()
    })
    await this.announce()
    await this.#send('status', { state: 'idle', pendingFiles: this.#queue.length, pendingBytes: 0 }).catch(() => {})
    await this.#send('ack', { sequence: upTo, root: engine.root }).catch(() => {})
  }

  /**
   * Records that did not fit on the disk are tried again, after 2 s and then
   * less and less often (up to a minute), so a disk that gets space back fills up without
   * waiting for a new change or a reconnection.
   */
  #scheduleRetry(records: WireRecord[]): void {
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    if (records.length === 0) {
      this.#retryDelayMs = FIRST_RETRY_MS
      return
    }
    this.#retry = records
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      if (!this.#closing) this.#kickApplier()
    }, this.#retryDelayMs)
    this.#retryTimer.unref?.()
    this.#retryDelayMs = Math.min(this.#retryDelayMs * 2, MAX_RETRY_MS)
  }

  async #apply(remote: WireRecord): Promise<void> {
    const engine = this.#engine
    const path = validateRelativePath(remote.path)
    const problem = recordProblem(remote)
    if (problem !== undefined) throw new SyncProtocolError(`The peer's record for ${path} is inconsistent (${problem}); it was skipped.`, { path })
    // This device's ignore rules win: an ignored file is neither replaced nor deleted.
    if (engine.ignores(path)) return
    this.#fromPeer.set(path, versionKey(remote.version))
    const local = engine.index.get(path)
    const order = local === undefined ? 'newer' : compareVersions(remote.version, local.version)
    if (order === 'equal' || order === 'older') return
    if (local !== undefined && order === 'concurrent') return this.#resolveConflict(path, local, remote)
    if (remote.deleted) return this.#applyDelete(path, local, remote.version)
    await this.#download(path, remote, remote.version)
  }

  async #resolveConflict(path: string, local: FileRecord, remote: WireRecord): Promise<void> {
    const engine = this.#engine
    const merged = mergeVersions(local.version, remote.version)
    if (remote.deleted && local.deleted) return engine.runLocked(async () => void engine.index.put({ ...local, version: merged }))
    // An edit beats a delete: nothing is lost.
    if (remote.deleted) return engine.runLocked(async () => void engine.index.put({ ...local, version: bump(merged, engine.deviceId) }))
    if (local.deleted || sameBytes(local.chunkHashes, remote.chunkHashes)) return this.#download(path, remote, merged)
    const remoteWins = remote.mtimeMs > local.mtimeMs || (remote.mtimeMs === local.mtimeMs && (this.#device as string) > engine.deviceId)
    if (remoteWins) {
      const copy = conflictName(path, engine.deviceId, new Date(local.mtimeMs))
      await engine.runLocked(async () => {
        await rename(join(engine.folder, path), join(engine.folder, copy))
        const info = await lstat(join(engine.folder, copy))
        engine.index.put({ ...local, path: copy, version: bump({}, engine.deviceId), mtimeMs: info.mtimeMs, inode: info.ino })
        engine.index.put(tombstone(local, engine.deviceId))
      })
      engine.status.emit({ type: 'conflict', path, copy, kept: 'remote' })
      engine.status.emit({ type: 'file', path: copy, action: 'renamed-local-copy', bytesFromPeer: 0, bytesReused: 0 })
      await this.#download(path, remote, bump(mergeVersions(merged, engine.index.get(path)?.version ?? {}), engine.deviceId))
    } else {
      const copy = conflictName(path, this.#device as string, new Date(remote.mtimeMs))
      await this.#download(copy, { ...remote, path: copy }, bump({}, engine.deviceId))
      await engine.runLocked(async () => void engine.index.put({ ...local, version: bump(merged, engine.deviceId) }))
      engine.status.emit({ type: 'conflict', path, copy, kept: 'local' })
    }
  }

  /**
   * Deletes what the peer deleted, and nothing else: the parents must be real folders
   * (never a link that could lead outside), and the file must be the one this index
   * holds (same size, time and inode) and a regular file, not a link to follow. A file
   * that is not in the index (untracked, changed since the scan) stays: the next scan
   * makes it a new version, which beats the deletion on every device.
   */
  async #applyDelete(path: string, local: FileRecord | undefined, version: VersionVector): Promise<void> {
    const engine = this.#engine
    await engine.runLocked(async () => {
      const absolute = join(engine.folder, path)
      const parents = await this.#parentsAreFolders(path)
      const onDisk = parents ? await lstat(absolute).catch(() => undefined) : undefined
      if (onDisk !== undefined) {
        const indexed = local !== undefined && !local.deleted && onDisk.isFile() && onDisk.size === local.size && onDisk.mtimeMs === local.mtimeMs && (local.inode === undefined || local.inode === onDisk.ino)
        if (!indexed) return
        await unlink(absolute)
      }
      engine.index.put({ path, size: 0, mtimeMs: Date.now(), mode: local?.mode ?? 0o644, chunkHashes: new Uint8Array(0), chunkLengths: [], chunkSize: 0, version, deleted: true })
      engine.status.emit({ type: 'file', path, action: 'deleted', bytesFromPeer: 0, bytesReused: 0 })
    })
  }

  /** True when every parent of `path` is a real folder; false when one is missing; throws when one is a link or a file. */
  async #parentsAreFolders(path: string): Promise<boolean> {
    let current = this.#engine.folder
    for (const segment of path.split('/').slice(0, -1)) {
      current = join(current, segment)
      const info = await lstat(current).catch(() => undefined)
      if (info === undefined) return false
      if (info.isSymbolicLink() || !info.isDirectory()) throw new UnsafePathError(`The deletion of ${path} goes through a symbolic link or a file; nothing was deleted.`, { path })
    }
    return true
  }

  /** Refuses a target whose parent folders are symlinks (they could lead outside). */
  async #safeParent(path: string): Promise<void> {
    const engine = this.#engine
    const segments = path.split('/').slice(0, -1)
    let current = engine.folder
    for (const segment of segments) {
      current = join(current, segment)
      const info = await lstat(current).catch(() => undefined)
      if (info === undefined) {
        await mkdir(current)
        continue
      }
      if (info.isSymbolicLink() || !info.isDirectory()) throw new UnsafePathError(`The path ${path} goes through a symbolic link or a file; it was refused.`, { path })
    }
  }

  #caseClash(path: string): void {
    const other = this.#engine.index.caseClash(path)
    if (other !== undefined) throw new CaseClashError(`${path} and ${other} differ only by letter case; rename one of them.`, { path })
  }

  /** Fetches the file's chunks (local copies first), assembles it beside its target, and swaps it in. */
  async #download(path: string, remote: WireRecord, version: VersionVector): Promise<void> {
    const engine = this.#engine
    this.#caseClash(path)
    const quota = engine.quotaBytes
    if (quota !== undefined && engine.usedBytes() - (engine.index.get(path)?.size ?? 0) + remote.size > quota) {
      throw new QuotaExceededError(`Downloading ${path} would exceed the folder's quota of ${quota} bytes; it was skipped.`, { path })
    }
    const partialDir = join(engine.folder, STATE_DIR, 'partial')
    await mkdir(partialDir, { recursive: true })
    // Deterministic: a download cut by a crash or disconnection resumes in the same file.
    const partial = join(partialDir, hex(sha256(Buffer.concat([Buffer.from(path), remote.chunkHashes]))).slice(0, 32))
    const handle = await open(partial, 'a+').then(async (h) => {
      await h.close()
      return open(partial, 'r+')
    })
    let fromPeer = 0
    let reused = 0
    try {
      const existing = (await handle.stat()).size
      const offsets: number[] = []
      let offset = 0
      for (const length of remote.chunkLengths) {
        offsets.push(offset)
        offset += length
      }
      const inFlight = new Set<Promise<void>>()
      const count = remote.chunkLengths.length
      const written = new Map<string, number>()
      // Every chunk must be accounted for before the file may replace anything.
      let completed = 0
      let failure: unknown
      for (let i = 0; i < count; i++) {
        if (failure !== undefined) throw failure
        if (this.#closing) throw new ChunkUnavailableError()
        const hash = remote.chunkHashes.slice(i * CHUNK_HASH_LENGTH, (i + 1) * CHUNK_HASH_LENGTH)
        const length = remote.chunkLengths[i] as number
        const at = offsets[i] as number
        // Already in the partial file from an earlier attempt?
        if (at + length <= existing) {
          const buffer = Buffer.alloc(length)
          await handle.read(buffer, 0, length, at)
          if (sameBytes(sha256(buffer), hash)) {
            written.set(hex(hash), at)
            completed++
            reused += length
            this.#advance(path, length, remote.size)
            continue
          }
        }
        // The same chunk earlier in this file (repeated or zero-filled data): copy it.
        const earlier = written.get(hex(hash))
        if (earlier !== undefined) {
          await Promise.all(inFlight)
          const buffer = Buffer.alloc(length)
          await handle.read(buffer, 0, length, earlier)
          await handle.write(buffer, 0, length, at)
          completed++
          reused += length
          this.#advance(path, length, remote.size)
          continue
        }
        const local = await engine.readLocalChunk(hash)
        if (local !== undefined) {
          await handle.write(local, 0, length, at)
          written.set(hex(hash), at)
          completed++
          reused += length
          this.#advance(path, length, remote.size)
          continue
        }
        // The window is the session's: all files downloading at once share it.
        await this.#acquireWindow(length)
        const task: Promise<void> = this.#request(hash).then(async (bytes) => {
          if (bytes === undefined || bytes.length !== length) throw new ChunkUnavailableError(undefined, { path })
          await handle.write(bytes, 0, length, at)
          written.set(hex(hash), at)
          completed++
          fromPeer += length
          this.#advance(path, length, remote.size)
        }).catch((error: unknown) => {
          failure ??= error
        }).finally(() => {
          this.#releaseWindow(length)
          inFlight.delete(task)
        })
        inFlight.add(task)
      }
      await Promise.all(inFlight)
      if (failure !== undefined) throw failure
      if (completed !== count) throw new ChunkUnavailableError(`Only ${completed} of ${count} parts of ${path} arrived; it will resume on the next pass.`, { path })
      await handle.truncate(remote.size)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await engine.runLocked(async () => {
      const target = join(engine.folder, path)
      await this.#safeParent(path)
      const current = engine.index.get(path)
      const onDisk = await lstat(target).catch(() => undefined)
      if (onDisk !== undefined && !onDisk.isFile()) throw new UnsafePathError(`${path} is not a regular file here; it was left alone.`, { path })
      // A scan may have recorded a local edit while the download ran: the version decided
      // on then no longer covers what is here, so that edit is kept too.
      const overtaken = current !== undefined && !current.deleted && !['newer', 'equal'].includes(compareVersions(version, current.version))
      if (onDisk !== undefined && (overtaken || current === undefined || current.deleted || onDisk.size !== current.size || onDisk.mtimeMs !== current.mtimeMs)) {
        // Changed here since the last scan (or never scanned): keep it as a conflict copy.
        const copy = conflictName(path, engine.deviceId, new Date(onDisk.mtimeMs))
        await rename(target, join(engine.folder, copy))
        engine.status.emit({ type: 'conflict', path, copy, kept: 'remote' })
      }
      await chmod(partial, remote.mode & ~engine.umask)
      await utimes(partial, new Date(), new Date(remote.mtimeMs))
      // Stat before the rename: an edit made to the file right after it lands must show as
      // a change to the next scan, not be recorded as the downloaded version.
      const info = await stat(partial)
      await rename(partial, target)
      await fsyncDirectory(dirname(target))
      engine.index.put({
        path,
        size: remote.size,
        mtimeMs: info.mtimeMs,
        mode: remote.mode,
        chunkHashes: remote.chunkHashes,
        chunkLengths: [...remote.chunkLengths],
        chunkSize: remote.chunkSize,
        version,
        deleted: false,
        inode: info.ino,
      })
    })
    this.bytesReused += reused
    this.#progress.doneFiles++
    engine.status.emit({ type: 'file', path, action: 'downloaded', bytesFromPeer: fromPeer, bytesReused: reused })
  }

  #advance(path: string, bytes: number, fileSize: number): void {
    const progress = this.#progress
    progress.doneBytes += bytes
    const seconds = Math.max(0.001, (Date.now() - progress.started) / 1000)
    const rate = progress.doneBytes / seconds
    this.#engine.status.emit({
      type: 'progress',
      path,
      fileBytes: bytes,
      fileSize,
      doneBytes: progress.doneBytes,
      totalBytes: progress.totalBytes,
      doneFiles: progress.doneFiles,
      totalFiles: progress.totalFiles,
      bytesPerSecond: rate,
      etaSeconds: rate > 0 ? Math.max(0, (progress.totalBytes - progress.doneBytes) / rate) : undefined,
    })
  }
}
