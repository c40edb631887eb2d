/**
 * PINs that let a new device pair: a reusable master PIN and one-time PINs with a label
 * and an expiry. Stored only as scrypt(PIN, salt). A device proves it knows a PIN with
 * HMAC-SHA256 over the secure channel's handshake hash, so a proof is worthless on any
 * other channel. Five wrong proofs in a row lock pairing, for longer after each
 * further failure; the count survives restarts.
 */
import { createHmac, randomInt, scrypt, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import type { CloudState, PinRecord } from './cloud-state.js'
import { errors } from './errors.js'
import { PIN_PROOF_TAG } from './wire/control.js'

const scryptAsync = promisify(scrypt) as (pin: string, salt: Buffer, length: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>

export const MAX_PIN_FAILURES = 5
export const FIRST_LOCKOUT_MS = 30_000
export const MAX_LOCKOUT_MS = 60 * 60_000
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

export class PinBook {
  readonly #state: CloudState
  readonly #now: () => number

  constructor(state: CloudState, now: () => number) {
    this.#state = state
    this.#now = now
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

  /** Milliseconds until pairing unlocks (0: not locked). */
  lockedFor(): number {
    return Math.max(0, this.#state.data.lockout.lockedUntil - this.#now())
  }

  /**
   * Checks a pairing proof. On success the one-time PIN is used up and the failure
   * count reset; on failure the count grows and may lock pairing.
   * @throws ERR_PIN_LOCKED, ERR_WRONG_PIN
   */
  async verify(proof: Uint8Array, handshakeHash: Uint8Array): Promise<PinRecord> {
    const locked = this.lockedFor()
    if (locked > 0) throw errors.pinLocked(locked)
    this.#dropExpired()
    const match = this.#state.data.pins.find((pin) => {
      const expected = pinProof(Buffer.from(pin.hash, 'hex'), handshakeHash)
      return expected.length === proof.length && timingSafeEqual(expected, proof)
    })
    const lockout = this.#state.data.lockout
    if (match !== undefined) {
      if (!match.master) this.#state.data.pins = this.#state.data.pins.filter((pin) => pin !== match)
      lockout.failures = 0
      lockout.lockedUntil = 0
      await this.#state.save()
      return match
    }
    lockout.failures++
    if (lockout.failures >= MAX_PIN_FAILURES) {
      const delay = Math.min(MAX_LOCKOUT_MS, FIRST_LOCKOUT_MS * 2 ** (lockout.failures - MAX_PIN_FAILURES))
      lockout.lockedUntil = this.#now() + delay
      await this.#state.save()
      throw errors.pinLocked(delay)
    }
    await this.#state.save()
    throw errors.wrongPin(MAX_PIN_FAILURES - lockout.failures)
  }

  #dropExpired(): void {
    const now = this.#now()
    this.#state.data.pins = this.#state.data.pins.filter((pin) => pin.expiresAt === undefined || pin.expiresAt > now)
  }
}
