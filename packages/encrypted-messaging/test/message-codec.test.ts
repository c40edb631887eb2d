import { Encoder } from 'cbor-x'
import fc from 'fast-check'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { bytesSchema, defineMessageCodec, isEncryptedMessagingError, textSchema, uintSchema } from '../src/index.js'

const codec = defineMessageCodec({
  protocol: 'test',
  version: 2,
  maxMessageSize: 4096,
  messages: {
    hello: { type: 1, schema: v.strictObject({ root: bytesSchema({ length: 32 }), name: textSchema(64) }) },
    chunk: { type: 2, schema: v.strictObject({ index: uintSchema(1000), data: bytesSchema({ maxLength: 2048 }) }) },
  },
})
const raw = new Encoder({ useRecords: false, tagUint8Array: false })

function codeOf(bytes: Uint8Array): string | undefined {
  try {
    codec.decode(bytes)
    return undefined
  } catch (error) {
    expect(isEncryptedMessagingError(error)).toBe(true)
    return (error as { code: string }).code
  }
}

describe('message codec', () => {
  it('round-trips typed messages and hands out plain Uint8Arrays', () => {
    const root = new Uint8Array(32).fill(9)
    const decoded = codec.decode(codec.encode('hello', { root, name: 'laptop' }))
    expect(decoded.kind).toBe('hello')
    if (decoded.kind !== 'hello') throw new Error('unreachable')
    expect(Object.getPrototypeOf(decoded.body.root)).toBe(Uint8Array.prototype)
    expect([...decoded.body.root]).toEqual([...root])
    const chunk = codec.decode(codec.encode('chunk', { index: 3, data: new Uint8Array([1, 2]) }))
    expect(chunk).toEqual({ kind: 'chunk', body: { index: 3, data: new Uint8Array([1, 2]) } })
  })

  it('refuses invalid bodies from the caller with a TypeError', () => {
    expect(() => codec.encode('hello', { root: new Uint8Array(31), name: 'x' })).toThrow(TypeError)
    expect(() => codec.encode('chunk', { index: -1, data: new Uint8Array() })).toThrow(TypeError)
  })

  it('refuses oversized messages before decoding them', () => {
    expect(codeOf(new Uint8Array(4097))).toBe('ERR_MESSAGE_TOO_LARGE')
    expect(() => codec.encode('chunk', { index: 1, data: new Uint8Array(2048) })).not.toThrow()
  })

  it('refuses other versions, unknown types, extra fields, wrong types and trailing bytes', () => {
    const good = { root: new Uint8Array(32), name: 'a' }
    expect(codeOf(raw.encode([1, 1, good]))).toBe('ERR_UNSUPPORTED_VERSION')
    expect(codeOf(raw.encode([2, 9, good]))).toBe('ERR_BAD_MESSAGE')
    expect(codeOf(raw.encode([2, 1, { ...good, admin: true }]))).toBe('ERR_BAD_MESSAGE')
    expect(codeOf(raw.encode([2, 1, { ...good, root: 'x'.repeat(32) }]))).toBe('ERR_BAD_MESSAGE')
    expect(codeOf(raw.encode([2, 1, { ...good, name: 'a\0b' }]))).toBe('ERR_BAD_MESSAGE')
    expect(codeOf(raw.encode([2, 2, { index: 1.5, data: new Uint8Array() }]))).toBe('ERR_BAD_MESSAGE')
    expect(codeOf(raw.encode([2, 1]))).toBe('ERR_BAD_MESSAGE')
    expect(codeOf(raw.encode({ v: 2 }))).toBe('ERR_BAD_MESSAGE')
    expect(codeOf(Buffer.concat([codec.encode('hello', good), Buffer.from([0])]))).toBe('ERR_BAD_MESSAGE')
  })

  it('survives hostile structures: prototype keys, deep nesting, tags', () => {
    expect(codeOf(raw.encode([2, 1, JSON.parse('{"__proto__": {"admin": true}, "root": 1}')]))).toBe('ERR_BAD_MESSAGE')
    expect(({} as Record<string, unknown>).admin).toBeUndefined()
    const deep = Buffer.concat([Buffer.alloc(3000, 0x81), Buffer.from([0])])
    expect(codeOf(deep)).toBe('ERR_BAD_MESSAGE')
    expect(codeOf(Buffer.from('d8236361622a', 'hex'))).toBe('ERR_BAD_MESSAGE') // tag 35 (regexp)
  })

  it('turns any random input into a typed error, never a crash (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          codec.decode(bytes)
        } catch (error) {
          expect(isEncryptedMessagingError(error)).toBe(true)
        }
      }),
      { numRuns: 2000 },
    )
  })

  it('refuses duplicate type numbers at definition time', () => {
    expect(() =>
      defineMessageCodec({ protocol: 'x', version: 1, maxMessageSize: 10, messages: { a: { type: 1, schema: v.null() }, b: { type: 1, schema: v.null() } } }),
    ).toThrow(RangeError)
  })
})

describe('encodeParts', () => {
  const bulk = defineMessageCodec({
    protocol: 'bulk',
    version: 3,
    maxMessageSize: 8 * 1024 * 1024,
    messages: {
      data: { type: 6, schema: v.strictObject({ chunks: v.array(v.tuple([uintSchema(0xffff_ffff), bytesSchema({ maxLength: 1 << 22 })])) }) },
      note: { type: 7, schema: v.strictObject({ text: textSchema(100), at: v.number() }) },
    },
  })
  const joined = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts))

  it('gives encode’s bytes, with large byte strings referenced in place, never copied', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: 0xffff_ffff }), fc.uint8Array({ maxLength: 5000 })), { maxLength: 12 }), (chunks) => {
        const parts = bulk.encodeParts('data', { chunks })
        expect(joined(parts)).toEqual(bulk.encode('data', { chunks }))
        for (const [, bytes] of chunks) if (bytes.length >= 1024) expect(parts.some((part) => part.buffer === bytes.buffer && part.byteOffset === bytes.byteOffset)).toBe(true)
      }),
    )
    // Heads past 16 and 32 bits: a 70,000-byte chunk and a 2^32 - 1 id.
    const large = new Uint8Array(70_000).fill(9)
    const body = { chunks: [[0xffff_ffff, large], [300, new Uint8Array(3)]] as [number, Uint8Array][] }
    expect(joined(bulk.encodeParts('data', body))).toEqual(bulk.encode('data', body))
    expect(bulk.decode(joined(bulk.encodeParts('data', body)))).toEqual({ kind: 'data', body })
  })

  it('falls back to one encoded part for what it does not write, and checks like encode', () => {
    const body = { text: 'plus a fraction, and ünïcode', at: 1.5 }
    expect(bulk.encodeParts('note', body)).toEqual([bulk.encode('note', body)])
    expect(() => bulk.encodeParts('data', { chunks: [[-1, new Uint8Array(1)]] })).toThrow(TypeError)
    const tooLarge = { chunks: Array.from({ length: 3 }, (_, i) => [i, new Uint8Array(3 * 1024 * 1024)] as [number, Uint8Array]) }
    expect(() => bulk.encodeParts('data', tooLarge)).toThrow(/exceeds the maximum/)
  })
})
