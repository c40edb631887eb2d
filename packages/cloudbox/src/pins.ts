/**
 * PINs that let a new device pair: a reusable master PIN and one-time PINs with a label
 * and an expiry. Stored only as scrypt(PIN, salt). A device proves it knows a PIN with
 * HMAC-SHA256 over the secure channel's handshake hash, so a proof is worthless on any
 * other channel.
 *
 * Wrong proofs lock first whoever made them: five from one key, or from one network
 * address, lock that key or address (30 s, doubling up to an hour), so one stranger cannot
 * lock out the owner's new devices. Above that, a cap for everyone: at most 20 wrong
 * proofs per rolling hour from all callers together, so many addresses still cannot guess
 * faster than that. Both survive restarts (the last 1,000 callers are remembered).
 */
import { createHmac, randomInt, scrypt, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import type { CloudState, PinRecord } from './cloud-state.js'
import { errors } from './errors.js'
import { PIN_PROOF_TAG } from './wire/control.js'

const scryptAsync = promisify(scrypt) as (pin: string, salt: Buffer, length: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>

/** Wrong proofs from one key or one address before that caller is locked. */
export const MAX_PIN_FAILURES = 5
export const FIRST_LOCKOUT_MS = 30_000
export const MAX_LOCKOUT_MS = 60 * 60_000
/** Wrong proofs from everyone within {@link GLOBAL_WINDOW_MS} before pairing locks for all. */
export const MAX_GLOBAL_PIN_FAILURES = 20
export const GLOBAL_WINDOW_MS = 60 * 60_000
/** Callers remembered for their own lockouts (the least recently seen are forgotten). */
const MAX_TRACKED_CALLERS = 1_000
const SCRYPT = { N: 1 << 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }

export type Role = 'owner' | 'member'

/** A PIN as listed to an owner: never the PIN itself. */
export interface PinInfo {
  label: string
  role: Role
  master: boolean
  createdAt: number
  expiresAt?: number
}

export function assertPinFormat(pin: string): void {
  if (typeof pin !== 'string' || pin.length < 4 || pin.length > 64 || pin.trim() !== pin) throw errors.invalidPin()
}

export async function pinKey(pin: string, salt: Uint8Array): Promise<Buffer> {
  assertPinFormat(pin)
  return scryptAsync(pin.normalize('NFKC'), Buffer.from(salt), 32, SCRYPT)
}

export function pinProof(key: Uint8Array, handshakeHash: Uint8Array): Buffer {
  return createHmac('sha256', key).update(PIN_PROOF_TAG).update(handshakeHash).digest()
}

/** A random PIN of `digits` decimal digits. */
export function randomPin(digits = 8): string {
  let pin = ''
  for (let i = 0; i < digits; i++) pin += String(randomInt(10))
  return pin
}

/** Who is guessing: the proven key, and the network address (an IP, an IPv6 /64, or a hub's tag for it). */
export interface PinCaller {
  readonly device: string
  readonly address?: string
}

interface CallerLockout {
  failures: number
  lockedUntil: number
}

export class PinBook {
  readonly #state: CloudState
  readonly #now: () => number
  /** Per key and per address (`k:` / `a:` prefixes), least recently failed first; saved with the state. */
  readonly #callers = new Map<string, CallerLockout>()

  constructor(state: CloudState, now: () => number) {
    this.#state = state
    this.#now = now
    for (const [key, entry] of Object.entries(state.data.lockout.callers ?? {})) this.#callers.set(key, { ...entry })
  }

  get #salt(): Buffer {
    return Buffer.from(this.#state.data.pinSalt, 'hex')
  }

  get salt(): Uint8Array {
    return this.#salt
  }

  list(): PinInfo[] {
    this.#dropExpired()
    return this.#state.data.pins.map(({ hash: _hash, ...info }) => info)
  }

  async setMaster(pin: string): Promise<void> {
    const hash = (await pinKey(pin, this.#salt)).toString('hex')
    const pins = this.#state.data.pins.filter((each) => !each.master)
    pins.unshift({ label: 'master', hash, role: 'owner', master: true, createdAt: this.#now() })
    this.#state.data.pins = pins
    await this.#state.save()
  }

  /** Adds a one-time PIN (random 8 digits unless given); returns it, the only time it is shown. */
  async add(options: { label: string; pin?: string; role?: Role; expiresInMs?: number }): Promise<{ label: string; pin: string; expiresAt: number }> {
    const label = options.label
    if (typeof label !== 'string' || label.length === 0 || label.length > 64 || label === 'master') throw errors.invalidPin()
    const pin = options.pin ?? randomPin()
    const hash = (await pinKey(pin, this.#salt)).toString('hex')
    const now = this.#now()
    const expiresAt = now + (options.expiresInMs ?? 24 * 60 * 60_000)
    this.#state.data.pins = this.#state.data.pins.filter((each) => each.label !== label)
    this.#state.data.pins.push({ label, hash, role: options.role ?? 'member', master: false, createdAt: now, expiresAt })
    await this.#state.save()
    return { label, pin, expiresAt }
  }

  async remove(label: string): Promise<void> {
    const before = this.#state.data.pins.length
    this.#state.data.pins = this.#state.data.pins.filter((each) => each.label !== label)
    if (this.#state.data.pins.length === before) throw errors.unknownPin(label)
    await this.#state.save()
  }

  /** Milliseconds until pairing unlocks for everyone (0: not locked). */
  lockedFor(): number {
    const recent = this.#recentFailures()
    if (recent.length < MAX_GLOBAL_PIN_FAILURES) return 0
    // Unlocked once the oldest failure that makes the count leaves the window.
    return Math.max(0, (recent[recent.length - MAX_GLOBAL_PIN_FAILURES] as number) + GLOBAL_WINDOW_MS - this.#now())
  }

  /** Milliseconds until `caller` may try again (0: now). */
  lockedForCaller(caller: PinCaller): number {
    const now = this.#now()
    const keys = [`k:${caller.device}`, ...(caller.address === undefined ? [] : [`a:${caller.address}`])]
    return Math.max(0, this.lockedFor(), ...keys.map((key) => (this.#callers.get(key)?.lockedUntil ?? 0) - now))
  }

  /** Failure times within the window, oldest first (the persisted part of the lockout). */
  #recentFailures(): number[] {
    const lockout = this.#state.data.lockout
    const since = this.#now() - GLOBAL_WINDOW_MS
    lockout.recent = (lockout.recent ?? []).filter((time) => time > since)
    return lockout.recent
  }

  #callerFailed(key: string): number {
    const now = this.#now()
    const entry = this.#callers.get(key) ?? { failures: 0, lockedUntil: 0 }
    this.#callers.delete(key)
    this.#callers.set(key, entry)
    if (this.#callers.size > MAX_TRACKED_CALLERS) this.#callers.delete(this.#callers.keys().next().value as string)
    entry.failures++
    if (entry.failures >= MAX_PIN_FAILURES) entry.lockedUntil = now + Math.min(MAX_LOCKOUT_MS, FIRST_LOCKOUT_MS * 2 ** (entry.failures - MAX_PIN_FAILURES))
    return MAX_PIN_FAILURES - entry.failures
  }

  /** The per-caller counts, into the state (saved with it), so a restart does not unlock a caller. */
  #keepCallers(): void {
    this.#state.data.lockout.callers = Object.fromEntries(this.#callers)
  }

  /**
   * Checks a pairing proof from `caller`. On success the one-time PIN is used up and the
   * caller's count reset; on failure the caller's counts and the global one grow and may
   * lock. A locked caller is refused before its proof is even checked.
   * @throws ERR_PIN_LOCKED, ERR_WRONG_PIN
   */
  async verify(proof: Uint8Array, handshakeHash: Uint8Array, caller: PinCaller): Promise<PinRecord> {
    const locked = this.lockedForCaller(caller)
    if (locked > 0) throw errors.pinLocked(locked)
    this.#dropExpired()
    const match = this.#state.data.pins.find((pin) => {
      const expected = pinProof(Buffer.from(pin.hash, 'hex'), handshakeHash)
      return expected.length === proof.length && timingSafeEqual(expected, proof)
    })
    const keys = [`k:${caller.device}`, ...(caller.address === undefined ? [] : [`a:${caller.address}`])]
    if (match !== undefined) {
      if (!match.master) this.#state.data.pins = this.#state.data.pins.filter((pin) => pin !== match)
      this.#callers.delete(keys[0] as string)
      this.#keepCallers()
      await this.#state.save()
      return match
    }
    // Counted before the save: the check above and this run with no await between, so
    // guesses arriving together cannot all pass a lock that the first of them sets.
    const left = Math.min(...keys.map((key) => this.#callerFailed(key)))
    const lockout = this.#state.data.lockout
    this.#recentFailures().push(this.#now())
    lockout.failures++
    this.#keepCallers()
    // The answer is this guess's own: whether it set a lock, not whether guesses since did.
    const lockedNow = this.lockedForCaller(caller)
    await this.#state.save()
    if (lockedNow > 0) throw errors.pinLocked(lockedNow)
    throw errors.wrongPin(left)
  }

  #dropExpired(): void {
    const now = this.#now()
    this.#state.data.pins = this.#state.data.pins.filter((pin) => pin.expiresAt === undefined || pin.expiresAt > now)
  }
}
