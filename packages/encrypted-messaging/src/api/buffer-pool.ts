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

const badLength = () => Object.assign(new Error('The request body does not match its declared length.'), { statusCode: 400 })
const tooLarge = (limit: number) => Object.assign(new Error(`A request body is at most ${limit} bytes.`), { statusCode: 413 })

/**
 * An HTTP body of at most `limit` bytes: with a declared length (the `content-length`
 * header), read into a buffer of `pool` of that length as it arrives (release it once
 * used); without one, joined. Rejects with an Error whose `statusCode` is 400 (a length
 * that is not a number, a body longer or shorter than declared, a broken stream) or 413.
 */
export function readIntoPool(payload: NodeJS.ReadableStream, declaredHeader: string | undefined, limit: number, pool: BufferPool): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const declared = declaredHeader === undefined ? undefined : Number(declaredHeader)
    if (declared !== undefined && !(Number.isSafeInteger(declared) && declared >= 0)) return reject(badLength())
    if (declared !== undefined && declared > limit) return reject(tooLarge(limit))
    const whole = declared === undefined ? undefined : pool.acquire(declared)
    const pieces: Buffer[] = []
    let length = 0
    let failed = false
    const fail = (error: Error) => {
      if (failed) return
      failed = true
      if (whole !== undefined) pool.release(whole)
      payload.removeAllListeners('data')
      payload.resume()
      reject(error)
    }
    payload.on('data', (piece: Buffer) => {
      if (failed) return
      if (length + piece.length > (declared ?? limit)) return fail(declared === undefined ? tooLarge(limit) : badLength())
      if (whole !== undefined) piece.copy(whole, length)
      else pieces.push(piece)
      length += piece.length
    })
    payload.once('error', (error: Error) => fail(Object.assign(error, { statusCode: 400 })))
    payload.once('end', () => {
      if (failed) return
      if (whole !== undefined && length !== declared) return fail(badLength())
      resolve(whole ?? Buffer.concat(pieces, length))
    })
  })
}
