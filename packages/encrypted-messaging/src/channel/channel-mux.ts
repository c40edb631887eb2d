import { BadMessageError, ChannelClosedError, throwIfAborted, type AbortOptions } from '../errors.js'
import { sendParts, type MessageChannel } from '../interfaces/message-channel.js'
import { MessageQueue } from './message-queue.js'

export interface ChannelMuxOptions {
  /** Messages buffered unread per lane before the underlying channel is no longer read (default 16). */
  readonly highWaterMark?: number
  /** Bytes buffered unread per lane before the same (default: no byte limit), one number or one per lane. */
  readonly highWaterBytes?: number | readonly number[]
  /**
   * Asked for every arriving message: false makes it a protocol error that closes the
   * channel. A server admits only its handshake lane until the peer is trusted.
   */
  readonly admit?: (lane: number) => boolean
}

/**
 * Splits one message channel into `lanes` channels (at most 256): each message carries
 * its lane number in a first byte. The lanes share fate: closing any of them, a message
 * for a lane that does not exist, or one `admit` refuses, closes the underlying channel
 * and every lane. A lane whose reader falls behind holds back the others (the underlying
 * channel is read in order), so put bulk data on its own lane and keep control traffic small.
 */
export function createChannelMux(channel: MessageChannel, lanes: number, options: ChannelMuxOptions = {}): MessageChannel[] {
  if (!Number.isInteger(lanes) || lanes < 1 || lanes > 256) throw new RangeError('lanes: 1 to 256')
  const bytesFor = (lane: number) => (typeof options.highWaterBytes === 'number' ? options.highWaterBytes : (options.highWaterBytes?.[lane] ?? Number.POSITIVE_INFINITY))
  const inboxes = Array.from({ length: lanes }, (_, lane) => new MessageQueue(options.highWaterMark ?? 16, bytesFor(lane)))
  let closed = false
  const finish = (reason: Error | undefined) => {
    if (closed) return
    closed = true
    for (const inbox of inboxes) inbox.end(reason)
  }
  const pump = (async () => {
    // A manual reader: leaving a for-await early would end the channel cleanly
    // (through its iterator's return) before the error could be recorded.
    const reader = channel[Symbol.asyncIterator]()
    try {
      for (;;) {
        const next = await reader.next()
        if (next.done === true) break
        const message = next.value
        const lane = message[0]
        const inbox = lane === undefined ? undefined : inboxes[lane]
        if (inbox === undefined) throw new BadMessageError('A message arrived for an unknown channel lane; the session was closed.')
        if (options.admit !== undefined && !options.admit(lane as number)) throw new BadMessageError(`A message arrived on lane ${lane}, which is not open yet; the session was closed.`)
        if (!inbox.push(message.subarray(1))) await inbox.waitForDrain()
        if (closed) return
      }
      finish(undefined)
    } catch (error) {
      finish(error as Error)
      await channel.close(error as Error).catch(() => {})
    }
  })()
  void pump
  const closedPromise = channel.closed.then((reason) => {
    finish(reason)
    return reason
  })
  return inboxes.map((inbox, lane) => {
    const laneByte = Uint8Array.of(lane)
    // The lane number goes first as a part of its own: the message itself is not copied.
    const sendLane = async (parts: readonly Uint8Array[], sendOptions: AbortOptions = {}): Promise<void> => {
      throwIfAborted(sendOptions.signal)
      if (closed) throw new ChannelClosedError()
      await sendParts(channel, [laneByte, ...parts], sendOptions)
    }
    return {
      send: (message: Uint8Array, sendOptions?: AbortOptions) => sendLane([message], sendOptions),
      sendParts: sendLane,
      [Symbol.asyncIterator]() {
        return inbox.iterator(() => {
          finish(undefined)
          void channel.close().catch(() => {})
        })
      },
      async close(reason?: Error): Promise<void> {
        finish(reason)
        await channel.close(reason).catch(() => {})
      },
      closed: closedPromise,
    }
  })
}
