import { BadFrameError, ChannelClosedError, throwIfAborted, type AbortOptions } from '../errors.js'
import type { MessageChannel } from '../interfaces/message-channel.js'
import { MessageQueue } from './message-queue.js'

/**
 * The part of a WebSocket (the `ws` package's, or any with the same shape) a channel
 * needs. Declared here so this package does not depend on a WebSocket library.
 */
export interface WebSocketLike {
  readonly readyState: number
  readonly bufferedAmount: number
  send(data: Uint8Array, options: { binary: boolean; compress?: boolean }, callback: (error?: Error) => void): void
  close(code?: number, reason?: string): void
  terminate(): void
  pause(): void
  resume(): void
  on(event: 'message', listener: (data: unknown, isBinary: boolean) => void): unknown
  once(event: 'close', listener: (code: number, reason: Buffer) => void): unknown
  on(event: 'error', listener: (error: Error) => void): unknown
}

export interface WebSocketChannelOptions {
  /** Messages buffered unread before the socket is paused (default 16). */
  readonly highWaterMark?: number
  /** Bytes queued for sending before `send` waits for the socket (default 1 MiB). */
  readonly sendHighWaterMark?: number
  /** Turns the peer's close code into the error the channel closes with (undefined: a clean close for 1000/1001, ChannelClosedError otherwise). */
  readonly describeClose?: (code: number, reason: string) => Error | undefined
  /** Messages that arrived before the channel was made (a server may speak first, in the same packet as the upgrade). */
  readonly received?: readonly Uint8Array[]
}

const OPEN = 1
/** Close code sent when this side closes the channel because of an error. */
export const WEBSOCKET_CLOSE_FAILED = 4000

/**
 * A message channel over a WebSocket: one binary WebSocket message per channel message.
 * Text frames close the channel. Backpressure both ways: `send` waits while more than
 * `sendHighWaterMark` bytes are queued, and reading pauses the socket while messages
 * wait unread.
 */
export function channelFromWebSocket(socket: WebSocketLike, options: WebSocketChannelOptions = {}): MessageChannel {
  const inbox = new MessageQueue(options.highWaterMark ?? 16)
  const sendHighWaterMark = options.sendHighWaterMark ?? 1024 * 1024
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
  }

  for (const message of options.received ?? []) inbox.push(message)
  socket.on('message', (data, isBinary) => {
    if (closed) return
    if (!isBinary || !(data instanceof Uint8Array)) {
      const error = new BadFrameError('The peer sent a text frame on a binary channel; the connection was closed.')
      finish(error)
      socket.close(WEBSOCKET_CLOSE_FAILED, 'binary frames only')
      return
    }
    if (!inbox.push(data)) {
      socket.pause()
      void inbox.waitForDrain().then(() => {
        if (!closed) socket.resume()
      })
    }
  })
  socket.once('close', (code, reason) => {
    const text = reason.toString()
    const described = options.describeClose?.(code, text)
    if (described !== undefined) return finish(described)
    if (code === 1000 || code === 1001) return finish(undefined)
    finish(new ChannelClosedError(`The connection closed (${code}${text ? `: ${text}` : ''}); reconnect to continue.`))
  })
  socket.on('error', (error) => {
    finish(new ChannelClosedError(`The connection failed: ${error.message}`, { cause: error }))
    socket.terminate()
  })

  return {
    async send(message: Uint8Array, sendOptions: AbortOptions = {}): Promise<void> {
      throwIfAborted(sendOptions.signal)
      if (closed) throw new ChannelClosedError()
      // The peer is closing: fail with its reason (its close code may say why), not a generic one.
      if (socket.readyState !== OPEN) throw (await closedPromise) ?? new ChannelClosedError()
      let done: Promise<void> | undefined
      if (socket.bufferedAmount + message.length > sendHighWaterMark) {
        done = new Promise((resolve, reject) => {
          socket.send(message, { binary: true, compress: false }, (error) => (error === undefined || error === null ? resolve() : reject(new ChannelClosedError(`The connection failed: ${error.message}`, { cause: error }))))
        })
      } else socket.send(message, { binary: true, compress: false }, () => {})
      if (done !== undefined) await done
    },
    [Symbol.asyncIterator]() {
      return inbox.iterator(() => {
        finish(undefined)
        socket.close(1000)
      })
    },
    /** Closes; a `reason` with a `closeCode` (4000–4999) sends that WebSocket close code. */
    async close(reason?: Error): Promise<void> {
      if (closed) return
      finish(reason)
      if (socket.readyState === OPEN) socket.close(reason === undefined ? 1000 : closeCodeOf(reason), reason === undefined ? '' : truncate(reason.message))
      else socket.terminate()
    },
    closed: closedPromise,
  }
}

/** The close code for a failure: the error's own `closeCode` when it is an application code (4000–4999), else 4000. */
function closeCodeOf(reason: Error): number {
  const code = (reason as { closeCode?: unknown }).closeCode
  return typeof code === 'number' && Number.isInteger(code) && code >= 4000 && code <= 4999 ? code : WEBSOCKET_CLOSE_FAILED
}

// A close reason is at most 123 bytes of UTF-8.
function truncate(text: string): string {
  const bytes = Buffer.from(text)
  return bytes.length <= 123 ? text : bytes.subarray(0, 120).toString().replace(/\uFFFD+$/, '')
}
