import { lstatSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { isEncryptedMessagingError, sendParts, type MessageChannel } from '@cloudbox/encrypted-messaging'
import { ChunkServer } from './chunk-server.js'
import { decide, keepLocal, moveLocalAside } from './conflicts.js'
import {
  CaseClashError,
  ChunkUnavailableError,
  DiskFullError,
  fileSystemRefusal,
  FolderMismatchError,
  isSyncError,
  QuotaExceededError,
  SyncError,
  SyncProtocolError,
  SyncVersionError,
  UnsafePathError,
} from './errors.js'
import { installFile, PartialFile, type AssemblyContext, type ChunkNeed } from './file-assembler.js'
import { placeEntry, removeEntry } from './folders-and-links.js'
import type { FileRecord, FolderIndex } from './folder-index.js'
import { validateRelativePath } from './paths.js'
import { MAX_RECORDS_PER_MESSAGE, recordProblem, syncCodec, type SyncMessage, type WireRecord } from './protocol.js'
import type { StatusStream } from './status.js'
import { TransferScheduler } from './transfer-scheduler.js'
import { bump, compareVersions, type VersionVector } from './version-vector.js'

/** What a session needs of its engine. */
export interface SessionHost extends AssemblyContext {
  readonly deviceId: string
  readonly folderId: string
  readonly index: FolderIndex
  readonly status: StatusStream
  readonly quotaBytes: number | undefined
  readonly windowBytes: number | undefined
  /**
   * A scan of this folder is running. Its commits announce records as they land, but an
   * indexEnd (and its Merkle root, recomputed over every bucket a batch touched) goes at
   * most once a second until the scan's end, which announces again: a root per batch of
   * 256 cost the sender's main thread 10–15 ms each, while the peer waited on it for chunks.
   */
  readonly scanning: boolean
  /** Does this device's ignore rules leave `path` out of sync? */
  ignores(path: string): boolean
  /** Runs `work` alone for `path` (downloads, installs, deletions of one path never overlap). */
  withPath<T>(path: string, work: () => Promise<T>): Promise<T>
  emitError(error: SyncError): void
  /** This session changed the index: tell the other sessions. */
  changed(by: SyncSession): void
  /** Files this session put on disk outside the index (a local edit kept as a conflict copy): index and announce them. */
  rescan(paths: string[]): Promise<void>
}

/** Index records a session takes from a peer before it has applied them (its credit). */
export const RECORD_CREDIT = 4096
/** Bytes of such records held at most, waiting (paths and chunk lists, as decoded). */
export const MAX_QUEUED_RECORD_BYTES = 32 * 1024 * 1024
/**
 * Files downloaded at the same time (their chunk requests share the window), and the bytes
 * of their records at most. A tiny file spends ~45 ms between its record and its install
 * (the round trip for its data, the thread pool's fsyncs) for well under a millisecond of
 * work: 128 at once left a receiver waiting a third of the time (20,000 tiny files: 7.6 s,
 * 1,024 at once: 4.9 s). Each holds a partial file open; Node raises the open-file limit.
 */
const FILES_IN_PARALLEL = 1024
const MAX_ACTIVE_RECORD_BYTES = 32 * 1024 * 1024
/** Bytes of records per index message (several small records, or one large one). */
const INDEX_MESSAGE_BYTES = 4 * 1024 * 1024
/** While this side scans, an indexEnd at most this often (see SessionHost.scanning). */
const SCANNING_END_MS = 1_000
const FIRST_RETRY_MS = 2_000
const MAX_RETRY_MS = 60_000

const recordBytes = (record: Pick<WireRecord, 'path' | 'chunkHashes' | 'chunkLengths'>) => 2 * record.path.length + record.chunkHashes.length + 8 * record.chunkLengths.length + 256

/** Out of space: the file system's ENOSPC/EDQUOT, SQLite's SQLITE_FULL (the index shares the disk), or ours. */
export function isDiskFull(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' || (isSyncError(error) && error.code === 'ERR_DISK_FULL')
}

function toWire(record: FileRecord): WireRecord {
  return {
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
    ...(record.kind === undefined ? {} : { kind: record.kind }),
    ...(record.target === undefined ? {} : { target: record.target }),
  }
}

/**
 * One peer connection of an engine: the session protocol (PROTOCOL.md, "Session").
 * Outgoing, it announces this side's records within the credit the peer gives and serves
 * the chunks the peer fetches (ChunkServer). Incoming, it takes the peer's records, decides
 * each (conflicts.ts), assembles the files it needs (file-assembler.ts) with chunks fetched
 * through a window (transfer-scheduler.ts), and acknowledges. Bad input from the peer
 * closes this session only.
 */
export class SyncSession {
  readonly closed: Promise<Error | undefined>
  /** Bytes of chunk data received from the peer, and reused from local data (for figures). */
  bytesReceived = 0
  bytesReused = 0
  readonly #host: SessionHost
  readonly #channel: MessageChannel
  readonly #peer: string
  #device: string | undefined
  #closing = false
  #sending: Promise<unknown> = Promise.resolve()
  readonly #server: ChunkServer
  readonly #scheduler: TransferScheduler
  // Outgoing index.
  #wanted = false
  #sentUpTo = 0
  #credit = 0
  #endSentAt = -1
  #endSentTime = 0
  /** An indexEnd was held back while a scan ran (see {@link afterScan}). */
  #endHeld = false
  #announcing: Promise<void> | undefined
  #announceAgain = false
  // Incoming index.
  readonly #incoming: WireRecord[] = []
  /** Scans of what this pass put on disk outside the index (kept copies): done before the ack, so its root counts them. */
  readonly #rescans: Promise<void>[] = []
  #incomingBytes = 0
  /** Files (and their sizes) received and not yet taken up: part of the progress totals already. */
  #waiting = { files: 0, bytes: 0 }
  #creditOutstanding = 0
  #settledSinceCredit = 0
  #peerUpTo = -1
  #applying: Promise<void> | undefined
  #failedThisPass = false
  /**
   * The peer's lowest sequence number among records that could not be applied in this
   * session: the saved progress never passes it, so the next session asks for them again.
   */
  #lowestRefused: number | undefined
  #retry: WireRecord[] = []
  #retryTimer: NodeJS.Timeout | undefined
  #retryDelayMs = FIRST_RETRY_MS
  #progress = { doneBytes: 0, totalBytes: 0, doneFiles: 0, totalFiles: 0, started: 0, lastEvent: 0 }

  constructor(host: SessionHost, channel: MessageChannel, peer: string) {
    this.#host = host
    this.#channel = channel
    this.#peer = peer
    this.#server = new ChunkServer(host.folder, host.index, {
      data: (chunks) => this.#sendData(chunks),
      missing: (ids) => this.#send('missing', { ids }),
    })
    this.#scheduler = new TransferScheduler({
      ...(host.windowBytes === undefined ? {} : { windowBytes: host.windowBytes }),
      fetch: (requests) => this.#send('fetch', { requests }),
      onChunk: (need) => this.#advance(need),
    })
    this.closed = this.#run()
  }

  /** The peer's device name, once it said hello. */
  get device(): string | undefined {
    return this.#device
  }

  /** True once the peer said hello: its chunks can be fetched. */
  get ready(): boolean {
    return this.#device !== undefined && !this.#closing
  }

  /**
   * Fetches `record`'s content from the peer into its path again: a file missing here whose
   * deletion this device holds back. The version stays the same (both sides already agree
   * on it), so nothing new goes out. Rejects with the reason when the peer cannot serve it.
   */
  restore(record: FileRecord): Promise<void> {
    return this.#host.withPath(record.path, () => this.#download(record.path, toWire(record), record.version))
  }

  /** Encodes now (so the bytes given may be reused at once), sends in order. */
  #send<Kind extends Parameters<typeof syncCodec.encode>[0]>(kind: Kind, body: Parameters<typeof syncCodec.encode<Kind>>[1]): Promise<void> {
    const bytes = syncCodec.encode(kind, body)
    return this.#inTurn(() => this.#channel.send(bytes))
  }

  /** Sends go out one after another, in call order. */
  #inTurn(send: () => Promise<void>): Promise<void> {
    const next = this.#sending.then(send)
    this.#sending = next.catch(() => {})
    return next
  }

  /**
   * Chunks straight from the chunk server's buffer to the cipher: the message goes as parts
   * (CBOR heads, and each chunk where it lies), with no copy into an encoded message and
   * none to prefix its lane. The promise settles once it is sent; the buffer is free then.
   */
  #sendData(chunks: [number, Uint8Array][]): Promise<void> {
    const parts = syncCodec.encodeParts('data', { chunks })
    return this.#inTurn(() => sendParts(this.#channel, parts))
  }

  /** Sends without waiting (a failure means the channel closed, which the session loop reports). */
  #post<Kind extends Parameters<typeof syncCodec.encode>[0]>(kind: Kind, body: Parameters<typeof syncCodec.encode<Kind>>[1]): void {
    this.#send(kind, body).catch(() => {})
  }

  /** Tells the peer of a file here that does not sync (its owner sees it, as `peer-error`). */
  reportError(error: SyncError): void {
    if (this.#closing) return
    this.#post('error', { code: error.code, message: error.message.slice(0, 1000), ...(error.path === undefined ? {} : { path: error.path.slice(0, 4096).replace(/\u0000/g, '') }) })
  }

  async close(reason?: Error): Promise<void> {
    this.#closing = true
    await this.#channel.close(reason).catch(() => {})
    await this.closed
  }

  async #run(): Promise<Error | undefined> {
    const host = this.#host
    let failure: Error | undefined
    try {
      await this.#send('hello', { folder: host.folderId, device: host.deviceId, root: host.index.root(), sequence: host.index.sequence })
      for await (const raw of this.#channel) {
        let message: SyncMessage
        try {
          message = syncCodec.decode(raw)
        } catch (error) {
          if (isEncryptedMessagingError(error, 'ERR_UNSUPPORTED_VERSION')) throw new SyncVersionError(undefined, { cause: error })
          throw new SyncProtocolError(undefined, { cause: error })
        }
        await this.#handle(message)
      }
    } catch (error) {
      failure = error as Error
      if (!this.#closing) {
        if (isSyncError(error)) host.emitError(error)
        await this.#channel.close(error as Error).catch(() => {})
      }
    } finally {
      this.#closing = true
      this.#scheduler.close(failure === undefined ? undefined : new ChunkUnavailableError('The peer disconnected during a transfer; the file will resume on reconnection.', { cause: failure }))
      await this.#server.close()
      // After the last pass, which may have scheduled one (a firing during it does nothing).
      await this.#applying?.catch(() => {})
      clearTimeout(this.#retryTimer)
      if (this.#device !== undefined) host.status.emit({ type: 'peer', device: this.#device, state: 'disconnected', ...(failure === undefined ? {} : { reason: failure }) })
    }
    return failure
  }

  #requireHello(): void {
    if (this.#device === undefined) throw new SyncProtocolError('The peer sent a message before hello; the session was closed.')
  }

  async #handle(message: SyncMessage): Promise<void> {
    const host = this.#host
    switch (message.kind) {
      case 'hello': {
        if (this.#device !== undefined) throw new SyncProtocolError('The peer said hello twice; the session was closed.')
        if (message.body.folder !== host.folderId) throw new FolderMismatchError()
        if (message.body.device !== this.#peer) throw new SyncProtocolError(`The peer proved it is ${this.#peer} but said it is ${message.body.device.slice(0, 64)}; the session was closed.`)
        this.#device = message.body.device
        host.status.emit({ type: 'peer', device: this.#device, state: 'connected' })
        this.#creditOutstanding = RECORD_CREDIT
        // The read loop never waits on a send: both sides could be sending chunks to each
        // other, and a loop that stopped reading would leave both waiting for good.
        this.#post('want', { since: host.index.peerSequence(this.#device), credit: RECORD_CREDIT })
        this.#post('ping', { t: Date.now() })
        return
      }
      case 'want':
        this.#requireHello()
        this.#wanted = true
        this.#sentUpTo = message.body.since
        this.#credit = message.body.credit
        this.#endSentAt = -1
        this.announce()
        return
      case 'credit':
        this.#requireHello()
        this.#credit += message.body.records
        this.announce()
        return
      case 'index': {
        this.#requireHello()
        const records = message.body.records
        // Within the credit given, and within memory: a peer cannot make this side hold more.
        if (records.length > this.#creditOutstanding) throw new SyncProtocolError('The peer sent more index records than this side asked for; the session was closed.')
        this.#creditOutstanding -= records.length
        for (const record of records) {
          this.#incomingBytes += recordBytes(record)
          this.#incoming.push(record)
          if (!record.deleted) this.#waiting = { files: this.#waiting.files + 1, bytes: this.#waiting.bytes + record.size }
        }
        if (this.#incomingBytes > MAX_QUEUED_RECORD_BYTES) throw new SyncProtocolError(`The peer sent over ${MAX_QUEUED_RECORD_BYTES >> 20} MiB of index records at once; the session was closed.`)
        this.#kickApplier()
        return
      }
      case 'indexEnd': {
        this.#requireHello()
        // Each applied pass ends with an announce, so an indexEnd that brings nothing new
        // must not start another pass: two peers would trade empty passes forever.
        const advanced = message.body.sequence > this.#peerUpTo
        this.#peerUpTo = Math.max(this.#peerUpTo, message.body.sequence)
        if (advanced || this.#incoming.length > 0) this.#kickApplier()
        return
      }
      case 'fetch':
        this.#requireHello()
        this.#server.enqueue(message.body.requests)
        return
      case 'data':
        this.#requireHello()
        this.#scheduler.received(message.body.chunks)
        for (const [, bytes] of message.body.chunks) this.bytesReceived += bytes.length
        return
      case 'missing':
        this.#requireHello()
        this.#scheduler.missing(message.body.ids)
        return
      case 'ack':
        this.#requireHello()
        if (Buffer.compare(message.body.root, host.index.root()) === 0) host.status.emit({ type: 'peer', device: this.#device as string, state: 'in-sync', root: message.body.root })
        return
      case 'ping':
        this.#post('pong', { t: message.body.t })
        return
      case 'pong':
        host.status.emit({ type: 'latency', device: this.#device ?? '', milliseconds: Math.max(0, Date.now() - message.body.t) })
        return
      case 'error':
        this.#requireHello()
        host.status.emit({ type: 'peer-error', device: this.#device as string, code: message.body.code, message: message.body.message, ...(message.body.path === undefined ? {} : { path: message.body.path }) })
        return
      case 'status':
        this.#requireHello()
        host.status.emit({ type: 'peer-status', device: this.#device as string, ...message.body })
        return
    }
  }

  // ————— outgoing index —————

  /** A scan ended: the indexEnd it held back goes now (nothing is sent when none was held). */
  afterScan(): void {
    if (this.#endHeld) this.announce()
  }

  /** Sends the records changed since what the peer has, within its credit, then indexEnd once caught up. */
  announce(): void {
    if (!this.#wanted || this.#closing) return
    if (this.#announcing !== undefined) {
      this.#announceAgain = true
      return
    }
    this.#announcing = this.#announceNow()
      .catch(() => {
        // The channel closed; the session loop reports it.
      })
      .finally(() => {
        this.#announcing = undefined
        if (this.#announceAgain) {
          this.#announceAgain = false
          this.announce()
        }
      })
  }

  async #announceNow(): Promise<void> {
    const index = this.#host.index
    for (;;) {
      if (this.#closing) return
      if (this.#credit <= 0) return
      // What came from this peer is not echoed back to it.
      const found = index.changedSinceNotFrom(this.#sentUpTo, this.#peer, Math.min(this.#credit, MAX_RECORDS_PER_MESSAGE))
      if (found.upTo <= this.#sentUpTo) break
      this.#sentUpTo = found.upTo
      if (found.records.length === 0) break
      const outgoing = found.records.map(toWire)
      let batch: WireRecord[] = []
      let bytes = 0
      for (const record of outgoing) {
        const size = recordBytes(record)
        if (batch.length > 0 && bytes + size > INDEX_MESSAGE_BYTES) {
          await this.#sendIndex(batch)
          batch = []
          bytes = 0
        }
        batch.push(record)
        bytes += size
      }
      if (batch.length > 0) await this.#sendIndex(batch)
    }
    this.#endHeld = this.#endSentAt !== index.sequence && this.#host.scanning && Date.now() - this.#endSentTime < SCANNING_END_MS
    if (!this.#endHeld && this.#endSentAt !== index.sequence) {
      this.#endSentAt = index.sequence
      this.#endSentTime = Date.now()
      await this.#send('indexEnd', { sequence: index.sequence, root: index.root() })
    }
  }

  async #sendIndex(records: WireRecord[]): Promise<void> {
    this.#credit -= records.length
    this.#endSentAt = -1
    await this.#send('index', { records })
  }

  // ————— incoming index —————

  #kickApplier(): void {
    if (this.#applying !== undefined || this.#closing) return
    this.#applying = this.#applyQueue()
      .catch((error: unknown) => {
        // The channel closing mid-pass is a disconnect, which the session loop reports; the
        // next session resumes the pass.
        if (this.#closing || (error as { code?: unknown }).code === 'ERR_CHANNEL_CLOSED') return
        // Saving the index can fail too (a full disk): report it; the next pass retries.
        this.#host.emitError(isSyncError(error) ? error : isDiskFull(error) ? new DiskFullError(undefined, { cause: error }) : new SyncError('ERR_SYNC_PROTOCOL', `Applying the peer's changes failed: ${(error as Error).message}`, { cause: error }))
      })
      .finally(() => {
        this.#applying = undefined
        if (this.#incoming.length > 0 && !this.#closing) this.#kickApplier()
      })
  }

  /**
   * One pass: the records received so far (and those that arrive while it runs), each
   * decided and applied, additions several at once and deletions after them (so a rename
   * finds its data in the old file), then the peer's progress, an ack and an announce.
   */
  async #applyQueue(): Promise<void> {
    const host = this.#host
    // What failed last time for lack of space goes first.
    const retried = this.#retry.splice(0)
    this.#failedThisPass = false
    const again: WireRecord[] = []
    this.#progress = { doneBytes: 0, totalBytes: 0, doneFiles: 0, totalFiles: 0, started: Date.now(), lastEvent: 0 }
    let diskFull = false
    let reported = false
    const active = new Set<Promise<void>>()
    let activeBytes = 0
    // Woken when a file settles. Not Promise.race over the active set: each race adds a
    // reaction to all 128 active promises, 2.5 million reactions for 20,000 tiny files.
    let onSettled: (() => void) | undefined
    const someSettled = () => new Promise<void>((resolve) => (onSettled = resolve))
    const deletions: { record: WireRecord; counted: boolean }[] = []
    const settle = () => {
      this.#settledSinceCredit++
      if (this.#settledSinceCredit >= 512 && !this.#closing) {
        // Room again for that many: the peer may send more while this pass goes on.
        const records = this.#settledSinceCredit
        this.#settledSinceCredit = 0
        this.#creditOutstanding += records
        this.#post('credit', { records })
      }
    }
    const applyOne = async (record: WireRecord): Promise<void> => {
      if (this.#closing) return
      if (diskFull) {
        again.push(record)
        return
      }
      try {
        await this.#apply(record)
      } catch (raw) {
        const error = fileSystemRefusal(raw, record.path) ?? raw
        this.#failedThisPass = true
        this.#lowestRefused = Math.min(this.#lowestRefused ?? Infinity, record.sequence)
        let told: SyncError | undefined
        if (isDiskFull(error)) {
          again.push(record)
          // Stop the pass: nothing more can be written; partial files stay to resume from.
          if (!diskFull) {
            told = isSyncError(error) ? error : new DiskFullError(undefined, { path: record.path, cause: error })
            host.emitError(told)
          }
          diskFull = true
        } else if (isSyncError(error)) host.emitError((told = error))
        else if (!this.#closing) host.emitError(new SyncError('ERR_SYNC_PROTOCOL', `Could not apply ${record.path}: ${(error as Error).message}`, { path: record.path, cause: error }))
        // Tell the peer too, so its owner sees why the file did not arrive.
        if (told !== undefined && !this.#closing) {
          await this.#send('error', { code: told.code, message: told.message.slice(0, 1000), path: record.path.slice(0, 4096).replace(/\u0000/g, '') }).catch(() => {})
        }
      }
    }
    // Records retried for space are not counted again against the peer's credit.
    const take = (): { record: WireRecord; counted: boolean } | undefined => {
      const retry = retried.shift()
      if (retry !== undefined) return { record: retry, counted: false }
      const record = this.#incoming.shift()
      if (record === undefined) return undefined
      this.#incomingBytes -= recordBytes(record)
      if (!record.deleted) this.#waiting = { files: this.#waiting.files - 1, bytes: this.#waiting.bytes - record.size }
      return { record, counted: true }
    }
    for (;;) {
      const next = take()
      if (next === undefined) {
        if (active.size === 0) break
        await someSettled()
        continue
      }
      const { record, counted } = next
      if (!reported) {
        reported = true
        await this.#send('status', { state: 'syncing', pendingFiles: this.#incoming.length + 1, pendingBytes: record.size }).catch(() => {})
      }
      if (record.deleted) {
        deletions.push({ record, counted })
        continue
      }
      this.#progress.totalBytes += record.size
      this.#progress.totalFiles++
      // Several files at once, within a memory bound; a path is never worked on twice at the same time (withPath).
      const size = recordBytes(record)
      while (active.size >= FILES_IN_PARALLEL || (active.size > 0 && activeBytes + size > MAX_ACTIVE_RECORD_BYTES)) await someSettled()
      activeBytes += size
      const task: Promise<void> = applyOne(record).finally(() => {
        active.delete(task)
        activeBytes -= size
        if (counted) settle()
        const wake = onSettled
        onSettled = undefined
        wake?.()
      })
      active.add(task)
    }
    // Deepest first: a folder's files go before the folder itself.
    deletions.sort((a, b) => (a.record.path < b.record.path ? 1 : a.record.path > b.record.path ? -1 : 0))
    for (const { record, counted } of deletions) {
      await applyOne(record)
      if (counted) settle()
    }
    await Promise.allSettled(this.#rescans.splice(0))
    if (this.#closing) return
    this.#scheduleRetry(again)
    const upTo = this.#peerUpTo
    // Up to the first record that could not be applied (a later pass that went well does not skip it).
    const saved = Math.min(upTo, (this.#lowestRefused ?? Infinity) - 1)
    if (!this.#failedThisPass && this.#incoming.length === 0 && saved >= 0) host.index.setPeerSequence(this.#device as string, saved)
    try {
      // What is acknowledged is committed first.
      host.index.commit()
    } catch (error) {
      if (isDiskFull(error)) host.emitError(new DiskFullError(undefined, { cause: error }))
      else host.emitError(new SyncError('ERR_SYNC_PROTOCOL', `The sync index could not be written (${(error as Error).message}); the next scan finds what arrived.`, { cause: error }))
      return
    }
    host.changed(this)
    await this.#send('status', { state: 'idle', pendingFiles: this.#incoming.length, pendingBytes: 0 }).catch(() => {})
    if (upTo >= 0) await this.#send('ack', { sequence: upTo, root: host.index.root() }).catch(() => {})
  }

  /**
   * Records that did not fit on the disk are tried again, after 2 s and then less and less
   * often (up to a minute), so a disk that gets space back fills up without waiting for a
   * new change or a reconnection.
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
    const host = this.#host
    const path = validateRelativePath(remote.path)
    const problem = recordProblem(remote)
    if (problem !== undefined) throw new SyncProtocolError(`The peer's record for ${path} is inconsistent (${problem}); it was skipped.`, { path })
    // This device's ignore rules win: an ignored file is neither replaced nor deleted.
    if (host.ignores(path)) return
    const record = path === remote.path ? remote : { ...remote, path }
    await host.withPath(path, async () => {
      const local = host.index.get(path)
      const decision = decide(local, record, host.deviceId, this.#peer)
      switch (decision.kind) {
        case 'skip':
          return
        case 'keep':
          if (local !== undefined) keepLocal(host.index, local, decision.version)
          return
        case 'delete':
          return this.#applyDelete(path, local, decision.version)
        case 'download':
          return this.#download(path, record, decision.version)
        case 'keep-local-as-copy': {
          const version = await moveLocalAside(host.folder, host.index, local as FileRecord, record, decision.copy, host.deviceId)
          host.status.emit({ type: 'conflict', path, copy: decision.copy, kept: 'remote' })
          host.status.emit({ type: 'file', path: decision.copy, action: 'renamed-local-copy', bytesFromPeer: 0, bytesReused: 0 })
          return this.#download(path, record, version)
        }
        case 'fetch-remote-as-copy':
          await this.#download(decision.copy, { ...record, path: decision.copy }, bump({}, host.deviceId))
          keepLocal(host.index, local as FileRecord, decision.version)
          host.status.emit({ type: 'conflict', path, copy: decision.copy, kept: 'local' })
          return
      }
    })
  }

  /**
   * Deletes what the peer deleted, and nothing else: the parents must be real folders
   * (never a link that could lead outside), and the file must be the one this index holds
   * (same size, time and inode) and a regular file, not a link to follow. A file that is
   * not in the index (untracked, changed since the scan) stays: the next scan makes it a
   * new version, which beats the deletion on every device.
   */
  async #applyDelete(path: string, local: FileRecord | undefined, version: VersionVector): Promise<void> {
    const host = this.#host
    const absolute = join(host.folder, path)
    const parents = this.#parentsAreFolders(path)
    if (parents && local !== undefined && !local.deleted && local.kind !== undefined) {
      // A folder or a link: removed if it is still as indexed (a link is never followed).
      if (!removeEntry(host, path, local)) {
        // Still holds files, or changed here: the tombstone is recorded and a scan makes it new again.
        this.#rescans.push(host.rescan([path]))
      }
      host.index.put({ path, size: 0, mtimeMs: Date.now(), mode: local.mode, chunkHashes: new Uint8Array(0), chunkLengths: [], chunkSize: 0, version, deleted: true, origin: this.#peer })
      host.status.emit({ type: 'file', path, action: 'deleted', bytesFromPeer: 0, bytesReused: 0 })
      return
    }
    const onDisk = parents ? lstatSync(absolute, { throwIfNoEntry: false }) : undefined
    if (onDisk !== undefined) {
      const indexed = local !== undefined && !local.deleted && onDisk.isFile() && onDisk.size === local.size && onDisk.mtimeMs === local.mtimeMs && (local.inode === undefined || local.inode === onDisk.ino)
      if (!indexed) return
      // Kept among the versions (a rename, no copy) unless versions are off.
      if (host.versions?.keep(path, { move: true, reason: 'deleted', device: local.origin ?? host.deviceId, replacedBy: this.#peer }) === undefined) unlinkSync(absolute)
      host.wrote?.(path, { kind: 'gone' })
    }
    host.index.put({ path, size: 0, mtimeMs: Date.now(), mode: local?.mode ?? 0o644, chunkHashes: new Uint8Array(0), chunkLengths: [], chunkSize: 0, version, deleted: true, origin: this.#peer })
    host.status.emit({ type: 'file', path, action: 'deleted', bytesFromPeer: 0, bytesReused: 0 })
  }

  /** True when every parent of `path` is a real folder; false when one is missing; throws when one is a link or a file. */
  #parentsAreFolders(path: string): boolean {
    let current = this.#host.folder
    for (const segment of path.split('/').slice(0, -1)) {
      current = join(current, segment)
      const info = lstatSync(current, { throwIfNoEntry: false })
      if (info === undefined) return false
      if (info.isSymbolicLink() || !info.isDirectory()) throw new UnsafePathError(`The deletion of ${path} goes through a symbolic link or a file; nothing was deleted.`, { path })
    }
    return true
  }

  /** Fetches the file's chunks (local copies first), assembles it beside its target, and puts it in place. */
  async #download(path: string, remote: WireRecord, version: VersionVector): Promise<void> {
    const host = this.#host
    if (remote.kind !== undefined) return this.#place(path, remote, version)
    const clash = host.index.caseClash(path)
    if (clash !== undefined) throw new CaseClashError(`${path} and ${clash} differ only by letter case; rename one of them.`, { path })
    const quota = host.quotaBytes
    if (quota !== undefined && host.index.live.bytes - (host.index.get(path)?.size ?? 0) + remote.size > quota) {
      throw new QuotaExceededError(`Downloading ${path} would exceed the folder's quota of ${quota} bytes; it was skipped.`, { path })
    }
    const partial = await PartialFile.open(host, path, remote)
    let landed: { mtimeMs: number; ino: number }
    try {
      const fetches: Promise<void>[] = []
      const enqueue = async (needs: readonly ChunkNeed[]) => {
        for (const need of needs) {
          await this.#scheduler.room()
          fetches.push(this.#scheduler.fetch(need))
        }
      }
      // Local runs are copied while the peer's chunks are on their way.
      await Promise.all([enqueue(partial.needs), partial.copyLocal().then((more) => enqueue(more))])
      const outcomes = await Promise.allSettled(fetches)
      const failed = outcomes.find((outcome) => outcome.status === 'rejected')
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason
      landed = await partial.complete()
    } catch (error) {
      await partial.abandon()
      throw error
    }
    // A version this device made (a conflict settled here) must go back to the peer; the
    // peer's own version is not echoed.
    const origin = compareVersions(version, remote.version) === 'equal' ? this.#peer : undefined
    const installed = await installFile(host, partial, landed, version, origin, host.deviceId)
    if (installed.keptLocalAs !== undefined) {
      host.status.emit({ type: 'conflict', path, copy: installed.keptLocalAs, kept: 'remote' })
      // The copy holds an edit no scan has seen: scanned now, so it reaches the peers
      // without waiting on a watcher (whose events can be late or dropped under load).
      this.#rescans.push(host.rescan([installed.keptLocalAs]))
    }
    this.bytesReused += partial.reused
    this.#progress.doneFiles++
    this.#advanceBy(path, partial.reused, remote.size)
    host.status.emit({ type: 'file', path, action: 'downloaded', bytesFromPeer: partial.received, bytesReused: partial.reused })
  }

  /** A peer's folder or link: made here at once (nothing to fetch). */
  #place(path: string, remote: WireRecord, version: VersionVector): void {
    const host = this.#host
    const clash = host.index.caseClash(path)
    if (clash !== undefined) throw new CaseClashError(`${path} and ${clash} differ only by letter case; rename one of them.`, { path })
    const origin = compareVersions(version, remote.version) === 'equal' ? this.#peer : undefined
    const placed = placeEntry(host, path === remote.path ? remote : { ...remote, path }, version, origin, host.deviceId)
    if (placed.keptLocalAs !== undefined) {
      host.status.emit({ type: 'conflict', path, copy: placed.keptLocalAs, kept: 'remote' })
      this.#rescans.push(host.rescan([placed.keptLocalAs]))
    }
    this.#progress.doneFiles++
    this.#advanceBy(path, 0, 0)
    host.status.emit({ type: 'file', path, action: 'downloaded', bytesFromPeer: 0, bytesReused: 0 })
  }

  #advance(need: ChunkNeed): void {
    this.#advanceBy(need.file.target, need.length, need.file.remote.size)
  }

  /** Progress, at most every 50 ms (and at each file's end). */
  #advanceBy(path: string, bytes: number, fileSize: number): void {
    const progress = this.#progress
    progress.doneBytes += bytes
    const now = Date.now()
    if (now - progress.lastEvent < 50 && progress.doneBytes < progress.totalBytes + this.#waiting.bytes) return
    progress.lastEvent = now
    const seconds = Math.max(0.001, (now - progress.started) / 1000)
    const rate = progress.doneBytes / seconds
    // Everything received so far counts, not only the files already begun.
    const totalBytes = progress.totalBytes + this.#waiting.bytes
    this.#host.status.emit({
      type: 'progress',
      path,
      fileBytes: bytes,
      fileSize,
      doneBytes: progress.doneBytes,
      totalBytes,
      doneFiles: progress.doneFiles,
      totalFiles: progress.totalFiles + this.#waiting.files,
      bytesPerSecond: rate,
      etaSeconds: rate > 0 ? Math.max(0, (totalBytes - progress.doneBytes) / rate) : undefined,
    })
  }
}

