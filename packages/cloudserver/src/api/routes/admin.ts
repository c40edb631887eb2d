/** The cloud's admin functions (cloudbox's CloudAdmin), for owner devices only. */
import type { FastifyPluginAsync } from 'fastify'
import * as v from 'valibot'
import { dispatchAdmin } from '@cloudbox/cloudbox'
import { errors } from '../../errors.js'
import { ROLE_HEADER, type ApiContext } from '../api-context.js'
import { parse } from './params.js'

export const adminRoutes: FastifyPluginAsync<ApiContext> = async (app, { box }) => {
  app.post('/v1/admin/:op', async (request) => {
    if (request.headers[ROLE_HEADER] !== 'owner') throw errors.forbidden('only the cloud\'s owner devices may administer it')
    const { op } = request.params as { op: string }
    const { args } = parse(v.strictObject({ args: v.pipe(v.array(v.unknown()), v.maxLength(4)) }), request.body ?? { args: [] })
    // cloudbox checks the operation and its arguments (ERR_INVALID_ADMIN_CALL, 400).
    return { result: (await dispatchAdmin(box.admin, op, args)) ?? null }
  })
}
