/**
 * The encrypted REST API of a cloud server. Outside, one endpoint: `POST /v1/api` takes
 * a sealed request (encrypted-messaging's API envelope) and answers with a sealed
 * response, always HTTP 200 once the request opened, so a proxy learns neither the
 * operation nor its outcome. Inside, the endpoints are ordinary fastify plugins on an
 * inner instance that never listens: the only way in is through the envelope, after the
 * caller's signature and pairing were checked.
 */
import type { FastifyError, FastifyInstance } from 'fastify'
import type { CloudBox } from '@cloudbox/cloudbox'
import {
  API_MAX_BODY,
  API_REQUEST_MEDIA_TYPE,
  API_RESPONSE_MEDIA_TYPE,
  ApiRequestOpener,
  BufferPool,
  isEncryptedMessagingError,
  readIntoPool,
  type ApiRequestOpenerOptions,
  type OpenedApiRequest,
} from '@cloudbox/encrypted-messaging'
import { CloudServerError, errors, HTTP_STATUS, isCloudServerError, type ErrorCode } from '../errors.js'
import { join } from 'node:path'
import { STATE_DIR, type VersionStore } from '@cloudbox/cloudsync'
import { LocalFolderStorage } from '../storage/local-folder.js'
import { Thumbnails, type ThumbnailOptions } from '../thumbnails.js'
import type { StorageBackend } from '../storage/storage-backend.js'
import { CALL_HEADER, CALLER_HEADER, ROLE_HEADER, type ApiContext, type BulkAnswers } from './api-context.js'
import { adminRoutes } from './routes/admin.js'
import { filesRoutes } from './routes/files.js'
import { sharesRoutes } from './routes/shares.js'
import { storageRoutes } from './routes/storage-info.js'
import { uploadsRoutes } from './routes/uploads.js'
import { randomBytes } from 'node:crypto'
import { StatusBoard } from '../status-page/status-board.js'
import { listensOnLoopback, STATUS_PREFIX, statusRoutes } from '../status-page/status-routes.js'

/** The web framework, loaded when an API starts: a program that only syncs or calls an API never pays for it. */
const loadFastify = () => import('fastify').then((module) => module.default)

export const API_PATH = '/v1/api'

/** The API's base URL at a router hub: `ws://hub:7070` → `http://hub:7070/n/<cb1…>/api`. */
export function hubApiUrl(hub: string, cloudId: string): string {
  return `${hub.replace(/^ws(s?):\/\//, 'http$1://').replace(/\/+$/, '')}/n/${cloudId}/api`
}

export interface CloudServerOptions {
  host?: string
  /** 0 picks a free port (read it back from `url`). */
  port?: number
  /**
   * Replay window, memory and journal of the envelope (defaults: 60 s, 1,000,000 nonces,
   * kept in `<box state>/api-nonces` so a restart does not forget them). Only paired
   * devices' nonces are remembered.
   */
  envelope?: Omit<ApiRequestOpenerOptions, 'admit'>
  /** Thumbnail settings, or false for none (default: 128 px WebP, cached in the folder's `.cloudbox/thumbnails`). */
  thumbnails?: (ThumbnailOptions & { cacheDir?: string }) | false
  /**
   * Serve the status page at `statusUrl` (default off). Only loopback callers with the
   * token get it, so the API's address must include loopback (127.0.0.1, ::1 or a wildcard).
   */
  statusPage?: boolean | StatusPageOptions
}

export interface StatusPageOptions {
  /** The secret in the page's URL (default: 24 random bytes, base64url). At least 16 characters. */
  token?: string
  /** Recent transfers and problems kept for the page (default 50 each). */
  history?: number
}

export interface CloudServerComponents {
  /** The running server instance whose devices may call, and whose key opens requests. */
  box: CloudBox
  /** Where files live (default: the box's folder on the local disk). */
  storage?: StorageBackend
  log?: (event: { level: 'info' | 'warn' | 'error'; message: string; [key: string]: unknown }) => void
}

