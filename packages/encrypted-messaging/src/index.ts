/**
 * @packageDocumentation
 * `@cloudbox/encrypted-messaging`: who a node is and how its bytes are protected.
 *
 * - Identity: a 24-word recovery phrase → SLIP-0010 Ed25519 keys (node and sub-clouds),
 *   X25519 by the standard conversion, public IDs (`cb1…`, bech32m).
 * - Document signatures in minisign's format (`minisign -V` verifies them).
 * - Files sealed for recipients in the age v1 format (`age -d` opens them).
 * - The Noise secure channel (IK and XX) and its transport.
 * - Versioned, strictly validated CBOR message framing.
 *
 * Every byte format is specified in PROTOCOL.md.
 */

export {
  ErrorCodes,
  EncryptedMessagingError,
  isEncryptedMessagingError,
  InvalidMnemonicError,
  InvalidPublicIdError,
  InvalidKeyError,
  SignatureMalformedError,
  SignatureInvalidError,
  SignatureLegacyError,
  SignerMismatchError,
  AgeHeaderInvalidError,
  AgeUnsupportedError,
  AgeNoMatchingIdentityError,
  AgeHeaderMacError,
  AgePayloadCorruptedError,
  AgeTruncatedError,
  HandshakeFailedError,
  HandshakeTimeoutError,
  ReplayedHandshakeError,
  PeerRejectedError,
  BadFrameError,
  FrameTooLargeError,
  NonceExhaustedError,
  ChannelClosedError,
  BadMessageError,
  UnsupportedVersionError,
  MessageTooLargeError,
  ApiRequestInvalidError,
  ApiRequestReplayedError,
  ApiRequestExpiredError,
  ApiRateLimitedError,
  ApiResponseInvalidError,
  CryptoNotReadyError,
} from './errors.js'
export { ready, isReady } from './crypto.js'
export type { ErrorCode, AbortOptions } from './errors.js'

export type { KeyAgreement, Signer } from './interfaces/key-agreement.js'

export { Identity } from './identity/identity.js'
export type { IdentityOptions } from './identity/identity.js'
export { NODE_KEY_PATH, CLOUDBOX_PURPOSE, MAX_SUB_CLOUD_INDEX, subCloudKeyPath } from './identity/derivation-paths.js'
export { encodePublicId, parsePublicId, isPublicId, shortPublicId, PUBLIC_ID_PREFIX } from './identity/public-id.js'
export { RECOVERY_PHRASE_WORDS, normalizeMnemonic, assertRecoveryPhrase } from './identity/mnemonic.js'

export {
  signDocument,
  verifyDocument,
  minisignKeyId,
  formatMinisignPublicKey,
  parseSignerKey,
  SIGNATURE_SCOPES,
} from './minisign/document-signatures.js'
export type { SignatureScope, DocumentSource, SignDocumentOptions, VerifyDocumentOptions, VerifiedSignature } from './minisign/document-signatures.js'
export type { MinisignPublicKey } from './wire/minisign-format.js'

export { defineMessageCodec, bytesSchema, uintSchema, textSchema } from './wire/message-codec.js'
export type { MessageCodec, MessageCodecInit, MessageDefinition, MessageDefinitions, DecodedMessage } from './wire/message-codec.js'

export { parseRecipient } from './identity/recipient.js'
export {
  parseAgeRecipient,
  formatAgeRecipient,
  parseAgeIdentity,
  parseAgeIdentityFile,
  formatAgeIdentity,
  generateAgeIdentity,
  AGE_RECIPIENT_PREFIX,
  AGE_IDENTITY_PREFIX,
} from './age/keys.js'
export { sealBytes, openBytes, sealStream, openStream } from './age/seal.js'
export type { AgeRecipient, SealOptions, ByteSource } from './age/seal.js'
export { sealFile, openFile } from './age/seal-file.js'
export type { FileOptions } from './age/seal-file.js'
export { X25519KeyAgreement } from './key-agreement.js'

export type { MessageChannel } from './interfaces/message-channel.js'
export { sendParts } from './interfaces/message-channel.js'
export { createMemoryChannelPair } from './channel/memory-channel.js'
export type { MemoryChannelOptions } from './channel/memory-channel.js'
export { channelFromStream } from './channel/stream-channel.js'
export type { StreamChannelOptions } from './channel/stream-channel.js'
export { ReplayGuard } from './channel/replay-guard.js'
export type { ReplayGuardOptions } from './channel/replay-guard.js'
export { initiateSecureChannel, acceptSecureChannel, MAX_FRAGMENT, DEFAULT_MAX_MESSAGE_SIZE, REKEY_INTERVAL } from './channel/secure-channel.js'
export type { SecureChannel, SecureChannelOptions, InitiateOptions, AcceptOptions, ChannelIdentity } from './channel/secure-channel.js'
export { channelFromWebSocket, WEBSOCKET_CLOSE_FAILED } from './channel/websocket-channel.js'
export type { WebSocketLike, WebSocketChannelOptions } from './channel/websocket-channel.js'
export { createChannelMux } from './channel/channel-mux.js'
export type { ChannelMuxOptions } from './channel/channel-mux.js'
export { sealApiRequest, ApiRequestOpener, API_REQUEST_MEDIA_TYPE, API_RESPONSE_MEDIA_TYPE, API_MAX_BODY, API_ENVELOPE_VERSION } from './api/api-envelope.js'
export type { ApiRequest, ApiResponse, PooledApiResponse, ApiMethod, OpenedApiRequest, SealedApiRequest, ApiRequestOpenerOptions } from './api/api-envelope.js'
export { BufferPool, readIntoPool } from './api/buffer-pool.js'
