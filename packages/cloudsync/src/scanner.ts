import { lstatSync, readdirSync, readlinkSync, statSync, type Stats } from 'node:fs'
import { join } from 'node:path'
import { FileUnreadableError, FolderMissingError, type SyncError } from './errors.js'
import { hashPool } from './hash-pool.js'
import type { EntryKind, FileRecord, FolderIndex, LocalState, NewRecord } from './folder-index.js'
import type { IgnoreRules } from './ignore-rules.js'
import { bump } from './version-vector.js'

export interface ScanOptions {
  readonly deviceId: string
  /** Bits the engine strips from a peer's mode when it writes a file: a record's 0777 on disk as 0755 is unchanged. */
  readonly umask?: number
  /** Deletions above this share of the files pause for confirmation (default 0.5). */
  readonly maxDeleteShare?: number
  /** Below this many deletions the guard never trips (default 10). */
  readonly minGuardedDeletes?: number
  readonly confirmDeletes?: boolean
  readonly signal?: AbortSignal
  /** Called after each batch of records is committed, so peers can be told at once. */
  readonly onCommitted?: () => void
  /** A file or folder that could not be read: skipped (nothing deleted), tried again next scan. */
  readonly onFileError?: (error: SyncError) => void
}

export interface ScanResult {
  readonly scannedFiles: number
  readonly hashedFiles: number
  readonly hashedBytes: number
  readonly changed: readonly string[]
  readonly deleted: readonly string[]
  /** Paths whose deletion waits for confirmation (the mass-delete guard). */
  readonly pausedDeletes: readonly string[]
  /** Files and folders that could not be read (skipped, reported through onFileError). */
  readonly unreadable: readonly string[]
}

/** The record's mode as written here (less the umask) is what the disk shows. */
function sameMode(recordMode: number, diskMode: number, umask: number): boolean {
  return recordMode === diskMode || (recordMode & ~umask) === diskMode
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}

function unchanged(record: LocalState | undefined, info: Stats, umask: number): boolean {
  return record !== undefined && !record.deleted && record.size === info.size && record.mtimeMs === info.mtimeMs && (record.inode === undefined || record.inode === info.ino) && sameMode(record.mode, info.mode & 0o777, umask)
}

// Metadata calls (stat, readdir) are made blocking: on a local file system each takes a
// few microseconds, and the promise API costs ten to twenty times that in thread-pool hops
// (8,000 lstat/open/fstat/close on /dev/shm: 10 ms blocking, 120–200 ms as promises).
// File contents are read by the hash workers.
const lstatOrUndefined = (path: string): Stats | undefined => lstatSync(path, { throwIfNoEntry: false })

/** Runs `work` over `items` with at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let cursor = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (cursor < items.length) await work(items[cursor++] as T)
  }))
}

/** An error of the file system about one file (EACCES, EIO, ELOOP…), not a bug or an abort. */
function isFileSystemError(error: unknown): error is NodeJS.ErrnoException {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)
}

/** A folder or a symbolic link that is new or changed here (recorded without hashing). */
interface EntryCandidate {
  readonly relative: string
  readonly kind: EntryKind
  readonly target?: string
  readonly info: Stats
  readonly known: LocalState | undefined
}

/** Is this folder or link as its record says (a folder's mode and time are not synced)? */
function sameEntry(known: LocalState | undefined, kind: EntryKind, target: string | undefined): boolean {
  return known !== undefined && !known.deleted && known.kind === kind && (kind === 'dir' || known.target === target)
}

interface Candidate {
  readonly relative: string
  readonly absolute: string
  readonly before: Stats
  /** The record's local fields when the file was listed (its chunk list is read when hashed). */
  readonly known: LocalState | undefined
}

/**
 * Brings the index up to date with the folder, or with some paths of it. Incremental: a
 * file whose size, mtime, inode and mode match its record is not read again, so a rescan
 * of an unchanged folder reads metadata only. Changed content gets a new version; a file
 * that changes while it is hashed, or whose record changed meanwhile (a download landed),
 * is left for the next scan. Records are committed as files finish hashing, in batches,
 * so peers can start fetching a large file before the rest of the folder is scanned.
 */
/** Local deletions within this long are judged together by the mass-delete guard. */
const GUARD_WINDOW_MS = 60_000

export class FolderScanner {
  readonly #root: string
  readonly #index: FolderIndex
  readonly #rules: () => IgnoreRules
  readonly #options: ScanOptions
  /** What this scan could not read (scans run one at a time). */
  #unreadable: string[] = []
  /** Files this device's scans deleted lately: the guard counts them with the next ones. */
  #recentDeletes: { at: number; files: number }[] = []

