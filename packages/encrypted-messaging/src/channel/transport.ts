import { AEAD_TAG_LENGTH } from '../crypto.js'
import {
  abortError,
  BadFrameError,
  ChannelClosedError,
  EncryptedMessagingError,
  FrameTooLargeError,
  MessageTooLargeError,
  PeerRejectedError,
  throwIfAborted,
  type AbortOptions,
} from '../errors.js'
import { encodePublicId } from '../identity/public-id.js'
import { joinParts, type MessageChannel } from '../interfaces/message-channel.js'
import type { CipherState } from '../noise/cipher-state.js'
import { MessageQueue } from './message-queue.js'

/** Largest Noise message (spec §3). */
export const MAX_NOISE_MESSAGE = 65535
/** Application bytes per transport frame: the Noise maximum less the tag and the flag byte. */
export const MAX_FRAGMENT = MAX_NOISE_MESSAGE - AEAD_TAG_LENGTH - 1
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
/** Each direction rekeys (Noise Rekey()) after every this many frames. */
export const REKEY_INTERVAL = 2 ** 16
/** Decrypted messages (and bytes of them) buffered before the transport stops reading the raw channel. */
const INBOX_HIGH_WATER_MARK = 16
const INBOX_HIGH_WATER_BYTES = 4 * 1024 * 1024

const FLAG_FINAL = 0
const FLAG_MORE = 1
const FLAG_CLOSE = 2
/** Each flag as the one-byte start of a frame's plaintext (never written to). */
const FLAG_BYTES = [Uint8Array.of(FLAG_FINAL), Uint8Array.of(FLAG_MORE), Uint8Array.of(FLAG_CLOSE)]
const CLOSE_NORMAL = 0
const CLOSE_REJECTED = 1
const EMPTY = new Uint8Array(0)

/** A message channel whose peer proved its identity, with everything encrypted. */
export interface SecureChannel extends MessageChannel {
  /** Always there on a secure channel: each frame is encrypted from the parts it covers. */
  sendParts(parts: readonly Uint8Array[], options?: AbortOptions): Promise<void>
  /** The peer's Ed25519 public key, proven in the handshake. */
  readonly remotePublicKey: Uint8Array
  readonly remotePublicId: string
  /** Noise handshake hash: unique per session, for binding (e.g. a PIN check) to it. */
  readonly handshakeHash: Uint8Array
  /** The largest application message either way, now. */
  readonly maxMessageSize: number
  /**
   * Changes the largest message either way from now on: small while a peer is not yet
   * trusted (a stranger cannot make this side buffer 16 MiB), larger once it is.
   */
  setMaxMessageSize(bytes: number): void
}

export interface TransportOptions {
  readonly remotePublicKey: Uint8Array
  readonly handshakeHash: Uint8Array
  /** Largest application message either way (default 16 MiB). */
  readonly maxMessageSize?: number | undefined
  /** Internal, for tests: frames between rekeys (default 2^16). */
  readonly rekeyInterval?: number | undefined
}

/**
 * The transport phase of the secure channel: application messages cut into fragments of
 * at most {@link MAX_FRAGMENT} bytes, each encrypted as one Noise transport message
 * `ENCRYPT(flag ‖ data)`; flag 0 = last fragment, 1 = more follow (never empty),
 * 2 = close (data: one reason byte). Nonces are implicit counters, so a dropped, replayed,
 * reordered or modified frame fails authentication and closes the session
 * (BadFrameError). Each direction rekeys every `rekeyInterval` frames.
 */
export class NoiseTransportChannel implements SecureChannel {
  readonly remotePublicKey: Uint8Array
  readonly remotePublicId: string
  readonly handshakeHash: Uint8Array
  readonly closed: Promise<Error | undefined>
  readonly #raw: MessageChannel
  readonly #send: CipherState
  readonly #receive: CipherState
  #maxMessageSize: number
  readonly #rekeyInterval: number
  readonly #inbox = new MessageQueue(INBOX_HIGH_WATER_MARK, INBOX_HIGH_WATER_BYTES)
  #sent = 0
  #received = 0
  #sending: Promise<unknown> = Promise.resolve()
  #state: 'open' | 'closing' | 'closed' = 'open'
  #finished = false
  #resolveClosed!: (reason: Error | undefined) => void

  constructor(raw: MessageChannel, rawIterator: AsyncIterator<Uint8Array>, send: CipherState, receive: CipherState, options: TransportOptions) {
    this.#raw = raw
    this.#send = send
    this.#receive = receive
    this.remotePublicKey = new Uint8Array(options.remotePublicKey)
    this.remotePublicId = encodePublicId(options.remotePublicKey)
    this.handshakeHash = new Uint8Array(options.handshakeHash)
    this.#maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE
    this.setMaxMessageSize(options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE)
    this.#rekeyInterval = options.rekeyInterval ?? REKEY_INTERVAL
    if (!Number.isSafeInteger(this.#rekeyInterval) || this.#rekeyInterval < 1) throw new RangeError('rekeyInterval must be a positive integer')
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
    // Frames are read and checked as they arrive, so a close, a rejection or tampering
    // is seen at once; reading pauses while decrypted messages wait unread (backpressure).
    void this.#pump(rawIterator)
  }

  get maxMessageSize(): number {
    return this.#maxMessageSize
  }

  setMaxMessageSize(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes < 1) throw new RangeError('maxMessageSize must be a positive integer')
    this.#maxMessageSize = bytes
  }

  #encryptFrame(flag: number, data: Uint8Array | readonly Uint8Array[]): Uint8Array {
    // The flag byte and the data are encrypted as one plaintext without being joined first.
    // Throws NonceExhaustedError at 2^64-1 frames (unreachable in practice, but never a wrap).
    const frame = this.#send.encryptWithAd(EMPTY, data instanceof Uint8Array ? [FLAG_BYTES[flag] as Uint8Array, data] : [FLAG_BYTES[flag] as Uint8Array, ...data])
    if (++this.#sent % this.#rekeyInterval === 0) {
      this.#sent = 0
      this.#send.rekey()
    }
    return frame
  }

