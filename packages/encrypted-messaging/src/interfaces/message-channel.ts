import type { AbortOptions } from '../errors.js'

/**
 * An ordered, reliable channel of whole messages (bytes) between two peers: what the
 * secure channel runs over and what it offers on top. A TCP or WebSocket connection, an
 * in-memory pair, or a route through the hub are all message channels.
 *
 * - `send` resolves when the message was accepted: awaiting it is backpressure.
 * - Receiving is async iteration; one consumer at a time. Iteration ends when the
 *   channel closes cleanly and throws the error when it closes with one.
 * - `closed` resolves once, with undefined for a clean close or the error that closed it.
 */
export interface MessageChannel extends AsyncIterable<Uint8Array> {
  send(message: Uint8Array, options?: AbortOptions): Promise<void>
  /** Closes both directions; with `reason`, the channel is closed as failed. Idempotent. */
  close(reason?: Error): Promise<void>
  readonly closed: Promise<Error | undefined>
}
