import { createHash, hash } from 'node:crypto'
import { mkdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { Decoder, Encoder } from 'cbor-x'
import { CHUNK_HASH_LENGTH } from './chunker.js'
import { IndexCorruptedError } from './errors.js'
import { foldName } from './paths.js'
import type { VersionVector } from './version-vector.js'

/** What the index knows of one file. Paths are relative, `/`-separated, NFC. */
export interface FileRecord {
  readonly path: string
  readonly size: number
  readonly mtimeMs: number
  /** Permission bits (0o777 part of the mode). */
  readonly mode: number
  /** Concatenated SHA-256 hashes of the chunks, in order. */
  readonly chunkHashes: Uint8Array
  readonly chunkLengths: readonly number[]
  /** The average chunk size the file was cut with (0 for tombstones); kept across edits. */
  readonly chunkSize: number
  readonly version: VersionVector
  readonly deleted: boolean
  /** Local sequence number of the last change to this record. */
  readonly sequence: number
  /** Local only: the inode, to tell an unchanged file from a replaced one. */
  readonly inode?: number
  /** Local only: the peer this version came from (not announced back to it); absent for a change made here. */
  readonly origin?: string
  /** Absent for a regular file; `dir` for a folder, `symlink` for a symbolic link (size 0, no chunks). */
  readonly kind?: EntryKind
  /** A symbolic link's target, as the link holds it (never followed). */
  readonly target?: string
}

export type EntryKind = 'dir' | 'symlink'
const KIND_CODES = { dir: 1, symlink: 2 } as const
const kindOf = (code: number): EntryKind | undefined => (code === 1 ? 'dir' : code === 2 ? 'symlink' : undefined)

export type NewRecord = Omit<FileRecord, 'sequence'>

/** What a scan compares a file on disk with: a record's local fields, without its chunk list. */
export interface LocalState {
  readonly path: string
  readonly size: number
  readonly mtimeMs: number
  readonly mode: number
  readonly inode?: number
  readonly deleted: boolean
  readonly sequence: number
  readonly chunkSize: number
  readonly kind?: EntryKind
  readonly target?: string
}

/** Where a chunk's bytes can be read locally. */
export interface ChunkLocation {
  readonly path: string
  readonly offset: number
  readonly length: number
}

const INDEX_FILE = 'index.sqlite'
export const INDEX_FORMAT = 2
/** How long a passed integrity check holds for an index closed cleanly since. */
const CHECK_INTERVAL_MS = 24 * 3_600_000
/** Buckets of the Merkle root: the first 12 bits of SHA-256(path). */
export const ROOT_BUCKETS = 4096
const EMPTY_BUCKET = new Uint8Array(32)
/**
 * How long writes wait for others to share their commit. A commit writes every page its
 * group touched to the log, and two of the trees (buckets, chunk hashes) take their keys at
 * random: with 100 ms instead of 25, a receiver of 30,000 tiny files writes each such page
 * once for four times as many files (an ack commits at once, whatever is left).
 */
const GROUP_MS = 100
/** How long a group whose commit failed (a full disk) waits before it is tried again. */
const RETRY_MS = 1_000

const encoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true })
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true })
const sha256 = (...parts: Uint8Array[]) => {
  // One part (the common case): the one-shot hash, without a Hash object.
  if (parts.length === 1) return new Uint8Array(hash('sha256', parts[0] as Uint8Array, 'buffer'))
  const digest = createHash('sha256')
  for (const part of parts) digest.update(part)
  return new Uint8Array(digest.digest())
}

export function chunkHashAt(record: Pick<FileRecord, 'chunkHashes'>, index: number): Uint8Array {
  return record.chunkHashes.subarray(index * CHUNK_HASH_LENGTH, (index + 1) * CHUNK_HASH_LENGTH)
}

