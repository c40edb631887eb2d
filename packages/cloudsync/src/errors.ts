/**
 * Typed errors of @cloudbox/cloudsync: a stable `code` each (listed with what to do in
 * docs/errors.md) and a message that says what to do.
 */
export const ErrorCodes = {
  UNSAFE_PATH: 'ERR_UNSAFE_PATH',
  CASE_CLASH: 'ERR_CASE_CLASH',
  PROTOCOL: 'ERR_SYNC_PROTOCOL',
  CHUNK_MISMATCH: 'ERR_CHUNK_MISMATCH',
  CHUNK_UNAVAILABLE: 'ERR_CHUNK_UNAVAILABLE',
  DISK_FULL: 'ERR_DISK_FULL',
  QUOTA_EXCEEDED: 'ERR_QUOTA_EXCEEDED',
  INDEX_CORRUPTED: 'ERR_INDEX_CORRUPTED',
  FOLDER_MISSING: 'ERR_FOLDER_MISSING',
  MASS_DELETE: 'ERR_MASS_DELETE',
  ENGINE_STOPPED: 'ERR_ENGINE_STOPPED',
  FOLDER_MISMATCH: 'ERR_FOLDER_MISMATCH',
  VERSION: 'ERR_SYNC_VERSION',
  NO_PEER: 'ERR_NO_PEER',
  FOLDER_IN_USE: 'ERR_FOLDER_IN_USE',
  FILE_UNREADABLE: 'ERR_FILE_UNREADABLE',
  VERSION_NOT_FOUND: 'ERR_VERSION_NOT_FOUND',
  SYMLINKS_UNSUPPORTED: 'ERR_SYMLINKS_UNSUPPORTED',
  FILE_UNWRITABLE: 'ERR_FILE_UNWRITABLE',
  NAME_TOO_LONG: 'ERR_NAME_TOO_LONG',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

const MARKER = Symbol.for('cloudbox.error')

export class SyncError extends Error {
  readonly code: ErrorCode
  /** The file concerned, when there is one (relative path). */
  readonly path: string | undefined

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; path?: string }) {
    super(message, options)
    this.code = code
    this.path = options?.path
    this.name = new.target.name
    Object.defineProperty(this, MARKER, { value: true })
  }
}

export function isSyncError(error: unknown, code?: ErrorCode): error is SyncError {
  if (typeof error !== 'object' || error === null || (error as Record<symbol, unknown>)[MARKER] !== true) return false
  const actual = (error as { code?: unknown }).code
  if (typeof actual !== 'string' || !(Object.values(ErrorCodes) as string[]).includes(actual)) return false
  return code === undefined || actual === code
}

export class UnsafePathError extends SyncError {
  constructor(message = 'The peer sent a file name that could escape or damage the folder; it was refused.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.UNSAFE_PATH, message, options)
  }
}

export class CaseClashError extends SyncError {
  constructor(message = 'Two names differ only by letter case; this file system cannot hold both. Rename one of them.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.CASE_CLASH, message, options)
  }
}

export class SyncProtocolError extends SyncError {
  constructor(message = 'The peer broke the sync protocol; the session was closed. Update both devices to the same CloudBox version.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.PROTOCOL, message, options)
  }
}

export class ChunkMismatchError extends SyncError {
  constructor(message = 'The peer sent data that does not match its hash; the session was closed and the file was not written.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.CHUNK_MISMATCH, message, options)
  }
}

export class ChunkUnavailableError extends SyncError {
  constructor(message = 'The peer no longer has a part of this file (it changed meanwhile); the file will sync on the next pass.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.CHUNK_UNAVAILABLE, message, options)
  }
}

export class DiskFullError extends SyncError {
  constructor(message = 'The disk is full: downloads stopped without damaging any file. Free some space; sync resumes by itself.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.DISK_FULL, message, options)
  }
}

export class QuotaExceededError extends SyncError {
  constructor(message = 'The folder\'s storage quota is used up: downloads stopped. Raise the quota or delete files.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.QUOTA_EXCEEDED, message, options)
  }
}

