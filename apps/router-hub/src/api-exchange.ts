/**
 * One REST API call through the hub: the sealed request from an HTTP client goes to the
 * node over a route the node accepted, as one WebSocket message; the node's reply comes
 * back the same way. The hub reads neither (both are sealed end to end); it only frames
 * them and enforces size and time limits.
 */
import type { Socket } from 'node:net'
import type { BufferPool } from '@cloudbox/encrypted-messaging'
import { HUB_API_MAX_MESSAGE } from '@cloudbox/encrypted-messaging/hub'
import { closeConnection } from './frame-relay.js'
import { frameHeader, MaskedFrameParser, Opcode } from './websocket-frames.js'

/** Sends `request` to the node and resolves with its whole reply message (one of `pool`'s buffers when it came in one frame). */
export function exchangeApiCall(node: Socket, request: Uint8Array, timeoutMs: number, pool?: BufferPool): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    // An answer in one frame (as nodes send it) is filled into one buffer of its length as
    // it arrives, so the socket's read chunks are let go at once; fragments are joined.
    let whole: Buffer | undefined
    let filled = 0
    const parts: Buffer[] = []
    let size = 0
    let final = false
    let settled = false
    const settle = (error: Error | undefined) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      closeConnection(node, 1000, '')
      if (error === undefined) return resolve(whole ?? Buffer.concat(parts))
      // Nothing writes into it any more (the parser is fed only until settled).
      if (whole !== undefined) pool?.release(whole)
      reject(error)
    }
    const timer = setTimeout(() => settle(new Error('the node did not answer in time')), timeoutMs)
    const parser = new MaskedFrameParser(
      {
        frameStart: (_opcode, fin, length) => {
          final = fin
          const first = size === 0 && parts.length === 0 && whole === undefined
          size += length
          if (size > HUB_API_MAX_MESSAGE) return settle(new Error('the node\'s answer is too large'))
          if (first && fin) whole = pool?.acquire(length) ?? Buffer.allocUnsafe(length)
        },
        payload: (piece) => {
          if (whole !== undefined) filled += piece.copy(whole, filled)
          // Views of the read chunks; nothing reuses them.
          else parts.push(piece)
        },
        // A message ends with its final frame (the parser checked the fragments' order).
        frameEnd: () => final && settle(undefined),
        control: (opcode, payload) => {
          if (opcode === Opcode.CLOSE) settle(new Error('the node closed the route without answering'))
          else if (opcode === Opcode.PING) node.write(Buffer.concat([frameHeader(Opcode.PONG, true, payload.length), payload]))
        },
        error: (reason) => settle(new Error(`the node broke the protocol: ${reason}`)),
      },
      HUB_API_MAX_MESSAGE,
    )
    node.on('data', (chunk: Buffer) => {
      if (!settled) parser.write(chunk)
    })
    node.once('end', () => settle(new Error('the node went away')))
    node.once('close', () => settle(new Error('the node went away')))
    node.resume()
    // Header and body written one after the other: the body is not copied into a frame.
    node.cork()
    node.write(frameHeader(Opcode.BINARY, true, request.length))
    node.write(request)
    node.uncork()
  })
}