  /**
   * Encrypts and sends one message; resolves when the raw channel accepted its last
   * fragment (backpressure). Messages go out in call order, never interleaved. An abort
   * takes effect only before the first fragment is sent.
   * @throws {MessageTooLargeError} over `maxMessageSize` (the session stays open).
   * @throws {ChannelClosedError} once the session is closed.
   */
  send(message: Uint8Array, options: AbortOptions = {}): Promise<void> {
    return this.sendParts([message], options)
  }

  /**
   * Sends the parts as one message, as {@link send} does with them joined: each frame is
   * encrypted straight from the parts it covers. They must not change until this settles.
   */
  sendParts(parts: readonly Uint8Array[], options: AbortOptions = {}): Promise<void> {
    const { signal } = options
    throwIfAborted(signal)
    if (this.#state !== 'open') return Promise.reject(new ChannelClosedError())
    let length = 0
    for (const part of parts) length += part.length
    if (length > this.#maxMessageSize) {
      return Promise.reject(new MessageTooLargeError(`This message is ${length} bytes; the secure channel carries at most ${this.#maxMessageSize}.`))
    }
    let started = false
    const run = async () => {
      throwIfAborted(signal)
      if (this.#state !== 'open') throw new ChannelClosedError()
      started = true
      try {
        // Where the next frame starts: a part and an offset in it.
        let part = 0
        let at = 0
        let sent = 0
        do {
          const end = Math.min(sent + MAX_FRAGMENT, length)
          const slices: Uint8Array[] = []
          for (let need = end - sent; need > 0; ) {
            const current = parts[part] as Uint8Array
            const take = Math.min(need, current.length - at)
            if (take > 0) slices.push(current.subarray(at, at + take))
            at += take
            need -= take
            if (at === current.length) {
              part++
              at = 0
            }
          }
          const frame = this.#encryptFrame(end < length ? FLAG_MORE : FLAG_FINAL, slices)
          await this.#raw.send(frame)
          sent = end
        } while (sent < length)
      } catch (error) {
        // A half-sent message cannot be taken back: the session is over.
        const failure = error instanceof EncryptedMessagingError ? error : new ChannelClosedError('The connection failed.', { cause: error })
        await this.#fail(failure)
        throw failure
      }
    }
    const next = this.#sending.then(run)
    this.#sending = next.catch(() => {})
    if (signal === undefined) return next
    // While queued behind other messages, an abort rejects at once (and run() skips it).
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        if (!started) reject(abortError(signal))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      next.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
    })
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
        if (frame.length < AEAD_TAG_LENGTH + 1) throw new BadFrameError()
        const plaintext = this.#receive.decryptWithAd(EMPTY, frame)
        if (plaintext === undefined) throw new BadFrameError()
        if (++this.#received % this.#rekeyInterval === 0) {
          this.#received = 0
          this.#receive.rekey()
        }
        const flag = plaintext[0]
        const data = plaintext.subarray(1)
        if (flag === FLAG_CLOSE) {
          if (data.length !== 1 || parts.length > 0) throw new BadFrameError()
          if (data[0] === CLOSE_REJECTED) throw new PeerRejectedError('The peer refused this device: pair it first, or ask its owner to unblock it.')
          if (data[0] !== CLOSE_NORMAL) throw new BadFrameError()
          this.#state = 'closing'
          this.#inbox.end()
          await this.#raw.close()
          return this.#finish(undefined)
        }
        if (flag !== FLAG_FINAL && !(flag === FLAG_MORE && data.length > 0)) throw new BadFrameError()
        size += data.length
        if (size > this.#maxMessageSize) throw new MessageTooLargeError(`The peer sent a message over ${this.#maxMessageSize} bytes; the session was closed.`)
        parts.push(data)
        if (flag === FLAG_FINAL) {
          const message = parts.length === 1 ? (parts[0] as Uint8Array) : joinParts(parts)
          parts.length = 0
          size = 0
          if (!this.#inbox.push(message)) await this.#inbox.waitForDrain()
        }
      }
    } catch (error) {
      await this.#fail(error instanceof Error ? error : new BadFrameError(undefined, { cause: error }))
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
    if (this.#finished) return
    try {
      await this.#raw.send(this.#encryptFrame(FLAG_CLOSE, new Uint8Array([reason])))
    } catch {
      // The connection is already gone; closing is all that is left.
    }
    // A clean close of the raw channel: the close frame must reach the peer first.
    await this.#raw.close().catch(() => {})
    this.#finish(error)
  }

  /**
   * Closes the session. Without `reason`: an authenticated close frame after the messages
   * already accepted, then the raw channel closes cleanly. With: closed at once as failed.
   */
  async close(reason?: Error): Promise<void> {
    if (reason !== undefined) return this.#fail(reason)
    await this.#closeWith(CLOSE_NORMAL, undefined)
    await this.closed
  }
}
