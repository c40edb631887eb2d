/**
 * Typed errors of @cloudbox/cloudbox: a stable `code` each (listed with what to do in
 * docs/errors.md) and a message that says what to do. Codes are never reused.
 */
export const ErrorCodes = {
  INVALID_PAIRING_URI: 'ERR_INVALID_PAIRING_URI',
  INVALID_PIN: 'ERR_INVALID_PIN',
  WRONG_PIN: 'ERR_WRONG_PIN',
  PIN_LOCKED: 'ERR_PIN_LOCKED',
  NOT_PAIRED: 'ERR_NOT_PAIRED',
  DEVICE_BLOCKED: 'ERR_DEVICE_BLOCKED',
  DEVICE_REVOKED: 'ERR_DEVICE_REVOKED',
  NOT_OWNER: 'ERR_NOT_OWNER',
  UNKNOWN_DEVICE: 'ERR_UNKNOWN_DEVICE',
  UNKNOWN_PIN: 'ERR_UNKNOWN_PIN',
  UNKNOWN_SUBCLOUD: 'ERR_UNKNOWN_SUBCLOUD',
  UNREACHABLE: 'ERR_UNREACHABLE',
  SERVER_UNVERIFIED: 'ERR_SERVER_UNVERIFIED',
  NODE_OFFLINE: 'ERR_NODE_OFFLINE',
  SESSION_LIMIT: 'ERR_SESSION_LIMIT',
  ROLE: 'ERR_ROLE',
  INSTANCE_STATE: 'ERR_INSTANCE_STATE',
  STATE_CORRUPTED: 'ERR_STATE_CORRUPTED',
  CONTROL_PROTOCOL: 'ERR_CONTROL_PROTOCOL',
  INVALID_ADMIN_CALL: 'ERR_INVALID_ADMIN_CALL',
  TIMEOUT: 'ERR_TIMEOUT',
  HUB_UNTRUSTED: 'ERR_HUB_UNTRUSTED',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

// Every CloudBox package's errors carry the shared marker (code + message); this
// package's also carry their own, so ERR_* codes of lower layers are told apart.
const MARKER = Symbol.for('cloudbox.error')
const OWN_MARKER = Symbol.for('@cloudbox/cloudbox.error')

export class CloudBoxError extends Error {
  readonly code: ErrorCode
  /** For ERR_PIN_LOCKED: when pairing may be tried again (ms from now). */
  readonly retryAfterMs: number | undefined

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options)
    this.code = code
    this.retryAfterMs = options?.retryAfterMs
    this.name = 'CloudBoxError'
    Object.defineProperty(this, MARKER, { value: true })
    Object.defineProperty(this, OWN_MARKER, { value: true })
  }
}

export function isCloudBoxError(error: unknown, code?: ErrorCode): error is CloudBoxError {
  if (typeof error !== 'object' || error === null || (error as Record<symbol, unknown>)[OWN_MARKER] !== true) return false
  return code === undefined || (error as { code?: unknown }).code === code
}

const codes = new Set<string>(Object.values(ErrorCodes))
export const isErrorCode = (code: string): code is ErrorCode => codes.has(code)

/** What the server says when it refuses a device, as the error the client gets. */
export function refusalError(code: string, message: string, retryAfterMs?: number): CloudBoxError {
  return new CloudBoxError(isErrorCode(code) ? code : ErrorCodes.CONTROL_PROTOCOL, message, retryAfterMs === undefined ? undefined : { retryAfterMs })
}

