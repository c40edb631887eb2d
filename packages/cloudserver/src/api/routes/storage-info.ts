/** Storage use and quota. */
import type { FastifyPluginAsync } from 'fastify'
import type { ApiContext } from '../api-context.js'

export const storageRoutes: FastifyPluginAsync<ApiContext> = async (app, { box, storage }) => {
  app.get('/v1/storage', async () => {
    const { quotaBytes } = await box.admin.storage()
    return { ...(await storage.usage()), ...(quotaBytes === undefined ? {} : { quotaBytes }) }
  })
}
