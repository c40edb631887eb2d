/**
 * Cluster mode: several hubs share one Redis. Each hub records which nodes it holds and
 * keeps a presence key alive; a hub asked for a node it does not hold looks up the holder
 * and tells it, over Redis pub/sub, to have the node accept the route at the asking hub.
 * The node then opens its side of the route there, so the route's frames go from hub to
 * node directly, with the same backpressure as on one hub; Redis carries only the short
 * set-up messages, never a frame.
 *
 * Redis keys (prefix `cloudbox:hub:` by default):
 *   <prefix>hub:<hubId>      the hub's public URL, expiring (PX) unless renewed: presence
 *   <prefix>nodes            hash: node ID → hub ID holding it
 *   channel <prefix>to:<hubId>   JSON set-up messages for that hub
 */
import { randomBytes } from 'node:crypto'

type RedisClient = {
  connect(): Promise<unknown>
  quit(): Promise<unknown>
  destroy?(): void
  on(event: 'error', listener: (error: Error) => void): unknown
  sendCommand(args: string[]): Promise<unknown>
  duplicate(): RedisClient
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>
}

/** Asks the hub holding `node` to have it accept a route opened here. */
export interface RemoteIncoming {
  type: 'incoming'
  node: string
  route: number
  token: string
  kind?: number
  /** Where the node must accept: the asking hub's public URL. */
  hub: string
  /** The asking hub, for the answer when the node is gone. */
  from: string
  /** The client's address tag (hex), made by the asking hub. */
  peer?: string
}

/** The answer when the holder no longer has the node. */
export interface RemoteOffline {
  type: 'offline'
  route: number
}

type ClusterMessage = RemoteIncoming | RemoteOffline

export interface ClusterOptions {
  /** `redis://host:port` (or `rediss://…`, with credentials in the URL). */
  url: string
  /** This hub's own URL as nodes reach it (not the load balancer's). */
  publicUrl: string
  prefix?: string
  /** Presence lasts this long without renewal (default 15 s); renewed every third of it. */
  presenceTtlMs?: number
}

// Deletes the node's entry only if this hub still holds it (another may have taken over).
const RELEASE_SCRIPT = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0"

export class HubCluster {
  readonly hubId = randomBytes(8).toString('hex')
  readonly #options: Required<ClusterOptions>
  #client: RedisClient | undefined
  #subscriber: RedisClient | undefined
  #presence: NodeJS.Timeout | undefined
  #onMessage: (message: ClusterMessage) => void = () => {}
  #onError: (error: Error) => void

  constructor(options: ClusterOptions, onError: (error: Error) => void) {
    this.#options = { prefix: 'cloudbox:hub:', presenceTtlMs: 15_000, ...options }
    this.#onError = onError
  }

