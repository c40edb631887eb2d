/**
 * The status page's routes on the server's own fastify, all under `/status/<token>/`:
 * the page, its script and style, the pairing QR, a JSON snapshot, thumbnails, and a
 * WebSocket live feed. Only loopback callers that know the token get anything; every
 * other request is a plain 404, so the page's existence does not leak either.
 */
import { timingSafeEqual } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { CloudBox } from '@cloudbox/cloudbox'
import { isSyncError, type KeptVersion, type SyncEngine } from '@cloudbox/cloudsync'
import type { StorageBackend } from '../storage/storage-backend.js'
import type { Thumbnails } from '../thumbnails.js'
import { FAVICON_SVG, PAGE_CSS, PAGE_HTML, PAGE_JS } from './page-assets.js'
import type { StatusBoard } from './status-board.js'

export const STATUS_PREFIX = '/status'

export interface StatusContext {
  box: CloudBox
  storage: StorageBackend
  thumbnails: Thumbnails | undefined
  board: StatusBoard
  token: string
  apiUrl: () => string
}

// The page loads nothing from elsewhere and may not be framed; the token in its URL must
// not leave in a Referer.
const HEADERS = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}

const isLoopback = (address: string | undefined) => address !== undefined && (address === '::1' || /^(::ffff:)?127\./.test(address))

/** Does a server listening on `host` answer on loopback (so the status page can be reached)? */
export function listensOnLoopback(host: string): boolean {
  return isLoopback(host) || ['localhost', '0.0.0.0', '::'].includes(host)
}

/** Progress goes out at most this often per page; other changes are batched this long. */
const PROGRESS_INTERVAL_MS = 200
const SNAPSHOT_DELAY_MS = 250
const REFRESH_MS = 10_000
/** A page that reads slower than this much queued output misses progress updates, not snapshots. */
const MAX_BUFFERED = 1024 * 1024
/** Kept versions the page lists (newest first). */
const RECENT_VERSIONS = 30
/** Sent by the page's buttons with each action. */
const ACTION_HEADER = 'x-cloudbox-action'
/** An upgrade request not upgraded by then is dropped. */
const UPGRADE_TIMEOUT_MS = 10_000

export async function statusRoutes(app: FastifyInstance, context: StatusContext): Promise<void> {
  const expected = Buffer.from(context.token)
  const allowed = (request: FastifyRequest) => {
    const given = Buffer.from(String((request.params as { token?: unknown }).token ?? ''))
    return isLoopback(request.socket.remoteAddress) && given.length === expected.length && timingSafeEqual(given, expected)
  }
  const { default: websocket } = await import('@fastify/websocket')
  await app.register(websocket, {
    options: { maxPayload: 1024 },
    // Stopping ends every feed at once: a page that never answers the close handshake
    // (or a half-open socket) must not hold the server's stop for ws's 30 s close timeout.
    preClose(this: FastifyInstance, done: () => void) {
      for (const client of this.websocketServer.clients) client.terminate()
      this.websocketServer.close(() => done())
    },
  })
  // An upgrade request the plugin answers instead of upgrading (a bad URL, a 404) has
  // left the HTTP server's care, and the plugin leaves its socket open: close it.
  const upgraded = new WeakSet<object>()
  app.websocketServer.on('connection', (socket: unknown) => upgraded.add((socket as { _socket: object })._socket))
  app.server.on('upgrade', (_request: unknown, socket: Duplex) => {
    const drop = () => {
      if (!upgraded.has(socket)) socket.destroy()
    }
    socket.once('end', drop)
    setTimeout(drop, UPGRADE_TIMEOUT_MS).unref()
  })
  await app.register(async (page) => {
    page.addHook('onRequest', async (request, reply) => {
      if (!allowed(request)) return reply.code(404).type('text/plain').send('Not found')
      // A page on another site cannot open the live feed even if it learned the URL.
      const origin = request.headers.origin
      if (origin !== undefined && origin !== `http://${request.headers.host}`) return reply.code(403).type('text/plain').send('Forbidden origin')
      reply.headers(HEADERS)
    })
    // Without the trailing slash the page's relative URLs would miss the token.
    page.get('/:token', async (request, reply) => reply.redirect(`${STATUS_PREFIX}/${(request.params as { token: string }).token}/`))
    page.get('/:token/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(PAGE_HTML))
    page.get('/:token/page.js', async (_request, reply) => reply.type('text/javascript; charset=utf-8').send(PAGE_JS))
    page.get('/:token/page.css', async (_request, reply) => reply.type('text/css; charset=utf-8').send(PAGE_CSS))
    page.get('/:token/favicon.svg', async (_request, reply) => reply.type('image/svg+xml').send(FAVICON_SVG))
    page.get('/:token/qr.svg', async (_request, reply) => reply.type('image/svg+xml').send(await context.box.pairingQr('svg')))
    page.get('/:token/state', async () => snapshot(context))
    page.get('/:token/thumbnail', async (request, reply) => thumbnail(context, request, reply))
    // The page's buttons. A cross-site form cannot send the custom header, and a cross-site
    // script cannot send it without a preflight this server never answers.
    const action = (request: FastifyRequest, reply: FastifyReply) => {
      if (request.headers[ACTION_HEADER] !== '1' || request.headers.origin !== `http://${request.headers.host}`) {
        void reply.code(403).type('application/json').send({ error: { code: 'ERR_FORBIDDEN', message: 'Actions come from the status page only.' } })
        return false
      }
      return true
    }
    page.post('/:token/versions/:id/restore', async (request, reply) => {
      if (!action(request, reply)) return reply
      return act(reply, async (engine) => {
        const { version, changed } = await engine.versions.restore(String((request.params as { id: string }).id))
        void engine.scan().catch(() => {})
        return { restored: version.path, id: version.id, changed }
      }, context)
    })
    page.post('/:token/held/confirm', async (request, reply) => {
      if (!action(request, reply)) return reply
      return act(reply, async (engine) => {
        const count = engine.heldDeletes.length
        await engine.confirmDeletes()
        return { confirmed: count }
      }, context)
    })
    page.post('/:token/held/restore', async (request, reply) => {
      if (!action(request, reply)) return reply
      return act(reply, async (engine) => {
        const { restored, failed } = await engine.restoreHeldDeletes()
        return { restored: restored.length, failed: failed.map((each) => ({ path: each.path, code: each.error.code, message: each.error.message })) }
      }, context)
    })
    page.get('/:token/live', { websocket: true }, (socket) => {
      let lastProgress = 0
      let progressTimer: NodeJS.Timeout | undefined
      let snapshotTimer: NodeJS.Timeout | undefined
      const send = (message: unknown) => {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message))
      }
      const sendSnapshot = () => {
        snapshotTimer = undefined
        snapshot(context).then((state) => send({ type: 'snapshot', state }), () => {})
      }
      const sendProgress = () => {
        progressTimer = undefined
        lastProgress = Date.now()
        if (socket.bufferedAmount < MAX_BUFFERED && context.board.progress !== undefined) send({ type: 'progress', progress: context.board.progress })
      }
      const unsubscribe = context.board.on((change) => {
        if (change.type === 'progress') {
          progressTimer ??= setTimeout(sendProgress, Math.max(0, lastProgress + PROGRESS_INTERVAL_MS - Date.now()))
        } else {
          snapshotTimer ??= setTimeout(sendSnapshot, SNAPSHOT_DELAY_MS)
        }
      })
      const refresh = setInterval(() => (snapshotTimer ??= setTimeout(sendSnapshot, 0)), REFRESH_MS)
      socket.on('close', () => {
        unsubscribe()
        clearInterval(refresh)
        clearTimeout(progressTimer)
        clearTimeout(snapshotTimer)
      })
      // Nothing is expected from the page: anything it sends ends the feed.
      socket.on('message', () => socket.close(1008, 'the feed is one-way'))
      sendSnapshot()
    })
  }, { prefix: STATUS_PREFIX })
}

