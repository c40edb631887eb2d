/**
 * Admin calls over the control lane: the argument schema of each operation (checked by
 * the server before anything runs) and the client-side proxy.
 */
import * as v from 'valibot'
import { errors } from './errors.js'
import type { AdminOperation, CloudAdmin } from './interfaces/cloud-admin.js'

const id = v.pipe(v.string(), v.maxLength(100))
const label = v.pipe(v.string(), v.minLength(1), v.maxLength(64))
const count = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))

/** Arguments of each operation, as a tuple. */
export const adminArguments: { [Op in AdminOperation]: v.GenericSchema<unknown, Parameters<CloudAdmin[Op]>> } = {
  listDevices: v.tuple([]),
  blockDevice: v.tuple([id]),
  unblockDevice: v.tuple([id]),
  revokeDevice: v.tuple([id]),
  listPins: v.tuple([]),
  addPin: v.tuple([
    v.strictObject({
      label,
      pin: v.optional(v.pipe(v.string(), v.maxLength(64))),
      role: v.optional(v.picklist(['owner', 'member'])),
      expiresInMs: v.optional(v.pipe(count, v.maxValue(365 * 24 * 3600_000))),
    }),
  ]),
  removePin: v.tuple([label]),
  storage: v.tuple([]),
  setQuota: v.tuple([v.nullable(count)]),
  createSubCloud: v.tuple([v.strictObject({ name: label, quotaBytes: v.optional(count) })]),
  listSubClouds: v.tuple([]),
  destroySubCloud: v.tuple([v.pipe(count, v.maxValue(0x7fff_ffff)), v.optional(v.strictObject({ wipe: v.optional(v.boolean()) }))]),
} as never

const isAdminOperation = (op: string): op is AdminOperation => Object.hasOwn(adminArguments, op)

/**
 * Runs a call that came from outside (the control lane, the REST API, a control socket)
 * against a local admin implementation: the one place that checks the operation's name
 * and its arguments. @throws ERR_INVALID_ADMIN_CALL
 */
export async function dispatchAdmin(admin: CloudAdmin, op: string, args: unknown): Promise<unknown> {
  if (!isAdminOperation(op)) throw errors.invalidAdminCall(`no operation "${op.slice(0, 64)}"`)
  const parsed = v.safeParse(adminArguments[op], args)
  if (!parsed.success) throw errors.invalidAdminCall(`arguments of ${op}: ${v.summarize(parsed.issues)}`)
  const method = admin[op] as (...params: unknown[]) => Promise<unknown>
  return method.apply(admin, parsed.output as unknown[])
}

/** A CloudAdmin whose calls go to `call` (the control lane of an owner device's session). */
export function remoteAdmin(call: (op: AdminOperation, args: unknown[]) => Promise<unknown>): CloudAdmin {
  const proxy = {} as Record<AdminOperation, (...args: unknown[]) => Promise<unknown>>
  for (const op of Object.keys(adminArguments) as AdminOperation[]) {
    proxy[op] = async (...args: unknown[]) => {
      // An omitted optional argument is left out, not sent as undefined.
      while (args.length > 0 && args[args.length - 1] === undefined) args.pop()
      return call(op, args)
    }
  }
  return proxy as unknown as CloudAdmin
}
