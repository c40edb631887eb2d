/**
 * Joins the two WebSocket connections of a route at the frame level. Each side's frames
 * are parsed as they stream in, unmasked in place and written to the other side with a
 * fresh header, piece by piece: the hub never holds a whole frame (unless a frame hook
 * asks to see them). When one side cannot keep up, the other side's socket is paused
 * (so TCP pushes back on its sender) until the backlog has drained.
 */
import type { Socket } from 'node:net'
import { HubCloseCodes } from '@cloudbox/encrypted-messaging/hub'
import type { HubMetrics } from './metrics.js'
import { closeFrame, frameHeader, MaskedFrameParser, Opcode, type FrameSink } from './websocket-frames.js'

/** Sees each relayed frame; returns what to forward instead (nothing, one frame or several). */
export type FrameHook = (frame: Buffer, direction: 'to-node' | 'to-client', route: number) => Buffer | readonly Buffer[] | null

export interface RelayOptions {
  route: number
  maxFrameSize: number
  highWaterMark: number
  idleTimeoutMs: number
  metrics: HubMetrics
  hook?: FrameHook
  onClose: () => void
}

// Codes a peer may legitimately send on; anything else (1006 abnormal, 1009 too big…)
// tells the other end only that its peer is gone.
const forwardable = (code: number) => code === 1000 || code === 1001 || (code >= 4000 && code <= 4999)

/** Closes one WebSocket connection the hub holds: a close frame, then the TCP end. */
export function closeConnection(socket: Socket, code: number, reason: string): void {
  if (socket.destroyed) return
  // Read on, so the peer's close reply and FIN are consumed and the socket can finish.
  socket.removeAllListeners('data')
  socket.on('data', () => {})
  socket.resume()
  if (socket.writable) socket.end(closeFrame(code, reason))
  setTimeout(() => socket.destroy(), 2_000).unref()
}

export function relayFrames(client: Socket, node: Socket, options: RelayOptions): void {
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
    closeConnection(client, code, reason)
    closeConnection(node, code, reason)
    options.onClose()
  }

  const pipe = (from: Socket, to: Socket, direction: 'to-node' | 'to-client') => {
    let paused = false
    const resume = () => {
      paused = false
      if (!closed) from.resume()
    }
    const write = (bytes: Buffer) => {
      to.write(bytes)
    }
    const control = (opcode: number, payload: Buffer) => {
      if (opcode === Opcode.CLOSE) {
        if (payload.length === 1) return finish(HubCloseCodes.BAD_MESSAGE, 'malformed close frame')
        const code = payload.length === 0 ? 1000 : payload.readUInt16BE(0)
        return finish(forwardable(code) ? code : HubCloseCodes.PEER_GONE, forwardable(code) ? payload.subarray(2).toString() : 'the other end of the route went away')
      }
      // Pings and pongs travel end to end, like data.
      write(Buffer.concat([frameHeader(opcode, true, payload.length), payload]))
    }
    const error = (reason: string) => finish(HubCloseCodes.BAD_MESSAGE, reason)
    const count = (length: number) => {
      options.metrics.framesRelayed++
      options.metrics.bytesRelayed += length
    }
    let sink: FrameSink
    const hook = options.hook
    if (hook === undefined) {
      sink = {
        frameStart: (opcode, fin, length) => {
          count(length)
          write(frameHeader(opcode, fin, length))
        },
        payload: write,
        frameEnd: () => {},
        control,
        error,
      }
    } else {
      let parts: Buffer[] = []
      sink = {
        frameStart: () => (parts = []),
        payload: (piece) => parts.push(piece),
        frameEnd: () => {
          const out = hook(Buffer.concat(parts), direction, options.route)
          if (out === null) return
          for (const frame of Buffer.isBuffer(out) ? [out] : (out as readonly Buffer[])) {
            count(frame.length)
            write(frameHeader(Opcode.BINARY, true, frame.length))
            write(frame)
          }
        },
        control,
        error,
      }
    }
    const parser = new MaskedFrameParser(sink, options.maxFrameSize)
    from.on('data', (chunk: Buffer) => {
      if (closed) return
      active = true
      // One writev for the headers and pieces this chunk produced.
      to.cork()
      parser.write(chunk)
      to.uncork()
      if (!paused && !closed && to.writableLength >= options.highWaterMark) {
        paused = true
        from.pause()
        to.once('drain', resume)
      }
    })
    from.once('end', () => finish(HubCloseCodes.PEER_GONE, 'the other end of the route went away'))
    from.once('close', () => finish(HubCloseCodes.PEER_GONE, 'the other end of the route went away'))
  }
  pipe(client, node, 'to-node')
  pipe(node, client, 'to-client')
  client.resume()
  node.resume()
}
