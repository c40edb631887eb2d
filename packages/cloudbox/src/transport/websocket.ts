/** Opening WebSockets to a server or a hub, as message channels. */
import WebSocket from 'ws'
import { channelFromWebSocket, type MessageChannel } from '@cloudbox/encrypted-messaging'
import { HUB_ACCEPT_PATH, HUB_ROUTE_PATH, HubCloseCodes } from '@cloudbox/encrypted-messaging/hub'
import { errors } from '../errors.js'
import { DIRECT_CLOUD_PATH, NOT_READY_CLOSE_CODE, SESSION_LIMIT_CLOSE_CODE } from '../wire/control.js'

/** Largest WebSocket message accepted: one Noise message (65,535 bytes) plus slack. */
export const MAX_WS_MESSAGE = 65_536 + 1024

export interface DialOptions {
  signal?: AbortSignal
  /** Connection set-up limit (default 10 s). */
  timeoutMs?: number
  /** Largest message accepted (default: one Noise message and some slack). */
  maxPayload?: number
}

/** An open WebSocket and the messages that arrived before anyone listened. */
export interface OpenedWebSocket {
  socket: WebSocket
  /** Stops collecting and returns what arrived so far; call it right before attaching a listener. */
  takeReceived(): Buffer[]
}

/**
 * The client's frame mask, all zeros. Masking (RFC 6455 §5.3) keeps a script from choosing
 * the bytes on the wire, to poison proxies' caches; every message here is a Noise frame
 * (ciphertext no one can choose without the session key) or our own control message, so
 * the random mask adds nothing, while it cost a copy and an XOR of every byte sent. The
 * frames stay valid masked frames (with a zero key), and ws skips unmasking them.
 */
const zeroMask = (mask: Buffer): void => {
  mask.fill(0)
}

export function openWebSocket(url: string, options: DialOptions = {}): Promise<OpenedWebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: options.maxPayload ?? MAX_WS_MESSAGE, handshakeTimeout: options.timeoutMs ?? 10_000, skipUTF8Validation: true, generateMask: zeroMask })
    // ws emits a message that came in the same packet as the upgrade before our
    // continuation runs: collect until the caller listens.
    const received: Buffer[] = []
    const collect = (data: Buffer, isBinary: boolean) => {
      if (isBinary) received.push(data)
      else socket.terminate()
    }
    socket.on('message', collect)
    const takeReceived = () => {
      socket.off('message', collect)
      return received.splice(0)
    }
    const fail = (error: Error) => {
      cleanup()
      // terminate() while connecting emits one more 'error': swallow it.
      socket.on('error', () => {})
      socket.terminate()
      reject(error)
    }
    const onAbort = () => fail(errors.unreachable('cancelled'))
    const onError = (error: Error) => fail(errors.unreachable(`${new URL(url).host}: ${error.message}`, error))
    const onResponse = (_request: unknown, response: { statusCode?: number }) => fail(errors.unreachable(`${new URL(url).host} answered HTTP ${response.statusCode}`))
    const onOpen = () => {
      cleanup()
      resolve({ socket, takeReceived })
    }
    const cleanup = () => {
      options.signal?.removeEventListener('abort', onAbort)
      socket.off('error', onError)
      socket.off('open', onOpen)
      socket.off('unexpected-response', onResponse)
    }
    if (options.signal?.aborted) return fail(errors.unreachable('cancelled'))
    options.signal?.addEventListener('abort', onAbort, { once: true })
    socket.on('error', onError)
    socket.on('open', onOpen)
    socket.on('unexpected-response', onResponse)
  })
}

/** A server that turned the connection away before any handshake: busy or restarting, not an impostor. */
function describeServerClose(code: number): Error | undefined {
  if (code === SESSION_LIMIT_CLOSE_CODE) return errors.sessionLimit()
  if (code === NOT_READY_CLOSE_CODE) return errors.serverNotReady()
  return undefined
}

/** Maps the hub's close codes (and the server's, passed through a route) to errors a user can act on. */
export function describeHubClose(code: number, reason: string): Error | undefined {
  const fromServer = describeServerClose(code)
  if (fromServer !== undefined) return fromServer
  if (code === HubCloseCodes.NODE_OFFLINE) return errors.nodeOffline()
  if (code === HubCloseCodes.LIMIT) return errors.unreachable(`the hub refused: ${reason || 'limit reached'}`)
  if (code === HubCloseCodes.TIMEOUT) return errors.unreachable(`the hub closed the route: ${reason || 'timeout'}`)
  return undefined
}

export function trimUrl(url: string): string {
  return url.replace(/\/+$/, '')
}

/** A client's channel straight to a server's listener. */
export async function dialDirect(address: string, cloudId: string, options: DialOptions = {}): Promise<MessageChannel> {
  const { socket, takeReceived } = await openWebSocket(`${trimUrl(address)}${DIRECT_CLOUD_PATH}${cloudId}`, options)
  return channelFromWebSocket(socket, { describeClose: describeServerClose, received: takeReceived() })
}

/** A client's route to a node through a hub. */
export async function dialHub(hub: string, nodeId: string, options: DialOptions = {}): Promise<MessageChannel> {
  const { socket, takeReceived } = await openWebSocket(`${trimUrl(hub)}${HUB_ROUTE_PATH}${nodeId}`, options)
  return channelFromWebSocket(socket, { describeClose: describeHubClose, received: takeReceived() })
}

/** The node's side of a route the hub announced. */
export async function acceptHubRoute(hub: string, route: number, token: Uint8Array, options: DialOptions = {}): Promise<MessageChannel> {
  const { socket, takeReceived } = await openWebSocket(`${trimUrl(hub)}${HUB_ACCEPT_PATH}${route}?token=${Buffer.from(token).toString('hex')}`, options)
  // An API route's one message can be far larger than the send window of a session's.
  return channelFromWebSocket(socket, { describeClose: describeHubClose, received: takeReceived(), ...(options.maxPayload === undefined ? {} : { sendHighWaterMark: options.maxPayload }) })
}