  constructor(root: string, index: FolderIndex, rules: () => IgnoreRules, options: ScanOptions) {
    this.#root = root
    this.#index = index
    this.#rules = rules
    this.#options = options
  }

  /** The whole folder. */
  async scan(overrides: Partial<ScanOptions> = {}): Promise<ScanResult> {
    const rootStat = statSync(this.#root, { throwIfNoEntry: false })
    if (rootStat === undefined || !rootStat.isDirectory()) throw new FolderMissingError(undefined, { path: this.#root })
    this.#unreadable = []
    // One read of the index (local fields only): each file is compared in memory.
    const known = new Map<string, LocalState>()
    for (const state of this.#index.localStates()) known.set(state.path, state)
    const seen = new Set<string>()
    const candidates: Candidate[] = []
    const entries: EntryCandidate[] = []
    let scannedFiles = 0
    await this.#walk('', known, seen, candidates, entries, () => scannedFiles++)
    let live = 0
    const missing: LocalState[] = []
    for (const state of known.values()) {
      if (state.deleted) continue
      live++
      if (!seen.has(state.path) && !this.#rules().ignores(state.path, false)) missing.push(state)
    }
    known.clear()
    return this.#finish(candidates, entries, scannedFiles, missing, live, overrides)
  }

  /**
   * Only these paths (relative; files or folders, present or gone), as a watcher reports
   * them: a folder is walked, a file compared, a path that is gone and was indexed (or
   * held indexed files) is deleted, or handed to `deferDeletes` to be judged later with
   * others. Everything else in the index is left alone.
   */
  async scanPaths(paths: Iterable<string>, overrides: Partial<ScanOptions> = {}, deferDeletes?: (paths: string[]) => void): Promise<ScanResult> {
    this.#unreadable = []
    const candidates: Candidate[] = []
    const entries: EntryCandidate[] = []
    const missing: LocalState[] = []
    const seen = new Set<string>()
    let scannedFiles = 0
    for (const relative of new Set(paths)) {
      this.#options.signal?.throwIfAborted()
      if (relative === '' || this.#rules().ignores(relative, false)) continue
      const info = lstatOrUndefined(join(this.#root, relative))
      if (info?.isDirectory()) {
        if (this.#rules().ignores(relative, true)) continue
        seen.add(relative)
        const self = this.#index.get(relative)
        if (!sameEntry(self, 'dir', undefined)) entries.push({ relative, kind: 'dir', info, known: self })
        const known = new Map<string, LocalState>()
        for (const record of this.#index.under(relative)) known.set(record.path, record)
        const inside = new Set<string>()
        await this.#walk(relative, known, inside, candidates, entries, () => scannedFiles++)
        for (const path of inside) seen.add(path)
        for (const state of known.values()) if (!state.deleted && !inside.has(state.path)) missing.push(state)
        continue
      }
      const record = this.#index.get(relative)
      if (info?.isSymbolicLink()) {
        const target = this.#readLink(relative)
        if (target !== undefined) {
          seen.add(relative)
          if (!sameEntry(record, 'symlink', target)) entries.push({ relative, kind: 'symlink', target, info, known: record })
        }
        continue
      }
      if (info?.isFile()) {
        seen.add(relative)
        scannedFiles++
        if (!unchanged(record, info, this.#options.umask ?? 0)) candidates.push({ relative, absolute: join(this.#root, relative), before: info, known: record })
        continue
      }
      // Gone (or no longer a file): the file, or the folder and every indexed entry below it.
      if (record !== undefined && !record.deleted) missing.push(record)
      if (info === undefined && (record === undefined || record.kind === 'dir')) for (const below of this.#index.under(relative)) if (!below.deleted) missing.push(below)
    }
    let unique = [...new Map(missing.filter((record) => !seen.has(record.path)).map((record) => [record.path, record])).values()]
    if (deferDeletes !== undefined && unique.length > 0) {
      deferDeletes(unique.map((record) => record.path))
      unique = []
    }
    return this.#finish(candidates, entries, scannedFiles, unique, this.#index.live.files, overrides)
  }

  /** A link's target, or undefined (reported) when it cannot be read. */
  #readLink(relative: string): string | undefined {
    try {
      return readlinkSync(join(this.#root, relative))
    } catch (error) {
      if (isFileSystemError(error) && (error as NodeJS.ErrnoException).code !== 'ENOENT') this.#cannotRead(relative, error, false)
      return undefined
    }
  }

  async #walk(relativeDir: string, known: Map<string, LocalState>, seen: Set<string>, candidates: Candidate[], found: EntryCandidate[], counted: () => void): Promise<void> {
    const umask = this.#options.umask ?? 0
    const directories = [relativeDir]
    while (directories.length > 0) {
      this.#options.signal?.throwIfAborted()
      const current = directories.pop() as string
      let entries
      try {
        entries = readdirSync(join(this.#root, current), { withFileTypes: true })
      } catch (error) {
        // A folder removed mid-scan: its files count as unseen. One that cannot be read is
        // skipped with an error, and what the index holds below it counts as seen (nothing
        // of it is deleted).
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'ENOENT' || code === 'ENOTDIR') continue
        if (!isFileSystemError(error)) throw error
        this.#cannotRead(current, error, true)
        const prefix = current === '' ? '' : `${current}/`
        for (const path of known.keys()) if (path.startsWith(prefix)) seen.add(path)
        continue
      }
      const files: string[] = []
      for (const entry of entries) {
        const relative = (current === '' ? entry.name : `${current}/${entry.name}`).normalize('NFC')
        if (entry.isDirectory()) {
          if (this.#rules().ignores(relative, true)) continue
          directories.push(relative)
          // Folders are synced too (so empty ones are); only a new one makes a record.
          seen.add(relative)
          const state = known.get(relative)
          if (!sameEntry(state, 'dir', undefined)) {
            const info = lstatOrUndefined(join(this.#root, relative))
            if (info?.isDirectory()) found.push({ relative, kind: 'dir', info, known: state })
          }
        } else if (entry.isFile() && !this.#rules().ignores(relative, false)) {
          files.push(relative)
        } else if (entry.isSymbolicLink() && !this.#rules().ignores(relative, false)) {
          // A link is synced as its target text; it is never followed (it could point outside).
          const target = this.#readLink(relative)
          if (target === undefined) continue
          seen.add(relative)
          const state = known.get(relative)
          if (!sameEntry(state, 'symlink', target)) {
            const info = lstatOrUndefined(join(this.#root, relative))
            if (info?.isSymbolicLink()) found.push({ relative, kind: 'symlink', target, info, known: state })
          }
        }
        // Sockets, pipes and devices are not synced.
      }
      for (const relative of files) {
        const absolute = join(this.#root, relative)
        const before = lstatOrUndefined(absolute)
        if (before === undefined || !before.isFile()) continue
        seen.add(relative)
        counted()
        const state = known.get(relative)
        if (!unchanged(state, before, umask)) candidates.push({ relative, absolute, before, known: state })
      }
      // Let the rest of the process run between folders of a large tree.
      if (directories.length > 0 && files.length > 0) await new Promise((resolve) => setImmediate(resolve))
    }
  }

  async #finish(candidates: Candidate[], entries: EntryCandidate[], scannedFiles: number, missing: LocalState[], liveCount: number, overrides: Partial<ScanOptions>): Promise<ScanResult> {
    const options = { ...this.#options, ...overrides }
    const umask = options.umask ?? 0
    const changed: string[] = []
    let hashedFiles = 0
    let hashedBytes = 0
    let pending: NewRecord[] = []
    let lastCommit = Date.now()
    const commit = () => {
      if (pending.length === 0) return
      const batch = pending
      pending = []
      lastCommit = Date.now()
      this.#index.transaction(() => {
        for (const record of batch) this.#index.put(record)
      })
      options.onCommitted?.()
    }
    const hashOne = async ({ relative, absolute, before, known }: Candidate): Promise<void> => {
      options.signal?.throwIfAborted()
      const record = known === undefined ? undefined : this.#index.get(relative)
      if ((record?.sequence ?? -1) !== (known?.sequence ?? -1)) return
      const diskMode = before.mode & 0o777
      // A mode the umask explains is still the synced one (no change to send back).
      const mode = record !== undefined && !record.deleted && sameMode(record.mode, diskMode, umask) ? record.mode : diskMode
      const hashed = await hashPool.hash(absolute, before.size, record?.chunkSize || undefined).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined
        // Unreadable here: skipped, its last version stays; the other files go on.
        if (isFileSystemError(error)) return void this.#cannotRead(relative, error, false)
        throw error
      })
      const after = lstatOrUndefined(absolute)
      // Changed while being hashed: the next scan takes it.
      if (hashed === undefined || after === undefined || after.size !== before.size || after.mtimeMs !== before.mtimeMs || hashed.size !== before.size) return
      // The record changed meanwhile (a download was installed): this is not a local change.
      const current = this.#index.get(relative)
      if ((current?.sequence ?? -1) !== (record?.sequence ?? -1) || pending.some((each) => each.path === relative)) return
      hashedFiles++
      hashedBytes += hashed.size
      if (record !== undefined && !record.deleted && record.mode === mode && sameBytes(record.chunkHashes, hashed.chunkHashes)) {
        this.#index.touch(relative, { mtimeMs: before.mtimeMs, inode: before.ino })
        return
      }
      pending.push({
        path: relative,
        size: hashed.size,
        mtimeMs: before.mtimeMs,
        mode,
        chunkHashes: hashed.chunkHashes,
        chunkLengths: hashed.chunkLengths,
        chunkSize: hashed.chunkSize,
        version: bump(record?.version ?? {}, options.deviceId),
        deleted: false,
        inode: before.ino,
      })
      changed.push(relative)
      // Large files alone, small ones in batches: peers hear of each within 100 ms.
      if (hashed.size >= 8 * 1024 * 1024 || pending.length >= 256 || Date.now() - lastCommit > 100) commit()
    }
    // Folders and links: recorded as they are, no content to read.
    for (const { relative, kind, target, info, known } of entries) {
      const record = this.#index.get(relative)
      if ((record?.sequence ?? -1) !== (known?.sequence ?? -1)) continue
      pending.push({
        path: relative,
        size: 0,
        mtimeMs: info.mtimeMs,
        // A folder's permissions are not synced (two devices that made the same folder must agree on its record).
        mode: kind === 'dir' ? 0o755 : info.mode & 0o777,
        chunkHashes: new Uint8Array(0),
        chunkLengths: [],
        chunkSize: 0,
        version: bump(record?.version ?? {}, options.deviceId),
        deleted: false,
        inode: info.ino,
        kind,
        ...(target === undefined ? {} : { target }),
      })
      changed.push(relative)
    }
    // The largest first: they take longest, and peers can fetch them while the rest hash.
    candidates.sort((a, b) => b.before.size - a.before.size)
    // Enough at once for the pool to send small files in batches.
    await eachLimited(candidates, 64, hashOne)
    commit()
    // The guard counts files (the live count is of files): folders and links go with them.
    const missingFiles = missing.filter((record) => record.kind === undefined).length
    // Deletions of the last minute count too: a slow `rm -rf` reaches the watcher in many
    // small batches, each under the share, which together empty the folder.
    const now = Date.now()
    this.#recentDeletes = options.confirmDeletes === true ? [] : this.#recentDeletes.filter((each) => now - each.at < GUARD_WINDOW_MS)
    const recent = this.#recentDeletes.reduce((sum, each) => sum + each.files, 0)
    const guardTrips =
      options.confirmDeletes !== true &&
      missingFiles > 0 &&
      missingFiles + recent >= (options.minGuardedDeletes ?? 10) &&
      missingFiles + recent > (options.maxDeleteShare ?? 0.5) * (liveCount + recent)
    const deleted: string[] = []
    if (!guardTrips && missing.length > 0) {
      this.#index.transaction(() => {
        for (const record of missing) {
          // Only if nothing changed it since it was read (a download may have brought it back).
          const current = this.#index.get(record.path)
          if (current === undefined || current.deleted || current.sequence !== record.sequence) continue
          this.#index.put(tombstone(current, options.deviceId))
          deleted.push(record.path)
        }
      })
      if (deleted.length > 0) options.onCommitted?.()
      const gone = new Set(deleted)
      const files = missing.filter((record) => record.kind === undefined && gone.has(record.path)).length
      if (files > 0 && options.confirmDeletes !== true) this.#recentDeletes.push({ at: now, files })
    }
    return { scannedFiles, hashedFiles, hashedBytes, changed, deleted, pausedDeletes: guardTrips ? missing.map((record) => record.path) : [], unreadable: [...this.#unreadable] }
  }

  #cannotRead(relative: string, error: NodeJS.ErrnoException, folder: boolean): void {
    this.#unreadable.push(relative)
    const what = relative === '' ? 'The synced folder' : `${folder ? 'The folder' : 'The file'} ${relative}`
    const why = error.code === 'EACCES' || error.code === 'EPERM' ? 'permission denied' : `${error.code}: ${error.message}`
    this.#options.onFileError?.(
      new FileUnreadableError(`${what} cannot be read here (${why}); it was skipped, nothing of it is deleted, the rest syncs, and it is tried again on the next scan. Give this user read access (chmod, chown), or list it in .cloudboxignore.local.`, { path: relative, cause: error }),
    )
  }
}

export function tombstone(record: Pick<FileRecord, 'path' | 'mode' | 'version'>, deviceId: string): NewRecord {
  return { path: record.path, size: 0, mtimeMs: Date.now(), mode: record.mode, chunkHashes: new Uint8Array(0), chunkLengths: [], chunkSize: 0, version: bump(record.version, deviceId), deleted: true }
}
