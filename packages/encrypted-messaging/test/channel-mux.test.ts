import { describe, expect, it } from 'vitest'
import { createChannelMux } from '../src/channel/channel-mux.js'
import { createMemoryChannelPair } from '../src/channel/memory-channel.js'
import { outcome, readAll } from './support/channels.js'

describe('createChannelMux', () => {
  it('routes each lane to the same lane on the other side, in order', async () => {
    const [left, right] = createMemoryChannelPair()
    const [a0, a1] = createChannelMux(left, 2)
    const [b0, b1] = createChannelMux(right, 2)
    await a0!.send(new Uint8Array([1]))
    await a1!.send(new Uint8Array([2]))
    await a0!.send(new Uint8Array([3]))
    await b1!.send(new Uint8Array(0))
    const r0 = b0![Symbol.asyncIterator]()
    const r1 = b1![Symbol.asyncIterator]()
    expect((await r0.next()).value).toEqual(new Uint8Array([1]))
    expect((await r0.next()).value).toEqual(new Uint8Array([3]))
    expect((await r1.next()).value).toEqual(new Uint8Array([2]))
    expect((await a1![Symbol.asyncIterator]().next()).value).toEqual(new Uint8Array(0))
  })

  it('sends parts on a lane as one message, over a channel with sendParts or without', async () => {
    // Over a memory channel (no sendParts: joined) and over a lane of another mux (parts kept).
    const [left, right] = createMemoryChannelPair()
    const [a0, a1] = createChannelMux(left, 2)
    const [b0, b1] = createChannelMux(right, 2)
    const [, nested] = createChannelMux(a1!, 2)
    const [, nestedPeer] = createChannelMux(b1!, 2)
    await a0!.sendParts!([Uint8Array.of(1, 2), new Uint8Array(0), Uint8Array.of(3)])
    await nested!.sendParts!([Uint8Array.of(4), Uint8Array.of(5)])
    expect((await b0![Symbol.asyncIterator]().next()).value).toEqual(Uint8Array.of(1, 2, 3))
    expect((await nestedPeer![Symbol.asyncIterator]().next()).value).toEqual(Uint8Array.of(4, 5))
  })

  it('closes every lane and the channel on a message for an unknown lane', async () => {
    const [left, right] = createMemoryChannelPair()
    const lanes = createChannelMux(right, 2)
    await left.send(new Uint8Array([7, 1, 2]))
    for (const lane of lanes) expect(await outcome(readAll(lane))).toBe('ERR_BAD_MESSAGE')
    expect(await outcome(lanes[1]!.send(new Uint8Array([1])))).toBe('ERR_CHANNEL_CLOSED')
    await left.closed
  })

  it('closes every lane on an empty message (no lane byte)', async () => {
    const [left, right] = createMemoryChannelPair()
    const [lane] = createChannelMux(right, 1)
    await left.send(new Uint8Array(0))
    expect(await outcome(readAll(lane!))).toBe('ERR_BAD_MESSAGE')
  })

  it('lanes share fate: closing one closes the others and the peer', async () => {
    const [left, right] = createMemoryChannelPair()
    const [a0, a1] = createChannelMux(left, 2)
    const [b0, b1] = createChannelMux(right, 2)
    const reason = new Error('done')
    await a0!.close(reason)
    expect(await a1!.closed).toBe(reason)
    await expect(readAll(a1!)).rejects.toBe(reason)
    await b0!.closed
    await Promise.all([readAll(b0!), readAll(b1!)].map((p) => p.catch(() => undefined)))
    expect(await outcome(b1!.send(new Uint8Array([1])))).toBe('ERR_CHANNEL_CLOSED')
  })

  it('holds back the underlying channel while one lane has unread messages', async () => {
    const [left, right] = createMemoryChannelPair({ highWaterMark: 2 })
    const [a0, a1] = createChannelMux(left, 2)
    const [b0, b1] = createChannelMux(right, 2, { highWaterMark: 2 })
    let sent = 0
    const sending = (async () => {
      for (let i = 0; i < 20; i++) {
        await a1!.send(new Uint8Array([i]))
        sent++
      }
      await a0!.send(new Uint8Array([99]))
    })()
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(sent).toBeLessThan(20)
    const r1 = b1![Symbol.asyncIterator]()
    for (let i = 0; i < 20; i++) expect((await r1.next()).value).toEqual(new Uint8Array([i]))
    await sending
    expect((await b0![Symbol.asyncIterator]().next()).value).toEqual(new Uint8Array([99]))
  })

  it('accepts 1 to 256 lanes', () => {
    const [left] = createMemoryChannelPair()
    expect(() => createChannelMux(left, 0)).toThrow(RangeError)
    expect(() => createChannelMux(left, 257)).toThrow(RangeError)
  })
})
