import { describe, expect, it } from 'vitest'
import { createMemoryChannelPair } from '../src/channel/memory-channel.js'
import { outcome as codeOf } from './support/channels.js'

const tick = () => new Promise((resolve) => setImmediate(resolve))
describe('createMemoryChannelPair', () => {
  it('delivers messages in order, copied from the sender buffer', async () => {
    const [a, b] = createMemoryChannelPair()
    const buffer = new Uint8Array([1, 2, 3])
    await a.send(buffer)
    buffer[0] = 9
    await a.send(new Uint8Array(0))
    await a.close()
    const got: Uint8Array[] = []
    for await (const message of b) got.push(message)
    expect(got).toEqual([new Uint8Array([1, 2, 3]), new Uint8Array(0)])
    expect(await b.closed).toBeUndefined()
  })

  it('send waits while the peer has highWaterMark messages unread (backpressure)', async () => {
    const [a, b] = createMemoryChannelPair({ highWaterMark: 2 })
    await a.send(new Uint8Array([1]))
    let resolved = false
    const second = a.send(new Uint8Array([2])).then(() => {
      resolved = true
    })
    await tick()
    expect(resolved).toBe(false)
    const reader = b[Symbol.asyncIterator]()
    expect((await reader.next()).value).toEqual(new Uint8Array([1]))
    await second
    expect(resolved).toBe(true)
  })

  it('an abort stops the wait for room', async () => {
    const [a] = createMemoryChannelPair({ highWaterMark: 1 })
    const controller = new AbortController()
    const pending = codeOf(a.send(new Uint8Array([1]), { signal: controller.signal }))
    controller.abort()
    expect(await pending).toBe('AbortError')
    expect(await codeOf(a.send(new Uint8Array([1]), { signal: AbortSignal.abort() }))).toBe('AbortError')
  })

  it('close propagates to the peer: clean end, or an error; later sends fail', async () => {
    const [a, b] = createMemoryChannelPair()
    const reading = codeOf((async () => {
      for await (const _ of b) void _
    })())
    await b.close()
    expect(await reading).toBe('ok')
    expect(await a.closed).toBeUndefined()
    expect(await codeOf(a.send(new Uint8Array(1)))).toBe('ERR_CHANNEL_CLOSED')

    const [c, d] = createMemoryChannelPair()
    const failing = codeOf((async () => {
      for await (const _ of d) void _
    })())
    await c.close(new Error('boom'))
    expect(await failing).toBe('ERR_CHANNEL_CLOSED')
    expect(await d.closed).toMatchObject({ code: 'ERR_CHANNEL_CLOSED' })
  })

  it('a blocked sender is released when the peer closes', async () => {
    const [a, b] = createMemoryChannelPair({ highWaterMark: 1 })
    const pending = a.send(new Uint8Array([1]))
    await b.close()
    await pending
  })
})
