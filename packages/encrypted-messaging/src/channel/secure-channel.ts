import { constantTimeEqual, ed25519PublicKeyToX25519, ed25519Verify, ready, ED25519_PUBLIC_KEY_LENGTH, ED25519_SIGNATURE_LENGTH } from '../crypto.js'
import {
  abortError,
  EncryptedMessagingError,
  HandshakeFailedError,
  HandshakeTimeoutError,
  PeerRejectedError,
  throwIfAborted,
  type AbortOptions,
} from '../errors.js'
import { parsePublicId } from '../identity/public-id.js'
import type { KeyAgreement, Signer } from '../interfaces/key-agreement.js'
import type { MessageChannel } from '../interfaces/message-channel.js'
import { HandshakeState } from '../noise/handshake-state.js'
import type { NoiseHash } from '../noise/symmetric-state.js'
import { domainTag } from '../wire/constants.js'
import { tai64nNow, TIMESTAMP_LENGTH, type ReplayGuard } from './replay-guard.js'
import { NoiseTransportChannel, type SecureChannel } from './transport.js'

export { DEFAULT_MAX_MESSAGE_SIZE, MAX_FRAGMENT, MAX_NOISE_MESSAGE, REKEY_INTERVAL } from './transport.js'
export type { SecureChannel } from './transport.js'

const MAX_HANDSHAKE_MESSAGE = 1024
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000

/** First byte of message 1: which handshake follows. Also mixed into the prologue. */
const HANDSHAKE_TYPES = {
  1: { pattern: 'IK', hash: 'BLAKE2b' },
  2: { pattern: 'XX', hash: 'BLAKE2b' },
  3: { pattern: 'IK', hash: 'SHA256' },
  4: { pattern: 'XX', hash: 'SHA256' },
} as const satisfies Record<number, { pattern: 'IK' | 'XX'; hash: NoiseHash }>
type HandshakeType = keyof typeof HANDSHAKE_TYPES

const PROLOGUE_TAG = domainTag('secure-channel')
const AUTH_TAG = domainTag('secure-channel-auth')

/** What a node brings to a handshake: its Ed25519 signer and X25519 key agreement (an Identity). */
export type ChannelIdentity = Signer & KeyAgreement

export interface SecureChannelOptions extends AbortOptions {
  readonly identity: ChannelIdentity
  /** Application prologue, bound into the handshake (both sides must give the same). */
  readonly prologue?: Uint8Array
  readonly hash?: NoiseHash
  readonly timeoutMs?: number
  /** Largest application message either way (default 16 MiB). */
  readonly maxMessageSize?: number
  /** Internal, for tests: frames between rekeys. */
  readonly rekeyInterval?: number
}

export interface InitiateOptions extends SecureChannelOptions {
  /** The responder's Ed25519 key or public ID: known → Noise IK (talk to it or nobody); absent → XX. */
  readonly remotePublicKey?: Uint8Array | string
}

export interface AcceptOptions extends SecureChannelOptions {
  /** Decides whether a proven initiator key may connect. Default: everyone. */
  readonly authorize?: (remotePublicKey: Uint8Array, remotePublicId: string) => boolean | Promise<boolean>
  /** Refuses replayed first messages; share one across a node's listeners. */
  readonly replayGuard?: ReplayGuard
}

function prologueFor(type: HandshakeType, application: Uint8Array | undefined): Uint8Array {
  const app = application ?? new Uint8Array(0)
  const out = Buffer.alloc(PROLOGUE_TAG.length + 1 + 4 + app.length)
  out.set(PROLOGUE_TAG, 0)
  out[PROLOGUE_TAG.length] = type
  out.writeUInt32BE(app.length, PROLOGUE_TAG.length + 1)
  out.set(app, PROLOGUE_TAG.length + 5)
  return out
}

function authMessage(role: 'I' | 'R', handshakeHash: Uint8Array): Uint8Array {
  return Buffer.concat([AUTH_TAG, Buffer.from(role), handshakeHash])
}

/** Ed25519 key ‖ signature over (tag ‖ role ‖ handshake hash) [‖ timestamp]. */
function authPayload(identity: Signer, role: 'I' | 'R', handshakeHash: Uint8Array, timestamp?: Uint8Array): Uint8Array {
  const signature = identity.sign(authMessage(role, handshakeHash))
  return Buffer.concat([identity.publicKey, signature, ...(timestamp === undefined ? [] : [timestamp])])
}

/**
 * Checks a peer's proof: its Ed25519 key converts to the X25519 static key it used in
 * Noise, and it signed this handshake with that Ed25519 key. Returns the key and timestamp.
 */
