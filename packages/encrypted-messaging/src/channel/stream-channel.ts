import type { Duplex } from 'node:stream'
import { ChannelClosedError, FrameTooLargeError, throwIfAborted, type AbortOptions } from '../errors.js'
import type { MessageChannel } from '../interfaces/message-channel.js'
import { MessageQueue } from './message-queue.js'

export interface StreamChannelOptions {
  /** Largest message accepted from the peer (default 16 MiB + 64 KiB). */
  readonly maxMessageSize?: number
  /** Messages buffered before the socket is paused (default 16). */
  readonly highWaterMark?: number
}

const LENGTH_BYTES = 4

/**
 * A message channel over a byte stream (a TCP socket, a pipe): each message is a
 * 4-byte big-endian length and the bytes. A length above `maxMessageSize` closes the
 * channel with FrameTooLargeError before anything is buffered. Backpressure both ways:
 * `send` waits for the socket to drain, and reading pauses while messages wait unread.
 */
export function channelFromStream(stream: Duplex, options: StreamChannelOptions = {}): MessageChannel {
  const maxMessageSize = options.maxMessageSize ?? 16 * 1024 * 1024 + 64 * 1024
  const inbox = new MessageQueue(options.highWaterMark ?? 16)
  let pending: Buffer[] = []
  let pendingLength = 0
  let closed = false
  let resolveClosed!: (reason: Error | undefined) => void
  const closedPromise = new Promise<Error | undefined>((resolve) => {
    resolveClosed = resolve
  })

  const finish = (reason: Error | undefined) => {
    if (closed) return
    closed = true
    inbox.end(reason)
    resolveClosed(reason)
    stream.off('data', onData)
    if (reason !== undefined) stream.destroy()
    else stream.end()
  }

  // Buffered chunks are joined only once a whole message (or a whole header) is in:
  // linear in the message size, however small the chunks the socket delivers.
  let expected = -1 // body length of the message being read, -1 while reading its header
  const take = (length: number): Buffer => {
    const joined = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingLength)
    const rest = joined.subarray(length)
    pending = rest.length > 0 ? [rest] : []
    pendingLength = rest.length
    return joined.subarray(0, length)
  }

  const onData = (chunk: Buffer) => {
    if (closed) return
    pending.push(chunk)
    pendingLength += chunk.length
    for (;;) {
      if (expected < 0) {
        if (pendingLength < LENGTH_BYTES) return
        const length = take(LENGTH_BYTES).readUInt32BE(0)
        if (length > maxMessageSize) {
          finish(new FrameTooLargeError(`The peer sent a ${length}-byte message; the limit is ${maxMessageSize}. The connection was closed.`))
          return
        }
        expected = length
      }
      if (pendingLength < expected) return
      // Copy out of the socket's buffer: the consumer may keep the message.
      const message = new Uint8Array(take(expected))
      expected = -1
      if (!inbox.push(message)) {
        stream.pause()
        void inbox.waitForDrain().then(() => {
          if (!closed) stream.resume()
        })
      }
    }
  }

  // Messages are often small requests waiting for an answer: Nagle's algorithm would hold
  // them back for up to 40 ms (with delayed ACKs), so send them at once.
  if (typeof (stream as { setNoDelay?: unknown }).setNoDelay === 'function') (stream as unknown as { setNoDelay(on: boolean): void }).setNoDelay(true)
  stream.on('data', onData)
  stream.once('end', () => finish(pendingLength > 0 || expected >= 0 ? new ChannelClosedError('The connection ended in the middle of a message.') : undefined))
  stream.once('close', () => finish(undefined))
  stream.on('error', (error) => finish(new ChannelClosedError(`The connection failed: ${error.message}`, { cause: error })))

  return {
    async send(message: Uint8Array, sendOptions: AbortOptions = {}): Promise<void> {
      throwIfAborted(sendOptions.signal)
      if (closed || stream.destroyed || stream.writableEnded) throw new ChannelClosedError()
      const header = Buffer.alloc(LENGTH_BYTES)
      header.writeUInt32BE(message.length)
      stream.write(header)
      if (!stream.write(message)) {
        await new Promise<void>((resolve, reject) => {
          const onDrain = () => {
            stream.off('close', onClose)
            resolve()
          }
          const onClose = () => {
            stream.off('drain', onDrain)
            reject(new ChannelClosedError())
          }
          stream.once('drain', onDrain)
          stream.once('close', onClose)
        })
      }
    },
    [Symbol.asyncIterator]() {
      return inbox.iterator(() => finish(undefined))
    },
    async close(reason?: Error): Promise<void> {
      finish(reason)
    },
    closed: closedPromise,
  }
}
