/**
 * The server side of RFC 6455 reduced to what a relay needs: the upgrade handshake,
 * a streaming parser for the masked frames a client sends, and unmasked frame headers
 * for what the hub sends. A route's frames are unmasked in place and forwarded as they
 * arrive, without gathering each frame into its own buffer first: that copy, and the
 * garbage it makes, were most of the hub's CPU with a general-purpose WebSocket library.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import bufferutil from 'bufferutil'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

export const Opcode = { CONTINUATION: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const

/** Completes a WebSocket upgrade on `socket`; false (and the socket answered with 400) when the request is not one. */
export function acceptUpgrade(request: IncomingMessage, socket: Duplex): boolean {
  const key = request.headers['sec-websocket-key']
  const valid =
    request.method === 'GET' &&
    request.headers.upgrade?.toLowerCase() === 'websocket' &&
    request.headers['sec-websocket-version'] === '13' &&
    typeof key === 'string' &&
    /^[A-Za-z0-9+/]{22}==$/.test(key)
  if (!valid) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    return false
  }
  const accept = createHash('sha1').update(key + GUID).digest('base64')
  // No extension is accepted: frames must arrive uncompressed, as they are relayed.
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
  return true
}

/** An unmasked frame header (server → client). */
export function frameHeader(opcode: number, fin: boolean, length: number): Buffer {
  const first = (fin ? 0x80 : 0) | opcode
  if (length < 126) return Buffer.from([first, length])
  if (length < 0x10000) {
    const header = Buffer.allocUnsafe(4)
    header[0] = first
    header[1] = 126
    header.writeUInt16BE(length, 2)
    return header
  }
  const header = Buffer.allocUnsafe(10)
  header[0] = first
  header[1] = 127
  header.writeBigUInt64BE(BigInt(length), 2)
  return header
}

/** A whole close frame with a code and a reason (at most 123 bytes). */
export function closeFrame(code: number, reason: string): Buffer {
  let text = Buffer.from(reason)
  if (text.length > 123) text = text.subarray(0, 123)
  const payload = Buffer.allocUnsafe(2 + text.length)
  payload.writeUInt16BE(code, 0)
  text.copy(payload, 2)
  return Buffer.concat([frameHeader(Opcode.CLOSE, true, payload.length), payload])
}

export interface FrameSink {
  /** A data frame (binary or continuation) starts; `length` payload bytes follow. */
  frameStart(opcode: number, fin: boolean, length: number): void
  /** The next unmasked piece of the current data frame's payload. */
  payload(piece: Buffer): void
  /** The current data frame is complete. */
  frameEnd(): void
  /** A whole control frame (ping, pong, close), unmasked. */
  control(opcode: number, payload: Buffer): void
  /** The peer broke the protocol; the parser stops. */
  error(reason: string): void
}

const enum State {
  HEADER,
  PAYLOAD,
  CONTROL,
  FAILED,
}

/**
 * Parses the frames a WebSocket client sends (RFC 6455 §5): every frame masked, no
 * extension bits, no text frames (routes carry binary only), control frames whole and
 * at most 125 bytes, data frames at most `maxFrameSize` bytes, fragments in order.
 */
export class MaskedFrameParser {
  readonly #sink: FrameSink
  readonly #maxFrameSize: number
  #state = State.HEADER
  readonly #header = Buffer.allocUnsafe(14)
  #headerLength = 0
  #remaining = 0
  #offset = 0
  #opcode = 0
  readonly #mask = Buffer.alloc(4)
  readonly #rotated = Buffer.alloc(4)
  #control: Buffer[] = []
  #inMessage = false

  constructor(sink: FrameSink, maxFrameSize: number) {
    this.#sink = sink
    this.#maxFrameSize = maxFrameSize
  }