function verifyAuth(payload: Uint8Array, role: 'I' | 'R', handshakeHash: Uint8Array, remoteStatic: Uint8Array | undefined, withTimestamp: boolean): { publicKey: Uint8Array; timestamp?: Uint8Array } {
  const expected = ED25519_PUBLIC_KEY_LENGTH + ED25519_SIGNATURE_LENGTH + (withTimestamp ? TIMESTAMP_LENGTH : 0)
  if (payload.length !== expected || remoteStatic === undefined) throw new HandshakeFailedError()
  const publicKey = new Uint8Array(payload.subarray(0, ED25519_PUBLIC_KEY_LENGTH))
  const signature = payload.subarray(ED25519_PUBLIC_KEY_LENGTH, ED25519_PUBLIC_KEY_LENGTH + ED25519_SIGNATURE_LENGTH)
  const converted = ed25519PublicKeyToX25519(publicKey)
  if (converted === undefined || !constantTimeEqual(converted, remoteStatic)) throw new HandshakeFailedError()
  if (!ed25519Verify(publicKey, authMessage(role, handshakeHash), signature)) throw new HandshakeFailedError()
  return withTimestamp ? { publicKey, timestamp: new Uint8Array(payload.subarray(expected - TIMESTAMP_LENGTH)) } : { publicKey }
}

/** Runs `work` with a deadline and the caller's abort signal; closes `raw` when either fires. */
async function withDeadline<T>(raw: MessageChannel, options: SecureChannelOptions, work: () => Promise<T>): Promise<T> {
  throwIfAborted(options.signal)
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  const stop = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HandshakeTimeoutError()), options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS)
    onAbort = () => reject(abortError(options.signal))
    options.signal?.addEventListener('abort', onAbort, { once: true })
  })
  stop.catch(() => {})
  try {
    return await Promise.race([work(), stop])
  } catch (error) {
    const failure = error instanceof EncryptedMessagingError || (error as Error)?.name === 'AbortError' ? (error as Error) : new HandshakeFailedError(undefined, { cause: error })
    await raw.close(failure).catch(() => {})
    throw failure
  } finally {
    clearTimeout(timer)
    if (onAbort !== undefined) options.signal?.removeEventListener('abort', onAbort)
  }
}

async function nextHandshakeMessage(iterator: AsyncIterator<Uint8Array>): Promise<Uint8Array> {
  let result: IteratorResult<Uint8Array>
  try {
    result = await iterator.next()
  } catch (error) {
    throw new HandshakeFailedError('The connection failed during the secure handshake.', { cause: error })
  }
  if (result.done === true) throw new HandshakeFailedError('The peer closed the connection during the secure handshake.')
  if (result.value.length > MAX_HANDSHAKE_MESSAGE) throw new HandshakeFailedError()
  return result.value
}

function remoteKeyBytes(key: Uint8Array | string): Uint8Array {
  if (typeof key === 'string') return parsePublicId(key)
  if (!(key instanceof Uint8Array) || key.length !== ED25519_PUBLIC_KEY_LENGTH) throw new RangeError('remotePublicKey must be a 32-byte Ed25519 key or a public ID')
  return key
}

/**
 * Opens a secure channel over `raw` as the initiator. With `remotePublicKey` it runs
 * Noise IK to that key: only its holder can answer, so an impostor fails the handshake.
 * Without, Noise XX, and the peer's proven key is in the result.
 * @throws {HandshakeFailedError | HandshakeTimeoutError} and closes `raw`.
 */
