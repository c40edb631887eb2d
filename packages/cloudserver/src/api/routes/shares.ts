/**
 * The drop box (the CloudSecureShare flow): a device uploads a file it sealed (age) for
 * some recipients' public keys; each recipient lists and downloads it and opens it
 * locally. The server keeps ciphertext it cannot open, and shows a share only to its
 * recipients (and lets its sender withdraw it).
 */
import { randomBytes } from 'node:crypto'
import type { FastifyPluginAsync } from 'fastify'
import * as v from 'valibot'
import { API_MAX_BODY, formatAgeRecipient, isPublicId, parseAgeRecipient, parseRecipient } from '@cloudbox/encrypted-messaging'
import { errors } from '../../errors.js'
import { callerOf, scopedUpload, type ApiContext } from '../api-context.js'
import { count, parse } from './params.js'
import { uploadId } from './uploads.js'

const shareId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{16,64}$/))

/**
 * 144 random bits in base64url, never starting with "-": people type the ID on a command
 * line (`cloudbox inbox get ID`), where a leading "-" reads as an option.
 */
export function newShareId(): string {
  for (;;) {
    const id = randomBytes(18).toString('base64url')
    if (!id.startsWith('-')) return id
  }
}

const isAgeRecipient = (text: string) => {
  try {
    parseAgeRecipient(text)
    return /^age1/i.test(text)
  } catch {
    return false
  }
}

/** The age recipient of a paired device's key: a share sealed to it is that device's too. */
const ageRecipientOf = (publicId: string) => formatAgeRecipient(parseRecipient(publicId))
const addressedTo = (to: readonly string[], caller: string) => to.includes(caller) || to.includes(ageRecipientOf(caller))

export const sharesRoutes: FastifyPluginAsync<ApiContext> = async (app, { storage, bulk }) => {
  app.post('/v1/shares', async (request) => {
    const body = parse(
      v.strictObject({
        upload: uploadId,
        to: v.pipe(v.array(v.pipe(v.string(), v.check((to) => isPublicId(to) || isAgeRecipient(to), 'a cb1… public ID or an age1… recipient'))), v.minLength(1), v.maxLength(64)),
        name: v.pipe(v.string(), v.minLength(1), v.maxLength(255), v.check((name) => !/[\u0000-\u001f/\\]/.test(name), 'a file name without slashes or control characters')),
        signature: v.optional(v.pipe(v.string(), v.maxLength(2048))),
      }),
      request.body,
    )
    return storage.shareCommit(scopedUpload(request, body.upload), {
      id: newShareId(),
      from: callerOf(request),
      to: [...new Set(body.to.map((to) => (to.startsWith('age1') || to.startsWith('AGE1') ? to.toLowerCase() : to)))],
      name: body.name,
      created: Date.now(),
      ...(body.signature === undefined ? {} : { signature: body.signature }),
    })
  })

  app.get('/v1/shares', async (request) => {
    const caller = callerOf(request)
    return { shares: (await storage.listShares()).filter((share) => addressedTo(share.to, caller)) }
  })

  // A share that is not for the caller is "not found": its existence is not revealed.
  const visible = async (id: string, caller: string, allowSender: boolean) => {
    const share = await storage.getShare(id)
    if (!addressedTo(share.to, caller) && !(allowSender && share.from === caller)) throw errors.notFound(`share ${id}`)
    return share
  }

  app.get('/v1/shares/content', async (request, reply) => {
    const query = parse(v.object({ id: shareId, offset: v.optional(count(Number.MAX_SAFE_INTEGER), '0'), length: v.optional(count(API_MAX_BODY), String(API_MAX_BODY)) }), request.query)
    await visible(query.id, callerOf(request), false)
    return bulk.send(request, reply, await storage.readShare(query.id, query.offset, query.length, bulk.buffer(request, query.length)))
  })

  app.delete('/v1/shares', async (request, reply) => {
    const { id } = parse(v.object({ id: shareId }), request.query)
    const caller = callerOf(request)
    const share = await visible(id, caller, true)
    const rest = share.from === caller ? [] : share.to.filter((each) => each !== caller && each !== ageRecipientOf(caller))
    if (rest.length === 0) await storage.removeShare(id)
    else await storage.updateShare({ ...share, to: rest })
    return reply.code(204).send()
  })
}
