import { lstat, rename } from 'node:fs/promises'
import { join } from 'node:path'
import type { FileRecord, FolderIndex } from './folder-index.js'
import { conflictName } from './paths.js'
import type { WireRecord } from './protocol.js'
import { tombstone } from './scanner.js'
import { bump, compareVersions, mergeVersions, type VersionVector } from './version-vector.js'

/** What to do with a peer's record, given this device's. */
export type Decision =
  /** Older than or equal to what is here. */
  | { readonly kind: 'skip' }
  /** Fetch the peer's version into `path`, recorded with `version`. */
  | { readonly kind: 'download'; readonly path: string; readonly version: VersionVector }
  /** The peer deleted it after this device's version. */
  | { readonly kind: 'delete'; readonly version: VersionVector }
  /** Keep what is here under a version that covers both (an edit beats a delete; two deletes merge). */
  | { readonly kind: 'keep'; readonly version: VersionVector }
  /** Both changed it: the peer's wins the name; this device's is kept as `copy` first. */
  | { readonly kind: 'keep-local-as-copy'; readonly copy: string }
  /** Both changed it: this device's keeps the name (under `version`); the peer's arrives as `copy`. */
  | { readonly kind: 'fetch-remote-as-copy'; readonly copy: string; readonly version: VersionVector }

/**
 * Conflict resolution, by version vectors. A newer version replaces, an older or equal one
 * is ignored. Concurrent versions (both sides changed the file) never lose data: an edit
 * beats a delete; equal content merges; otherwise the later modification time wins (ties:
 * the greater device name) and the other version is kept as
 * `NAME.sync-conflict-<YYYYMMDD-HHMMSS>-<device>.EXT`, which then syncs as a new file.
 */
export function decide(local: FileRecord | undefined, remote: WireRecord, me: string, peer: string): Decision {
  const order = local === undefined ? 'newer' : compareVersions(remote.version, local.version)
  if (order === 'equal' || order === 'older') return { kind: 'skip' }
  if (order === 'newer' || local === undefined) return remote.deleted ? { kind: 'delete', version: remote.version } : { kind: 'download', path: remote.path, version: remote.version }
  const merged = mergeVersions(local.version, remote.version)
  if (remote.deleted && local.deleted) return { kind: 'keep', version: merged }
  if (remote.deleted) return { kind: 'keep', version: bump(merged, me) }
  // Two folders, or two links to the same target, are the same content too.
  const sameContent = local.kind === remote.kind && (local.kind !== 'symlink' || local.target === remote.target) && local.chunkHashes.length === remote.chunkHashes.length && Buffer.compare(local.chunkHashes, remote.chunkHashes) === 0
  // A folder made on both sides merges, whatever its mode: its files decide for themselves.
  if (!local.deleted && local.kind === 'dir' && remote.kind === 'dir') return { kind: 'keep', version: merged }
  // Equal content merges: nothing to move (two devices that found the same file, say).
  if (!local.deleted && sameContent && local.mode === remote.mode) return { kind: 'keep', version: merged }
  if (local.deleted || sameContent) return { kind: 'download', path: remote.path, version: merged }
  const remoteWins = remote.mtimeMs > local.mtimeMs || (remote.mtimeMs === local.mtimeMs && peer > me)
  if (remoteWins) return { kind: 'keep-local-as-copy', copy: conflictName(local.path, me, new Date(local.mtimeMs)) }
  return { kind: 'fetch-remote-as-copy', copy: conflictName(remote.path, peer, new Date(remote.mtimeMs)), version: bump(merged, me) }
}

/** Records this device's version under `version` (no change on disk). */
export function keepLocal(index: FolderIndex, local: FileRecord, version: VersionVector): void {
  const { sequence: _sequence, origin: _origin, ...rest } = local
  index.put({ ...rest, version })
}

/**
 * Moves this device's version aside as a conflict copy (a new file of its own) and
 * deletes the name in the index, so the peer's version can take it. Returns the version
 * the peer's file is to be recorded with. Call with the path's lock held.
 */
export async function moveLocalAside(folder: string, index: FolderIndex, local: FileRecord, remote: WireRecord, copy: string, me: string): Promise<VersionVector> {
  await rename(join(folder, local.path), join(folder, copy))
  const info = await lstat(join(folder, copy))
  const { sequence: _sequence, origin: _origin, ...rest } = local
  index.transaction(() => {
    index.put({ ...rest, path: copy, version: bump({}, me), mtimeMs: info.mtimeMs, inode: info.ino })
    index.put(tombstone(local, me))
  })
  return bump(mergeVersions(mergeVersions(local.version, remote.version), index.get(local.path)?.version ?? {}), me)
}
