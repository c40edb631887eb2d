/**
 * Typed errors of `@cloudbox/encrypted-messaging`. Codes are public API: never reuse or rename one.
 * Every code is documented in `docs/errors.md` (a test keeps the two in step).
 *
 * Peers get opaque failures: a failed handshake or decrypt never says which check failed.
 */

const ERROR_MARKER = Symbol.for('cloudbox.error')

/** Every error code this package throws. */
export const ErrorCodes = {
  INVALID_MNEMONIC: 'ERR_INVALID_MNEMONIC',
  INVALID_PUBLIC_ID: 'ERR_INVALID_PUBLIC_ID',
  INVALID_KEY: 'ERR_INVALID_KEY',
  SIGNATURE_MALFORMED: 'ERR_SIGNATURE_MALFORMED',
  SIGNATURE_INVALID: 'ERR_SIGNATURE_INVALID',
  SIGNATURE_LEGACY: 'ERR_SIGNATURE_LEGACY',
  SIGNER_MISMATCH: 'ERR_SIGNER_MISMATCH',
  AGE_HEADER_INVALID: 'ERR_AGE_HEADER_INVALID',
  AGE_UNSUPPORTED: 'ERR_AGE_UNSUPPORTED',
  AGE_NO_MATCHING_IDENTITY: 'ERR_AGE_NO_MATCHING_IDENTITY',
  AGE_HEADER_MAC: 'ERR_AGE_HEADER_MAC',
  AGE_PAYLOAD_CORRUPTED: 'ERR_AGE_PAYLOAD_CORRUPTED',
  AGE_TRUNCATED: 'ERR_AGE_TRUNCATED',
  HANDSHAKE_FAILED: 'ERR_HANDSHAKE_FAILED',
  HANDSHAKE_TIMEOUT: 'ERR_HANDSHAKE_TIMEOUT',
  REPLAYED_HANDSHAKE: 'ERR_REPLAYED_HANDSHAKE',
  PEER_REJECTED: 'ERR_PEER_REJECTED',
  BAD_FRAME: 'ERR_BAD_FRAME',
  FRAME_TOO_LARGE: 'ERR_FRAME_TOO_LARGE',
  NONCE_EXHAUSTED: 'ERR_NONCE_EXHAUSTED',
  CHANNEL_CLOSED: 'ERR_CHANNEL_CLOSED',
  BAD_MESSAGE: 'ERR_BAD_MESSAGE',
  UNSUPPORTED_VERSION: 'ERR_UNSUPPORTED_VERSION',
  MESSAGE_TOO_LARGE: 'ERR_MESSAGE_TOO_LARGE',
  API_REQUEST_INVALID: 'ERR_API_REQUEST_INVALID',
  API_REQUEST_REPLAYED: 'ERR_API_REQUEST_REPLAYED',
  API_REQUEST_EXPIRED: 'ERR_API_REQUEST_EXPIRED',
  API_RESPONSE_INVALID: 'ERR_API_RESPONSE_INVALID',
  API_RATE_LIMITED: 'ERR_API_RATE_LIMITED',
  CRYPTO_NOT_READY: 'ERR_CRYPTO_NOT_READY',
} as const

/** One of the codes in {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

/** Base class of every error this package throws on purpose. */
export class EncryptedMessagingError extends Error {
  readonly code: ErrorCode
  readonly [ERROR_MARKER] = true

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/**
 * True for any CloudBox error with a code, across duplicate copies of the package
 * (where `instanceof` would fail). Pass `code` to test for one condition.
 */
export function isEncryptedMessagingError(error: unknown, code?: ErrorCode): error is EncryptedMessagingError {
  if (typeof error !== 'object' || error === null) return false
  if ((error as Record<symbol, unknown>)[ERROR_MARKER] !== true) return false
  return code === undefined || (error as { code?: unknown }).code === code
}

/** The recovery phrase is not 24 valid BIP39 English words with a correct checksum. */
export class InvalidMnemonicError extends EncryptedMessagingError {
  constructor(message = 'The recovery phrase is not valid: check that it has 24 words from the BIP39 English list, in order, without typos.', options?: { cause?: unknown }) {
    super(ErrorCodes.INVALID_MNEMONIC, message, options)
  }
}

/** A public ID (`cb1…`) failed to parse: wrong prefix, checksum or length. */
export class InvalidPublicIdError extends EncryptedMessagingError {
  constructor(message = 'This is not a valid CloudBox public ID: it should start with "cb1" and be copied whole (the checksum catches typos).', options?: { cause?: unknown }) {
    super(ErrorCodes.INVALID_PUBLIC_ID, message, options)
  }
}

/** A key string or key file (age recipient or identity, minisign public key) is malformed. */
export class InvalidKeyError extends EncryptedMessagingError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.INVALID_KEY, message, options)
  }
}