export class IndexCorruptedError extends SyncError {
  constructor(message = 'The folder\'s sync index (.cloudbox/index) is damaged; it was set aside and the folder is rescanned.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.INDEX_CORRUPTED, message, options)
  }
}

export class FolderMissingError extends SyncError {
  constructor(message = 'The synced folder does not exist (or is not a folder). Create it or point the engine at the right place.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.FOLDER_MISSING, message, options)
  }
}

export class FileUnreadableError extends SyncError {
  constructor(message = 'A file or folder here cannot be read; it was skipped (the rest syncs) and is tried again on the next scan.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.FILE_UNREADABLE, message, options)
  }
}

export class VersionNotFoundError extends SyncError {
  constructor(message = 'No kept version matches; run cloudbox versions PATH to list what is kept.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.VERSION_NOT_FOUND, message, options)
  }
}

export class SymlinksUnsupportedError extends SyncError {
  constructor(message = 'This system cannot make symbolic links; the link was skipped (the rest syncs).', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.SYMLINKS_UNSUPPORTED, message, options)
  }
}

export class FileUnwritableError extends SyncError {
  constructor(message = 'A file cannot be written here (permission denied or a read-only folder); it was skipped, the rest syncs, and it is tried again.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.FILE_UNWRITABLE, message, options)
  }
}

export class NameTooLongError extends SyncError {
  constructor(message = 'A file name is too long for this file system; it was skipped, the rest syncs.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.NAME_TOO_LONG, message, options)
  }
}

/**
 * The typed error for a file system refusal while applying a peer's change to `path`
 * (permission, read-only, name too long), or undefined for anything else.
 */
export function fileSystemRefusal(error: unknown, path: string): SyncError | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    const why = code === 'EROFS' ? 'the file system is read-only' : 'permission denied'
    return new FileUnwritableError(`${path} cannot be written here (${why}); it was skipped, the rest syncs, and it is tried again on the next sync. Give this user write access to its folder (chmod, chown), or list it in .cloudboxignore.local.`, { path, cause: error })
  }
  if (code === 'ENAMETOOLONG') {
    return new NameTooLongError(`${path} has a name too long for this file system (most allow 255 bytes per name); it was skipped and the rest syncs. Rename it on the device that has it, or list it in .cloudboxignore.local.`, { path, cause: error })
  }
  return undefined
}

export class FolderInUseError extends SyncError {
  /** The process that holds the folder. */
  readonly pid: number | undefined

  constructor(message = 'This folder is already synced by another process; stop it first, or sync another folder.', options?: { cause?: unknown; path?: string; pid?: number }) {
    super(ErrorCodes.FOLDER_IN_USE, message, options)
    this.pid = options?.pid
  }
}

export class NoPeerError extends SyncError {
  constructor(message = 'No peer is connected to bring the files back from; connect to one and try again.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.NO_PEER, message, options)
  }
}

export class MassDeleteError extends SyncError {
  constructor(message = 'A scan would delete more files than allowed at once; deletions are held until they are confirmed (cloudbox sync DIR --confirm-deletes, or confirmDeletes()) or the files are brought back from a peer (--restore-deleted, or restoreHeldDeletes()).', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.MASS_DELETE, message, options)
  }
}

export class EngineStoppedError extends SyncError {
  constructor(message = 'The sync engine is stopped: start() it first.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.ENGINE_STOPPED, message, options)
  }
}

export class FolderMismatchError extends SyncError {
  constructor(message = 'The peer syncs another folder (its folder ID differs); the session was closed. Pair the right folders.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.FOLDER_MISMATCH, message, options)
  }
}

export class SyncVersionError extends SyncError {
  constructor(message = 'The peer speaks another version of the sync protocol (this side: version 2); the session was closed. Update CloudBox on both devices to the same release.', options?: { cause?: unknown; path?: string }) {
    super(ErrorCodes.VERSION, message, options)
  }
}