export const errors = {
  invalidUri: (why: string) => new CloudBoxError(ErrorCodes.INVALID_PAIRING_URI, `The pairing URI is not valid (${why}); scan the server's QR code again or copy the whole cloudbox://pair?… line.`),
  invalidPin: () => new CloudBoxError(ErrorCodes.INVALID_PIN, 'A PIN is 4 to 64 characters without spaces at either end; choose another.'),
  wrongPin: (triesLeft: number) => new CloudBoxError(ErrorCodes.WRONG_PIN, `The PIN is wrong; ${triesLeft} ${triesLeft === 1 ? 'try' : 'tries'} left before pairing locks. Ask the server's owner for the current PIN.`),
  pinLocked: (retryAfterMs: number) => new CloudBoxError(ErrorCodes.PIN_LOCKED, `Pairing is locked after too many wrong PINs; try again in ${Math.ceil(retryAfterMs / 1000)} s.`, { retryAfterMs }),
  notPaired: () => new CloudBoxError(ErrorCodes.NOT_PAIRED, 'This device is not paired with that cloud; pair it first with the server\'s pairing URI and a PIN.'),
  blocked: () => new CloudBoxError(ErrorCodes.DEVICE_BLOCKED, 'The cloud\'s owner has blocked this device; ask them to unblock it.'),
  revoked: () => new CloudBoxError(ErrorCodes.DEVICE_REVOKED, 'The cloud\'s owner revoked this device; pair it again with a new PIN to come back.'),
  invalidAdminCall: (why: string) => new CloudBoxError(ErrorCodes.INVALID_ADMIN_CALL, `The admin call is not valid (${why.slice(0, 300)}); check the operation's name and arguments, or update CloudBox on the calling side.`),
  notOwner: () => new CloudBoxError(ErrorCodes.NOT_OWNER, 'Only the cloud\'s owner devices may do that; pair with the master PIN or an owner PIN.'),
  unknownDevice: (id: string) => new CloudBoxError(ErrorCodes.UNKNOWN_DEVICE, `No paired device ${id}; list the devices to see their IDs.`),
  unknownPin: (label: string) => new CloudBoxError(ErrorCodes.UNKNOWN_PIN, `No PIN labelled "${label}"; list the PINs to see their labels.`),
  unknownSubCloud: (index: number) => new CloudBoxError(ErrorCodes.UNKNOWN_SUBCLOUD, `No sub-cloud ${index}; list the sub-clouds to see their numbers.`),
  unreachable: (detail: string, cause?: unknown) => new CloudBoxError(ErrorCodes.UNREACHABLE, `The cloud could not be reached (${detail}); check the network and that the server runs. CloudBox keeps retrying.`, { cause }),
  serverNotReady: () => new CloudBoxError(ErrorCodes.UNREACHABLE, 'The cloud could not be reached (the server is starting or stopping); CloudBox keeps retrying.'),
  serverUnverified: (url: string, cause?: unknown) => new CloudBoxError(ErrorCodes.SERVER_UNVERIFIED, `Nothing at ${url} proved it holds the cloud's key from the pairing URI (an impostor, a wrong address, or a tampered connection); no PIN or data was sent. Check the URI with the server's owner.`, { cause }),
  nodeOffline: () => new CloudBoxError(ErrorCodes.NODE_OFFLINE, 'The hub does not know that node right now; the server is offline or connected to another hub. CloudBox keeps retrying.'),
  sessionLimit: () => new CloudBoxError(ErrorCodes.SESSION_LIMIT, 'The server has too many sessions open; try again later.'),
  role: (need: 'server' | 'client', what: string) => new CloudBoxError(ErrorCodes.ROLE, `${what} needs an instance with role "${need}".`),
  state: (what: string, state: string) => new CloudBoxError(ErrorCodes.INSTANCE_STATE, `${what} is not possible while the instance is ${state}; ${state === 'destroyed' ? 'create a new instance' : 'call start() first'}.`),
  stateCorrupted: (path: string, cause?: unknown) => new CloudBoxError(ErrorCodes.STATE_CORRUPTED, `${path} is damaged; restore it from a backup or destroy the instance with { wipe: true } and pair again.`, { cause }),
  protocol: (detail: string, cause?: unknown) => new CloudBoxError(ErrorCodes.CONTROL_PROTOCOL, `The peer broke the control protocol (${detail}); the session was closed.`, { cause }),
  timeout: (what: string) => new CloudBoxError(ErrorCodes.TIMEOUT, `${what} timed out; check the network and try again.`),
  untrustedHub: (hub: string) => new CloudBoxError(ErrorCodes.HUB_UNTRUSTED, `The hub asked this server to accept a route at ${hub}, which is neither its hub nor one listed in its cluster hubs; it was refused. If that hub is one of yours, add it to clusterHubs (cloudbox serve --cluster-hub URL).`),
}
