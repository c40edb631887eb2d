import { constantTimeEqual, ed25519PublicKeyToX25519, ed25519Verify, ED25519_PUBLIC_KEY_LENGTH, ED25519_SIGNATURE_LENGTH } from '../crypto.js'
import {
  abortError,
  BadFrameError,
  ChannelClosedError,
  EncryptedMessagingError,
  FrameTooLargeError,
  HandshakeFailedError,
  HandshakeTimeoutError,
  MessageTooLargeError,
  PeerRejectedError,
  throwIfAborted,
  type AbortOptions,
} from '../errors.js'
import { encodePublicId, parsePublicId } from '../identity/public-id.js'
import type { KeyAgreement, Signer } from '../interfaces/key-agreement.js'
import type { MessageChannel } from '../interfaces/message-channel.js'
import type { CipherState } from '../noise/cipher-state.js'
import { HandshakeState } from '../noise/handshake-state.js'
import type { NoiseHash } from '../noise/symmetric-state.js'
import { domainTag } from '../wire/constants.js'
import { MessageQueue } from './message-queue.js'
import { tai64nNow, TIMESTAMP_LENGTH, type ReplayGuard } from './replay-guard.js'

/** Largest Noise message (spec §3). */
export const MAX_NOISE_MESSAGE = 65535
const TAG = 16
/** Application bytes per transport frame: the Noise maximum less the tag and the flag byte. */
export const MAX_FRAGMENT = MAX_NOISE_MESSAGE - TAG - 1
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
/** Each direction rekeys (Noise Rekey()) after this many frames. */
export const REKEY_INTERVAL = 2 ** 16
const MAX_HANDSHAKE_MESSAGE = 1024
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000

const FLAG_FINAL = 0
const FLAG_MORE = 1
const FLAG_CLOSE = 2
const CLOSE_NORMAL = 0
const CLOSE_REJECTED = 1

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

/** A message channel whose peer proved its identity, with everything encrypted. */
export interface SecureChannel extends MessageChannel {
  /** The peer's Ed25519 public key, proven in the handshake. */
  readonly remotePublicKey: Uint8Array
  readonly remotePublicId: string
  /** Noise handshake hash: unique per session, for binding (e.g. a PIN check) to it. */
  readonly handshakeHash: Uint8Array
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
  const publicKey = payload.slice(0, ED25519_PUBLIC_KEY_LENGTH)
  const signature = payload.subarray(ED25519_PUBLIC_KEY_LENGTH, ED25519_PUBLIC_KEY_LENGTH + ED25519_SIGNATURE_LENGTH)
  const converted = ed25519PublicKeyToX25519(publicKey)
  if (converted === undefined || !constantTimeEqual(converted, remoteStatic)) throw new HandshakeFailedError()
  if (!ed25519Verify(publicKey, authMessage(role, handshakeHash), signature)) throw new HandshakeFailedError()
  return withTimestamp ? { publicKey, timestamp: payload.slice(expected - TIMESTAMP_LENGTH) } : { publicKey }
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
      return new NoiseTransportChannel(raw, iterator, result.send, result.receive, responderKey, result.handshakeHash, options)
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
      const channel = new NoiseTransportChannel(raw, iterator, result.send, result.receive, initiator.publicKey, result.handshakeHash, options)
      const allowed = options.authorize === undefined ? true : await options.authorize(initiator.publicKey.slice(), channel.remotePublicId)
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

/**
 * The transport phase: application messages cut into fragments of at most
 * {@link MAX_FRAGMENT} bytes, each encrypted as one Noise transport message
 * `ENCRYPT(flag ‖ data)`; flag 0 = last fragment, 1 = more follow, 2 = close (data: reason).
 * Nonces are implicit counters, so a dropped, replayed or reordered frame fails
 * authentication and closes the session. Each direction rekeys every REKEY_INTERVAL frames.
 */
class NoiseTransportChannel implements SecureChannel {
  readonly remotePublicKey: Uint8Array
  readonly remotePublicId: string
  readonly handshakeHash: Uint8Array
  readonly closed: Promise<Error | undefined>
  readonly #raw: MessageChannel
  readonly #send: CipherState
  readonly #receive: CipherState
  readonly #maxMessageSize: number
  readonly #rekeyInterval: number
  readonly #inbox = new MessageQueue(16)
  #sent = 0
  #received = 0
  #sending: Promise<unknown> = Promise.resolve()
  #state: 'open' | 'closing' | 'closed' = 'open'
  #finished = false
  #resolveClosed!: (reason: Error | undefined) => void

  constructor(raw: MessageChannel, rawIterator: AsyncIterator<Uint8Array>, send: CipherState, receive: CipherState, remotePublicKey: Uint8Array, handshakeHash: Uint8Array, options: SecureChannelOptions) {
    this.#raw = raw
    this.#send = send
    this.#receive = receive
    this.remotePublicKey = remotePublicKey
    this.remotePublicId = encodePublicId(remotePublicKey)
    this.handshakeHash = handshakeHash
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE
    this.#rekeyInterval = options.rekeyInterval ?? REKEY_INTERVAL
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
    // Frames are read and checked as they arrive, so a close, a rejection or tampering
    // is seen at once; reading pauses while decrypted messages wait unread (backpressure).
    void this.#pump(rawIterator)
  }

