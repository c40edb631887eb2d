/**
 * Joins the two WebSockets of a route. Frames pass through unread; when one side
 * cannot keep up, the other side's socket is paused (so TCP pushes back on the sender)
 * until the backlog drains to half the high-water mark.
 */
import type { RawData, WebSocket } from 'ws'
import { HubCloseCodes } from '@cloudbox/encrypted-messaging/hub'
import type { HubMetrics } from './metrics.js'

/** Sees each relayed frame; returns what to forward instead (nothing, one frame or several). */
export type FrameHook = (frame: Buffer, direction: 'to-node' | 'to-client', route: number) => Buffer | readonly Buffer[] | null

export interface RelayOptions {
  route: number
  highWaterMark: number
  idleTimeoutMs: number
  metrics: HubMetrics
  hook?: FrameHook
  onClose: () => void
}

// Codes a peer may legitimately send on; anything else (1006 abnormal, 1009 too big…)
// tells the other end only that its peer is gone.
const forwardable = (code: number) => code === 1000 || code === 1001 || (code >= 4000 && code <= 4999)

export function relay(client: WebSocket, node: WebSocket, options: RelayOptions): void {
  let active = true
  let closed = false
  const idle = setTimeout(function check() {
    if (closed) return
    if (!active) return finish(HubCloseCodes.TIMEOUT, 'route idle')
    active = false
    idle.refresh()
  }, options.idleTimeoutMs)
  idle.unref()

  const finish = (code: number, reason: string) => {
    if (closed) return
    closed = true
    clearTimeout(idle)
    for (const socket of [client, node]) {
      if (socket.readyState !== socket.OPEN) continue
      // A paused socket would never read the peer's close reply.
      socket.resume()
      socket.close(code, reason)
    }
    options.onClose()
  }

  const pipe = (from: WebSocket, to: WebSocket, direction: 'to-node' | 'to-client') => {
    let paused = false
    // Called once the frame that crossed the high-water mark is written: everything
    // queued before it is gone too. Other sends take no callback (cheaper per frame).
    const drained = () => {
      if (!paused) return
      paused = false
      from.resume()
    }
    const forward = (frame: Buffer) => {
      options.metrics.bytesRelayed += frame.length
      options.metrics.framesRelayed++
      const crossing = !paused && to.bufferedAmount + frame.length > options.highWaterMark
      to.send(frame, { binary: true, compress: false }, crossing ? drained : undefined)
      if (crossing) {
        paused = true
        from.pause()
      }
    }
    from.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) return finish(HubCloseCodes.BAD_MESSAGE, 'routes carry binary frames only')
      active = true
      const frame = data as Buffer
      if (options.hook === undefined) forward(frame)
      else {
        const out = options.hook(frame, direction, options.route)
        if (out !== null) for (const each of Buffer.isBuffer(out) ? [out] : (out as readonly Buffer[])) forward(each)
      }
    })
    from.once('close', (code: number, reason: Buffer) => finish(forwardable(code) ? code : HubCloseCodes.PEER_GONE, forwardable(code) ? reason.toString() : 'the other end of the route went away'))
  }
  pipe(client, node, 'to-node')
  pipe(node, client, 'to-client')
  client.resume()
}
