/**
 * @packageDocumentation
 * What only a CloudBox server needs: the encrypted REST API (every call sealed end to end
 * with HPKE and signed by the caller; only paired, enabled devices are served), its
 * client with resumable chunked transfers, and storage back ends behind one interface.
 */
export { CloudServer, API_PATH, hubApiUrl } from './api/api-server.js'
export { listensOnLoopback } from './status-page/status-routes.js'
export type { CloudServerOptions, CloudServerComponents, StatusPageOptions } from './api/api-server.js'
export { CloudServerClient } from './api/api-client.js'
export type { CloudServerClientOptions, TransferProgress } from './api/api-client.js'
export { LocalFolderStorage } from './storage/local-folder.js'
export type { StorageBackend, EntryInfo, StorageUsage, ShareInfo } from './storage/storage-backend.js'
export { Thumbnails } from './thumbnails.js'
export type { ThumbnailOptions } from './thumbnails.js'
export { ErrorCodes, CloudServerError, isCloudServerError, HTTP_STATUS } from './errors.js'
export type { ErrorCode } from './errors.js'
export { S3Storage } from './storage/s3-storage.js'
export type { S3StorageOptions } from './storage/s3-storage.js'
