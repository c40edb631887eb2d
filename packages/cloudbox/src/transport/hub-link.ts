/**
 * A node's registration at a router hub: connect, prove the key by signing the hub's
 * challenge, then accept the routes the hub announces. Reconnects with backoff and
 * jitter until stopped; pings the hub so a dead connection is noticed.
 */
import { setMaxListeners } from 'node:events'
import type WebSocket from 'ws'
import type { MessageChannel, Signer } from '@cloudbox/encrypted-messaging'
import { HUB_API_MAX_MESSAGE, HUB_NODE_PATH, HUB_ROUTE_API, encodeApiReply, hubCodec, normalizeHubUrl, signRegistration, type HubApiReply } from '@cloudbox/encrypted-messaging/hub'
import { Backoff, sleep, type BackoffOptions } from '../backoff.js'
import { errors } from '../errors.js'
import { acceptHubRoute, openWebSocket, trimUrl } from './websocket.js'

export type HubLinkEvent =
  | { type: 'hub'; state: 'registered'; url: string }
  | { type: 'hub'; state: 'disconnected'; url: string; reason?: Error }
  | { type: 'retry'; target: 'hub'; attempt: number; delayMs: number }
  /** The hub asked to accept a route at a hub this node does not trust; it was not followed. */
  | { type: 'untrusted-hub'; url: string; hub: string }

export interface HubLinkOptions {
  url: string
  signer: Signer
  onRoute: (raw: MessageChannel) => void
  /** Answers one REST API call that came through the hub (sealed in, sealed out). */
  onApiCall?: (request: Uint8Array) => Promise<HubApiReply>
  onEvent: (event: HubLinkEvent) => void
  backoff?: BackoffOptions
  keepAliveMs?: number
  /** Other hubs of this hub's cluster where routes may be accepted; any other `incoming.hub` is refused. */
  clusterHubs?: readonly string[]
}

export class HubLink {
  readonly url: string
  readonly #options: HubLinkOptions
  /** Hubs a route may be accepted at: this one and the configured members of its cluster. */
  readonly #trusted: Set<string>
  readonly #abort = new AbortController()
  #socket: WebSocket | undefined
  #loop: Promise<void> | undefined
  #registered = false

  constructor(options: HubLinkOptions) {
    this.url = trimUrl(options.url)
    this.#options = options
    this.#trusted = new Set([this.url, ...(options.clusterHubs ?? [])].map(normalizeHubUrl))
  }

  get registered(): boolean {
    return this.#registered
  }

  start(): void {
    this.#loop ??= this.#run()
  }

