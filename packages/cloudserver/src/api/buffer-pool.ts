/**
 * A few large buffers kept for reuse: a sealed call's bytes are needed only until they are
 * opened (the plaintext is a buffer of its own), so the next call can read into the same
 * memory. Allocating 8 MiB per call instead made V8 collect garbage at almost every call
 * (a full mark-compact each) and kept tens of MiB of dead buffers resident between them.
 */
const GRAIN = 1024 * 1024
/** Smaller buffers are not worth pooling: they come from Node's own allocator. */
const POOLED_FROM = 256 * 1024

export class BufferPool {
  readonly #free: Buffer[] = []
  readonly #keep: number

  /** `keep`: buffers held while unused (the calls one side has in flight at once). */
  constructor(keep = 2) {
    this.#keep = keep
  }

  /** A buffer of exactly `length` bytes (a view of a pooled one); give it back with `release`. */
  acquire(length: number): Buffer {
    if (length < POOLED_FROM) return Buffer.allocUnsafe(length)
    const index = this.#free.findIndex((each) => each.length >= length)
    const base = index === -1 ? Buffer.allocUnsafeSlow(Math.ceil(Math.max(length, 1) / GRAIN) * GRAIN) : this.#free.splice(index, 1)[0]!
    return base.subarray(0, length)
  }

  /** Returns a buffer from `acquire`; nothing may use it afterwards. */
  release(view: Uint8Array): void {
    if (view.byteLength < POOLED_FROM) return
    const base = Buffer.from(view.buffer, 0, view.buffer.byteLength)
    if (this.#free.length < this.#keep && base.length >= GRAIN) this.#free.push(base)
  }
}
