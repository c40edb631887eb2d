/**
 * The router hub: nodes register by proving their key; clients open routes to a node
 * by its public ID; frames pass through unread, with backpressure end to end.
 *
 * A route is two WebSockets joined by the hub: the client's (`/v1/route/<id>`) and one
 * the node opens on request (`/v1/accept/<route>`), so each route has its own flow
 * control and a slow route never stalls another.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { hostname, networkInterfaces } from 'node:os'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { WebSocketServer, type WebSocket, type RawData } from 'ws'
import { BufferPool, encodePublicId, parsePublicId, readIntoPool, ready } from '@cloudbox/encrypted-messaging'
import {
  HUB_ACCEPT_PATH,
  HUB_API_MAX_MESSAGE,
  HUB_API_PREFIX,
  HUB_ROUTE_API,
  HUB_CHALLENGE_LENGTH,
  HUB_DEFAULT_MAX_FRAME,
  HUB_NODE_PATH,
  HUB_PEER_TAG_LENGTH,
  HUB_ROUTE_PATH,
  addressKey,
  normalizeHubUrl,
  HUB_ROUTE_TOKEN_LENGTH,
  HubCloseCodes,
  hubCodec,
  verifyRegistration,
  decodeApiReply,
} from '@cloudbox/encrypted-messaging/hub'
import { API_RESPONSE_MEDIA_TYPE } from '@cloudbox/encrypted-messaging'
import { HubMetrics } from './metrics.js'
import { exchangeApiCall } from './api-exchange.js'
import { closeConnection, relayFrames, type FrameHook } from './frame-relay.js'
import { acceptUpgrade } from './websocket-frames.js'
import { HubCluster, type RemoteIncoming } from './cluster.js'

export interface RouterHubOptions {
  host?: string
  /** 0 picks a free port (read it back from `address`). */
  port?: number
  /** Largest frame relayed (default 65,536: one Noise message). */
  maxFrameSize?: number
  /** Routes a node may have open at once (default 1,024). */
  maxRoutesPerNode?: number
  /** Routes one client address may have open to one node (default a quarter of `maxRoutesPerNode`), so one address cannot take all of a node's. */
  maxRoutesPerAddress?: number
  /** API calls one address may have in flight (default 8); each may carry up to 16 MiB. */
  maxApiCallsPerAddress?: number
  /** API request bytes the hub holds at once, from everyone (default 256 MiB). */
  maxApiBytesInFlight?: number
  /**
   * The URLs nodes dial to reach this hub (behind a proxy: its public `wss://` address). A
   * registration is signed for the URL the node dialed, and refused unless it is one of
   * these or the hub's own listening addresses, so no hub can pass another's challenge on.
   */
  publicUrls?: string[]
  /** WebSocket connections from one IP address (default 1,024). */
  maxConnectionsPerAddress?: number
  /** Registered nodes (default 100,000). */
  maxNodes?: number
  /** A route without a frame either way for this long is closed (default 10 min). */
  idleTimeoutMs?: number
  /** Registration and route set-up must finish within this (default 10 s). */
  setupTimeoutMs?: number
  /** Node connections are pinged at this interval and dropped after a missed pong (default 30 s). */
  keepAliveMs?: number
  /** Relay buffering per direction before the sender is paused (default 1 MiB). */
  highWaterMark?: number
  /**
   * Cluster mode: hubs sharing this Redis reach each other's nodes (see cluster.ts).
   * `publicUrl` is this hub's own address as nodes reach it (default: its `url`).
   */
  cluster?: { redis: string; publicUrl?: string; prefix?: string; presenceTtlMs?: number }
}

export interface RouterHubComponents {
  /** Sees every relayed frame; a test uses it to play a hostile hub. */
  frameHook?: FrameHook
  log?: (event: { level: 'info' | 'warn'; message: string; [key: string]: unknown }) => void
}

interface NodeSession {
  id: string
  socket: WebSocket
  routes: Set<number>
}

interface PendingRoute {
  id: number
  nodeId: string
  token: Buffer
  /** A session route's client socket, or an API call waiting for the node. */
  client: Socket | { api: Uint8Array; answer: (reply: Buffer | Error) => void }
  timer: NodeJS.Timeout
}

/** How long a node may take over one API call once it accepted the route. */
const API_CALL_TIMEOUT_MS = 120_000

const DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  maxFrameSize: HUB_DEFAULT_MAX_FRAME,
  maxRoutesPerNode: 1024,
  maxConnectionsPerAddress: 1024,
  maxNodes: 100_000,
  idleTimeoutMs: 10 * 60_000,
  setupTimeoutMs: 10_000,
  keepAliveMs: 30_000,
  highWaterMark: 1024 * 1024,
  maxRoutesPerAddress: 0,
  maxApiCallsPerAddress: 8,
  maxApiBytesInFlight: 256 * 1024 * 1024,
  publicUrls: [] as string[],
} satisfies Required<Omit<RouterHubOptions, 'cluster'>>

export class RouterHub {
  readonly options: Required<Omit<RouterHubOptions, 'cluster'>> & Pick<RouterHubOptions, 'cluster'>
  readonly metrics = new HubMetrics()
  readonly #components: RouterHubComponents
  #app: FastifyInstance | undefined
  #wss: WebSocketServer | undefined
  readonly #nodes = new Map<string, NodeSession>()
  readonly #pending = new Map<number, PendingRoute>()
  readonly #perAddress = new Map<string, number>()
  readonly #sockets = new Set<WebSocket>()
  /** Route connections: the hub speaks WebSocket framing on them itself (frame-relay.ts). */
  readonly #routeSockets = new Set<Socket>()
  #nextRoute = 1
  #keepAlive: NodeJS.Timeout | undefined
  #address: { host: string; port: number } | undefined
  #cluster: HubCluster | undefined
  /** Addresses a registration may be signed for (computed at start). */
  #ownUrls: string[] = []
  /** Keys the client address tags nodes receive: stable while the hub runs, meaningless elsewhere. */
  readonly #tagKey = randomBytes(32)
  /** Per node, routes open (or being set up) per client address. */
  readonly #routesByAddress = new Map<string, Map<string, number>>()
  readonly #apiCallsByAddress = new Map<string, number>()
  /** API bodies and answers, reused from call to call (fresh megabytes per call made V8 mark the heap at every call or two). */
  readonly #buffers = new BufferPool(4)
  #apiBytesInFlight = 0