  async stop(): Promise<void> {
    this.#abort.abort()
    const socket = this.#socket
    if (socket !== undefined && socket.readyState === socket.OPEN) {
      // A goodbye the hub reads before this resolves: a call that arrives there right after
      // is answered "offline" at once instead of waiting for a node that is gone.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000)
        socket.once('close', () => {
          clearTimeout(timer)
          resolve()
        })
        socket.close(1000, 'stopping')
      })
    }
    this.#socket?.terminate()
    await this.#loop
  }

  async #run(): Promise<void> {
    const backoff = new Backoff(this.#options.backoff)
    const signal = this.#abort.signal
    // Every route being set up listens on it at once (hundreds under load), each only
    // until its socket opens: not a leak, so no warning past 10.
    setMaxListeners(0, signal)
    while (!signal.aborted) {
      let reason: Error | undefined
      try {
        await this.#session(signal, () => backoff.reset())
      } catch (error) {
        reason = error as Error
      }
      if (this.#registered || reason !== undefined) this.#options.onEvent({ type: 'hub', state: 'disconnected', url: this.url, ...(reason === undefined ? {} : { reason }) })
      this.#registered = false
      if (signal.aborted) return
      const delayMs = backoff.next()
      this.#options.onEvent({ type: 'retry', target: 'hub', attempt: backoff.attempt, delayMs })
      await sleep(delayMs, signal)
    }
  }

  /** One API call on its own route: read the request, answer, close. Failures only end that call. */
  async #answerApiCall(hub: string, route: number, token: Uint8Array, signal: AbortSignal): Promise<void> {
    let channel: MessageChannel
    try {
      channel = await acceptHubRoute(hub, route, token, { signal, maxPayload: HUB_API_MAX_MESSAGE })
    } catch {
      return
    }
    try {
      const first = await channel[Symbol.asyncIterator]().next()
      if (first.done === true) return
      const handler = this.#options.onApiCall
      const reply = handler === undefined ? { status: 404, error: { code: 'ERR_NOT_FOUND', message: 'This node serves no API through the hub.' } } : await handler(first.value)
      const encoded = encodeApiReply(reply)
      reply.release?.()
      // (Not pooled: frames go unmasked, so the socket writes this very buffer after send returns.)
      await channel.send(encoded)
    } catch {
      // The hub or the caller went away; nothing to answer.
    } finally {
      await channel.close().catch(() => {})
    }
  }

  async #session(signal: AbortSignal, onRegistered: () => void): Promise<void> {
    const { socket, takeReceived } = await openWebSocket(`${this.url}${HUB_NODE_PATH}`, { signal })
    this.#socket = socket
    const keepAliveMs = this.#options.keepAliveMs ?? 15_000
    let alive = true
    const keepAlive = setInterval(() => {
      if (!alive) return socket.terminate()
      alive = false
      socket.ping()
    }, keepAliveMs)
    socket.on('pong', () => (alive = true))
    try {
      await new Promise<void>((resolve, reject) => {
        const setup = setTimeout(() => {
          reject(errors.timeout('Registering at the hub'))
          socket.terminate()
        }, 10_000)
        const onMessage = (data: Buffer, isBinary: boolean) => {
          alive = true
          let message
          try {
            if (!isBinary) throw new Error('text frame')
            message = hubCodec.decode(data)
          } catch (error) {
            reject(errors.protocol('the hub sent a malformed message', error))
            return socket.terminate()
          }
          if (message.kind === 'challenge') {
            // Signed for the hub dialed: another hub cannot use this answer to its own challenge.
            socket.send(hubCodec.encode('register', signRegistration(this.#options.signer, message.body.nonce, this.url)))
          } else if (message.kind === 'registered') {
            clearTimeout(setup)
            this.#registered = true
            onRegistered()
            this.#options.onEvent({ type: 'hub', state: 'registered', url: this.url })
          } else if (message.kind === 'incoming') {
            // In a hub cluster the client may sit on another hub: accept the route there.
            const { route, token, kind, hub = this.url, peer } = message.body
            // A hub could send the node anywhere (a machine on its LAN): only trusted hubs.
            if (!this.#trusted.has(normalizeHubUrl(hub))) {
              this.#options.onEvent({ type: 'untrusted-hub', url: this.url, hub: hub.slice(0, 200) })
              return
            }
            if (kind === HUB_ROUTE_API) {
              void this.#answerApiCall(hub, route, token, signal)
              return
            }
            // The hub's tag for the client's address stands in for it in the node's limits.
            const remoteAddress = peer === undefined ? `hub:${normalizeHubUrl(hub)}` : `hub:${Buffer.from(peer).toString('hex')}`
            acceptHubRoute(hub, route, token, { signal }).then((raw) => this.#options.onRoute(Object.assign(raw, { remoteAddress })), () => {
              // The client gave up or the hub dropped the route: nothing to do.
            })
          }
        }
        for (const early of takeReceived()) onMessage(early, true)
        socket.on('message', onMessage)
        socket.once('close', (code: number, reasonBytes: Buffer) => {
          clearTimeout(setup)
          const text = reasonBytes.toString()
          if (signal.aborted || code === 1000) resolve()
          else reject(errors.unreachable(`the hub closed the connection (${code}${text ? `: ${text}` : ''})`))
        })
        socket.on('error', () => socket.terminate())
      })
    } finally {
      clearInterval(keepAlive)
      this.#socket = undefined
    }
  }
}
