/**
 * A few large buffers kept for reuse. A sealed call's bytes, and its plaintext, are needed
 * only until the next step has them, so the next call can use the same memory. Fresh
 * megabyte buffers for each call outlive a young-generation collection while they wait
 * on the network, and then only a full mark-compact frees them: V8 started one every
 * call or two (its concurrent marking took a third of a core on each side).
 */
const GRAIN = 1024 * 1024
/** Smaller buffers are not worth pooling: they come from Node's own allocator and die young. */
const POOLED_FROM = 256 * 1024

export class BufferPool {
  readonly #free: Buffer[] = []
  readonly #keep: number
  /** The memory lent out and not yet returned: only that is taken back (twice, or a stranger's, is ignored). */
  readonly #lent = new WeakSet<ArrayBufferLike>()

  /** `keep`: buffers held while unused (the calls one side has in flight at once). */
  constructor(keep = 2) {
    this.#keep = keep
  }

  /** A buffer of exactly `length` bytes (a view of a pooled one); give it back with `release`. */
  acquire(length: number): Buffer {
    if (length < POOLED_FROM) return Buffer.allocUnsafe(length)
    const index = this.#free.findIndex((each) => each.length >= length)
    const base = index === -1 ? Buffer.allocUnsafeSlow(Math.ceil(Math.max(length, 1) / GRAIN) * GRAIN) : this.#free.splice(index, 1)[0]!
    this.#lent.add(base.buffer)
    return base.subarray(0, length)
  }

  /**
   * Returns a buffer from `acquire`; nothing may use it afterwards. Anything else (a small
   * buffer, one this pool did not lend, one returned already) is left alone.
   */
  release(view: Uint8Array): void {
    if (!this.#lent.has(view.buffer)) return
    this.#lent.delete(view.buffer)
    if (this.#free.length < this.#keep) this.#free.push(Buffer.from(view.buffer, 0, view.buffer.byteLength))
  }
}