  #encryptFrame(flag: number, data: Uint8Array): Uint8Array {
    const plaintext = new Uint8Array(data.length + 1)
    plaintext[0] = flag
    plaintext.set(data, 1)
    const frame = this.#send.encryptWithAd(new Uint8Array(0), plaintext)
    if (++this.#sent % this.#rekeyInterval === 0) this.#send.rekey()
    return frame
  }

  send(message: Uint8Array, options: AbortOptions = {}): Promise<void> {
    const run = async () => {
      throwIfAborted(options.signal)
      if (this.#state !== 'open') throw new ChannelClosedError()
      if (message.length > this.#maxMessageSize) {
        throw new MessageTooLargeError(`This message is ${message.length} bytes; the secure channel carries at most ${this.#maxMessageSize}.`)
      }
      let offset = 0
      do {
        const end = Math.min(offset + MAX_FRAGMENT, message.length)
        const frame = this.#encryptFrame(end < message.length ? FLAG_MORE : FLAG_FINAL, message.subarray(offset, end))
        await this.#raw.send(frame)
        offset = end
      } while (offset < message.length)
    }
    // One message's fragments never interleave with another's, and nonces follow send order.
    const next = this.#sending.then(run)
    this.#sending = next.catch(() => {})
    return next
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.#inbox.iterator(() => void this.close())
  }

  async #pump(rawIterator: AsyncIterator<Uint8Array>): Promise<void> {
    const parts: Uint8Array[] = []
    let size = 0
    try {
      for (;;) {
        let result: IteratorResult<Uint8Array>
        try {
          result = await rawIterator.next()
        } catch (error) {
          if (this.#state !== 'open') return
          throw error instanceof EncryptedMessagingError ? error : new ChannelClosedError('The connection failed.', { cause: error })
        }
        if (this.#state === 'closed') return
        if (result.done === true) {
          if (this.#state !== 'open') return this.#finish(undefined)
          throw new ChannelClosedError('The connection ended without the peer closing the session (a network cut, or tampering).')
        }
        const frame = result.value
        if (frame.length > MAX_NOISE_MESSAGE) throw new FrameTooLargeError()
        const plaintext = this.#receive.decryptWithAd(new Uint8Array(0), frame)
        if (plaintext === undefined || plaintext.length === 0) throw new BadFrameError()
        if (++this.#received % this.#rekeyInterval === 0) this.#receive.rekey()
        const flag = plaintext[0]
        const data = plaintext.subarray(1)
        if (flag === FLAG_CLOSE) {
          if (data[0] === CLOSE_REJECTED) throw new PeerRejectedError('The peer refused this device: pair it first, or ask its owner to unblock it.')
          this.#state = 'closing'
          this.#inbox.end()
          await this.#raw.close()
          return this.#finish(undefined)
        }
        if (flag !== FLAG_FINAL && flag !== FLAG_MORE) throw new BadFrameError()
        size += data.length
        if (size > this.#maxMessageSize) throw new MessageTooLargeError(`The peer sent a message over ${this.#maxMessageSize} bytes; the session was closed.`)
        parts.push(data)
        if (flag === FLAG_FINAL) {
          const message = parts.length === 1 ? (parts[0] as Uint8Array) : new Uint8Array(Buffer.concat(parts, size))
          parts.length = 0
          size = 0
          if (!this.#inbox.push(message)) await this.#inbox.waitForDrain()
        }
      }
    } catch (error) {
      await this.#fail(error as Error)
    }
  }

  async #fail(error: Error): Promise<void> {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#inbox.end(error)
    await this.#raw.close(error).catch(() => {})
    this.#finish(error)
  }

  #finish(reason: Error | undefined): void {
    if (this.#finished) return
    this.#finished = true
    this.#state = 'closed'
    this.#inbox.end(reason)
    this.#send.destroy()
    this.#receive.destroy()
    this.#resolveClosed(reason)
  }

  /** Sends an authenticated "rejected" close and closes. Internal to accept. */
  async reject(): Promise<void> {
    await this.#closeWith(CLOSE_REJECTED, new PeerRejectedError())
  }

  async #closeWith(reason: number, error: Error | undefined): Promise<void> {
    if (this.#state !== 'open') return
    this.#state = 'closing'
    await this.#sending
    try {
      await this.#raw.send(this.#encryptFrame(FLAG_CLOSE, new Uint8Array([reason])))
    } catch {
      // The connection is already gone; closing is all that is left.
    }
    // A clean close of the raw channel: the close frame must reach the peer first.
    await this.#raw.close().catch(() => {})
    this.#finish(error)
  }

  async close(reason?: Error): Promise<void> {
    if (reason !== undefined) return this.#fail(reason)
    await this.#closeWith(CLOSE_NORMAL, undefined)
  }
}
