/**
 * Uploads in chunks with resume: a client picks an upload ID, appends chunks at the
 * offset the server reports, and commits the whole under a path. IDs are scoped to the
 * caller, so no device can touch another's upload.
 */
import type { FastifyPluginAsync } from 'fastify'
import * as v from 'valibot'
import { errors } from '../../errors.js'
import { callerOf, scopedUpload as scoped, type ApiContext } from '../api-context.js'
import { count, parse, pathParam } from './params.js'

export const uploadId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{8,64}$/))

export const uploadsRoutes: FastifyPluginAsync<ApiContext> = async (app, { box, storage, thumbnails, uploaded }) => {
  const checkQuota = async (adding: number) => {
    const { quotaBytes } = await box.admin.storage()
    if (quotaBytes === undefined) return
    // Staged uploads are not counted: a stalled one must not lock everybody out.
    const { usedBytes, sharedBytes } = await storage.usage()
    if (usedBytes + sharedBytes + adding > quotaBytes) throw errors.quota(quotaBytes)
  }

  app.get('/v1/uploads', async (request) => {
    const { upload } = parse(v.object({ upload: uploadId }), request.query)
    return { size: (await storage.uploadSize(scoped(request, upload))) ?? null }
  })
  app.post('/v1/uploads', async (request) => {
    const query = parse(v.object({ upload: uploadId, offset: count(Number.MAX_SAFE_INTEGER), total: v.optional(count(Number.MAX_SAFE_INTEGER)) }), request.query)
    const body = request.body
    if (!Buffer.isBuffer(body)) throw errors.badRequest('an upload chunk is sent as application/octet-stream')
    // The declared total lets the quota refuse a file before any of it is stored.
    if (query.offset === 0) await checkQuota(query.total ?? body.length)
    return { size: await storage.uploadAppend(scoped(request, query.upload), query.offset, body) }
  })
  app.post('/v1/uploads/commit', async (request) => {
    const body = parse(v.strictObject({ upload: uploadId, path: pathParam, overwrite: v.optional(v.boolean(), false) }), request.body)
    const size = await storage.uploadSize(scoped(request, body.upload))
    if (size === undefined) throw errors.unknownUpload()
    await checkQuota(0)
    const entry = await storage.uploadCommit(scoped(request, body.upload), body.path, { overwrite: body.overwrite })
    thumbnails?.prepare(entry.path)
    uploaded?.(entry.path, entry.size, callerOf(request))
    return entry
  })
  app.delete('/v1/uploads', async (request, reply) => {
    await storage.uploadAbort(scoped(request, parse(v.object({ upload: uploadId }), request.query).upload))
    return reply.code(204).send()
  })
}
