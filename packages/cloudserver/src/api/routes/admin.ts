/** The cloud's admin functions (cloudbox's CloudAdmin), for owner devices only. */
import type { FastifyPluginAsync } from 'fastify'
import * as v from 'valibot'
import { dispatchAdmin, type AdminOperation } from '@cloudbox/cloudbox'
import { errors } from '../../errors.js'
import { ROLE_HEADER, type ApiContext } from '../api-context.js'
import { parse } from './params.js'

const OPERATIONS: readonly AdminOperation[] = [
  'listDevices', 'blockDevice', 'unblockDevice', 'revokeDevice', 'listPins', 'addPin', 'removePin',
  'storage', 'setQuota', 'createSubCloud', 'listSubClouds', 'destroySubCloud',
]

export const adminRoutes: FastifyPluginAsync<ApiContext> = async (app, { box }) => {
  app.post('/v1/admin/:op', async (request) => {
    if (request.headers[ROLE_HEADER] !== 'owner') throw errors.forbidden('only the cloud\'s owner devices may administer it')
    const { op } = parse(v.object({ op: v.picklist(OPERATIONS) }), request.params)
    const { args } = parse(v.strictObject({ args: v.pipe(v.array(v.unknown()), v.maxLength(4)) }), request.body ?? { args: [] })
    let result: unknown
    try {
      result = await dispatchAdmin(box.admin, op, args)
    } catch (error) {
      if ((error as Error).name === 'ValiError') throw errors.badRequest(`arguments of ${op}: ${(error as Error).message}`)
      throw error
    }
    return { result: result ?? null }
  })
}