/** The digest of a record's synced content and history (not its local mtime, inode or sequence). */
export function recordDigest(record: Pick<FileRecord, 'path' | 'size' | 'mode' | 'chunkHashes' | 'deleted' | 'version' | 'kind' | 'target'>): Uint8Array {
  const version = Object.entries(record.version).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  // A folder or a link adds its kind (and target); a regular file's digest is as before.
  const kind = record.kind === undefined ? [] : [record.kind, record.target ?? '']
  return sha256(encoder.encode([record.path, record.size, record.mode, sha256(record.chunkHashes), record.deleted, version, ...kind]))
}

/** The Merkle bucket of a path. */
export function bucketOf(path: string): number {
  const digest = hash('sha256', path, 'buffer')
  return (digest.readUInt16BE(0) >>> 4) & (ROOT_BUCKETS - 1)
}

/**
 * The root over records: each of 4,096 buckets (by the first 12 bits of SHA-256 of the
 * path) is SHA-256 of its records' digests in path order (UTF-8 bytes), 32 zero bytes when
 * empty; the root is SHA-256 of the buckets in order. A change touches one bucket.
 */
export function merkleRoot(records: Iterable<Pick<FileRecord, 'path' | 'size' | 'mode' | 'chunkHashes' | 'deleted' | 'version' | 'kind' | 'target'>>): Uint8Array {
  const buckets = new Map<number, { path: Buffer; digest: Uint8Array }[]>()
  for (const record of records) {
    const bucket = bucketOf(record.path)
    const list = buckets.get(bucket) ?? []
    list.push({ path: Buffer.from(record.path), digest: recordDigest(record) })
    buckets.set(bucket, list)
  }
  const hash = createHash('sha256')
  for (let bucket = 0; bucket < ROOT_BUCKETS; bucket++) {
    const list = buckets.get(bucket)
    if (list === undefined) hash.update(EMPTY_BUCKET)
    else hash.update(sha256(...list.sort((a, b) => Buffer.compare(a.path, b.path)).map((each) => each.digest)))
  }
  return new Uint8Array(hash.digest())
}

interface Row {
  path: string
  origin: string
  sequence: number
  size: number
  mtime_ms: number
  mode: number
  inode: number
  deleted: number
  chunk_size: number
  chunks: Buffer
  lengths: Buffer
  version: Buffer
  kind: number
  target: string
}

function lengthsBlob(lengths: readonly number[]): Buffer {
  const out = Buffer.allocUnsafe(lengths.length * 4)
  lengths.forEach((length, i) => out.writeUInt32LE(length, i * 4))
  return out
}

