import { abortError, ChannelClosedError, throwIfAborted, type AbortOptions } from '../errors.js'
import type { MessageChannel } from '../interfaces/message-channel.js'
import { MessageQueue } from './message-queue.js'

export interface MemoryChannelOptions {
  /** Messages buffered on the receiving side before `send` waits (default 16). */
  readonly highWaterMark?: number
}

class MemoryChannel implements MessageChannel {
  readonly inbox: MessageQueue
  peer!: MemoryChannel
  #closed = false
  #resolveClosed!: (reason: Error | undefined) => void
  readonly closed: Promise<Error | undefined>

  constructor(highWaterMark: number) {
    this.inbox = new MessageQueue(highWaterMark)
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
  }

  async send(message: Uint8Array, options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    if (this.#closed) throw new ChannelClosedError()
    // Copy (never Buffer#slice, a view): the sender may reuse its buffer, as with a socket.
    this.peer.inbox.push(new Uint8Array(message))
    const drained = this.peer.inbox.waitForDrain()
    const { signal } = options
    if (signal === undefined) return drained
    // The message is already delivered; an abort only stops waiting for room.
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(abortError(signal))
      signal.addEventListener('abort', onAbort, { once: true })
      void drained.then(() => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      })
    })
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.inbox.iterator(() => void this.close())
  }

  async close(reason?: Error): Promise<void> {
    this.finish(reason)
    this.peer.finish(reason === undefined ? undefined : new ChannelClosedError('The peer closed the channel after an error.', { cause: reason }))
  }

  finish(reason: Error | undefined): void {
    if (this.#closed) return
    this.#closed = true
    this.inbox.end(reason)
    this.#resolveClosed(reason)
  }
}

/**
 * Two connected in-memory message channels (what one sends, the other receives), with
 * backpressure: `send` waits while the peer has `highWaterMark` messages unread.
 * For tests and for instances in one process.
 */
export function createMemoryChannelPair(options: MemoryChannelOptions = {}): [MessageChannel, MessageChannel] {
  const highWaterMark = options.highWaterMark ?? 16
  const a = new MemoryChannel(highWaterMark)
  const b = new MemoryChannel(highWaterMark)
  a.peer = b
  b.peer = a
  return [a, b]
}
