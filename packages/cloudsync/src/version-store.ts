import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, closeSync, constants, copyFileSync, createReadStream, existsSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statfsSync, utimesSync } from 'node:fs'
import { dirname, join } from 'node:path'
import Database from 'better-sqlite3'
import { UnsafePathError, VersionNotFoundError } from './errors.js'
import { prepareParents } from './file-assembler.js'
import { STATE_DIR } from './paths.js'

/**
 * How long replaced and deleted files are kept.
 * - `trash`: every version, for `days` days.
 * - `simple`: the last `keep` versions of each file (and none older than `days`, when given).
 * - `staggered` (as Syncthing does): all from the last 30 s, then one per 30 s for the first
 *   hour, one per hour for the first day, one per day for the first 30 days, one per week
 *   after that; none older than `days`.
 * - `off`: nothing is kept.
 */
export type VersionPolicy =
  | { readonly kind: 'off' }
  | { readonly kind: 'trash'; readonly days: number }
  | { readonly kind: 'simple'; readonly keep: number; readonly days?: number }
  | { readonly kind: 'staggered'; readonly days: number }

export const DEFAULT_VERSION_POLICY: VersionPolicy = { kind: 'staggered', days: 30 }
/** Kept versions may fill at most this share of the folder's file system (oldest go first). */
export const DEFAULT_VERSIONS_DISK_SHARE = 0.1

export interface VersionsOptions {
  readonly policy?: VersionPolicy
  /** Share of the file system's size the kept versions may take, 0–1 (default 0.1). */
  readonly maxDiskShare?: number
  /** This device's name, for versions of changes made here. */
  readonly deviceId?: string
}

/** Why a version was kept. */
export type VersionReason = 'deleted' | 'replaced' | 'restore'

/** One kept copy of a file. */
export interface KeptVersion {
  /** Stable name of this version: `YYYYMMDD-HHMMSS-xxxx` (UTC time it was kept). */
  readonly id: string
  /** The file's path in the folder (relative, `/`-separated). */
  readonly path: string
  /** When it was replaced or deleted (ms since the epoch). */
  readonly keptAt: number
  /** The file's modification time then. */
  readonly mtimeMs: number
  readonly size: number
  /** Permission bits. */
  readonly mode: number
  /** The device this content came from: the peer that sent it, or this device for a change made here. */
  readonly device: string
  /** The device whose change replaced or deleted it. */
  readonly replacedBy: string
  /** `deleted` or `replaced` by a change, or set aside by a restore (`restore`). */
  readonly reason: VersionReason
}

const VERSIONS_DIR = 'versions'
const CATALOG = 'catalog.sqlite'
const ID = /^\d{8}-\d{6}-[0-9a-f]{4}$/
const HOUR = 3_600_000
const DAY = 24 * HOUR
/** Data files without a catalog row (a crash between the two) are removed when older than this. */
const ORPHAN_AGE_MS = 10 * 60_000

