/**
 * What an instance remembers between runs, in `<stateDir>/cloudbox.json` (written
 * atomically): paired devices, PIN hashes and lockout (server), the paired cloud
 * (client), sub-clouds. No secret lives here: keys stay in the identity's storage and
 * PINs are kept only as scrypt hashes.
 */
import { readFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import * as v from 'valibot'
import { writeFileAtomically } from '@cloudbox/securestorage/durable-file'
import { errors } from './errors.js'

export const STATE_FILE = 'cloudbox.json'
export const STATE_VERSION = 1

const deviceSchema = v.strictObject({
  id: v.string(),
  label: v.string(),
  role: v.picklist(['owner', 'member']),
  state: v.picklist(['enabled', 'blocked']),
  firstSeen: v.number(),
  lastSeen: v.number(),
})
const pinSchema = v.strictObject({
  label: v.string(),
  /** scrypt(PIN, pinSalt), hex. */
  hash: v.string(),
  role: v.picklist(['owner', 'member']),
  /** The master PIN is reusable and never expires; others are one-time. */
  master: v.boolean(),
  createdAt: v.number(),
  expiresAt: v.optional(v.number()),
})
const subCloudSchema = v.strictObject({ index: v.number(), name: v.string(), quotaBytes: v.optional(v.number()), createdAt: v.number() })
const pairedSchema = v.strictObject({ id: v.string(), name: v.string(), role: v.picklist(['owner', 'member']), hub: v.optional(v.string()), addresses: v.array(v.string()), pairedAt: v.number() })

const stateSchema = v.strictObject({
  version: v.literal(STATE_VERSION),
  pinSalt: v.string(),
  pins: v.array(pinSchema),
  /** Wrong PIN proofs: the total, the times of those within the last hour (the global cap), per caller; lockedUntil is kept for older files. */
  lockout: v.strictObject({
    failures: v.number(),
    lockedUntil: v.number(),
    recent: v.optional(v.array(v.number())),
    /** Per device key (`k:cb1…`) and network address (`a:…`): wrong proofs and the caller's own lock. */
    callers: v.optional(v.record(v.string(), v.strictObject({ failures: v.number(), lockedUntil: v.number() }))),
  }),
  devices: v.array(deviceSchema),
  subClouds: v.array(subCloudSchema),
  /** Set by an owner; null: no quota (overrides the instance's option). */
  quotaBytes: v.optional(v.nullable(v.number())),
  paired: v.optional(pairedSchema),
})

export type DeviceRecord = v.InferOutput<typeof deviceSchema>
export type PinRecord = v.InferOutput<typeof pinSchema>
export type SubCloudRecord = v.InferOutput<typeof subCloudSchema>
export type PairedCloud = v.InferOutput<typeof pairedSchema>
export type CloudStateData = v.InferOutput<typeof stateSchema>

export class CloudState {
  readonly path: string
  data: CloudStateData
  #writing: Promise<void> = Promise.resolve()

  private constructor(path: string, data: CloudStateData) {
    this.path = path
    this.data = data
  }

  static async load(dir: string, fresh: () => CloudStateData): Promise<CloudState> {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const path = join(dir, STATE_FILE)
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      const state = new CloudState(path, fresh())
      await state.save()
      return state
    }
    try {
      return new CloudState(path, v.parse(stateSchema, JSON.parse(text)))
    } catch (error) {
      throw errors.stateCorrupted(path, error)
    }
  }

  /** Writes the state; saves are serialized so the file always holds the latest. */
  save(): Promise<void> {
    const next = this.#writing.then(() => writeFileAtomically(this.path, JSON.stringify(this.data, null, 2) + '\n', { mode: 0o600 }))
    this.#writing = next.catch(() => {})
    return next
  }

  async flushed(): Promise<void> {
    await this.#writing
  }
}