/** A minisign signature file cannot be parsed. */
export class SignatureMalformedError extends EncryptedMessagingError {
  constructor(message = 'The signature file is not a valid minisign signature: it may be truncated or not a signature at all.', options?: { cause?: unknown }) {
    super(ErrorCodes.SIGNATURE_MALFORMED, message, options)
  }
}

/** The signature does not match the document, or its trusted comment was altered. */
export class SignatureInvalidError extends EncryptedMessagingError {
  constructor(message = 'The signature does not match: the document or its signature was changed after signing.', options?: { cause?: unknown }) {
    super(ErrorCodes.SIGNATURE_INVALID, message, options)
  }
}

/** A legacy (not prehashed) minisign signature, refused unless asked for; always when it says the file was hashed. */
export class SignatureLegacyError extends EncryptedMessagingError {
  constructor(message = 'This is a legacy minisign signature (not prehashed), which is refused by default, as `minisign -H` does: ask the signer to sign again with a current minisign or CloudBox. If the trusted comment says "hashed", it was relabelled and is not valid at all.', options?: { cause?: unknown }) {
    super(ErrorCodes.SIGNATURE_LEGACY, message, options)
  }
}

/** The signature was made by another key than the expected signer. */
export class SignerMismatchError extends EncryptedMessagingError {
  constructor(message = 'The signature was made by a different key than the signer you named: check the signer ID or public key file.', options?: { cause?: unknown }) {
    super(ErrorCodes.SIGNER_MISMATCH, message, options)
  }
}

/** An age header is malformed (not age v1, bad stanza, non-canonical encoding). */
export class AgeHeaderInvalidError extends EncryptedMessagingError {
  constructor(message = 'This is not a valid age-encrypted file: its header is malformed.', options?: { cause?: unknown }) {
    super(ErrorCodes.AGE_HEADER_INVALID, message, options)
  }
}

/** The age file uses a feature this implementation does not support (e.g. a passphrase recipient). */
export class AgeUnsupportedError extends EncryptedMessagingError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.AGE_UNSUPPORTED, message, options)
  }
}

/** None of the given identities is a recipient of the age file. */
export class AgeNoMatchingIdentityError extends EncryptedMessagingError {
  constructor(message = 'This file was not sealed for your key: none of the given identities can open it. Ask the sender to seal it for your age1… recipient.', options?: { cause?: unknown }) {
    super(ErrorCodes.AGE_NO_MATCHING_IDENTITY, message, options)
  }
}

/** The header MAC does not match: the header was tampered with. */
export class AgeHeaderMacError extends EncryptedMessagingError {
  constructor(message = 'The sealed file\'s header was modified after sealing; it cannot be trusted.', options?: { cause?: unknown }) {
    super(ErrorCodes.AGE_HEADER_MAC, message, options)
  }
}

/** A payload chunk failed authentication (tampered, reordered or cut at a chunk boundary). */
export class AgePayloadCorruptedError extends EncryptedMessagingError {
  constructor(message = 'The sealed file\'s contents were modified or damaged; no output was trusted past the damaged part.', options?: { cause?: unknown }) {
    super(ErrorCodes.AGE_PAYLOAD_CORRUPTED, message, options)
  }
}

/** The age file ends early. */
export class AgeTruncatedError extends EncryptedMessagingError {
  constructor(message = 'The sealed file is truncated: download or copy it again.', options?: { cause?: unknown }) {
    super(ErrorCodes.AGE_TRUNCATED, message, options)
  }
}

/** The Noise handshake failed. Deliberately opaque: it never says which check failed. */
export class HandshakeFailedError extends EncryptedMessagingError {
  constructor(message = 'The secure handshake failed: the peer is not who you expected, or the connection was tampered with.', options?: { cause?: unknown }) {
    super(ErrorCodes.HANDSHAKE_FAILED, message, options)
  }
}

/** The handshake did not complete in time. */
export class HandshakeTimeoutError extends EncryptedMessagingError {
  constructor(message = 'The secure handshake timed out: the peer did not answer. Check the address and that the peer is running.', options?: { cause?: unknown }) {
    super(ErrorCodes.HANDSHAKE_TIMEOUT, message, options)
  }
}

/** A signature check or public-key conversion ran before the curve library (WebAssembly) finished loading. */
export class CryptoNotReadyError extends EncryptedMessagingError {
  constructor(message = 'The curve library is still loading: call `await ready()` from @cloudbox/encrypted-messaging once before checking signatures or reading public IDs synchronously (the async functions of every CloudBox package wait for it themselves).', options?: { cause?: unknown }) {
    super(ErrorCodes.CRYPTO_NOT_READY, message, options)
  }
}

/** A first handshake message carried a timestamp not newer than one already seen from that key. */
export class ReplayedHandshakeError extends EncryptedMessagingError {
  constructor(message = 'A replayed handshake was refused (its timestamp is not newer than one already seen). If this is your own device, check its clock.', options?: { cause?: unknown }) {
    super(ErrorCodes.REPLAYED_HANDSHAKE, message, options)
  }
}

