import { randomBytes } from 'node:crypto'
import { lstatSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmdirSync, symlinkSync, unlinkSync, type Stats } from 'node:fs'
import { dirname, join } from 'node:path'
import { SymlinksUnsupportedError, UnsafePathError } from './errors.js'
import { prepareParents, type AssemblyContext } from './file-assembler.js'
import type { FileRecord } from './folder-index.js'
import { conflictName, TEMP_PREFIX } from './paths.js'
import type { WireRecord } from './protocol.js'
import type { VersionVector } from './version-vector.js'

/** What placing a folder or link did. */
export interface Placed {
  readonly record: FileRecord
  /** A local edit in the way, kept under this name. */
  readonly keptLocalAs?: string
}

const asIndexed = (record: FileRecord | undefined, info: Stats) =>
  record !== undefined && !record.deleted && info.isFile() && record.kind === undefined && info.size === record.size && info.mtimeMs === record.mtimeMs && (record.inode === undefined || record.inode === info.ino)

/**
 * Makes way at `path` for a peer's folder or link: a file the index holds as it is goes to
 * the versions (or away), a file changed here is kept as a conflict copy, an old link of
 * ours is removed, an empty folder of ours too. Anything else stays and the change is refused.
 */
function makeWay(context: AssemblyContext, path: string, onDisk: Stats, device: string): string | undefined {
  const absolute = join(context.folder, path)
  const local = context.index.get(path)
  if (onDisk.isFile()) {
    if (asIndexed(local, onDisk)) {
      if (context.versions?.keep(path, { move: true, reason: 'replaced', device: local?.origin ?? device }) === undefined) unlinkSync(absolute)
      return undefined
    }
    const copy = conflictName(path, device, new Date(onDisk.mtimeMs))
    renameSync(absolute, join(context.folder, copy))
    return copy
  }
  if (onDisk.isSymbolicLink()) {
    unlinkSync(absolute) // a link holds no data: its record (or the peer's newer one) says what it was
    return undefined
  }
  if (onDisk.isDirectory() && readdirSync(absolute).length === 0) {
    rmdirSync(absolute)
    return undefined
  }
  throw new UnsafePathError(`${path} is a folder with files here, so the peer's folder or link cannot take its place; move the folder away, or delete it on the peer.`, { path })
}

/**
 * Puts a peer's folder or symbolic link in place. A folder is created (its parents must be
 * real folders); a link is created beside its name and renamed over it, with its target as
 * text: it is never followed, and a target outside the folder stays a link. Call with the
 * path's lock held.
 * @throws {SymlinksUnsupportedError} where this system cannot make links.
 */
export function placeEntry(context: AssemblyContext, remote: WireRecord, version: VersionVector, origin: string | undefined, device: string): Placed {
  const path = remote.path
  const absolute = join(context.folder, path)
  prepareParents(context.folder, path)
  let onDisk = lstatSync(absolute, { throwIfNoEntry: false })
  let keptLocalAs: string | undefined
  if (remote.kind === 'dir') {
    if (onDisk !== undefined && !onDisk.isDirectory()) {
      keptLocalAs = makeWay(context, path, onDisk, device)
      onDisk = undefined
    }
    if (onDisk === undefined) mkdirSync(absolute, { mode: (remote.mode || 0o755) & ~context.umask })
  } else {
    const target = remote.target as string
    const same = onDisk?.isSymbolicLink() === true && readlinkSync(absolute) === target
    if (!same) {
      // Made under a temporary name first, so the name is a whole link or the old entry.
      const temporary = join(dirname(absolute), `${TEMP_PREFIX}link-${randomBytes(6).toString('hex')}`)
      try {
        symlinkSync(target, temporary)
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'EPERM' || code === 'ENOSYS' || code === 'EOPNOTSUPP' || code === 'ENOTSUP') {
          throw new SymlinksUnsupportedError(`This system cannot make symbolic links here (${code}); the link ${path} → ${target} was skipped. On Windows, turn on Developer Mode; elsewhere, use a file system that has links.`, { path, cause: error })
        }
        throw error
      }
      try {
        if (onDisk !== undefined && !onDisk.isSymbolicLink()) keptLocalAs = makeWay(context, path, onDisk, device)
        renameSync(temporary, absolute)
      } catch (error) {
        try {
          unlinkSync(temporary)
        } catch {
          // Already gone.
        }
        throw error
      }
    }
  }
  const info = lstatSync(absolute)
  const record = context.index.put({
    path,
    size: 0,
    mtimeMs: info.mtimeMs,
    mode: remote.mode,
    chunkHashes: new Uint8Array(0),
    chunkLengths: [],
    chunkSize: 0,
    version,
    deleted: false,
    inode: info.ino,
    kind: remote.kind as 'dir' | 'symlink',
    ...(remote.kind === 'symlink' ? { target: remote.target as string } : {}),
    ...(origin === undefined ? {} : { origin }),
  })
  return { record, ...(keptLocalAs === undefined ? {} : { keptLocalAs }) }
}

/**
 * Removes a folder or link a peer deleted, if it is still what the index holds: a link with
 * the same target (never what it points to), a folder that is empty. Returns false when it
 * stays (changed here, or a folder that still holds files): the next scan makes it a new
 * version then, which reaches the peer again.
 */
export function removeEntry(context: AssemblyContext, path: string, local: FileRecord): boolean {
  const absolute = join(context.folder, path)
  const onDisk = lstatSync(absolute, { throwIfNoEntry: false })
  if (onDisk === undefined) return true
  if (local.kind === 'symlink') {
    if (!onDisk.isSymbolicLink() || readlinkSync(absolute) !== local.target) return false
    unlinkSync(absolute)
    return true
  }
  if (!onDisk.isDirectory()) return false
  try {
    rmdirSync(absolute)
    return true
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false
    throw error
  }
}
