/**
 * A server's own WebSocket listener. Several clouds (a server and its sub-clouds) share
 * one listener; a client picks one by path: `/v1/cloud/<cb1…>`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { networkInterfaces } from 'node:os'
import type { Duplex } from 'node:stream'
import { WebSocketServer } from 'ws'
import { channelFromWebSocket, type MessageChannel } from '@cloudbox/encrypted-messaging'
import { addressKey } from '@cloudbox/encrypted-messaging/hub'
import { DIRECT_CLOUD_PATH } from '../wire/control.js'
import { MAX_WS_MESSAGE } from './websocket.js'

export interface DirectListenerOptions {
  host?: string
  /** 0 picks a free port. */
  port?: number
  /** Connections from one address at once (default 256). */
  maxConnectionsPerAddress?: number
}

export class DirectListener {
  readonly #options: DirectListenerOptions
  readonly #clouds = new Map<string, (raw: MessageChannel) => void>()
  readonly #perAddress = new Map<string, number>()
  #server: Server | undefined
  #wss: WebSocketServer | undefined
  #address: { host: string; port: number } | undefined
  #http: ((request: IncomingMessage, response: ServerResponse) => void) | undefined

  constructor(options: DirectListenerOptions = {}) {
    this.#options = options
  }

  get address(): { host: string; port: number } {
    if (this.#address === undefined) throw new Error('The listener is not started.')
    return this.#address
  }

  get url(): string {
    const { host, port } = this.address
    return wsUrl(host, port)
  }

  /**
   * The URLs peers can dial: the bound address, or, when bound to every interface
   * (0.0.0.0 or ::), each external address of this machine (IPv4 first), since a
   * wildcard address means nothing to a peer.
   */
  reachableUrls(): string[] {
    const { host, port } = this.address
    if (host !== '0.0.0.0' && host !== '::') return [wsUrl(host, port)]
    const external = Object.values(networkInterfaces())
      .flat()
      .filter((each) => each !== undefined && !each.internal && (host === '::' || each.family === 'IPv4') && !each.address.startsWith('fe80:'))
      .sort((a, b) => (a!.family === b!.family ? 0 : a!.family === 'IPv4' ? -1 : 1))
      .map((each) => wsUrl(each!.address, port))
    return external.length > 0 ? external : [wsUrl('127.0.0.1', port)]
  }

  /** Routes connections for `cloudId` to `handler`; returns the function that stops it. */
  register(cloudId: string, handler: (raw: MessageChannel) => void): () => void {
    this.#clouds.set(cloudId, handler)
    return () => {
      if (this.#clouds.get(cloudId) === handler) this.#clouds.delete(cloudId)
    }
  }

  /**
   * Answers plain HTTP requests (not upgrades) on this listener with `handler`, so one port
   * carries the WebSocket sessions and the server's encrypted API; undefined: 426 again.
   */
  serveHttp(handler: ((request: IncomingMessage, response: ServerResponse) => void) | undefined): void {
    this.#http = handler
  }

  async start(): Promise<void> {
    if (this.#server !== undefined) return
    const server = createServer((request, response) => {
      const http = this.#http
      if (http === undefined) return response.writeHead(426, { Connection: 'close' }).end()
      try {
        http(request, response)
      } catch {
        if (!response.headersSent) response.writeHead(400, { Connection: 'close' })
        response.end()
      }
    })
    const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WS_MESSAGE, perMessageDeflate: false, skipUTF8Validation: true })
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(wss, request, socket, head))
    this.#server = server
    this.#wss = wss
    const host = this.#options.host ?? '127.0.0.1'
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#options.port ?? 0, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    const address = server.address()
    if (address === null || typeof address === 'string') throw new Error('The listener did not bind a TCP port.')
    this.#address = { host, port: address.port }
  }

  async stop(): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    this.#server = undefined
    for (const client of this.#wss?.clients ?? []) client.terminate()
    this.#wss?.close()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** Anything a stranger sends ends in an answer or a closed socket, never in an exception. */
  #upgrade(wss: WebSocketServer, request: IncomingMessage, socket: Duplex, head: Buffer): void {
    // After 'upgrade' the HTTP server no longer listens for this socket's errors.
    socket.on('error', () => socket.destroy())
    try {
      this.#route(wss, request, socket, head)
    } catch {
      refuse(socket, '400 Bad Request')
    }
  }

  #route(wss: WebSocketServer, request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = requestPath(request.url)
    if (path === undefined) return refuse(socket, '400 Bad Request')
    const handler = path.startsWith(DIRECT_CLOUD_PATH) ? this.#clouds.get(path.slice(DIRECT_CLOUD_PATH.length)) : undefined
    const address = request.socket.remoteAddress ?? ''
    const count = this.#perAddress.get(address) ?? 0
    if (handler === undefined) return refuse(socket, '404 Not Found')
    if (count >= (this.#options.maxConnectionsPerAddress ?? 256)) return refuse(socket, '429 Too Many Requests')
    wss.handleUpgrade(request, socket, head, (ws) => {
      this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1)
      ws.once('close', () => {
        const left = (this.#perAddress.get(address) ?? 1) - 1
        if (left <= 0) this.#perAddress.delete(address)
        else this.#perAddress.set(address, left)
      })
      // The peer's address, for the server's limits on strangers (an IPv6 /64 counts as one).
      handler(Object.assign(channelFromWebSocket(ws), { remoteAddress: addressKey(address) }))
    })
  }
}

function refuse(socket: Duplex, status: string): void {
  if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
  else socket.destroy()
}

/** The path of a request target, or undefined when it is not one (`//[`, a full URL that does not parse…). */
function requestPath(target: string | undefined): string | undefined {
  if (target === undefined || !target.startsWith('/')) return undefined
  const end = target.search(/[?#]/)
  return end < 0 ? target : target.slice(0, end)
}

const wsUrl = (host: string, port: number) => `ws://${host.includes(':') ? `[${host}]` : host}:${port}`