/** The peer authenticated, but the application refused its key. */
export class PeerRejectedError extends EncryptedMessagingError {
  constructor(message = 'The peer proved its key, but that key is not allowed here.', options?: { cause?: unknown }) {
    super(ErrorCodes.PEER_REJECTED, message, options)
  }
}

/** A transport frame failed to decrypt or is malformed; the channel is closed. */
export class BadFrameError extends EncryptedMessagingError {
  constructor(message = 'A frame failed authentication or is malformed; the session was closed. The connection may be tampered with.', options?: { cause?: unknown }) {
    super(ErrorCodes.BAD_FRAME, message, options)
  }
}

/** A frame or message is larger than the configured maximum. */
export class FrameTooLargeError extends EncryptedMessagingError {
  constructor(message = 'A frame exceeds the maximum size; the session was closed.', options?: { cause?: unknown }) {
    super(ErrorCodes.FRAME_TOO_LARGE, message, options)
  }
}

/** The nonce counter would wrap; the channel must be re-established. */
export class NonceExhaustedError extends EncryptedMessagingError {
  constructor(message = 'The channel has sent its maximum number of frames; reconnect to continue.', options?: { cause?: unknown }) {
    super(ErrorCodes.NONCE_EXHAUSTED, message, options)
  }
}

/** The channel was closed (locally or by the peer) before the operation completed. */
export class ChannelClosedError extends EncryptedMessagingError {
  constructor(message = 'The secure channel is closed; reconnect to continue.', options?: { cause?: unknown }) {
    super(ErrorCodes.CHANNEL_CLOSED, message, options)
  }
}

/** A decoded wire message failed validation. */
export class BadMessageError extends EncryptedMessagingError {
  constructor(message = 'A message from the peer is malformed; the session was closed.', options?: { cause?: unknown }) {
    super(ErrorCodes.BAD_MESSAGE, message, options)
  }
}

/** A wire message or file declares a version this code does not speak. */
export class UnsupportedVersionError extends EncryptedMessagingError {
  constructor(message = 'The peer speaks a protocol version this version does not support; update both sides.', options?: { cause?: unknown }) {
    super(ErrorCodes.UNSUPPORTED_VERSION, message, options)
  }
}

/** An encoded message is larger than the protocol's maximum. */
export class MessageTooLargeError extends EncryptedMessagingError {
  constructor(message = 'The message exceeds the protocol\'s maximum size.', options?: { cause?: unknown }) {
    super(ErrorCodes.MESSAGE_TOO_LARGE, message, options)
  }
}

/** An API request envelope that does not open: malformed, for another key, tampered with, or badly signed. */
export class ApiRequestInvalidError extends EncryptedMessagingError {
  constructor(message = 'The API request could not be opened or its signature is wrong; it was refused. Check that it was sealed for this server\'s key.', options?: { cause?: unknown }) {
    super(ErrorCodes.API_REQUEST_INVALID, message, options)
  }
}

/** An API request seen before (same client and nonce within the window). */
export class ApiRequestReplayedError extends EncryptedMessagingError {
  constructor(message = 'This API request was already received; a replay was refused. Seal a new request to repeat it.', options?: { cause?: unknown }) {
    super(ErrorCodes.API_REQUEST_REPLAYED, message, options)
  }
}

/** An API request whose time is outside the server's window. */
export class ApiRequestExpiredError extends EncryptedMessagingError {
  constructor(message = 'The API request\'s time is too far from the server\'s clock; it was refused. Check both clocks (NTP) and send it again.', options?: { cause?: unknown }) {
    super(ErrorCodes.API_REQUEST_EXPIRED, message, options)
  }
}

/** A caller sent more requests within the replay window than the server remembers per caller. */
export class ApiRateLimitedError extends EncryptedMessagingError {
  constructor(message = 'This device sent more API requests in two minutes than the server takes from one caller; slow down and send it again.', options?: { cause?: unknown }) {
    super(ErrorCodes.API_RATE_LIMITED, message, options)
  }
}

/** An API response that does not open with the key of the request it answers. */
export class ApiResponseInvalidError extends EncryptedMessagingError {
  constructor(message = 'The API response could not be opened: it was tampered with or does not answer this request. Retry; if it persists, something between you and the server alters traffic.', options?: { cause?: unknown }) {
    super(ErrorCodes.API_RESPONSE_INVALID, message, options)
  }
}

/** Rejects with an error named `AbortError` when the signal has fired (STYLE rule 12). */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw abortError(signal)
}

/** The error to reject with when an operation is cancelled. */
export function abortError(signal?: AbortSignal): Error {
  const reason: unknown = signal?.reason
  if (reason instanceof Error && reason.name === 'AbortError') return reason
  const error = new Error('The operation was aborted.', { cause: reason })
  error.name = 'AbortError'
  return error
}

/** Options of every async call that does I/O. */
export interface AbortOptions {
  signal?: AbortSignal
}
