import { createHash, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { closeFrame, frameHeader, MaskedFrameParser, Opcode, type FrameSink } from '../src/websocket-frames.js'

/** A frame as a WebSocket client sends it: masked with a random key. */
function masked(opcode: number, payload: Buffer, options: { fin?: boolean; rsv?: number; mask?: boolean } = {}): Buffer {
  const length = payload.length
  const first = ((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | opcode
  const maskBit = options.mask === false ? 0 : 0x80
  let header: Buffer
  if (length < 126) header = Buffer.from([first, maskBit | length])
  else if (length < 0x10000) {
    header = Buffer.from([first, maskBit | 126, 0, 0])
    header.writeUInt16BE(length, 2)
  } else {
    header = Buffer.alloc(10)
    header[0] = first
    header[1] = maskBit | 127
    header.writeBigUInt64BE(BigInt(length), 2)
  }
  if (options.mask === false) return Buffer.concat([header, payload])
  const key = randomBytes(4)
  const body = Buffer.from(payload.map((byte, i) => byte ^ key[i & 3]!))
  return Buffer.concat([header, key, body])
}

type Event = { kind: 'data'; opcode: number; fin: boolean; payload: Buffer } | { kind: 'control'; opcode: number; payload: Buffer } | { kind: 'error'; reason: string }

function collect(maxFrameSize = 1 << 20) {
  const events: Event[] = []
  let current: { opcode: number; fin: boolean; length: number; parts: Buffer[] } | undefined
  const sink: FrameSink = {
    frameStart: (opcode, fin, length) => (current = { opcode, fin, length, parts: [] }),
    // Copies: the parser hands out views of the chunk it was given.
    payload: (piece) => current!.parts.push(Buffer.from(piece)),
    frameEnd: () => {
      const payload = Buffer.concat(current!.parts)
      expect(payload.length).toBe(current!.length)
      events.push({ kind: 'data', opcode: current!.opcode, fin: current!.fin, payload })
    },
    control: (opcode, payload) => events.push({ kind: 'control', opcode, payload: Buffer.from(payload) }),
    error: (reason) => events.push({ kind: 'error', reason }),
  }
  return { events, parser: new MaskedFrameParser(sink, maxFrameSize) }
}

// Deep equality on 200 KB of buffers per run is slow; compare digests.
const summary = (event: Event) => (event.kind === 'error' ? event : { ...event, payload: createHash('sha256').update(event.payload).digest('hex') })

describe('MaskedFrameParser', () => {
  it('yields the same frames however the stream is cut', () => {
    const frames = [
      { opcode: Opcode.BINARY, fin: true, payload: Buffer.alloc(0) },
      { opcode: Opcode.BINARY, fin: true, payload: randomBytes(125) },
      { opcode: Opcode.BINARY, fin: true, payload: randomBytes(126) },
      { opcode: Opcode.BINARY, fin: false, payload: randomBytes(70_000) },
      { opcode: Opcode.CONTINUATION, fin: false, payload: randomBytes(3) },
      { opcode: Opcode.CONTINUATION, fin: true, payload: randomBytes(65_535) },
      { opcode: Opcode.BINARY, fin: true, payload: randomBytes(65_536) },
    ]
    const ping = randomBytes(7)
    const stream = Buffer.concat([
      ...frames.slice(0, 4).map((frame) => masked(frame.opcode, frame.payload, { fin: frame.fin })),
      masked(Opcode.PING, ping), // a control frame between fragments is allowed
      ...frames.slice(4).map((frame) => masked(frame.opcode, frame.payload, { fin: frame.fin })),
      masked(Opcode.CLOSE, Buffer.from([0x0f, 0xa0, 0x62, 0x79, 0x65])),
    ])
    const expected: Event[] = [
      ...frames.slice(0, 4).map((frame) => ({ kind: 'data' as const, ...frame })),
      { kind: 'control', opcode: Opcode.PING, payload: ping },
      ...frames.slice(4).map((frame) => ({ kind: 'data' as const, ...frame })),
      { kind: 'control', opcode: Opcode.CLOSE, payload: Buffer.from([0x0f, 0xa0, 0x62, 0x79, 0x65]) },
    ]
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 40 }), (cuts) => {
        const { events, parser } = collect()
        const copy = Buffer.from(stream) // the parser unmasks in place
        let at = 0
        for (const cut of [...cuts].sort((a, b) => a - b)) {
          parser.write(copy.subarray(at, cut))
          at = cut
        }
        parser.write(copy.subarray(at))
        expect(events.map(summary)).toEqual(expected.map(summary))
      }),
      { numRuns: 60 },
    )
    // And one byte at a time through every header and mask boundary.
    const { events, parser } = collect()
    const payloads = [randomBytes(300), randomBytes(3)]
    const small = Buffer.concat([masked(Opcode.BINARY, payloads[0]!), masked(Opcode.PONG, payloads[1]!)])
    for (let i = 0; i < small.length; i++) parser.write(small.subarray(i, i + 1))
    expect(events).toEqual([
      { kind: 'data', opcode: Opcode.BINARY, fin: true, payload: payloads[0] },
      { kind: 'control', opcode: Opcode.PONG, payload: payloads[1] },
    ])
  })

  it.each([
    ['a text frame', masked(Opcode.TEXT, Buffer.from('hi')), 'binary frames only'],
    ['an unmasked frame', masked(Opcode.BINARY, Buffer.from('hi'), { mask: false }), 'unmasked'],
    ['extension bits', masked(Opcode.BINARY, Buffer.from('hi'), { rsv: 4 }), 'extension bits'],
    ['a control frame over 125 bytes', masked(Opcode.PING, Buffer.alloc(126)), 'control frame'],
    ['a fragmented control frame', masked(Opcode.PING, Buffer.alloc(1), { fin: false }), 'control frame'],
    ['a continuation with no message', masked(Opcode.CONTINUATION, Buffer.alloc(1)), 'out of order'],
    ['a new message inside a fragmented one', Buffer.concat([masked(Opcode.BINARY, Buffer.alloc(1), { fin: false }), masked(Opcode.BINARY, Buffer.alloc(1))]), 'out of order'],
    ['a frame over the limit (16-bit length)', masked(Opcode.BINARY, Buffer.alloc(1025)), 'too large'],
    ['a frame over the limit (64-bit length)', Buffer.from([0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), 'too large'],
    ['an unknown data opcode', masked(3, Buffer.alloc(1)), 'unknown data opcode'],
    ['an unknown control opcode', masked(11, Buffer.alloc(1)), 'unknown control opcode'],
  ])('stops at %s', (_name, bytes, reason) => {
    const { events, parser } = collect(1024)
    parser.write(Buffer.concat([bytes, masked(Opcode.BINARY, Buffer.from('after'))]))
    expect(events.filter((event) => event.kind === 'error')).toEqual([{ kind: 'error', reason: expect.stringContaining(reason) }])
    expect(events.at(-1)?.kind).toBe('error')
    parser.write(masked(Opcode.BINARY, Buffer.from('later')))
    expect(events.at(-1)?.kind).toBe('error')
  })
})

describe('frame writing', () => {
  it('encodes the three length forms, unmasked', () => {
    expect([...frameHeader(Opcode.BINARY, true, 125)]).toEqual([0x82, 125])
    expect([...frameHeader(Opcode.BINARY, false, 126)]).toEqual([0x02, 126, 0, 126])
    expect([...frameHeader(Opcode.CONTINUATION, true, 65_536)]).toEqual([0x80, 127, 0, 0, 0, 0, 0, 1, 0, 0])
  })

  it('cuts a close reason to 123 bytes', () => {
    const frame = closeFrame(4410, 'x'.repeat(200))
    expect(frame[0]).toBe(0x88)
    expect(frame[1]).toBe(125)
    expect(frame.readUInt16BE(2)).toBe(4410)
  })
})
