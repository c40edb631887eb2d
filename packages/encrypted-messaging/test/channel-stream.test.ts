import { afterEach, describe, expect, it } from 'vitest'
import { channelFromStream } from '../src/channel/stream-channel.js'
import { outcome as codeOf, readAll, socketPair as connectedSockets } from './support/channels.js'

const cleanup: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step()
})

describe('channelFromStream over TCP loopback', () => {
  it('carries messages of any size (u32 BE length prefix), end propagates', async () => {
    const [c, s] = await connectedSockets(cleanup)
    const client = channelFromStream(c)
    const server = channelFromStream(s)
    const received = readAll(server)
    const sizes = [0, 1, 65_539, 3 * 1024 * 1024]
    for (const size of sizes) await client.send(new Uint8Array(size).fill(size & 0xff))
    await client.close()
    const got = await received
    expect(got.map((m) => m.length)).toEqual(sizes)
    expect(got[2]?.every((b) => b === (65_539 & 0xff))).toBe(true)
    expect(await server.closed).toBeUndefined()
  })

  it('reassembles messages written one byte at a time, and several in one chunk', async () => {
    const [c, s] = await connectedSockets(cleanup)
    const server = channelFromStream(s)
    const received = readAll(server)
    const wire = Buffer.from([0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 1, 7])
    for (const byte of wire.subarray(0, 6)) {
      c.write(Buffer.from([byte]))
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
    c.end(wire.subarray(6))
    expect(await received).toEqual([new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array([7])])
  })

  it('a length over maxMessageSize closes the connection with FrameTooLargeError', async () => {
    const [c, s] = await connectedSockets(cleanup)
    const server = channelFromStream(s, { maxMessageSize: 1024 })
    const reading = codeOf(readAll(server))
    const peerClosed = new Promise((resolve) => c.once('close', resolve))
    c.write(Buffer.from([0, 0, 4, 1]))
    expect(await reading).toBe('ERR_FRAME_TOO_LARGE')
    expect(await server.closed).toMatchObject({ code: 'ERR_FRAME_TOO_LARGE' })
    await peerClosed
  })

  it('a connection that ends in the middle of a message is an error, not a clean end', async () => {
    const [c, s] = await connectedSockets(cleanup)
    const server = channelFromStream(s)
    const reading = codeOf(readAll(server))
    c.end(Buffer.from([0, 0, 0, 9, 1, 2]))
    expect(await reading).toBe('ERR_CHANNEL_CLOSED')
  })

  it('a destroyed socket fails the channel; sends after close fail', async () => {
    const [c, s] = await connectedSockets(cleanup)
    const client = channelFromStream(c)
    const server = channelFromStream(s)
    const reading = codeOf(readAll(server))
    c.resetAndDestroy()
    expect(await reading).toMatch(/^(ok|ERR_CHANNEL_CLOSED)$/)
    await server.closed
    expect(await codeOf(server.send(new Uint8Array(1)))).toBe('ERR_CHANNEL_CLOSED')
    expect(await codeOf(client.send(new Uint8Array(1)))).toBe('ERR_CHANNEL_CLOSED')
  })

  it('respects socket backpressure: send waits while nobody reads, and resumes', async () => {
    const [c, s] = await connectedSockets(cleanup)
    const client = channelFromStream(c)
    const server = channelFromStream(s, { highWaterMark: 1 })
    const chunk = new Uint8Array(1024 * 1024)
    let sent = 0
    const sending = (async () => {
      for (let i = 0; i < 64; i++) {
        await client.send(chunk)
        sent++
      }
    })()
    await new Promise((resolve) => setTimeout(resolve, 100))
    // 64 MiB cannot all sit in socket buffers and one unread message.
    expect(sent).toBeLessThan(64)
    let count = 0
    for await (const message of server) {
      expect(message.length).toBe(chunk.length)
      if (++count === 64) break
    }
    await sending
    expect(sent).toBe(64)
  })
})
