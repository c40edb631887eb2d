/**
 * @packageDocumentation
 * `@cloudbox/cloudsync`: the sync engine. Scans and watches a folder, cuts files into
 * content-defined chunks, keeps a crash-safe index with version vectors and a Merkle
 * root, and syncs both ways with peers over any message channel, sending only missing
 * chunks. The protocol is specified in PROTOCOL.md.
 */
export { SyncEngine } from './sync-engine.js'
export type { SyncEngineOptions, ConnectOptions } from './sync-engine.js'
export { SyncSession } from './session.js'
export { StatusStream } from './status.js'
export type { SyncEvent, EngineState } from './status.js'
export type { ScanResult } from './scanner.js'
export type { FileRecord } from './folder-index.js'
export { VersionStore, checkVersionPolicy, DEFAULT_VERSION_POLICY, DEFAULT_VERSIONS_DISK_SHARE } from './version-store.js'
export type { VersionPolicy, VersionsOptions, KeptVersion, VersionReason } from './version-store.js'
export { merkleRoot } from './folder-index.js'
export { Chunker, chunkBytes, chunkParametersFor, CHUNK_HASH_LENGTH } from './chunker.js'
export type { Chunk, ChunkParameters } from './chunker.js'
export { compareVersions, mergeVersions, bump } from './version-vector.js'
export type { VersionVector, Ordering } from './version-vector.js'
export { validateRelativePath, conflictName, foldName, namesStateFolder, STATE_DIR } from './paths.js'
export { IGNORE_FILE, LOCAL_IGNORE_FILE } from './ignore-rules.js'
export { syncCodec, MAX_CHUNK_SIZE, SYNC_PROTOCOL_VERSION } from './protocol.js'
export {
  ErrorCodes,
  SyncError,
  isSyncError,
  UnsafePathError,
  CaseClashError,
  SyncProtocolError,
  ChunkMismatchError,
  ChunkUnavailableError,
  DiskFullError,
  QuotaExceededError,
  IndexCorruptedError,
  FolderMissingError,
  MassDeleteError,
  NoPeerError,
  FolderInUseError,
  FileUnreadableError,
  VersionNotFoundError,
  SymlinksUnsupportedError,
  FileUnwritableError,
  NameTooLongError,
  EngineStoppedError,
  FolderMismatchError,
  SyncVersionError,
} from './errors.js'
export type { ErrorCode } from './errors.js'