  write(chunk: Buffer): void {
    let at = 0
    while (at < chunk.length && this.#state !== State.FAILED) {
      if (this.#state === State.HEADER) at = this.#readHeader(chunk, at)
      else {
        const take = Math.min(this.#remaining, chunk.length - at)
        const piece = chunk.subarray(at, at + take)
        this.#unmask(piece)
        at += take
        this.#remaining -= take
        if (this.#state === State.PAYLOAD) this.#sink.payload(piece)
        else this.#control.push(piece)
        if (this.#remaining === 0) this.#endFrame()
      }
    }
  }

  #readHeader(chunk: Buffer, at: number): number {
    // Gather the two fixed bytes, then the extended length and mask they announce.
    const need = () => {
      if (this.#headerLength < 2) return 2
      const short = this.#header[1]! & 0x7f
      return 2 + (short === 126 ? 2 : short === 127 ? 8 : 0) + 4
    }
    while (this.#headerLength < need() && at < chunk.length) this.#header[this.#headerLength++] = chunk[at++]!
    if (this.#headerLength < need()) return at
    const first = this.#header[0]!
    const second = this.#header[1]!
    const fin = (first & 0x80) !== 0
    const opcode = first & 0x0f
    if ((first & 0x70) !== 0) return this.#fail('extension bits set')
    if ((second & 0x80) === 0) return this.#fail('unmasked client frame')
    const short = second & 0x7f
    let length = short
    let maskAt = 2
    if (short === 126) {
      length = this.#header.readUInt16BE(2)
      maskAt = 4
    } else if (short === 127) {
      const big = this.#header.readBigUInt64BE(2)
      if (big > BigInt(this.#maxFrameSize)) return this.#fail('frame too large')
      length = Number(big)
      maskAt = 10
    }
    this.#header.copy(this.#mask, 0, maskAt, maskAt + 4)
    this.#headerLength = 0
    this.#offset = 0
    this.#remaining = length
    this.#opcode = opcode
    if (opcode >= 8) {
      if (opcode !== Opcode.CLOSE && opcode !== Opcode.PING && opcode !== Opcode.PONG) return this.#fail('unknown control opcode')
      if (!fin || length > 125) return this.#fail('fragmented or long control frame')
      this.#state = State.CONTROL
      this.#control = []
    } else {
      if (opcode === Opcode.TEXT) return this.#fail('routes carry binary frames only')
      if (opcode !== Opcode.BINARY && opcode !== Opcode.CONTINUATION) return this.#fail('unknown data opcode')
      if (opcode === Opcode.CONTINUATION ? !this.#inMessage : this.#inMessage) return this.#fail('fragments out of order')
      if (length > this.#maxFrameSize) return this.#fail('frame too large')
      this.#inMessage = !fin
      this.#state = State.PAYLOAD
      this.#sink.frameStart(opcode, fin, length)
    }
    if (length === 0) this.#endFrame()
    return at
  }

  #unmask(piece: Buffer): void {
    // CloudBox nodes send a zero mask (their payloads are ciphertext): nothing to undo.
    if (piece.length === 0 || this.#mask.readUInt32BE(0) === 0) {
      this.#offset += piece.length
      return
    }
    const shift = this.#offset & 3
    let mask = this.#mask
    if (shift !== 0) {
      for (let i = 0; i < 4; i++) this.#rotated[i] = this.#mask[(i + shift) & 3]!
      mask = this.#rotated
    }
    bufferutil.unmask(piece, mask)
    this.#offset += piece.length
  }

  #endFrame(): void {
    if (this.#state === State.PAYLOAD) {
      this.#state = State.HEADER
      this.#sink.frameEnd()
    } else if (this.#state === State.CONTROL) {
      this.#state = State.HEADER
      const payload = this.#control.length === 1 ? this.#control[0]! : Buffer.concat(this.#control)
      this.#control = []
      this.#sink.control(this.#opcode, payload)
    }
  }

  #fail(reason: string): number {
    this.#state = State.FAILED
    this.#sink.error(reason)
    return Number.MAX_SAFE_INTEGER
  }
}