function fromRow(row: Row): FileRecord {
  const lengths: number[] = new Array(row.lengths.length / 4)
  for (let i = 0; i < lengths.length; i++) lengths[i] = row.lengths.readUInt32LE(i * 4)
  return {
    path: row.path,
    size: row.size,
    mtimeMs: row.mtime_ms,
    mode: row.mode,
    chunkHashes: new Uint8Array(row.chunks.buffer, row.chunks.byteOffset, row.chunks.byteLength),
    chunkLengths: lengths,
    chunkSize: row.chunk_size,
    version: decoder.decode(row.version) as VersionVector,
    deleted: row.deleted === 1,
    sequence: row.sequence,
    ...(row.inode === 0 ? {} : { inode: row.inode }),
    ...(row.origin === '' ? {} : { origin: row.origin }),
    ...(row.kind === 0 ? {} : { kind: kindOf(row.kind) as EntryKind, ...(row.kind === KIND_CODES.symlink ? { target: row.target } : {}) }),
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS peers (device TEXT PRIMARY KEY, sequence INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
  path TEXT PRIMARY KEY,
  sequence INTEGER NOT NULL UNIQUE,
  folded TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  size INTEGER NOT NULL,
  mtime_ms REAL NOT NULL,
  mode INTEGER NOT NULL,
  inode INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL,
  origin TEXT NOT NULL,
  chunks BLOB NOT NULL,
  lengths BLOB NOT NULL,
  version BLOB NOT NULL,
  digest BLOB NOT NULL,
  kind INTEGER NOT NULL DEFAULT 0,
  target TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_folded ON files (folded) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS files_by_bucket ON files (bucket, path);
CREATE TABLE IF NOT EXISTS buckets (bucket INTEGER PRIMARY KEY, digest BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (hash BLOB PRIMARY KEY, path TEXT NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks (path);
`

/**
 * The folder's index in SQLite (`.cloudbox/index.sqlite`, WAL): one row per path
 * (tombstones included), a local sequence number per change, what each peer has been
 * sent, where each chunk can be read locally, and a Merkle root kept per bucket, so a
 * change to one file writes one row and a few chunk entries whatever the folder's size,
 * and nothing of the index is held in memory but the dirty buckets. Writes are
 * transactions (a crash leaves the previous state); see PROTOCOL.md, "Index".
 */
export class FolderIndex {
  readonly #db: Database.Database
  #sequence: number
  #root: Uint8Array | undefined
  /** Buckets whose digest must be recomputed before the next root. */
  readonly #dirty = new Set<number>()
  /** Buckets marked dirty in the database too (so a crash before the next root redoes them). */
  #markedDirty = new Set<number>()
  /** Counted on first use (a scan of every row: 57 ms at 100,000), then kept as records change. */
  #live: { files: number; bytes: number } | undefined
  readonly #statements: ReturnType<FolderIndex['prepare']>
  /** The write transaction that the writes of the last few milliseconds share (see #group). */
  #grouped: NodeJS.Timeout | undefined
  /** Transaction calls in progress (nested ones run inside the outermost). */
  #depth = 0
  /** The group's writes, each statement with its parameters: made again if the commit fails (see #redo). */
  #written: [Database.Statement, unknown[]][] = []

  private constructor(db: Database.Database) {
    this.#db = db
    this.#statements = this.prepare()
    this.#sequence = Number(this.#statements.getMeta.get('sequence')?.value ?? 0)
    // Buckets marked dirty by a crash between a change and its bucket update.
    for (const row of this.#statements.dirtyBuckets.all() as { bucket: number }[]) {
      this.#dirty.add(row.bucket)
      this.#markedDirty.add(row.bucket)
    }
  }

  private prepare() {
    const db = this.#db
    return {
      getMeta: db.prepare<[string], { value: unknown }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      get: db.prepare<[string], Row>('SELECT * FROM files WHERE path = ?'),
      previous: db.prepare<[string], { deleted: number; size: number; kind: number }>('SELECT deleted, size, kind FROM files WHERE path = ?'),
      put: db.prepare(
        'INSERT INTO files (path, sequence, folded, bucket, size, mtime_ms, mode, inode, deleted, chunk_size, origin, chunks, lengths, version, digest, kind, target) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (path) DO UPDATE SET sequence = excluded.sequence, folded = excluded.folded, size = excluded.size, mtime_ms = excluded.mtime_ms, mode = excluded.mode, inode = excluded.inode, deleted = excluded.deleted, chunk_size = excluded.chunk_size, origin = excluded.origin, chunks = excluded.chunks, lengths = excluded.lengths, version = excluded.version, digest = excluded.digest, kind = excluded.kind, target = excluded.target',
      ),
      touch: db.prepare('UPDATE files SET mtime_ms = ?, inode = ? WHERE path = ?'),
      all: db.prepare<[], Row>('SELECT * FROM files ORDER BY path'),
      // Rows as arrays, read at once: twice as fast as objects row by row (100,000 rows: 250 ms against 500 here).
      states: db.prepare<[], [string, number, number, number, number, number, number, number, number, string]>('SELECT path, size, mtime_ms, mode, inode, deleted, sequence, chunk_size, kind, target FROM files').raw(true),
      under: db.prepare<[string, string], Row>('SELECT * FROM files WHERE path > ? AND path < ? ORDER BY path'),
      since: db.prepare<[number, number], Row>('SELECT * FROM files WHERE sequence > ? ORDER BY sequence LIMIT ?'),
      sinceNotFrom: db.prepare<[number, string, number], Row>('SELECT * FROM files WHERE sequence > ? AND origin <> ? ORDER BY sequence LIMIT ?'),
      bucketDigests: db.prepare<[number], { digest: Buffer }>('SELECT digest FROM files WHERE bucket = ? ORDER BY path'),
      setBucket: db.prepare('INSERT INTO buckets (bucket, digest) VALUES (?, ?) ON CONFLICT (bucket) DO UPDATE SET digest = excluded.digest'),
      dropBucket: db.prepare('DELETE FROM buckets WHERE bucket = ?'),
      buckets: db.prepare<[], { bucket: number; digest: Buffer }>('SELECT bucket, digest FROM buckets'),
      dirtyBuckets: db.prepare<[], { bucket: number }>("SELECT bucket FROM buckets WHERE length(digest) = 0"),
      markDirty: db.prepare("INSERT INTO buckets (bucket, digest) VALUES (?, x'') ON CONFLICT (bucket) DO UPDATE SET digest = x''"),
      folded: db.prepare<[string], { path: string }>('SELECT path FROM files WHERE folded = ? AND deleted = 0'),
      peer: db.prepare<[string], { sequence: number }>('SELECT sequence FROM peers WHERE device = ?'),
      setPeer: db.prepare('INSERT INTO peers (device, sequence) VALUES (?, ?) ON CONFLICT (device) DO UPDATE SET sequence = excluded.sequence'),
      chunk: db.prepare<[Buffer], ChunkLocation>('SELECT path, offset, length FROM chunks WHERE hash = ?'),
      putChunk: db.prepare('INSERT INTO chunks (hash, path, offset, length) VALUES (?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING'),
      dropChunks: db.prepare('DELETE FROM chunks WHERE path = ?'),
      dropChunk: db.prepare('DELETE FROM chunks WHERE hash = ?'),
      live: db.prepare('SELECT count(*) AS files, sum(size) AS bytes FROM files WHERE deleted = 0 AND kind = 0'),
    }
  }

  /**
   * Opens the index, or starts an empty one. A damaged index (or one of another format)
   * is set aside (renamed) and reported through `onCorrupted`; the folder is then rescanned
   * from scratch.
   */
  static async open(stateDir: string, onCorrupted?: (error: IndexCorruptedError) => void): Promise<FolderIndex> {
    mkdirSync(stateDir, { recursive: true })
    const path = join(stateDir, INDEX_FILE)
    try {
      return FolderIndex.#openAt(path)
    } catch (cause) {
      const aside = `${path}.corrupt-${Date.now()}`
      for (const suffix of ['', '-wal', '-shm']) {
        try {
          renameSync(path + suffix, aside + suffix)
        } catch {
          rmSync(path + suffix, { force: true })
        }
      }
      onCorrupted?.(new IndexCorruptedError(`The sync index was damaged; it was moved to ${aside} and the folder is rescanned.`, { cause }))
      return FolderIndex.#openAt(path)
    }
  }

  static #openAt(path: string): FolderIndex {
    const db = new Database(path)
    try {
      db.pragma('journal_mode = WAL')
      // Durable at each checkpoint, consistent always: a crash loses at most the last
      // changes, which the next scan or session makes again.
      db.pragma('synchronous = NORMAL')
      // 16 MiB of pages: at 4 MiB, SQLite re-read pages of the random-keyed trees through
      // pread for every other file (measured with 30,000 tiny files, both sides: SQLite,
      // its reads and writes 22-24% of the CPU time; 14-17% with this).
      db.pragma('cache_size = -16384')
      // The check reads every page (92 ms at 100,000 files, at each `sync --once`): it runs
      // unless the last session closed the index cleanly and a check passed within a day.
      const meta = (key: string): unknown => {
        try {
          return (db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value?: unknown } | undefined)?.value
        } catch {
          return undefined
        }
      }
      const checkedAt = Number(meta('checked_at') ?? 0)
      const checkDue = meta('closed_clean') !== 1 || !(Date.now() - checkedAt < CHECK_INTERVAL_MS)
      if (checkDue) {
        const check = db.pragma('quick_check', { simple: true })
        if (check !== 'ok') throw new Error(`quick_check: ${String(check)}`)
      }
      db.exec(SCHEMA)
      // Open now: a crash before the next clean close makes the next open check again.
      const setMeta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
      setMeta.run('closed_clean', 0)
      if (checkDue) setMeta.run('checked_at', Date.now())
      // Indexes from before folders and links were synced: the two columns, empty.
      const columns = (db.pragma('table_info(files)') as { name: string }[]).map((column) => column.name)
      if (!columns.includes('kind')) db.exec("ALTER TABLE files ADD COLUMN kind INTEGER NOT NULL DEFAULT 0; ALTER TABLE files ADD COLUMN target TEXT NOT NULL DEFAULT ''")
      const format = meta('format')
      if (format === undefined) setMeta.run('format', INDEX_FORMAT)
      else if (Number(format) !== INDEX_FORMAT) throw new Error(`index format ${String(format)}`)
      return new FolderIndex(db)
    } catch (error) {
      db.close()
      throw error
    }
  }

  get sequence(): number {
    return this.#sequence
  }

  get(path: string): FileRecord | undefined {
    const row = this.#statements.get.get(path)
    return row === undefined ? undefined : fromRow(row)
  }

  /** Every record (tombstones included), in path order, read as iterated. */
  *records(): IterableIterator<FileRecord> {
    for (const row of this.#statements.all.iterate()) yield fromRow(row)
  }

  /** Every record's local fields (no chunk lists): what a rescan compares the disk with. */
  *localStates(): IterableIterator<LocalState> {
    for (const [path, size, mtimeMs, mode, inode, deleted, sequence, chunkSize, kind, target] of this.#statements.states.all()) {
      const state: { -readonly [K in keyof LocalState]: LocalState[K] } = { path, size, mtimeMs, mode, deleted: deleted === 1, sequence, chunkSize }
      if (inode !== 0) state.inode = inode
      if (kind !== 0) {
        state.kind = kindOf(kind) as EntryKind
        state.target = target
      }
      yield state
    }
  }

  /** The records below a folder (`a/b` → `a/b/…`), in path order. */
  under(folder: string): FileRecord[] {
    // Paths below `a/b/` sort between "a/b/" and "a/b0" ('0' follows '/').
    return this.#statements.under.all(`${folder}/`, `${folder}0`).map(fromRow)
  }

  /** Live (not deleted) files and their bytes, kept as records change. */
  get live(): { readonly files: number; readonly bytes: number } {
    if (this.#live === undefined) {
      const live = this.#statements.live.get() as { files: number | null; bytes: number | null }
      this.#live = { files: Number(live.files ?? 0), bytes: Number(live.bytes ?? 0) }
    }
    return this.#live
  }

  /**
   * Runs `work` as one transaction: all its writes land together, or none. It is part of
   * the group's commit (see #group) with no savepoint of its own: a savepoint and its
   * release cost 40 µs, four times a put's own writes. Instead an error inside rolls the
   * whole group back (only a failing disk or a full one makes a write fail here); what was
   * lost is on disk and found again by the next scan. Nested calls are part of the outer one,
   * so an error thrown inside must not be caught there and carried on from.
   */
  transaction<T>(work: () => T): T {
    if (this.#depth > 0) return work()
    this.#group()
    const before = this.#written.length
    this.#depth++
    try {
      return work()
    } catch (error) {
      this.#redo(before)
      throw error
    } finally {
      this.#depth--
    }
  }

  /** A write of the group, kept so that a failed commit can make it again. */
  #write(statement: Database.Statement, ...parameters: unknown[]): void {
    statement.run(...parameters)
    this.#written.push([statement, parameters])
  }

  /**
   * Writes made within {@link GROUP_MS} share one commit, made then (or at {@link commit}):
   * a commit writes every page its writes touched to the log, about 45 µs a file when each
   * small file installed commits alone, and the files of a transfer finish in different
   * turns of the event loop. A commit that fails (a full disk) is tried again every
   * {@link RETRY_MS} with the group's writes made again, so nothing that was installed loses
   * its record while the disk is full; a crash loses at most the group's writes, which the
   * next scan finds again from the disk.
   */
  #group(): void {
    if (this.#grouped !== undefined || this.#db.inTransaction) return
    this.#db.exec('BEGIN')
    this.#grouped = setTimeout(this.#commitLater, GROUP_MS)
  }

  readonly #commitLater = () => {
    try {
      this.commit()
    } catch {
      // Made again and tried later (see #redo).
    }
  }

  /** Commits the writes made so far in this group; @throws the database's error (rolled back then). */
  commit(): void {
    const grouped = this.#grouped
    if (grouped === undefined) return
    clearTimeout(grouped)
    this.#grouped = undefined
    try {
      // The last sequence number given out, once per commit rather than with every record.
      this.#statements.setMeta.run('sequence', this.#sequence)
      this.#db.exec('COMMIT')
      this.#written = []
    } catch (error) {
      this.#redo(this.#written.length)
      throw error
    }
  }

  /**
   * Rolls the group back and makes its first `keep` writes again in a new one, committed
   * {@link RETRY_MS} later: the writes of a transaction that failed go, the others stay.
   * SQLite rolls the whole transaction back when a commit meets a full disk; the writes
   * themselves only fill its page cache, so making them again works while the disk is full.
   * If even that fails, the group is lost and memory reads again what the database holds.
   */
  #redo(keep: number): void {
    if (this.#grouped !== undefined) clearTimeout(this.#grouped)
    this.#grouped = undefined
    if (this.#db.inTransaction) this.#db.exec('ROLLBACK')
    const kept = this.#written.slice(0, keep)
    this.#written = []
    if (kept.length > 0) {
      try {
        this.#db.exec('BEGIN')
        for (const [statement, parameters] of kept) statement.run(...parameters)
        this.#written = kept
        this.#grouped = setTimeout(this.#commitLater, RETRY_MS)
      } catch {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK')
        this.#written = []
      }
    }
    // Sequence numbers only go forward (peers were told some); the rest is read again.
    this.#live = undefined
    this.#markedDirty = new Set()
    for (const row of this.#statements.dirtyBuckets.all() as { bucket: number }[]) {
      this.#dirty.add(row.bucket)
      this.#markedDirty.add(row.bucket)
    }
    this.#root = undefined
  }

  /** Stores a changed record under the next sequence number. */
  put(record: NewRecord): FileRecord {
    return this.transaction(() => {
      const previous = this.#statements.previous.get(record.path)
      const stored: FileRecord = { ...record, sequence: ++this.#sequence }
      const bucket = bucketOf(record.path)
      // Positional parameters, in the statement's column order: binding names costs more.
      this.#write(
        this.#statements.put,
        record.path,
        stored.sequence,
        foldName(record.path),
        bucket,
        record.size,
        record.mtimeMs,
        record.mode,
        record.inode ?? 0,
        record.deleted ? 1 : 0,
        record.chunkSize,
        record.origin ?? '',
        Buffer.from(record.chunkHashes.buffer, record.chunkHashes.byteOffset, record.chunkHashes.byteLength),
        lengthsBlob(record.chunkLengths),
        encoder.encode(record.version),
        recordDigest(record),
        record.kind === undefined ? 0 : KIND_CODES[record.kind],
        record.target ?? '',
      )
      if (!this.#markedDirty.has(bucket)) {
        this.#write(this.#statements.markDirty, bucket)
        this.#markedDirty.add(bucket)
      }
      this.#dirty.add(bucket)
      this.#root = undefined
      if (previous !== undefined && previous.deleted === 0) {
        if (previous.kind === 0 && this.#live !== undefined) this.#live = { files: this.#live.files - 1, bytes: this.#live.bytes - previous.size }
        this.#write(this.#statements.dropChunks, record.path)
      }
      if (!record.deleted && record.kind === undefined) {
        if (this.#live !== undefined) this.#live = { files: this.#live.files + 1, bytes: this.#live.bytes + record.size }
        let offset = 0
        record.chunkLengths.forEach((length, i) => {
          this.#write(this.#statements.putChunk, Buffer.from(chunkHashAt(record, i)), record.path, offset, length)
          offset += length
        })
      }
      return stored
    })
  }

  /** Updates local-only fields (mtime, inode) without a new sequence number. */
  touch(path: string, fields: { mtimeMs: number; inode?: number }): void {
    this.#group()
    this.#write(this.#statements.touch, fields.mtimeMs, fields.inode ?? 0, path)
  }

  /**
   * Where a chunk may be read locally. An entry can go stale when a file changes on disk
   * before the next scan, so readers verify the hash and call {@link forgetChunk} when it
   * does not match.
   */
  locateChunk(hash: Uint8Array): ChunkLocation | undefined {
    return this.#statements.chunk.get(Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength))
  }

  forgetChunk(hash: Uint8Array): void {
    this.#group()
    this.#write(this.#statements.dropChunk, Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength))
  }

  /** A live path other than `path` that a case-insensitive, normalizing disk would take for it, if any. */
  caseClash(path: string): string | undefined {
    for (const row of this.#statements.folded.all(foldName(path))) if (row.path !== path) return row.path
    return undefined
  }

  /** Up to `limit` records changed after `sequence`, in sequence order. */
  changedSince(sequence: number, limit = Number.MAX_SAFE_INTEGER): FileRecord[] {
    return this.#statements.since.all(sequence, limit).map(fromRow)
  }

  /**
   * Up to `limit` records changed after `sequence` that did not come from `origin`, and
   * the sequence number up to which every record was looked at (what came from `origin`
   * is skipped in the database, not decoded: a receiver installing 100,000 files from
   * one peer has nothing to tell that peer about them).
   */
  changedSinceNotFrom(sequence: number, origin: string, limit: number): { records: FileRecord[]; upTo: number } {
    const records = this.#statements.sinceNotFrom.all(sequence, origin, limit).map(fromRow)
    const upTo = records.length < limit ? this.#sequence : (records[records.length - 1] as FileRecord).sequence
    return { records, upTo }
  }

  peerSequence(peer: string): number {
    return this.#statements.peer.get(peer)?.sequence ?? 0
  }

  setPeerSequence(peer: string, sequence: number): void {
    this.#group()
    this.#write(this.#statements.setPeer, peer, sequence)
  }

  root(): Uint8Array {
    if (this.#root === undefined) {
      if (this.#dirty.size > 0) {
        this.transaction(() => {
          for (const bucket of this.#dirty) {
            const digests = this.#statements.bucketDigests.all(bucket).map((row) => row.digest)
            if (digests.length === 0) this.#write(this.#statements.dropBucket, bucket)
            else this.#write(this.#statements.setBucket, bucket, Buffer.from(sha256(...digests)))
            this.#markedDirty.delete(bucket)
          }
        })
        this.#dirty.clear()
      }
      const all = new Uint8Array(ROOT_BUCKETS * 32)
      for (const row of this.#statements.buckets.all()) all.set(row.digest, row.bucket * 32)
      this.#root = sha256(all)
    }
    return this.#root
  }

  /** Writes everything to disk (a checkpoint of the write-ahead log). */
  flush(): void {
    this.commit()
    this.#db.pragma('wal_checkpoint(PASSIVE)')
  }

  close(): void {
    if (!this.#db.open) return
    try {
      this.root()
      this.#group()
      this.#statements.setMeta.run('closed_clean', 1)
      this.commit()
      this.#db.pragma('wal_checkpoint(TRUNCATE)')
    } catch {
      // A full disk can refuse the checkpoint; the write-ahead log still holds every commit
      // and the next open replays it, so closing must not fail (nor leave the file open).
    } finally {
      clearTimeout(this.#grouped)
      this.#grouped = undefined
      this.#db.close()
    }
  }
}