  constructor(options: RouterHubOptions = {}, components: RouterHubComponents = {}) {
    const given = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) } as RouterHub['options']
    this.options = { ...given, maxRoutesPerAddress: options.maxRoutesPerAddress ?? Math.max(1, Math.floor(given.maxRoutesPerNode / 4)) }
    this.#components = components
  }

  /** Where the hub listens, once started. */
  get address(): { host: string; port: number } {
    if (this.#address === undefined) throw new Error('The hub is not started; call start() first.')
    return this.#address
  }

  /** `ws://host:port`, the URL nodes and clients are given. */
  get url(): string {
    const { host, port } = this.address
    return `ws://${host.includes(':') ? `[${host}]` : host}:${port}`
  }

  /** This hub's ID in its cluster (undefined when it runs alone). */
  get clusterId(): string | undefined {
    return this.#cluster?.hubId
  }

  /** Is a node with this ID registered here? */
  hasNode(id: string): boolean {
    return this.#nodes.has(id)
  }

  async start(): Promise<void> {
    if (this.#app !== undefined) return
    // Registrations are checked with Ed25519, which needs the curve library loaded.
    await ready()
    // Loaded when a hub starts: importing this package (the program does) costs nothing more.
    const { default: Fastify } = await import('fastify')
    const app = Fastify({ logger: false, forceCloseConnections: true })
    app.get('/health', async () => ({ status: 'ok', nodes: this.#nodes.size, routes: this.metrics.routesOpen }))
    app.get('/metrics', async (_request, reply) => reply.type('text/plain; version=0.0.4').send(this.metrics.prometheus(this.#nodes.size)))
    // A node's REST API, reached through its registration (no open port at home): the
    // sealed body goes to the node as is and its sealed answer comes back.
    app.register(async (api) => {
      // Limits apply before the body is read: a request over them is never buffered.
      api.addHook('onRequest', async (request, reply) => {
        const address = request.socket.remoteAddress ?? 'unknown'
        const declared = Number(request.headers['content-length'] ?? HUB_API_MAX_MESSAGE)
        const bytes = Number.isSafeInteger(declared) && declared >= 0 ? Math.min(declared, HUB_API_MAX_MESSAGE) : HUB_API_MAX_MESSAGE
        const calls = this.#apiCallsByAddress.get(address) ?? 0
        const refuse = (status: number, body: { code: string; message: string }) => {
          this.metrics.refused++
          // The body is read and dropped (never kept), so the client gets the answer; then the connection ends.
          request.raw.resume()
          return reply.code(status).header('connection', 'close').send(body)
        }
        if (calls >= this.options.maxApiCallsPerAddress) return refuse(429, { code: 'ERR_TOO_MANY_REQUESTS', message: `At most ${this.options.maxApiCallsPerAddress} API calls at once from one address; wait for one to finish.` })
        if (this.#apiBytesInFlight + bytes > this.options.maxApiBytesInFlight) return refuse(503, { code: 'ERR_HUB_BUSY', message: 'The hub carries as many API calls as it can; try again in a moment.' })
        this.#apiCallsByAddress.set(address, calls + 1)
        this.#apiBytesInFlight += bytes
        let released = false
        const release = () => {
          if (released) return
          released = true
          this.#apiBytesInFlight -= bytes
          const left = (this.#apiCallsByAddress.get(address) ?? 1) - 1
          if (left <= 0) this.#apiCallsByAddress.delete(address)
          else this.#apiCallsByAddress.set(address, left)
        }
        reply.raw.once('close', release)
        reply.raw.once('finish', release)
      })
      api.removeAllContentTypeParsers()
      api.addContentTypeParser('*', (request, payload, done) => {
        readIntoPool(payload, request.headers['content-length'], HUB_API_MAX_MESSAGE, this.#buffers).then((body) => done(null, body), (error: Error) => done(error))
      })
      api.post(`${HUB_API_PREFIX}:node/api/*`, async (request, reply) => {
        const { node } = request.params as { node: string }
        const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
        const answer = await this.#apiCall(node, body)
        // The node read the request before it answered: its memory takes another call.
        if (!(answer instanceof Error)) this.#buffers.release(body)
        if (answer instanceof Error) return reply.code(answer.message === 'NODE_OFFLINE' ? 404 : 504).send({ code: answer.message === 'NODE_OFFLINE' ? 'ERR_NODE_OFFLINE' : 'ERR_TIMEOUT', message: answer.message === 'NODE_OFFLINE' ? 'That node is not connected to this hub; try again later.' : `The node did not answer (${answer.message}).` })
        let decoded
        try {
          decoded = decodeApiReply(answer)
        } catch {
          this.#buffers.release(answer)
          return reply.code(502).send({ code: 'ERR_BAD_MESSAGE', message: 'The node sent a malformed answer.' })
        }
        // A view of the node's answer, not a copy of it (decodeApiReply always gives one
        // buffer), which takes another answer once the client has it all.
        const sealed = decoded.sealed as Uint8Array | undefined
        if (sealed === undefined) {
          this.#buffers.release(answer)
          return reply.code(decoded.status).send(decoded.error)
        }
        const done = () => this.#buffers.release(answer)
        reply.raw.once('finish', done)
        reply.raw.once('close', done)
        return reply.code(200).type(API_RESPONSE_MEDIA_TYPE).send(Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength))
      })
    })
    const wss = new WebSocketServer({ noServer: true, maxPayload: this.options.maxFrameSize, perMessageDeflate: false, skipUTF8Validation: true })
    app.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(wss, request, socket, head))
    this.#app = app
    this.#wss = wss
    await app.listen({ host: this.options.host, port: this.options.port })
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('The hub did not bind a TCP port.')
    this.#address = { host: this.options.host, port: address.port }
    this.#ownUrls = this.#listeningUrls()
    this.#keepAlive = setInterval(() => this.#ping(), this.options.keepAliveMs).unref()
    const cluster = this.options.cluster
    if (cluster !== undefined) {
      const member = new HubCluster({ url: cluster.redis, publicUrl: cluster.publicUrl ?? this.url, ...(cluster.prefix === undefined ? {} : { prefix: cluster.prefix }), ...(cluster.presenceTtlMs === undefined ? {} : { presenceTtlMs: cluster.presenceTtlMs }) }, (error) =>
        this.#log('warn', 'redis error', { error: error.message }),
      )
      try {
        await member.start((message) => (message.type === 'incoming' ? this.#remoteIncoming(message) : this.#remoteOffline(message.route)))
      } catch (error) {
        await member.stop([]).catch(() => {})
        await this.stop()
        throw new Error(`The hub could not join the cluster at ${cluster.redis}: ${(error as Error).message}`, { cause: error })
      }
      this.#cluster = member
    }
    if (this.#cluster !== undefined) this.#ownUrls.push(this.#cluster.publicUrl)
    this.#log('info', 'hub started', { url: this.url, ...(this.#cluster === undefined ? {} : { hubId: this.#cluster.hubId }) })
  }

  async stop(): Promise<void> {
    const app = this.#app
    if (app === undefined) return
    this.#app = undefined
    clearInterval(this.#keepAlive)
    await this.#cluster?.stop(this.#nodes.keys())
    this.#cluster = undefined
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer)
      if (!('write' in pending.client)) pending.client.answer(new Error('the hub is stopping'))
    }
    this.#pending.clear()
    for (const socket of this.#sockets) socket.terminate()
    this.#sockets.clear()
    for (const socket of this.#routeSockets) socket.destroy()
    this.#routeSockets.clear()
    this.#nodes.clear()
    this.#wss?.close()
    await app.close()
    this.#log('info', 'hub stopped', {})
  }

  /** Where nodes may reach this hub: the configured public URLs, and the listening address (every interface's, for a wildcard). */
  #listeningUrls(): string[] {
    const { host, port } = this.address
    const wildcard = host === '0.0.0.0' || host === '::'
    const hosts = wildcard
      ? ['localhost', hostname(), ...Object.values(networkInterfaces()).flat().filter((each) => each !== undefined && (host === '::' || each.family === 'IPv4')).map((each) => each!.address)]
      : [host]
    const urls = hosts.map((each) => `ws://${each.includes(':') ? `[${each}]` : each}:${port}`)
    return [...new Set([...this.options.publicUrls, ...urls].map(normalizeHubUrl))]
  }

  /** The client address as nodes see it: a keyed tag, same for one address (an IPv6 /64) while this hub runs. */
  #peerTag(address: string): Buffer {
    return createHmac('sha256', this.#tagKey).update(addressKey(address)).digest().subarray(0, HUB_PEER_TAG_LENGTH)
  }

  #log(level: 'info' | 'warn', message: string, fields: Record<string, unknown>): void {
    this.#components.log?.({ level, message, ...fields })
  }

  /** Anything a stranger sends ends in an answer or a closed socket, never in an exception. */
  #upgrade(wss: WebSocketServer, request: IncomingMessage, socket: Duplex, head: Buffer): void {
    // After 'upgrade' the HTTP server no longer listens for this socket's errors.
    socket.on('error', () => socket.destroy())
    try {
      this.#routeUpgrade(wss, request, socket, head)
    } catch (error) {
      this.#log('warn', 'a bad upgrade request was refused', { error: (error as Error).message })
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      else socket.destroy()
    }
  }

  #routeUpgrade(wss: WebSocketServer, request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const address = request.socket.remoteAddress ?? 'unknown'
    const refuse = (status: number, text: string) => {
      if (socket.writable) socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
      else socket.destroy()
    }
    const target = parseTarget(request.url)
    if (target === undefined) return refuse(400, 'Bad Request')
    const { path, query } = target
    let kind: 'node' | 'route' | 'accept'
    if (path === HUB_NODE_PATH) kind = 'node'
    else if (path.startsWith(HUB_ROUTE_PATH)) kind = 'route'
    else if (path.startsWith(HUB_ACCEPT_PATH)) kind = 'accept'
    else return refuse(404, 'Not Found')
    const count = this.#perAddress.get(address) ?? 0
    if (count >= this.options.maxConnectionsPerAddress) {
      this.metrics.refused++
      return refuse(429, 'Too Many Requests')
    }
    const counted = () => {
      this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1)
      this.metrics.connections++
      return () => {
        this.metrics.connections--
        const left = (this.#perAddress.get(address) ?? 1) - 1
        if (left <= 0) this.#perAddress.delete(address)
        else this.#perAddress.set(address, left)
      }
    }
    if (kind === 'node') {
      wss.handleUpgrade(request, socket, head, (ws) => {
        if (this.#app === undefined) return ws.terminate()
        const uncount = counted()
        this.#sockets.add(ws)
        ws.once('close', () => {
          this.#sockets.delete(ws)
          uncount()
        })
        ws.on('error', () => ws.terminate())
        this.#onNode(ws)
      })
      return
    }
    // Routes carry only relayed frames: the hub does the handshake and the framing itself.
    const raw = socket as Socket
    if (this.#app === undefined || !acceptUpgrade(request, raw)) return
    const uncount = counted()
    this.#routeSockets.add(raw)
    raw.once('close', () => {
      this.#routeSockets.delete(raw)
      uncount()
    })
    raw.setTimeout(0)
    raw.setNoDelay(true)
    if (head.length > 0) raw.unshift(head)
    // IDs and route numbers are plain ASCII: nothing to percent-decode.
    if (kind === 'route') this.#onRoute(raw, path.slice(HUB_ROUTE_PATH.length))
    else this.#onAccept(raw, path.slice(HUB_ACCEPT_PATH.length), query.get('token') ?? '')
  }

  #onNode(ws: WebSocket): void {
    const nonce = randomBytes(HUB_CHALLENGE_LENGTH)
    let session: NodeSession | undefined
    const timer = setTimeout(() => ws.close(HubCloseCodes.TIMEOUT, 'register within the set-up time'), this.options.setupTimeoutMs)
    ws.send(hubCodec.encode('challenge', { nonce }))
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (session !== undefined) return ws.close(HubCloseCodes.BAD_MESSAGE, 'no messages after registration')
      clearTimeout(timer)
      let message
      try {
        if (!isBinary) throw new Error('text frame')
        message = hubCodec.decode(data as Buffer)
      } catch {
        return ws.close(HubCloseCodes.BAD_MESSAGE, 'malformed registration')
      }
      if (message.kind !== 'register' || !verifyRegistration(message.body.publicKey, nonce, message.body.signature, this.#ownUrls)) {
        this.metrics.registrationsFailed++
        return ws.close(HubCloseCodes.REGISTRATION_FAILED, 'registration signature invalid')
      }
      const id = encodePublicId(message.body.publicKey)
      const previous = this.#nodes.get(id)
      if (previous === undefined && this.#nodes.size >= this.options.maxNodes) return ws.close(HubCloseCodes.LIMIT, 'hub is full')
      session = { id, socket: ws, routes: previous?.routes ?? new Set() }
      this.#nodes.set(id, session)
      // A node that reconnects (its old TCP connection may be half dead) takes over.
      if (previous !== undefined) previous.socket.close(HubCloseCodes.REPLACED, 'registered from a newer connection')
      this.metrics.registrations++
      this.#cluster?.claim(id).catch((error: Error) => this.#log('warn', 'redis: could not record a node', { node: id, error: error.message }))
      ws.send(hubCodec.encode('registered', { id }))
      this.#log('info', 'node registered', { node: id })
    })
    ws.once('close', () => {
      clearTimeout(timer)
      if (session !== undefined && this.#nodes.get(session.id) === session) {
        this.#nodes.delete(session.id)
        this.#cluster?.release(session.id).catch(() => {})
      }
    })
    ws.on('pong', () => ((ws as WebSocket & { alive?: boolean }).alive = true))
  }

  /** Opens an API route to `target` and resolves with the node's raw reply (or an Error). */
  async #apiCall(target: string, request: Uint8Array): Promise<Buffer | Error> {
    let nodeId: string
    try {
      nodeId = encodePublicId(parsePublicId(target))
    } catch {
      return new Error('NODE_OFFLINE')
    }
    const node = this.#nodes.get(nodeId)
    // A node that said goodbye (its close frame is here, the close not yet done) is gone.
    if (node !== undefined && node.socket.readyState !== node.socket.OPEN) return new Error('NODE_OFFLINE')
    const holder = node === undefined ? await this.#holder(nodeId) : undefined
    if (node === undefined && holder === undefined) return new Error('NODE_OFFLINE')
    if (node !== undefined && node.routes.size >= this.options.maxRoutesPerNode) return new Error('the node has too many routes open')
    return new Promise((resolve) => {
      const id = this.#routeId()
      const token = randomBytes(HUB_ROUTE_TOKEN_LENGTH)
      const done = (reply: Buffer | Error) => {
        node?.routes.delete(id)
        resolve(reply)
      }
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        done(new Error('the node did not accept the route in time'))
      }, this.options.setupTimeoutMs)
      this.#pending.set(id, { id, nodeId, token, client: { api: request, answer: done }, timer })
      if (node !== undefined) {
        node.routes.add(id)
        node.socket.send(hubCodec.encode('incoming', { route: id, token, kind: HUB_ROUTE_API }))
      } else {
        this.#askHolder(holder!, { node: nodeId, route: id, token, kind: HUB_ROUTE_API })
      }
    })
  }

  #routeId(): number {
    const id = this.#nextRoute
    this.#nextRoute = this.#nextRoute >= 0xffff_fffe ? 1 : this.#nextRoute + 1
    return id
  }

  /** In a cluster, the live hub that holds a node this hub does not. */
  async #holder(nodeId: string): Promise<string | undefined> {
    if (this.#cluster === undefined) return undefined
    try {
      return await this.#cluster.holder(nodeId)
    } catch (error) {
      this.#log('warn', 'redis: lookup failed', { node: nodeId, error: (error as Error).message })
      return undefined
    }
  }

  /** Asks the holding hub to have its node accept this route here. */
  #askHolder(hubId: string, route: { node: string; route: number; token: Buffer; kind?: number; peer?: Buffer }): void {
    const cluster = this.#cluster!
    this.metrics.routesForwarded++
    const message: RemoteIncoming = { type: 'incoming', node: route.node, route: route.route, token: route.token.toString('hex'), hub: cluster.publicUrl, from: cluster.hubId, ...(route.kind === undefined ? {} : { kind: route.kind }), ...(route.peer === undefined ? {} : { peer: route.peer.toString('hex') }) }
    cluster.send(hubId, message).catch(() => this.#remoteOffline(route.route))
  }

  /** Another hub has a client for a node held here: tell the node where to accept. */
  #remoteIncoming(message: RemoteIncoming): void {
    const node = this.#nodes.get(message.node)
    if (node === undefined) {
      this.#cluster?.send(message.from, { type: 'offline', route: message.route }).catch(() => {})
      return
    }
    let incoming: Uint8Array
    try {
      incoming = hubCodec.encode('incoming', { route: message.route, token: Buffer.from(message.token, 'hex'), hub: message.hub, ...(message.kind === undefined ? {} : { kind: message.kind }), ...(message.peer === undefined ? {} : { peer: Buffer.from(message.peer, 'hex') }) })
    } catch {
      // Not a hub URL the wire allows (a peer hub misconfigured with --public-url): fail the route.
      this.#log('warn', 'a cluster hub sent an unusable set-up message', { node: message.node })
      this.#cluster?.send(message.from, { type: 'offline', route: message.route }).catch(() => {})
      return
    }
    node.socket.send(incoming)
  }

  /** The holder no longer has the node: fail the route now rather than at the set-up timeout. */
  #remoteOffline(route: number): void {
    const pending = this.#pending.get(route)
    if (pending === undefined) return
    clearTimeout(pending.timer)
    this.#pending.delete(route)
    if ('write' in pending.client) closeConnection(pending.client, HubCloseCodes.NODE_OFFLINE, 'that node is not connected to this hub')
    else pending.client.answer(new Error('NODE_OFFLINE'))
  }

  #onRoute(client: Socket, target: string): void {
    let nodeId: string
    try {
      nodeId = encodePublicId(parsePublicId(target))
    } catch {
      return closeConnection(client, HubCloseCodes.BAD_MESSAGE, 'not a CloudBox ID')
    }
    const address = addressKey(client.remoteAddress ?? 'unknown')
    const perNode = this.#routesByAddress.get(nodeId) ?? new Map<string, number>()
    const open = perNode.get(address) ?? 0
    if (open >= this.options.maxRoutesPerAddress) {
      this.metrics.routesRefused++
      return closeConnection(client, HubCloseCodes.LIMIT, 'too many routes to that node from this address')
    }
    perNode.set(address, open + 1)
    this.#routesByAddress.set(nodeId, perNode)
    client.once('close', () => {
      const left = (perNode.get(address) ?? 1) - 1
      if (left <= 0) perNode.delete(address)
      else perNode.set(address, left)
      if (perNode.size === 0 && this.#routesByAddress.get(nodeId) === perNode) this.#routesByAddress.delete(nodeId)
    })
    const peer = this.#peerTag(client.remoteAddress ?? 'unknown')
    // Frames that arrive before the node accepts stay in the kernel buffer.
    client.pause()
    const node = this.#nodes.get(nodeId)
    if (node !== undefined && node.socket.readyState !== node.socket.OPEN) {
      this.metrics.routesRefused++
      return closeConnection(client, HubCloseCodes.NODE_OFFLINE, 'that node is not connected to this hub')
    }
    if (node === undefined) {
      void this.#holder(nodeId).then((holder) => {
        if (holder === undefined || client.destroyed) {
          this.metrics.routesRefused++
          return closeConnection(client, HubCloseCodes.NODE_OFFLINE, 'that node is not connected to this hub')
        }
        const { id, token } = this.#pendRoute(client, nodeId, undefined)
        this.#askHolder(holder, { node: nodeId, route: id, token, peer })
      })
      return
    }
    if (node.routes.size >= this.options.maxRoutesPerNode) {
      this.metrics.routesRefused++
      return closeConnection(client, HubCloseCodes.LIMIT, 'that node has too many routes open')
    }
    const { id, token } = this.#pendRoute(client, nodeId, node)
    node.socket.send(hubCodec.encode('incoming', { route: id, token, peer }))
  }

  /** A session route waiting for its node to accept (here, or for a remote hub's node). */
  #pendRoute(client: Socket, nodeId: string, node: NodeSession | undefined): { id: number; token: Buffer } {
    const id = this.#routeId()
    const token = randomBytes(HUB_ROUTE_TOKEN_LENGTH)
    const timer = setTimeout(() => {
      this.#pending.delete(id)
      node?.routes.delete(id)
      closeConnection(client, HubCloseCodes.TIMEOUT, 'the node did not accept the route in time')
    }, this.options.setupTimeoutMs)
    this.#pending.set(id, { id, nodeId, token, client, timer })
    node?.routes.add(id)
    client.once('close', () => {
      const pending = this.#pending.get(id)
      if (pending !== undefined) {
        clearTimeout(pending.timer)
        this.#pending.delete(id)
        node?.routes.delete(id)
      }
    })
    return { id, token }
  }

  #onAccept(nodeSide: Socket, routeText: string, tokenHex: string): void {
    const id = Number(routeText)
    const pending = Number.isSafeInteger(id) ? this.#pending.get(id) : undefined
    const token = /^[0-9a-f]{32}$/.test(tokenHex) ? Buffer.from(tokenHex, 'hex') : undefined
    if (pending === undefined || token === undefined || !timingSafeEqual(token, pending.token)) {
      return closeConnection(nodeSide, HubCloseCodes.BAD_MESSAGE, 'unknown route or wrong token')
    }
    clearTimeout(pending.timer)
    this.#pending.delete(id)
    const node = this.#nodes.get(pending.nodeId)
    if (!('write' in pending.client)) {
      const { api, answer } = pending.client
      this.metrics.bytesRelayed += api.length
      exchangeApiCall(nodeSide, api, API_CALL_TIMEOUT_MS, this.#buffers).then(
        (reply) => {
          this.metrics.bytesRelayed += reply.length
          answer(reply)
        },
        (error: Error) => answer(error),
      )
      return
    }
    this.metrics.routesOpened++
    this.metrics.routesOpen++
    relayFrames(pending.client as Socket, nodeSide, {
      route: id,
      maxFrameSize: this.options.maxFrameSize,
      highWaterMark: this.options.highWaterMark,
      idleTimeoutMs: this.options.idleTimeoutMs,
      metrics: this.metrics,
      ...(this.#components.frameHook === undefined ? {} : { hook: this.#components.frameHook }),
      onClose: () => {
        this.metrics.routesOpen--
        node?.routes.delete(id)
      },
    })
  }

  #ping(): void {
    for (const node of this.#nodes.values()) {
      const socket = node.socket as WebSocket & { alive?: boolean }
      if (socket.alive === false) {
        socket.terminate()
        continue
      }
      socket.alive = false
      socket.ping()
    }
  }
}

/** The path and query of a request target, or undefined when it is not an origin-form target. */
function parseTarget(target: string | undefined): { path: string; query: URLSearchParams } | undefined {
  if (target === undefined || !target.startsWith('/') || target.startsWith('//')) return undefined
  const hash = target.indexOf('#')
  const clean = hash < 0 ? target : target.slice(0, hash)
  const mark = clean.indexOf('?')
  // URLSearchParams never throws: a malformed %-sequence stays as it is.
  return mark < 0 ? { path: clean, query: new URLSearchParams() } : { path: clean.slice(0, mark), query: new URLSearchParams(clean.slice(mark + 1)) }
}

