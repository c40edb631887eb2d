import type { Stats } from 'node:fs'
import { lstat, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { FolderMissingError } from './errors.js'
import { hashPool } from './hash-pool.js'
import type { FileRecord, FolderIndex } from './folder-index.js'
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
  readonly onFile?: (path: string, bytes: number) => void
}

export interface ScanResult {
  readonly scannedFiles: number
  readonly hashedFiles: number
  readonly hashedBytes: number
  readonly changed: readonly string[]
  readonly deleted: readonly string[]
  /** Paths whose deletion waits for confirmation (the mass-delete guard). */
  readonly pausedDeletes: readonly string[]
}

/** The record's mode as written here (less the umask) is what the disk shows. */
function sameMode(recordMode: number, diskMode: number, umask: number): boolean {
  return recordMode === diskMode || (recordMode & ~umask) === diskMode
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}

/**
 * Brings the index up to date with the folder. Incremental: a file whose size, mtime and
 * inode match its record is not read again. Changed content gets a new version; a file
 * that changes while it is hashed is left for the next scan.
 */
export async function scanFolder(root: string, index: FolderIndex, rules: IgnoreRules, options: ScanOptions): Promise<ScanResult> {
  const umask = options.umask ?? 0
  const rootStat = await stat(root).catch(() => undefined)
  if (rootStat === undefined || !rootStat.isDirectory()) throw new FolderMissingError(undefined, { path: root })
  const seen = new Set<string>()
  const changed: string[] = []
  let scannedFiles = 0
  let hashedFiles = 0
  let hashedBytes = 0

  // First walk the tree (cheap), then hash what changed, several files at once on the
  // worker threads.
  const candidates: { relative: string; absolute: string; before: Stats; record: FileRecord | undefined }[] = []
  const visit = async (relativeDir: string): Promise<void> => {
    options.signal?.throwIfAborted()
    let entries
    try {
      entries = await readdir(join(root, relativeDir), { withFileTypes: true })
    } catch (error) {
      // A folder removed or unreadable mid-scan: its files count as unseen only if it is gone.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
      throw error
    }
    for (const entry of entries) {
      const relative = (relativeDir === '' ? entry.name : `${relativeDir}/${entry.name}`).normalize('NFC')
      if (entry.isDirectory()) {
        if (!rules.ignores(relative, true)) await visit(relative)
        continue
      }
      // Symbolic links and special files are not synced (a link could point outside).
      if (!entry.isFile() || rules.ignores(relative, false)) continue
      const absolute = join(root, relative)
      const before = await lstat(absolute).catch(() => undefined)
      if (before === undefined || !before.isFile()) continue
      seen.add(relative)
      scannedFiles++
      const record = index.get(relative)
      const mode = before.mode & 0o777
      if (record !== undefined && !record.deleted && record.size === before.size && record.mtimeMs === before.mtimeMs && (record.inode === undefined || record.inode === before.ino) && sameMode(record.mode, mode, umask)) continue
      candidates.push({ relative, absolute, before, record })
    }
  }
  await visit('')

  const hashOne = async ({ relative, absolute, before, record }: (typeof candidates)[number]): Promise<void> => {
    options.signal?.throwIfAborted()
    const diskMode = before.mode & 0o777
    // A mode the umask explains is still the synced one (no change to send back).
    const mode = record !== undefined && !record.deleted && sameMode(record.mode, diskMode, umask) ? record.mode : diskMode
    const hashed = await hashPool.hash(absolute, before.size, record?.chunkSize || undefined).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined
      throw error
    })
    const after = await lstat(absolute).catch(() => undefined)
    // Changed while being hashed: the next scan takes it.
    if (hashed === undefined || after === undefined || after.size !== before.size || after.mtimeMs !== before.mtimeMs || hashed.size !== before.size) return
    hashedFiles++
    hashedBytes += hashed.size
    options.onFile?.(relative, hashed.size)
    if (record !== undefined && !record.deleted && record.mode === mode && sameBytes(record.chunkHashes, hashed.chunkHashes)) {
      index.touch(relative, { mtimeMs: before.mtimeMs, inode: before.ino })
      return
    }
    index.put({
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
  }
  let cursor = 0
  await Promise.all(
    Array.from({ length: Math.min(candidates.length, hashPool.size * 2) }, async () => {
      while (cursor < candidates.length) await hashOne(candidates[cursor++] as (typeof candidates)[number])
    }),
  )
  const live = index.files()
  const missing = live.filter((record) => !seen.has(record.path) && !rules.ignores(record.path, false))
  const guardTrips =
    options.confirmDeletes !== true &&
    missing.length >= (options.minGuardedDeletes ?? 10) &&
    missing.length > (options.maxDeleteShare ?? 0.5) * live.length
  const deleted: string[] = []
  if (!guardTrips) {
    for (const record of missing) {
      index.put(tombstone(record, options.deviceId))
      deleted.push(record.path)
    }
  }
  return { scannedFiles, hashedFiles, hashedBytes, changed, deleted, pausedDeletes: guardTrips ? missing.map((record) => record.path) : [] }
}

export function tombstone(record: FileRecord, deviceId: string): Omit<FileRecord, 'sequence'> {
  return { path: record.path, size: 0, mtimeMs: Date.now(), mode: record.mode, chunkHashes: new Uint8Array(0), chunkLengths: [], chunkSize: 0, version: bump(record.version, deviceId), deleted: true }
}
