import { ReplayedHandshakeError } from '../errors.js'

export const TIMESTAMP_LENGTH = 12
const TAI64_EPOCH = 2n ** 62n
let last = 0n

/**
 * Now as TAI64N (8 bytes of seconds offset by 2^62, 4 bytes of nanoseconds, big-endian),
 * strictly increasing within this process, as WireGuard's handshake timestamp.
 */
export function tai64nNow(): Uint8Array {
  let nanos = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n)
  if (nanos <= last) nanos = last + 1n
  last = nanos
  const out = Buffer.alloc(TIMESTAMP_LENGTH)
  out.writeBigUInt64BE(TAI64_EPOCH + nanos / 1_000_000_000n, 0)
  out.writeUInt32BE(Number(nanos % 1_000_000_000n), 8)
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

/** Milliseconds since the Unix epoch of a TAI64N timestamp. */
export function tai64nToMillis(timestamp: Uint8Array): number {
  const view = Buffer.from(timestamp.buffer, timestamp.byteOffset, timestamp.byteLength)
  const seconds = view.readBigUInt64BE(0) - TAI64_EPOCH
  return Number(seconds) * 1000 + Math.floor(view.readUInt32BE(8) / 1_000_000)
}

export interface ReplayGuardOptions {
  /** Keys remembered; the least recently seen is forgotten beyond this (default 100,000). */
  readonly maxEntries?: number
  /**
   * Also refuse timestamps further than this from the local clock (default: no limit,
   * as WireGuard: devices with wrong clocks still connect; only order matters per key).
   */
  readonly maxClockSkewMs?: number
}

/**
 * Refuses a replayed first handshake message: per initiator key it keeps the greatest
 * timestamp seen, and a handshake must carry a greater one. Memory is bounded: the least
 * recently seen keys are forgotten beyond `maxEntries` (a replay to a forgotten key still
 * cannot finish a handshake without that key's secret; it can only cost a handshake).
 * Share one guard across all the listeners of a node.
 */
export class ReplayGuard {
  readonly #seen = new Map<string, string>()
  readonly #maxEntries: number
  readonly #maxClockSkewMs: number | undefined

  constructor(options: ReplayGuardOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 100_000
    this.#maxClockSkewMs = options.maxClockSkewMs
  }

  get size(): number {
    return this.#seen.size
  }

  /**
   * Accepts `timestamp` for `publicKey` and remembers it.
   * @throws {ReplayedHandshakeError} when it is not newer than one seen before, or outside the clock window.
   */
  accept(publicKey: Uint8Array, timestamp: Uint8Array): void {
    if (timestamp.length !== TIMESTAMP_LENGTH) throw new ReplayedHandshakeError()
    if (this.#maxClockSkewMs !== undefined && Math.abs(tai64nToMillis(timestamp) - Date.now()) > this.#maxClockSkewMs) {
      throw new ReplayedHandshakeError('A handshake with a timestamp far from this machine\'s clock was refused. Check the clocks of both devices.')
    }
    const key = Buffer.from(publicKey).toString('hex')
    const stamp = Buffer.from(timestamp).toString('hex')
    const previous = this.#seen.get(key)
    // Fixed-length big-endian hex compares in numeric order.
    if (previous !== undefined && stamp <= previous) throw new ReplayedHandshakeError()
    this.#seen.delete(key)
    this.#seen.set(key, stamp)
    if (this.#seen.size > this.#maxEntries) {
      const oldest = this.#seen.keys().next().value as string
      this.#seen.delete(oldest)
    }
  }
}
