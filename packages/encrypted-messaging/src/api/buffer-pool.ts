/**
 * A few large buffers kept for reuse. A sealed call's bytes, and its plaintext, are needed
 * only until the next step has them, so the next call can use the same memory. Fresh
 * megabyte buffers for each call outlive a young-generation collection while they wait
 * on the network, and then only a full mark-compact frees them: V8 started one every
 * call or two (its concurrent marking took a third of a core on each side).
 */
/** Sizes are rounded up to this: a sealed chunk (its plaintext and a few hundred bytes) and the plaintext fit one buffer. */
const GRAIN = 64 * 1024
/** Smaller buffers are not worth pooling: they come from Node's own allocator and die young. */
const POOLED_FROM = 256 * 1024

export class BufferPool {
  readonly #free: Buffer[] = []
  readonly #keep: number
  /**
   * Each lending's own view, and the buffer it lends: only that view gives it back, so a
   * second release (perhaps after the memory was lent again) or a stranger's is ignored.
   */
  readonly #lent = new WeakMap<Uint8Array, Buffer>()

  /** `keep`: buffers held while unused (the calls one side has in flight at once). */
  constructor(keep = 2) {
    this.#keep = keep
  }

  /** A buffer of exactly `length` bytes (a view of a pooled one); give it back with `release`. */
  acquire(length: number): Buffer {
    if (length < POOLED_FROM) return Buffer.allocUnsafe(length)
    const index = this.#free.findIndex((each) => each.length >= length)
    const base = index === -1 ? Buffer.allocUnsafeSlow(Math.ceil(Math.max(length, 1) / GRAIN) * GRAIN) : this.#free.splice(index, 1)[0]!
    const view = base.subarray(0, length)
    this.#lent.set(view, base)
    return view
  }

  /**
   * Returns the very buffer `acquire` gave (not another view of it); nothing may use it
   * afterwards. Anything else (a small buffer, one this pool did not lend, one returned
   * already) is left alone.
   */
  release(view: Uint8Array): void {
    const base = this.#lent.get(view)
    if (base === undefined) return
    this.#lent.delete(view)
    if (this.#free.length < this.#keep) this.#free.push(base)
  }
}