const ENVELOPE_STATUS: Record<string, number> = { ERR_API_REQUEST_INVALID: 400, ERR_API_REQUEST_EXPIRED: 400, ERR_API_REQUEST_REPLAYED: 409, ERR_API_RATE_LIMITED: 429 }

export class CloudServer {
  readonly options: CloudServerOptions
  readonly storage: StorageBackend
  readonly thumbnails: Thumbnails | undefined
  readonly #box: CloudBox
  #unsubscribe: (() => void) | undefined
  readonly #log: NonNullable<CloudServerComponents['log']>
  readonly #opener: ApiRequestOpener
  /**
   * The large buffers of calls: a client keeps two in flight, each needing its sealed
   * request and plaintext (an upload) or the file's bytes and the sealed answer (a download).
   */
  readonly #buffers = new BufferPool(5)
  /** By call: the answer an endpoint set aside with BulkAnswers.send, and the buffers it took. */
  readonly #bulk = new Map<string, { bytes?: Uint8Array; lent: Uint8Array[] }>()
  #calls = 0
  #outer: FastifyInstance | undefined
  #inner: FastifyInstance | undefined
  #url: string | undefined
  #board: StatusBoard | undefined
  #statusToken: string | undefined
  #statusUrl: string | undefined

  constructor(options: CloudServerOptions, components: CloudServerComponents) {
    if (components.box.role !== 'server') throw new TypeError('CloudServer serves a CloudBox with role "server".')
    this.options = options
    this.#box = components.box
    // Replacements and deletions through the API are kept among the folder's versions.
    this.storage = components.storage ?? new LocalFolderStorage(components.box.init.folder, { versions: () => versionsOf(components.box) })
    this.#log = components.log ?? (() => {})
    const box = components.box
    this.#opener = new ApiRequestOpener(box.identity, {
      journal: join(box.stateDir, 'api-nonces'),
      ...options.envelope,
      // Strangers' requests are answered (refused) without filling the replay memory.
      admit: async (client) => (await box.admin.listDevices().catch(() => [])).some((device) => device.id === client),
    })
    const thumbnails = options.thumbnails
    this.thumbnails = thumbnails === false ? undefined : new Thumbnails(this.storage, thumbnails?.cacheDir ?? join(components.box.init.folder, STATE_DIR, 'thumbnails'), thumbnails ?? {})
  }

  /** `http://host:port`; the API is at `${url}/v1/api`. */
  get url(): string {
    if (this.#url === undefined) throw errors.serverState('The API URL')
    return this.#url
  }

  /**
   * The status page's address with its token (`http://127.0.0.1:port/status/<token>/`),
   * or undefined when the page is off or the server is stopped. Treat it as a password.
   */
  get statusUrl(): string | undefined {
    return this.#statusUrl
  }

  async start(): Promise<void> {
    if (this.#outer !== undefined) return
    const page = this.options.statusPage === true ? {} : this.options.statusPage || undefined
    const host = this.options.host ?? '127.0.0.1'
    if (page !== undefined) {
      if (!listensOnLoopback(host)) {
        throw new TypeError(`The status page answers on loopback only, but the API listens on ${host}; listen on 127.0.0.1 or a wildcard, or turn statusPage off.`)
      }
      if (page.token !== undefined && !/^[A-Za-z0-9_-]{16,}$/.test(page.token)) throw new TypeError('statusPage.token takes at least 16 characters of A-Z, a-z, 0-9, _ and -.')
    }
    const inner = await this.#buildInner()
    const Fastify = await loadFastify()
    const outer = Fastify({ logger: false, bodyLimit: API_MAX_BODY + 64 * 1024, forceCloseConnections: true })
    if (page !== undefined) {
      const board = new StatusBoard(this.#box, this.storage, page.history === undefined ? {} : { history: page.history })
      const token = page.token ?? randomBytes(24).toString('base64url')
      await outer.register(statusRoutes, { box: this.#box, storage: this.storage, thumbnails: this.thumbnails, board, token, apiUrl: () => this.url })
      board.start()
      this.#board = board
      this.#statusToken = token
    }
    // Read into a pooled buffer (fastify's buffer parser allocates a new one for every call): the sealed bytes are done with once opened.
    outer.addContentTypeParser(API_REQUEST_MEDIA_TYPE, (request, payload, done) => {
      readIntoPool(payload, request.headers['content-length'], API_MAX_BODY + 64 * 1024, this.#buffers).then((body) => done(null, body), (error: Error) => done(error))
    })
    outer.post(API_PATH, async (request, reply) => {
      const body = request.body
      if (!Buffer.isBuffer(body)) return reply.code(415).send({ code: 'ERR_BAD_REQUEST', message: `Send a sealed request as ${API_REQUEST_MEDIA_TYPE}.` })
      let answer: Awaited<ReturnType<CloudServer['handle']>>
      try {
        answer = await this.handle(body, () => this.#buffers.release(body))
      } finally {
        this.#buffers.release(body) // (a second release is ignored)
      }
      const { status, sealed, error, release } = answer
      if (sealed === undefined) return reply.code(status).send(error)
      // Written piece by piece: a 16 MiB answer is not joined into one buffer first.
      reply.hijack()
      reply.raw.writeHead(200, { 'content-type': API_RESPONSE_MEDIA_TYPE, 'content-length': sealed.reduce((sum, part) => sum + part.length, 0) })
      reply.raw.cork()
      for (const part of sealed) reply.raw.write(part)
      reply.raw.uncork()
      // Its memory takes another answer once the socket has it all (or the caller went away).
      let released = false
      const done = () => {
        if (!released) release?.()
        released = true
      }
      reply.raw.once('close', done)
      reply.raw.end(done)
      return reply
    })
    try {
      await outer.listen({ host, port: this.options.port ?? 0 })
    } catch (error) {
      this.#board?.stop()
      this.#board = undefined
      this.#statusToken = undefined
      await outer.close()
      await inner.close()
      throw error
    }
    const address = outer.server.address()
    if (address === null || typeof address === 'string') throw new Error('The API did not bind a TCP port.')
    this.#url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`
    // A wildcard listener is reached on 127.0.0.1 (the page answers loopback callers only).
    const pageHost = host === '::1' ? '[::1]' : host.startsWith('127.') ? host : '127.0.0.1'
    if (this.#statusToken !== undefined) this.#statusUrl = `http://${pageHost}:${address.port}${STATUS_PREFIX}/${this.#statusToken}/`
    this.#outer = outer
    this.#inner = inner
    // The API on the box's direct listener too (one port to open); nothing else of this
    // server is answered there (the status page stays on this loopback listener).
    this.#box.serveApiDirect((request, response) => {
      if (request.method === 'POST' && (request.url === API_PATH || request.url?.startsWith(`${API_PATH}?`))) outer.routing(request, response)
      else response.writeHead(404, { 'content-type': 'text/plain', connection: 'close' }).end('Not found')
    })
    // Calls through the box's hub registration (`<hub>/n/<id>/api/v1/api`) land here too.
    this.#box.serveApiThroughHub(async (message) => {
      const { status, sealed, error, release } = await this.handle(message)
      return { status, ...(sealed === undefined ? {} : { sealed, ...(release === undefined ? {} : { release }) }), ...(error === undefined ? {} : { error }) }
    })
    // Files that arrive by sync get their thumbnail right away.
    this.#unsubscribe = this.#box.status.on((event) => {
      if (event.type === 'sync' && event.event.type === 'file' && event.event.action === 'downloaded') this.thumbnails?.prepare(event.event.path)
    })
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.()
    this.#unsubscribe = undefined
    this.#board?.stop()
    this.#board = undefined
    this.#statusToken = undefined
    this.#statusUrl = undefined
    if (this.#box.state !== 'destroyed') {
      this.#box.serveApiThroughHub(undefined)
      this.#box.serveApiDirect(undefined)
    }
    const outer = this.#outer
    this.#outer = undefined
    this.#url = undefined
    await outer?.close()
    await this.#inner?.close()
    this.#inner = undefined
    this.#opener.close()
    await this.thumbnails?.idle()
  }

  /**
   * One sealed request in, one sealed response out: the transport-independent core (the
   * hub's exposure calls it too). `sealed` is the sealed answer in pieces to send one after
   * another; it is undefined when the request could not be opened, and then `status` and
   * `error` are what to answer in clear. `release`, once `sealed` is sent, lets its memory
   * take another answer. `opened` is called as soon as `message` is no longer read.
   */
  async handle(message: Uint8Array, opened?: () => void): Promise<{ status: number; sealed?: readonly Uint8Array[]; error?: { code: string; message: string }; release?: () => void }> {
    let request: OpenedApiRequest
    try {
      request = await this.#opener.open(message, { pool: this.#buffers })
    } catch (error) {
      opened?.()
      if (isEncryptedMessagingError(error) && ENVELOPE_STATUS[error.code] !== undefined) {
        return { status: ENVELOPE_STATUS[error.code] as number, error: { code: error.code, message: error.message } }
      }
      this.#log({ level: 'error', message: 'opening an API request failed', error: String(error) })
      return { status: 500, error: { code: 'ERR_INTERNAL', message: 'The server failed to open the request.' } }
    }
    opened?.()
    let sealed: Uint8Array[]
    try {
      const answer = await this.#dispatch(request)
      try {
        sealed = await request.respondInParts(answer)
      } finally {
        for (const buffer of answer.lent) this.#buffers.release(buffer)
      }
    } finally {
      request.release()
    }
    return { status: 200, sealed, release: () => sealed.forEach((part) => this.#buffers.release(part)) }
  }

  /** The endpoint's answer, and the pooled buffers it took (given back once the answer is sealed). */
  async #dispatch(request: OpenedApiRequest): Promise<{ status: number; body: Uint8Array; lent: readonly Uint8Array[] }> {
    const inner = this.#inner
    if (inner === undefined) return failure(errors.serverState('The API'))
    // Only paired, enabled devices are served; checked on every call, so a revoked or
    // blocked device is refused from its next request on.
    const device = request.admitted ? (await this.#box.admin.listDevices().catch(() => [])).find((each) => each.id === request.client) : undefined
    if (device === undefined) return failure(errors.forbidden('it is not paired with this cloud'))
    if (device.state !== 'enabled') return failure(errors.forbidden('the owner blocked it'))
    const bytes = Buffer.from(request.body.buffer, request.body.byteOffset, request.body.byteLength)
    // Upload chunks are bytes; every other body is JSON (the envelope carries no headers).
    const raw = request.method === 'POST' && request.path.split('?')[0] === '/v1/uploads'
    const call = String(++this.#calls)
    const bulk: { bytes?: Uint8Array; lent: Uint8Array[] } = { lent: [] }
    this.#bulk.set(call, bulk)
    let response: Awaited<ReturnType<FastifyInstance['inject']>>
    try {
      response = await inner.inject({
        method: request.method,
        url: request.path,
        headers: {
          [CALLER_HEADER]: request.client,
          [ROLE_HEADER]: device.role,
          [CALL_HEADER]: call,
          ...(bytes.length > 0 ? { 'content-type': raw ? 'application/octet-stream' : 'application/json' } : {}),
        },
        ...(bytes.length > 0 ? { payload: bytes } : {}),
        // As a stream: otherwise inject also decodes every body as a string (a third of the CPU on downloads).
        payloadAsStream: true,
      })
    } finally {
      this.#bulk.delete(call)
    }
    const chunks: Buffer[] = []
    for await (const chunk of response.stream()) chunks.push(chunk as Buffer)
    // (HEAD runs the GET endpoint, and answers without its body.)
    if (bulk.bytes !== undefined && request.method !== 'HEAD') return { status: response.statusCode, body: bulk.bytes, lent: bulk.lent }
    return { status: response.statusCode, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks), lent: bulk.lent }
  }

  /** BulkAnswers for the endpoints: the bytes wait here for #dispatch, keyed by the call's header. */
  #bulkAnswers(): BulkAnswers {
    return {
      buffer: (request, length) => {
        const call = this.#bulk.get(String(request.headers[CALL_HEADER]))
        if (call === undefined) return Buffer.allocUnsafe(length)
        const buffer = this.#buffers.acquire(length)
        call.lent.push(buffer)
        return buffer
      },
      send: (request, reply, bytes) => {
        const call = this.#bulk.get(String(request.headers[CALL_HEADER]))
        reply.type('application/octet-stream')
        if (call === undefined) return reply.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
        call.bytes = bytes
        return reply.send()
      },
    }
  }

  async #buildInner(): Promise<FastifyInstance> {
    const Fastify = await loadFastify()
    const inner = Fastify({ logger: false, bodyLimit: API_MAX_BODY })
    // Upload chunks as they come: the one buffer of an injected body, not a copy of it (fastify's buffer parser always copies).
    inner.addContentTypeParser('application/octet-stream', (_request, payload, done) => {
      const pieces: Buffer[] = []
      let length = 0
      payload.on('data', (piece: Buffer) => {
        length += piece.length
        if (length <= API_MAX_BODY) pieces.push(piece)
      })
      payload.once('error', (error) => done(error, undefined))
      payload.once('end', () => {
        if (length > API_MAX_BODY) return done(Object.assign(new Error('The upload chunk is larger than 16 MiB.'), { statusCode: 413 }), undefined)
        done(null, pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, length))
      })
    })
    inner.setErrorHandler((error: FastifyError | CloudServerError, _request, reply) => {
      if (isCloudServerError(error)) {
        return reply.code(error.status).send({ code: error.code, message: error.message, ...(error.expectedOffset === undefined ? {} : { expectedOffset: error.expectedOffset }) })
      }
      const code = (error as { code?: unknown }).code
      // Lower layers' typed errors (cloudbox admin: ERR_UNKNOWN_DEVICE…) keep their code.
      if (typeof code === 'string' && code.startsWith('ERR_') && (error as unknown as Record<symbol, unknown>)[Symbol.for('cloudbox.error')] === true) {
        return reply.code(code.startsWith('ERR_UNKNOWN_') ? 404 : 400).send({ code, message: error.message })
      }
      if ((error as FastifyError).statusCode !== undefined && (error as FastifyError).statusCode! < 500) {
        return reply.code((error as FastifyError).statusCode!).send({ code: 'ERR_BAD_REQUEST', message: error.message })
      }
      this.#log({ level: 'error', message: 'an API endpoint failed', error: String(error) })
      return reply.code(500).send({ code: 'ERR_INTERNAL', message: 'The server failed on this request; it was logged.' })
    })
    inner.setNotFoundHandler((request, reply) => reply.code(404).send({ code: 'ERR_NOT_FOUND', message: `No endpoint ${request.method} ${request.url.split('?')[0]}.` }))
    const context: ApiContext = {
      box: this.#box,
      storage: this.storage,
      thumbnails: this.thumbnails,
      uploaded: (path, bytes, device) => this.#board?.uploaded(path, bytes, device),
      bulk: this.#bulkAnswers(),
    }
    await inner.register(filesRoutes, context)
    await inner.register(uploadsRoutes, context)
    await inner.register(storageRoutes, context)
    await inner.register(sharesRoutes, context)
    await inner.register(adminRoutes, context)
    await inner.ready()
    return inner
  }
}

function failure(error: CloudServerError): { status: number; body: Uint8Array; lent: readonly Uint8Array[] } {
  return { status: HTTP_STATUS[error.code as ErrorCode] ?? 500, body: Buffer.from(JSON.stringify({ code: error.code, message: error.message })), lent: [] }
}

/** The box's version store while its engine runs. */
function versionsOf(box: CloudBox): VersionStore | undefined {
  try {
    return box.engine?.versions
  } catch {
    return undefined // stopped
  }
}
