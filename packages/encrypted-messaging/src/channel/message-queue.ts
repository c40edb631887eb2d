import { ChannelClosedError } from '../errors.js'

/**
 * An inbound message queue with a high-water mark in messages and in bytes: the producer
 * learns when the queue is full (to stop reading its source) and is told when it drains.
 * A message is always taken, so the queue holds at most the limit plus one message.
 * One consumer iterates.
 */
export class MessageQueue {
  readonly #items: Uint8Array[] = []
  readonly #highWaterMark: number
  readonly #highWaterBytes: number
  #bytes = 0
  #waiting: { resolve(result: IteratorResult<Uint8Array>): void; reject(error: Error): void } | undefined
  #ended = false
  #error: Error | undefined
  #drainWaiters: (() => void)[] = []
  #iterating = false

  constructor(highWaterMark = 16, highWaterBytes = Number.POSITIVE_INFINITY) {
    this.#highWaterMark = highWaterMark
    this.#highWaterBytes = highWaterBytes
  }

  get length(): number {
    return this.#items.length
  }

  get full(): boolean {
    return this.#items.length >= this.#highWaterMark || this.#bytes >= this.#highWaterBytes
  }

  get ended(): boolean {
    return this.#ended
  }

  /** Adds a message; returns false when the queue is now at its high-water mark. */
  push(message: Uint8Array): boolean {
    if (this.#ended) return false
    const waiting = this.#waiting
    if (waiting !== undefined) {
      this.#waiting = undefined
      waiting.resolve({ value: message, done: false })
      return true
    }
    this.#items.push(message)
    this.#bytes += message.length
    return !this.full
  }

  /** Resolves when the queue is below its high-water mark (or ended). */
  waitForDrain(): Promise<void> {
    if (!this.full || this.#ended) return Promise.resolve()
    return new Promise((resolve) => this.#drainWaiters.push(resolve))
  }

  /** Ends the queue: consumers get the buffered messages, then the end (or `error`). */
  end(error?: Error): void {
    if (this.#ended) return
    this.#ended = true
    this.#error = error
    if (error !== undefined) {
      this.#items.length = 0
      this.#bytes = 0
    }
    const waiting = this.#waiting
    this.#waiting = undefined
    if (waiting !== undefined) {
      if (error !== undefined) waiting.reject(error)
      else waiting.resolve({ value: undefined, done: true })
    }
    this.#notifyDrain()
  }

  #notifyDrain(): void {
    if (this.full && !this.#ended) return
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const waiter of waiters) waiter()
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    const item = this.#items.shift()
    if (item !== undefined) {
      this.#bytes -= item.length
      this.#notifyDrain()
      return Promise.resolve({ value: item, done: false })
    }
    if (this.#ended) {
      return this.#error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(this.#error)
    }
    if (this.#waiting !== undefined) return Promise.reject(new Error('Only one reader may wait on a channel at a time'))
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject }
    })
  }

  iterator(onReturn: () => void): AsyncIterator<Uint8Array> {
    if (this.#iterating) throw new Error('A channel has one reader: it is already being iterated')
    this.#iterating = true
    return {
      next: () => this.next(),
      return: async () => {
        onReturn()
        return { value: undefined, done: true }
      },
    }
  }
}

export function closedError(reason?: Error): Error {
  return reason ?? new ChannelClosedError()
}