/** Runs a page action on the box's engine; typed errors become JSON answers (404 for an unknown version, 409 otherwise). */
async function act(reply: FastifyReply, work: (engine: SyncEngine) => Promise<unknown>, { box }: StatusContext): Promise<unknown> {
  const engine = box.engine
  if (engine === undefined || engine.state === 'stopped') return reply.code(409).send({ error: { code: 'ERR_ENGINE_STOPPED', message: 'The folder is not syncing right now; try again once the server runs.' } })
  try {
    return await work(engine)
  } catch (error) {
    if (!isSyncError(error)) throw error
    return reply.code(error.code === 'ERR_VERSION_NOT_FOUND' ? 404 : 409).send({ error: { code: error.code, message: error.message } })
  }
}

/** What the page shows of the engine: recent kept versions, and deletions the guard holds. */
function keeping(box: CloudBox) {
  const engine = box.engine
  if (engine === undefined || engine.state === 'stopped') return { versions: [], held: { count: 0, paths: [] } }
  let versions: KeptVersion[] = []
  try {
    versions = engine.versions.recent(RECENT_VERSIONS)
  } catch {
    // Stopping: nothing to show.
  }
  const held = engine.heldDeletes
  return {
    versions: versions.map((version) => ({ id: version.id, path: version.path, keptAt: version.keptAt, size: version.size, device: version.device, reason: version.reason })),
    held: { count: held.length, paths: held.slice(0, 20) },
  }
}

async function snapshot({ box, storage, board, apiUrl }: StatusContext) {
  const [devices, info, usage, images] = await Promise.all([box.admin.listDevices(), box.admin.storage(), storage.usage(), board.images()])
  return {
    cloud: { id: box.id, name: box.init.name ?? '', uri: box.pairingUri(), direct: box.directUrl ?? null, hub: box.init.hub ?? null, api: apiUrl() },
    startedAt: board.startedAt,
    receivedBytes: board.receivedBytes,
    devices: devices.map((device) => ({ ...device, peer: board.peers.get(device.id) ?? null })),
    storage: { ...usage, quotaBytes: info.quotaBytes ?? null },
    progress: board.progress ?? null,
    transfers: board.transfers,
    errors: board.errors,
    images,
    ...keeping(box),
  }
}

async function thumbnail({ storage, thumbnails, board }: StatusContext, request: FastifyRequest, reply: FastifyReply) {
  const path = String((request.query as { path?: unknown }).path ?? '')
  // Only images the page lists: the thumbnail route is no way to probe other paths.
  if (thumbnails === undefined || !board.showsImage(path)) return reply.code(404).type('text/plain').send('Not found')
  const image = await thumbnails.get(await storage.stat(path)).catch(() => undefined)
  if (image === undefined) return reply.code(404).type('text/plain').send('Not found')
  return reply.type(thumbnails.mediaType).send(image)
}
