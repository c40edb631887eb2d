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
  /**
   * Sends the parts joined as one message, where the channel can without joining them
   * (bulk data then goes from its own buffer to the cipher). The parts must not change
   * until the promise settles. Optional: {@link sendParts} falls back to `send`.
   */
  sendParts?(parts: readonly Uint8Array[], options?: AbortOptions): Promise<void>
  /** Closes both directions; with `reason`, the channel is closed as failed. Idempotent. */
  close(reason?: Error): Promise<void>
  readonly closed: Promise<Error | undefined>
}

/** Sends `parts` as one message on `channel`: without a copy where it can, joined where it cannot. */
export function sendParts(channel: MessageChannel, parts: readonly Uint8Array[], options?: AbortOptions): Promise<void> {
  if (channel.sendParts !== undefined) return channel.sendParts(parts, options)
  return channel.send(parts.length === 1 ? (parts[0] as Uint8Array) : joinParts(parts), options)
}

/** The parts in one new buffer. */
export function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0
  for (const part of parts) length += part.length
  // Every byte is written below: no zero fill first (a plain Uint8Array all the same).
  const out = new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length)
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}