interface Row {
  id: string
  path: string
  kept_at: number
  mtime_ms: number
  size: number
  mode: number
  device: string
  replaced_by: string
  reason: VersionReason
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS versions (
  id TEXT PRIMARY KEY,
  path TEXT NOT NULL,
  kept_at INTEGER NOT NULL,
  mtime_ms REAL NOT NULL,
  size INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  device TEXT NOT NULL,
  replaced_by TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_by_path ON versions (path, kept_at);
CREATE INDEX IF NOT EXISTS versions_by_time ON versions (kept_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
`

const toVersion = (row: Row): KeptVersion => ({
  id: row.id,
  path: row.path,
  keptAt: row.kept_at,
  mtimeMs: row.mtime_ms,
  size: row.size,
  mode: row.mode,
  device: row.device,
  replacedBy: row.replaced_by,
  reason: row.reason,
})

function newId(now: number): string {
  const iso = new Date(now).toISOString() // 2026-12-01T14:43:47.123Z
  return `${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}-${randomBytes(2).toString('hex')}`
}

/** Checks a policy given by a caller; throws RangeError with what is wrong. */
export function checkVersionPolicy(policy: VersionPolicy): VersionPolicy {
  const days = (value: unknown, name: string) => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new RangeError(`${name}: a number of days above 0`)
  }
  switch (policy?.kind) {
    case 'off':
      return policy
    case 'trash':
    case 'staggered':
      days(policy.days, `versions.${policy.kind}.days`)
      return policy
    case 'simple':
      if (!Number.isSafeInteger(policy.keep) || policy.keep < 1) throw new RangeError('versions.simple.keep: a whole number of versions, at least 1')
      if (policy.days !== undefined) days(policy.days, 'versions.simple.days')
      return policy
    default:
      throw new RangeError('versions.policy: one of off, trash, simple, staggered')
  }
}

/** Which of one file's versions (newest first) a staggered policy keeps at `now`. */
function staggeredKeeps(versions: readonly KeptVersion[], now: number): Set<string> {
  const keep = new Set<string>()
  let lastKept: number | undefined
  for (const version of versions) {
    const age = now - version.keptAt
    const interval = age < 30_000 ? 0 : age < HOUR ? 30_000 : age < DAY ? HOUR : age < 30 * DAY ? DAY : 7 * DAY
    // Within the same interval as a newer kept one: that one stands for both.
    if (lastKept !== undefined && lastKept - version.keptAt < interval) continue
    keep.add(version.id)
    lastKept = version.keptAt
  }
  return keep
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const digest = (path: string) =>
    new Promise<string>((resolve, reject) => {
      const hash = createHash('sha256')
      createReadStream(path).on('data', (chunk) => hash.update(chunk)).on('error', reject).on('end', () => resolve(hash.digest('hex')))
    })
  const [x, y] = await Promise.all([digest(a), digest(b)])
  return x === y
}

/**
 * The versions kept of one synced folder: the files a peer's change (or the server's API)
 * replaced or deleted, under `.cloudbox/versions/` (never synced). A replaced file is kept
 * as a hard link to its old content, a deleted one by renaming it there: no byte is copied
 * where the file system allows it. The catalog is SQLite, so a running `sync` and a
 * `cloudbox versions` or `restore` in another process can use it at once.
 */
export class VersionStore {
  readonly folder: string
  readonly dir: string
  readonly #db: Database.Database
  #policy: VersionPolicy
  readonly #maxDiskShare: number
  readonly #deviceId: string
  #closed = false
  readonly #statements

  private constructor(folder: string, db: Database.Database, options: VersionsOptions) {
    this.folder = folder
    this.dir = join(folder, STATE_DIR, VERSIONS_DIR)
    this.#db = db
    this.#statements = {
      insert: db.prepare('INSERT INTO versions (id, path, kept_at, mtime_ms, size, mode, device, replaced_by, reason) VALUES (@id, @path, @keptAt, @mtimeMs, @size, @mode, @device, @replacedBy, @reason)'),
      get: db.prepare<[string], Row>('SELECT * FROM versions WHERE id = ?'),
      ofPath: db.prepare<[string], Row>('SELECT * FROM versions WHERE path = ? ORDER BY kept_at DESC, id DESC'),
      under: db.prepare<[string, string], Row>('SELECT * FROM versions WHERE path >= ? AND path < ? ORDER BY path, kept_at DESC, id DESC'),
      all: db.prepare<[], Row>('SELECT * FROM versions ORDER BY path, kept_at DESC, id DESC'),
      recent: db.prepare<[number], Row>('SELECT * FROM versions ORDER BY kept_at DESC, id DESC LIMIT ?'),
      olderThan: db.prepare<[number], Row>('SELECT * FROM versions WHERE kept_at < ?'),
      oldest: db.prepare<[], Row>('SELECT * FROM versions ORDER BY kept_at, id LIMIT 64'),
      paths: db.prepare<[], { path: string }>('SELECT DISTINCT path FROM versions'),
      remove: db.prepare('DELETE FROM versions WHERE id = ?'),
      total: db.prepare<[], { bytes: number | null }>('SELECT sum(size) AS bytes FROM versions'),
      ids: db.prepare<[string], { id: string }>('SELECT id FROM versions WHERE id = ?'),
      meta: db.prepare<[string], { value: unknown }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    }
    // A policy or share given once is remembered: later runs without one keep to it.
    const stored = (key: string) => {
      const value = this.#statements.meta.get(key)?.value
      return typeof value === 'string' ? (JSON.parse(value) as unknown) : undefined
    }
    this.#policy = checkVersionPolicy(options.policy ?? (stored('policy') as VersionPolicy | undefined) ?? DEFAULT_VERSION_POLICY)
    const share = options.maxDiskShare ?? (stored('maxDiskShare') as number | undefined) ?? DEFAULT_VERSIONS_DISK_SHARE
    if (typeof share !== 'number' || !(share > 0 && share <= 1)) throw new RangeError('versions.maxDiskShare: a share of the disk above 0, at most 1')
    this.#maxDiskShare = share
    if (options.policy !== undefined) this.#statements.setMeta.run('policy', JSON.stringify(options.policy))
    if (options.maxDiskShare !== undefined) this.#statements.setMeta.run('maxDiskShare', JSON.stringify(options.maxDiskShare))
    const deviceId = options.deviceId ?? (this.#statements.meta.get('device')?.value as string | undefined)
    this.#deviceId = deviceId ?? 'this-device'
    if (options.deviceId !== undefined) this.#statements.setMeta.run('device', options.deviceId)
  }

  /** Opens (or starts) the version store of `folder`. */
  static open(folder: string, options: VersionsOptions = {}): VersionStore {
    const dir = join(folder, STATE_DIR, VERSIONS_DIR)
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const db = new Database(join(dir, CATALOG))
    try {
      db.pragma('journal_mode = WAL')
      db.pragma('synchronous = NORMAL')
      // The engine and a command in another process may write at once.
      db.pragma('busy_timeout = 5000')
      db.exec(SCHEMA)
      return new VersionStore(folder, db, options)
    } catch (error) {
      db.close()
      throw error
    }
  }

  /** True when `folder` has kept versions (or a catalog for them). */
  static exists(folder: string): boolean {
    return existsSync(join(folder, STATE_DIR, VERSIONS_DIR, CATALOG))
  }

  get policy(): VersionPolicy {
    return this.#policy
  }

  set policy(policy: VersionPolicy) {
    this.#policy = checkVersionPolicy(policy)
    this.#statements.setMeta.run('policy', JSON.stringify(policy))
  }

  /** Share of the file system the kept versions may take. */
  get maxDiskShare(): number {
    return this.#maxDiskShare
  }

  get enabled(): boolean {
    return this.#policy.kind !== 'off'
  }

  /** Bytes the kept versions take (as recorded). */
  get bytes(): number {
    return this.#statements.total.get()?.bytes ?? 0
  }

  #data(id: string): string {
    return join(this.dir, id)
  }

  /**
   * Keeps the file at `path` before a change replaces or deletes it: `move` takes it out of
   * the folder (a deletion), otherwise a hard link (a copy where links are not possible)
   * keeps its content while the caller renames the new file over it. Returns undefined when
   * versions are off, or the file is not a regular file.
   */
  keep(path: string, how: { readonly move: boolean; readonly reason: VersionReason; readonly device?: string; readonly replacedBy?: string }): KeptVersion | undefined {
    if (this.#closed || !this.enabled) return undefined
    const absolute = join(this.folder, path)
    const info = lstatSync(absolute, { throwIfNoEntry: false })
    if (info === undefined || !info.isFile()) return undefined
    const now = Date.now()
    let id = newId(now)
    while (this.#statements.ids.get(id) !== undefined) id = newId(now)
    const data = this.#data(id)
    if (how.move) renameSync(absolute, data)
    else {
      try {
        linkSync(absolute, data)
      } catch {
        // FAT, some network shares: a copy (a clone where the file system can).
        copyFileSync(absolute, data, constants.COPYFILE_FICLONE)
      }
    }
    const version: KeptVersion = {
      id,
      path,
      keptAt: now,
      mtimeMs: info.mtimeMs,
      size: info.size,
      mode: info.mode & 0o777,
      device: how.device ?? this.#deviceId,
      replacedBy: how.replacedBy ?? this.#deviceId,
      reason: how.reason,
    }
    try {
      this.#statements.insert.run(version)
    } catch (error) {
      // Not recorded: undo, so nothing is lost or left unnamed.
      if (how.move) renameSync(data, absolute)
      else rmSync(data, { force: true })
      throw error
    }
    this.#pruneSome([path], now)
    return version
  }

  get(id: string): KeptVersion | undefined {
    if (!ID.test(id)) return undefined
    const row = this.#statements.get.get(id)
    return row === undefined ? undefined : toVersion(row)
  }

  /** Versions of a file, or of every file under a folder (`''`: the whole folder); newest first per file. */
  list(path = ''): KeptVersion[] {
    if (path === '') return this.#statements.all.all().map(toVersion)
    const own = this.#statements.ofPath.all(path).map(toVersion)
    // Below the folder `path`: paths from "path/" to "path0" ('0' follows '/').
    const below = this.#statements.under.all(`${path}/`, `${path}0`).map(toVersion)
    return [...own, ...below]
  }

  /** The newest versions of the folder, newest first. */
  recent(limit = 50): KeptVersion[] {
    return this.#statements.recent.all(limit).map(toVersion)
  }

  /** The version a plain `restore` of `path` brings back: the newest one a change set aside (not one a restore did). */
  newest(path: string): KeptVersion | undefined {
    const versions = this.#statements.ofPath.all(path).map(toVersion)
    return versions.find((version) => version.reason !== 'restore') ?? versions[0]
  }

  /**
   * Brings a version back. Into the folder (`to` absent): written beside its path and
   * renamed over it, as a change of this device that syncs to every peer; what the path held
   * is kept as a version first (reason `restore`). With `to`: a copy at that absolute path,
   * and the folder is not touched. Returns false when the file there already has this content.
   * @throws {VersionNotFoundError} when the version is unknown or its data is gone.
   * @throws {UnsafePathError} when the path is a folder or a link, or goes through one.
   */
  async restore(id: string, options: { readonly to?: string; readonly replacedBy?: string } = {}): Promise<{ version: KeptVersion; path: string; changed: boolean }> {
    const version = this.get(id)
    if (version === undefined) throw new VersionNotFoundError(`No kept version has the ID ${id}; run cloudbox versions PATH to list them.`)
    const data = this.#data(id)
    if (!existsSync(data)) throw new VersionNotFoundError(`The data of version ${id} is gone (removed by hand?); choose another version.`, { path: version.path })
    const target = options.to ?? join(this.folder, version.path)
    if (options.to === undefined) prepareParents(this.folder, version.path)
    else mkdirSync(dirname(target), { recursive: true })
    const current = lstatSync(target, { throwIfNoEntry: false })
    if (current !== undefined && !current.isFile()) throw new UnsafePathError(`${target} is a folder or a link, not a file; move it away to restore ${version.path} there.`, { path: version.path })
    if (current !== undefined && current.size === version.size && (await sameContent(target, data))) return { version, path: target, changed: false }
    const temporary = options.to === undefined ? join(this.folder, STATE_DIR, 'partial', `restore-${id}-${randomBytes(4).toString('hex')}`) : `${target}.cloudbox-restore-${randomBytes(4).toString('hex')}`
    mkdirSync(dirname(temporary), { recursive: true })
    try {
      copyFileSync(data, temporary, constants.COPYFILE_FICLONE)
      chmodSync(temporary, version.mode)
      utimesSync(temporary, new Date(), new Date(version.mtimeMs))
      const fd = openSync(temporary, constants.O_RDONLY)
      try {
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      if (options.to === undefined && current !== undefined) this.keep(version.path, { move: false, reason: 'restore', device: this.#authorOf(version.path), ...(options.replacedBy === undefined ? {} : { replacedBy: options.replacedBy }) })
      renameSync(temporary, target)
    } catch (error) {
      rmSync(temporary, { force: true })
      throw error
    }
    return { version, path: target, changed: true }
  }

  /** Who made the file now at `path`, per the sync index (read only; the engine may be running). */
  #authorOf(path: string): string {
    const indexPath = join(this.folder, STATE_DIR, 'index.sqlite')
    if (!existsSync(indexPath)) return this.#deviceId
    try {
      const db = new Database(indexPath, { readonly: true, fileMustExist: true })
      try {
        db.pragma('busy_timeout = 2000')
        const row = db.prepare<[string], { origin: string | null }>('SELECT origin FROM files WHERE path = ?').get(path)
        return row?.origin || this.#deviceId
      } finally {
        db.close()
      }
    } catch {
      return this.#deviceId
    }
  }

  /**
   * Applies the policy and the disk bound: versions past their time go, and while the kept
   * bytes exceed their share of the disk, the oldest go. Returns how many were removed.
   */
  prune(now = Date.now()): number {
    if (this.#closed) return 0
    const paths = this.#statements.paths.all().map((row) => row.path)
    let removed = this.#pruneSome(paths, now)
    removed += this.#pruneOld(now)
    removed += this.#pruneToDisk()
    removed += this.#removeOrphans(now)
    return removed
  }

  #drop(row: Pick<Row, 'id'>): void {
    // The row first: a data file without a row is an orphan (swept later), never a row without data.
    this.#statements.remove.run(row.id)
    rmSync(this.#data(row.id), { force: true })
  }

  #pruneSome(paths: readonly string[], now: number): number {
    const policy = this.#policy
    if (policy.kind === 'trash' || policy.kind === 'off') return 0
    let removed = 0
    for (const path of paths) {
      const versions = this.#statements.ofPath.all(path).map(toVersion)
      const keep = policy.kind === 'simple' ? new Set(versions.slice(0, policy.keep).map((version) => version.id)) : staggeredKeeps(versions, now)
      for (const version of versions) {
        if (keep.has(version.id)) continue
        this.#drop(version)
        removed++
      }
    }
    return removed
  }

  #pruneOld(now: number): number {
    const policy = this.#policy
    const days = policy.kind === 'off' ? undefined : policy.days
    if (days === undefined) return 0
    const rows = this.#statements.olderThan.all(now - days * DAY)
    for (const row of rows) this.#drop(row)
    return rows.length
  }

  #pruneToDisk(): number {
    let limit: number
    try {
      const fs = statfsSync(this.dir)
      limit = fs.blocks * fs.bsize * this.#maxDiskShare
    } catch {
      return 0
    }
    let removed = 0
    let bytes = this.bytes
    while (bytes > limit) {
      const rows = this.#statements.oldest.all()
      if (rows.length === 0) break
      for (const row of rows) {
        if (bytes <= limit) break
        this.#drop(row)
        bytes -= row.size
        removed++
      }
    }
    return removed
  }

  #removeOrphans(now: number): number {
    let removed = 0
    for (const name of readdirSync(this.dir)) {
      if (!ID.test(name) || this.#statements.ids.get(name) !== undefined) continue
      const info = lstatSync(join(this.dir, name), { throwIfNoEntry: false })
      if (info === undefined || now - info.ctimeMs < ORPHAN_AGE_MS) continue
      rmSync(join(this.dir, name), { force: true })
      removed++
    }
    return removed
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#db.close()
  }
}
