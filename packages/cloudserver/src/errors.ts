/**
 * Typed errors of @cloudbox/cloudserver: a stable `code` each, the HTTP status the API
 * answers with, and a message that says what to do. Listed in docs/errors.md.
 */
export const ErrorCodes = {
  UNSAFE_PATH: 'ERR_UNSAFE_PATH',
  NOT_FOUND: 'ERR_NOT_FOUND',
  ALREADY_EXISTS: 'ERR_ALREADY_EXISTS',
  NOT_A_FOLDER: 'ERR_NOT_A_FOLDER',
  NOT_A_FILE: 'ERR_NOT_A_FILE',
  UPLOAD_OFFSET: 'ERR_UPLOAD_OFFSET',
  UNKNOWN_UPLOAD: 'ERR_UNKNOWN_UPLOAD',
  QUOTA_EXCEEDED: 'ERR_QUOTA_EXCEEDED',
  FORBIDDEN: 'ERR_FORBIDDEN',
  BAD_REQUEST: 'ERR_BAD_REQUEST',
  SERVER_STATE: 'ERR_SERVER_STATE',
  API_UNREACHABLE: 'ERR_API_UNREACHABLE',
  STORAGE_UNAVAILABLE: 'ERR_STORAGE_UNAVAILABLE',
  STORAGE_INTEGRITY: 'ERR_STORAGE_INTEGRITY',
  STORAGE_ROLLBACK: 'ERR_STORAGE_ROLLBACK',
  INTERNAL: 'ERR_INTERNAL',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

/** The HTTP status each code is served with. */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  ERR_UNSAFE_PATH: 400,
  ERR_NOT_FOUND: 404,
  ERR_ALREADY_EXISTS: 409,
  ERR_NOT_A_FOLDER: 409,
  ERR_NOT_A_FILE: 409,
  ERR_UPLOAD_OFFSET: 409,
  ERR_UNKNOWN_UPLOAD: 404,
  ERR_QUOTA_EXCEEDED: 507,
  ERR_FORBIDDEN: 403,
  ERR_BAD_REQUEST: 400,
  ERR_SERVER_STATE: 503,
  ERR_API_UNREACHABLE: 502,
  ERR_STORAGE_UNAVAILABLE: 503,
  ERR_STORAGE_INTEGRITY: 502,
  ERR_STORAGE_ROLLBACK: 502,
  ERR_INTERNAL: 500,
}

const MARKER = Symbol.for('cloudbox.error')
const OWN_MARKER = Symbol.for('@cloudbox/cloudserver.error')

export class CloudServerError extends Error {
  /** This package's code, or (from a server's answer) a lower layer's code such as ERR_API_REQUEST_REPLAYED. */
  readonly code: ErrorCode | (string & {})
  readonly status: number
  /** ERR_UPLOAD_OFFSET: where the upload stands on the server (resume from there). */
  readonly expectedOffset: number | undefined

  constructor(code: ErrorCode | (string & {}), message: string, options?: { cause?: unknown; status?: number; expectedOffset?: number }) {
    super(message, options)
    this.code = code
    this.status = options?.status ?? HTTP_STATUS[code as ErrorCode] ?? 500
    this.expectedOffset = options?.expectedOffset
    this.name = 'CloudServerError'
    Object.defineProperty(this, MARKER, { value: true })
    Object.defineProperty(this, OWN_MARKER, { value: true })
  }
}

export function isCloudServerError(error: unknown, code?: string): error is CloudServerError {
  if (typeof error !== 'object' || error === null || (error as Record<symbol, unknown>)[OWN_MARKER] !== true) return false
  return code === undefined || (error as { code?: unknown }).code === code
}

export const errors = {
  unsafePath: (path: string, why: string) => new CloudServerError(ErrorCodes.UNSAFE_PATH, `The path "${path.slice(0, 200)}" is not allowed (${why}); use a relative path inside the cloud folder.`),
  notFound: (path: string) => new CloudServerError(ErrorCodes.NOT_FOUND, `Nothing at "${path}"; list the folder to see what is there.`),
  exists: (path: string) => new CloudServerError(ErrorCodes.ALREADY_EXISTS, `"${path}" already exists; pick another name or pass overwrite.`),
  notAFolder: (path: string) => new CloudServerError(ErrorCodes.NOT_A_FOLDER, `"${path}" is a file, not a folder.`),
  notAFile: (path: string) => new CloudServerError(ErrorCodes.NOT_A_FILE, `"${path}" is a folder, not a file.`),
  uploadOffset: (expected: number, got: number) => new CloudServerError(ErrorCodes.UPLOAD_OFFSET, `The upload stands at byte ${expected}, not ${got}; resume from byte ${expected}.`, { expectedOffset: expected }),
  unknownUpload: () => new CloudServerError(ErrorCodes.UNKNOWN_UPLOAD, 'No upload with that ID on the server (finished, aborted or never started); start the upload again.'),
  quota: (quota: number) => new CloudServerError(ErrorCodes.QUOTA_EXCEEDED, `The cloud's quota of ${quota} bytes would be exceeded; delete files or ask the owner to raise the quota.`),
  forbidden: (why: string) => new CloudServerError(ErrorCodes.FORBIDDEN, `This device may not use the cloud's API (${why}); pair it with the server, or ask the owner to unblock it.`),
  badRequest: (why: string) => new CloudServerError(ErrorCodes.BAD_REQUEST, `The request is not valid (${why}).`),
  serverState: (what: string) => new CloudServerError(ErrorCodes.SERVER_STATE, `${what}: the server is not running; start it first.`),
  storageUnavailable: (what: string, cause?: unknown) =>
    new CloudServerError(ErrorCodes.STORAGE_UNAVAILABLE, `The object store refused or did not answer (${what}); check its endpoint, bucket and credentials, then retry.`, { cause }),
  storageIntegrity: (what: string) =>
    new CloudServerError(ErrorCodes.STORAGE_INTEGRITY, `Data in the object store was altered or is missing (${what}); nothing was served from it. Restore the bucket from a backup, or check that this server uses its own storage key and prefix.`),
  storageRollback: (found: number, expected: number) =>
    new CloudServerError(ErrorCodes.STORAGE_ROLLBACK, `The object store holds an older index (generation ${found}) than this server last wrote (${expected}); someone restored or replayed it. Restore the newest index, or delete the local state file to accept this one knowingly.`),
  unreachable: (url: string, cause?: unknown) => new CloudServerError(ErrorCodes.API_UNREACHABLE, `The API at ${url} did not answer with a sealed response; check the address and that the server runs.`, { cause }),
}