  get #nodesKey(): string {
    return `${this.#options.prefix}nodes`
  }

  #hubKey(hubId: string): string {
    return `${this.#options.prefix}hub:${hubId}`
  }

  #channel(hubId: string): string {
    return `${this.#options.prefix}to:${hubId}`
  }

  /** This hub's URL as nodes reach it. */
  get publicUrl(): string {
    return this.#options.publicUrl
  }

  async start(onMessage: (message: ClusterMessage) => void): Promise<void> {
    this.#onMessage = onMessage
    // Loaded only in cluster mode: a single hub needs no Redis client at all.
    const { createClient } = await import('redis')
    // Unreachable at start: fail start() with the reason. Lost later: keep retrying (up to
    // 2 s apart); routes already joined do not need Redis, new cross-hub routes wait for it.
    let joined = false
    const reconnectStrategy = (retries: number, cause: Error) => (joined ? Math.min(100 * 2 ** retries, 2_000) : cause)
    const client = createClient({ url: this.#options.url, socket: { reconnectStrategy, connectTimeout: 5_000 } }) as unknown as RedisClient
    client.on('error', (error) => this.#report(error))
    await client.connect()
    this.#client = client // stop() closes it if what follows fails
    const subscriber = client.duplicate()
    subscriber.on('error', (error) => this.#report(error))
    await subscriber.connect()
    joined = true
    this.#subscriber = subscriber
    await subscriber.subscribe(this.#channel(this.hubId), (text) => this.#receive(text))
    await this.#renew()
    this.#presence = setInterval(() => void this.#renew().catch((error: Error) => this.#onError(error)), Math.floor(this.#options.presenceTtlMs / 3))
    this.#presence.unref()
  }

  #lastReport = { message: '', at: 0 }

  /** Redis errors, without repeating the same one more than every 30 s while it retries. */
  #report(error: Error): void {
    const now = Date.now()
    if (error.message === this.#lastReport.message && now - this.#lastReport.at < 30_000) return
    this.#lastReport = { message: error.message, at: now }
    this.#onError(error)
  }

  async stop(nodes: Iterable<string>): Promise<void> {
    clearInterval(this.#presence)
    const client = this.#client
    this.#client = undefined
    if (client !== undefined) {
      await Promise.allSettled([...nodes].map((node) => client.sendCommand(['EVAL', RELEASE_SCRIPT, '1', this.#nodesKey, node, this.hubId])))
      await client.sendCommand(['DEL', this.#hubKey(this.hubId)]).catch(() => {})
      await client.quit().catch(() => {})
    }
    await this.#subscriber?.quit().catch(() => {})
    this.#subscriber = undefined
  }

  async #renew(): Promise<void> {
    await this.#client?.sendCommand(['SET', this.#hubKey(this.hubId), this.#options.publicUrl, 'PX', String(this.#options.presenceTtlMs)])
  }

  /** This hub now holds `node` (it registered here). */
  async claim(node: string): Promise<void> {
    await this.#client?.sendCommand(['HSET', this.#nodesKey, node, this.hubId])
  }

  /** `node` left this hub. */
  async release(node: string): Promise<void> {
    await this.#client?.sendCommand(['EVAL', RELEASE_SCRIPT, '1', this.#nodesKey, node, this.hubId])
  }

  /** The live hub holding `node`, or undefined (unknown, or its hub died). */
  async holder(node: string): Promise<string | undefined> {
    const client = this.#client
    if (client === undefined) return undefined
    const hubId = (await client.sendCommand(['HGET', this.#nodesKey, node])) as string | null
    if (hubId === null || hubId === this.hubId) return undefined
    if (((await client.sendCommand(['EXISTS', this.#hubKey(hubId)])) as number) === 1) return hubId
    // Its hub stopped renewing: forget the stale entry (unless the node moved meanwhile).
    await client.sendCommand(['EVAL', RELEASE_SCRIPT, '1', this.#nodesKey, node, hubId]).catch(() => {})
    return undefined
  }

  async send(hubId: string, message: ClusterMessage): Promise<void> {
    await this.#client?.sendCommand(['PUBLISH', this.#channel(hubId), JSON.stringify(message)])
  }

  #receive(text: string): void {
    let message: unknown
    try {
      message = JSON.parse(text)
    } catch {
      return
    }
    if (isClusterMessage(message)) this.#onMessage(message)
  }
}

function isClusterMessage(value: unknown): value is ClusterMessage {
  if (typeof value !== 'object' || value === null) return false
  const message = value as Record<string, unknown>
  if (message.type === 'offline') return Number.isSafeInteger(message.route)
  return (
    message.type === 'incoming' &&
    typeof message.node === 'string' &&
    Number.isSafeInteger(message.route) &&
    typeof message.token === 'string' &&
    /^[0-9a-f]{32}$/.test(message.token) &&
    typeof message.hub === 'string' &&
    typeof message.from === 'string' &&
    (message.kind === undefined || Number.isSafeInteger(message.kind)) &&
    (message.peer === undefined || (typeof message.peer === 'string' && /^[0-9a-f]{32}$/.test(message.peer)))
  )
}
