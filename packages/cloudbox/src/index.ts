/**
 * @packageDocumentation
 * `@cloudbox/cloudbox`: the symmetric cloud instance. The same `CloudBox` class makes a
 * server or a client; many live in one process. Pairing by QR code + PIN (Noise IK to
 * the key in the code, PIN proven inside the channel), direct WebSocket or router-hub
 * transports, reconnection, owner administration, sub-clouds, document signing, and
 * one typed status stream. Formats are specified in PROTOCOL.md.
 */
export { CloudBox } from './cloudbox.js'
export type { CloudBoxInit, CloudBoxComponents } from './cloudbox.js'
export type { CloudBoxEvent, InstanceState, TransportKind, EventError } from './status.js'
export type { CloudAdmin, DeviceInfo, StorageInfo, SubCloudInfo, AdminOperation } from './interfaces/cloud-admin.js'
export type { PinInfo, Role } from './pins.js'
export { MAX_PIN_FAILURES, FIRST_LOCKOUT_MS, MAX_LOCKOUT_MS, MAX_GLOBAL_PIN_FAILURES, GLOBAL_WINDOW_MS, randomPin } from './pins.js'
export type { PinCaller } from './pins.js'
export type { PairedCloud } from './cloud-state.js'
export { STATE_FILE } from './cloud-state.js'
export { formatPairingUri, parsePairingUri, pairingQr } from './pairing-uri.js'
export type { PairingInfo } from './pairing-uri.js'
export { DirectListener } from './transport/direct-listener.js'
export type { DirectListenerOptions } from './transport/direct-listener.js'
export type { BackoffOptions } from './backoff.js'
export { ErrorCodes, CloudBoxError, isCloudBoxError } from './errors.js'
/** Runs an admin operation with arguments from the network, checked against its schema first. */
export { dispatchAdmin } from './admin-calls.js'
export type { ErrorCode } from './errors.js'
