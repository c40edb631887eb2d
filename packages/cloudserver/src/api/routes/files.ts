/** Browsing and changing files: list, stat, download ranges, delete, move, copy, folders, search. */
import type { FastifyPluginAsync } from 'fastify'
import * as v from 'valibot'
import { API_MAX_BODY } from '@cloudbox/encrypted-messaging'
import { errors } from '../../errors.js'
import { callerOf, type ApiContext } from '../api-context.js'
import { count, parse, pathParam } from './params.js'

const transfer = v.strictObject({ from: pathParam, to: pathParam, overwrite: v.optional(v.boolean(), false) })

export const filesRoutes: FastifyPluginAsync<ApiContext> = async (app, { storage, thumbnails, bulk }) => {
  app.get('/v1/files', async (request) => {
    const { path } = parse(v.object({ path: v.optional(pathParam, '') }), request.query)
    const entries = await storage.list(path)
    if (thumbnails === undefined) return { entries }
    // Thumbnails ready now ride along (base64); missing ones are made in the background.
    return {
      entries: await Promise.all(entries.map(async (entry) => {
        const thumbnail = await thumbnails.ready(entry)
        return thumbnail === undefined ? entry : { ...entry, thumbnail: thumbnail.toString('base64') }
      })),
    }
  })
  app.get('/v1/thumbnail', async (request, reply) => {
    const { path } = parse(v.object({ path: pathParam }), request.query)
    const entry = await storage.stat(path)
    const thumbnail = await thumbnails?.get(entry)
    if (thumbnail === undefined) throw errors.notFound(`a thumbnail of ${path}`)
    return reply.type(thumbnails!.mediaType).send(thumbnail)
  })
  app.get('/v1/stat', async (request) => storage.stat(parse(v.object({ path: pathParam }), request.query).path))
  app.get('/v1/content', async (request, reply) => {
    const query = parse(v.object({ path: pathParam, offset: v.optional(count(Number.MAX_SAFE_INTEGER), '0'), length: v.optional(count(API_MAX_BODY), String(API_MAX_BODY)) }), request.query)
    return bulk.send(request, reply, await storage.read(query.path, query.offset, query.length, bulk.buffer(request, query.length)))
  })
  app.delete('/v1/files', async (request, reply) => {
    await storage.remove(parse(v.object({ path: pathParam }), request.query).path, { by: callerOf(request) })
    return reply.code(204).send()
  })
  app.post('/v1/move', async (request) => {
    const body = parse(transfer, request.body)
    return storage.move(body.from, body.to, { overwrite: body.overwrite, by: callerOf(request) })
  })
  app.post('/v1/copy', async (request) => {
    const body = parse(transfer, request.body)
    return storage.copy(body.from, body.to, { overwrite: body.overwrite, by: callerOf(request) })
  })
  app.post('/v1/folders', async (request) => storage.mkdir(parse(v.strictObject({ path: pathParam }), request.body).path))
  app.get('/v1/search', async (request) => {
    const query = parse(v.object({ q: v.pipe(v.string(), v.minLength(1), v.maxLength(255)), limit: v.optional(count(10_000), '200') }), request.query)
    return { entries: await storage.search(query.q, query.limit) }
  })
}