export async function initiateSecureChannel(raw: MessageChannel, options: InitiateOptions): Promise<SecureChannel> {
  await ready()
  const hash = options.hash ?? 'BLAKE2b'
  const expectedKey = options.remotePublicKey === undefined ? undefined : remoteKeyBytes(options.remotePublicKey)
  const type = (expectedKey !== undefined ? (hash === 'BLAKE2b' ? 1 : 3) : hash === 'BLAKE2b' ? 2 : 4) as HandshakeType
  const remoteStatic = expectedKey === undefined ? undefined : ed25519PublicKeyToX25519(expectedKey)
  if (expectedKey !== undefined && remoteStatic === undefined) throw new RangeError('remotePublicKey is not a valid Ed25519 public key')
  const iterator = raw[Symbol.asyncIterator]()
  return withDeadline(raw, options, async () => {
    const handshake = new HandshakeState({
      protocolName: `Noise_${HANDSHAKE_TYPES[type].pattern}_25519_ChaChaPoly_${hash}`,
      initiator: true,
      prologue: prologueFor(type, options.prologue),
      staticKey: options.identity,
      ...(remoteStatic === undefined ? {} : { remoteStaticKey: remoteStatic }),
    })
    try {
      let responderKey: Uint8Array
      if (expectedKey !== undefined) {
        const first = handshake.writeMessage((h) => authPayload(options.identity, 'I', h, tai64nNow()))
        await raw.send(Buffer.concat([Buffer.from([type]), first]))
        const reply = handshake.readMessage(await nextHandshakeMessage(iterator))
        responderKey = verifyAuth(reply.payload, 'R', reply.handshakeHashBeforePayload, handshake.remoteStaticKey, false).publicKey
        if (!constantTimeEqual(responderKey, expectedKey)) throw new HandshakeFailedError()
      } else {
        await raw.send(Buffer.concat([Buffer.from([type]), handshake.writeMessage()]))
        const reply = handshake.readMessage(await nextHandshakeMessage(iterator))
        responderKey = verifyAuth(reply.payload, 'R', reply.handshakeHashBeforePayload, handshake.remoteStaticKey, false).publicKey
        await raw.send(handshake.writeMessage((h) => authPayload(options.identity, 'I', h, tai64nNow())))
      }
      const result = handshake.result as NonNullable<HandshakeState['result']>
      return new NoiseTransportChannel(raw, iterator, result.send, result.receive, { remotePublicKey: responderKey, handshakeHash: result.handshakeHash, maxMessageSize: options.maxMessageSize, rekeyInterval: options.rekeyInterval })
    } catch (error) {
      handshake.destroy()
      throw error
    }
  })
}

/**
 * Accepts a secure channel over `raw` as the responder: IK or XX, as the initiator chose.
 * The initiator's key is proven, checked against the replay guard, then `authorize`d.
 * @throws {HandshakeFailedError | HandshakeTimeoutError | ReplayedHandshakeError | PeerRejectedError} and closes `raw`.
 */
export async function acceptSecureChannel(raw: MessageChannel, options: AcceptOptions): Promise<SecureChannel> {
  await ready()
  const iterator = raw[Symbol.asyncIterator]()
  return withDeadline(raw, options, async () => {
    const first = await nextHandshakeMessage(iterator)
    const type = first[0] as HandshakeType
    const suite = HANDSHAKE_TYPES[type]
    if (suite === undefined) throw new HandshakeFailedError()
    const handshake = new HandshakeState({
      protocolName: `Noise_${suite.pattern}_25519_ChaChaPoly_${suite.hash}`,
      initiator: false,
      prologue: prologueFor(type, options.prologue),
      staticKey: options.identity,
    })
    try {
      let initiator: { publicKey: Uint8Array; timestamp?: Uint8Array }
      if (suite.pattern === 'IK') {
        const hello = handshake.readMessage(first.subarray(1))
        initiator = verifyAuth(hello.payload, 'I', hello.handshakeHashBeforePayload, handshake.remoteStaticKey, true)
        options.replayGuard?.accept(initiator.publicKey, initiator.timestamp as Uint8Array)
        await raw.send(handshake.writeMessage((h) => authPayload(options.identity, 'R', h)))
      } else {
        const hello = handshake.readMessage(first.subarray(1))
        if (hello.payload.length !== 0) throw new HandshakeFailedError()
        await raw.send(handshake.writeMessage((h) => authPayload(options.identity, 'R', h)))
        const last = handshake.readMessage(await nextHandshakeMessage(iterator))
        initiator = verifyAuth(last.payload, 'I', last.handshakeHashBeforePayload, handshake.remoteStaticKey, true)
        options.replayGuard?.accept(initiator.publicKey, initiator.timestamp as Uint8Array)
      }
      const result = handshake.result as NonNullable<HandshakeState['result']>
      const channel = new NoiseTransportChannel(raw, iterator, result.send, result.receive, { remotePublicKey: initiator.publicKey, handshakeHash: result.handshakeHash, maxMessageSize: options.maxMessageSize, rekeyInterval: options.rekeyInterval })
      const allowed = options.authorize === undefined ? true : await options.authorize(new Uint8Array(initiator.publicKey), channel.remotePublicId)
      if (!allowed) {
        // Tell the initiator inside the session (authenticated), then close.
        await channel.reject()
        throw new PeerRejectedError(`The device ${channel.remotePublicId} proved its key but is not allowed here.`)
      }
      return channel
    } catch (error) {
      handshake.destroy()
      throw error
    }
  })
}
