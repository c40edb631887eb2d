import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeApiReply, encodeApiReply, hubCodec } from '../src/hub/hub-wire.js'
import { outcome } from './support/channels.js'

describe('hub wire: API replies', () => {
  it('round-trips a sealed answer and an error', () => {
    const sealed = new Uint8Array([1, 2, 3])
    expect(decodeApiReply(encodeApiReply({ status: 200, sealed }))).toEqual({ status: 200, sealed })
    // A sealed answer in pieces is joined into the same reply.
    expect(decodeApiReply(encodeApiReply({ status: 200, sealed: [sealed.subarray(0, 1), new Uint8Array(0), sealed.subarray(1)] }))).toEqual({ status: 200, sealed })
    expect(decodeApiReply(encodeApiReply({ status: 409, error: { code: 'ERR_API_REQUEST_REPLAYED', message: 'again' } }))).toEqual({ status: 409, error: { code: 'ERR_API_REQUEST_REPLAYED', message: 'again' } })
  })

  it('refuses malformed replies with ERR_BAD_MESSAGE', async () => {
    const bad = [new Uint8Array(0), new Uint8Array([0, 200]), new Uint8Array([0, 99, 0]), new Uint8Array([2, 100, 0]), new Uint8Array([0, 200, 7]), new Uint8Array([1, 144, 1, 0x7b])]
    for (const bytes of bad) expect(await outcome(Promise.resolve().then(() => decodeApiReply(bytes)))).toBe('ERR_BAD_MESSAGE')
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeApiReply(bytes)
        } catch (error) {
          expect((error as { code?: string }).code).toBe('ERR_BAD_MESSAGE')
        }
      }),
    )
  })

  it('keeps `incoming` readable without a kind (session routes) and with kind 1 (API calls)', () => {
    const token = new Uint8Array(16)
    expect(hubCodec.decode(hubCodec.encode('incoming', { route: 5, token })).body).toEqual({ route: 5, token })
    expect(hubCodec.decode(hubCodec.encode('incoming', { route: 5, token, kind: 1 })).body).toEqual({ route: 5, token, kind: 1 })
  })

  it('carries the accepting hub of a cluster in `incoming.hub`, a ws:// or wss:// URL only', () => {
    const token = new Uint8Array(16)
    expect(hubCodec.decode(hubCodec.encode('incoming', { route: 5, token, hub: 'wss://hub-b.example.org:443' })).body).toEqual({ route: 5, token, hub: 'wss://hub-b.example.org:443' })
    for (const hub of ['http://hub-b.example.org', 'file:///etc/passwd', 'wss://', 'ws://a b', 'ws://host?x=1', `wss://${'a'.repeat(2100)}`]) {
      expect(() => hubCodec.encode('incoming', { route: 5, token, hub })).toThrow()
    }
  })
})
