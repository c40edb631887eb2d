/**
 * Uploads in chunks with resume: a client picks an upload ID, appends chunks at the
 * offset the server reports, and commits the whole under a path. IDs are scoped to the
 * caller, so no device can touch another's upload.
 */
import type { FastifyPluginAsync } from 'fastify'
import * as v from 'valibot'
import { setTimeout as sleep } from 'node:timers/promises'
import { errors, isCloudServerError } from '../../errors.js'
import { callerOf, scopedUpload as scoped, type ApiContext } from '../api-context.js'
import { count, parse, pathParam } from './params.js'

export const uploadId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{8,64}$/))

/** A staged upload that received nothing for this long is dropped, so it stops holding quota. */
export const UPLOAD_IDLE_MS = 24 * 60 * 60_000

export const uploadsRoutes: FastifyPluginAsync<ApiContext> = async (app, { box, storage, thumbnails, uploaded }) => {
  /**
   * Refuses a change that would leave more than the quota stored: files, drop-box shares
   * and staged uploads (every caller's) all count, at their real sizes. `growth` is what the
   * change adds to that total.
   */
  const checkQuota = async (growth: number) => {
    const { quotaBytes } = await box.admin.storage()
    if (quotaBytes === undefined) return
    await storage.dropStaleUploads(UPLOAD_IDLE_MS)
    const { usedBytes, sharedBytes, stagedBytes } = await storage.usage()
    if (usedBytes + sharedBytes + stagedBytes + growth > quotaBytes) throw errors.quota(quotaBytes)
  }
  // A check and the write it allows run alone: two appends at once cannot both fit in the last free bytes.
  let tail: Promise<unknown> = Promise.resolve()
  const alone = <T>(work: () => Promise<T>): Promise<T> => {
    const next = tail.then(work)
    tail = next.catch(() => {})
    return next
  }

  app.get('/v1/uploads', async (request) => {
    const { upload } = parse(v.object({ upload: uploadId }), request.query)
    return { size: (await storage.uploadSize(scoped(request, upload))) ?? null }
  })
  app.post('/v1/uploads', async (request) => {
    const query = parse(v.object({ upload: uploadId, offset: count(Number.MAX_SAFE_INTEGER), total: v.optional(count(Number.MAX_SAFE_INTEGER)) }), request.query)
    // An empty chunk (an empty file) comes without a body at all.
    const body = request.body ?? Buffer.alloc(0)
    if (!Buffer.isBuffer(body)) throw errors.badRequest('an upload chunk is sent as application/octet-stream')
    const key = scoped(request, query.upload)
    const append = () =>
      alone(async () => {
        // The declared total refuses a file before any of it is stored; every chunk is
        // checked at its real size whatever was declared.
        if (query.offset === 0 && query.total !== undefined) await checkQuota(Math.max(query.total, body.length))
        await checkQuota(body.length)
        return { size: await storage.uploadAppend(key, query.offset, body) }
      })
    try {
      return await append()
    } catch (error) {
      // A client keeps two chunks in flight, and the second can be opened first (a small
      // last chunk): it waits a moment for the one before it to land, then goes in.
      const early = isCloudServerError(error) && ((error.code === 'ERR_UNKNOWN_UPLOAD' && query.offset > 0) || (error.code === 'ERR_UPLOAD_OFFSET' && (error.expectedOffset ?? 0) < query.offset))
      if (!early) throw error
      for (let waited = 0; waited < 1000 && (await storage.uploadSize(key)) !== query.offset; waited += 25) await sleep(25)
      return await append()
    }
  })
  app.post('/v1/uploads/commit', async (request) => {
    const body = parse(v.strictObject({ upload: uploadId, path: pathParam, overwrite: v.optional(v.boolean(), false) }), request.body)
    const entry = await alone(async () => {
      const size = await storage.uploadSize(scoped(request, body.upload))
      if (size === undefined) throw errors.unknownUpload()
      // Staged bytes become a file's: the total only shrinks by a file it replaces. Still
      // checked, for a quota lowered while the upload ran.
      const replaced = body.overwrite ? await storage.stat(body.path).then((info) => (info.type === 'file' ? info.size : 0), () => 0) : 0
      await checkQuota(-replaced)
      return storage.uploadCommit(scoped(request, body.upload), body.path, { overwrite: body.overwrite, by: callerOf(request) })
    })
    thumbnails?.prepare(entry.path)
    uploaded?.(entry.path, entry.size, callerOf(request))
    return entry
  })
  app.delete('/v1/uploads', async (request, reply) => {
    await storage.uploadAbort(scoped(request, parse(v.object({ upload: uploadId }), request.query).upload))
    return reply.code(204).send()
  })
}
