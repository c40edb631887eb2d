import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { channelFromWebSocket, WEBSOCKET_CLOSE_FAILED } from '../src/channel/websocket-channel.js'
import { ChannelClosedError } from '../src/errors.js'
import { outcome, readAll } from './support/channels.js'

const cleanup: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step()
})

/** A real WebSocket pair over 127.0.0.1: [client side, server side]. */
async function socketPair(): Promise<[WebSocket, WebSocket]> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await once(server, 'listening')
  cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const accepted = once(server, 'connection') as Promise<[WebSocket]>
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`)
  await once(client, 'open')
  const [serverSide] = await accepted
  cleanup.push(() => {
    client.terminate()
    serverSide.terminate()
  })
  return [client, serverSide]
}

const bytes = (size: number, fill: number) => new Uint8Array(size).fill(fill)

describe('channelFromWebSocket', () => {
  it('carries binary messages both ways, in order, of any size', async () => {
    const [clientSocket, serverSocket] = await socketPair()
    const a = channelFromWebSocket(clientSocket)
    const b = channelFromWebSocket(serverSocket)
    const sizes = [0, 1, 65_536, 1024 * 1024 + 3]
    for (const [i, size] of sizes.entries()) await a.send(bytes(size, i))
    await a.close()
    const got = await readAll(b)
    expect(got.map((message) => [message.length, message[0]])).toEqual(sizes.map((size, i) => [size, size === 0 ? undefined : i]))
    expect(await b.closed).toBeUndefined()
  })

  it('delivers messages that arrived before it was made first', async () => {
    const [clientSocket, serverSocket] = await socketPair()
    const b = channelFromWebSocket(serverSocket, { received: [bytes(1, 7)] })
    const a = channelFromWebSocket(clientSocket)
    await a.send(bytes(1, 8))
    const reader = b[Symbol.asyncIterator]()
    expect(Buffer.from((await reader.next()).value)).toEqual(Buffer.from(bytes(1, 7)))
    expect(Buffer.from((await reader.next()).value)).toEqual(Buffer.from(bytes(1, 8)))
  })

  it('closes with ERR_BAD_FRAME on a text frame and tells the peer with code 4000', async () => {
    const [clientSocket, serverSocket] = await socketPair()
    const b = channelFromWebSocket(serverSocket)
    const peerClosed = once(clientSocket, 'close')
    clientSocket.send('hello')
    expect(await outcome(readAll(b))).toBe('ERR_BAD_FRAME')
    expect((await b.closed as Error & { code: string }).code).toBe('ERR_BAD_FRAME')
    const [code] = await peerClosed
    expect(code).toBe(WEBSOCKET_CLOSE_FAILED)
    expect(await outcome(b.send(bytes(1, 1)))).toBe('ERR_CHANNEL_CLOSED')
  })

  it('pauses the socket while messages wait unread, and loses none', async () => {
    const [clientSocket, serverSocket] = await socketPair()
    const a = channelFromWebSocket(clientSocket)
    const b = channelFromWebSocket(serverSocket, { highWaterMark: 2 })
    for (let i = 0; i < 50; i++) await a.send(bytes(1000, i))
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(serverSocket.isPaused).toBe(true)
    await a.close()
    const got = await readAll(b)
    expect(got.map((message) => message[0])).toEqual(Array.from({ length: 50 }, (_, i) => i))
  })

  it('makes send wait while the socket has more than sendHighWaterMark queued', async () => {
    const [clientSocket, serverSocket] = await socketPair()
    const a = channelFromWebSocket(clientSocket, { sendHighWaterMark: 1024 * 1024 })
    const b = channelFromWebSocket(serverSocket)
    serverSocket.pause() // the reader stops: TCP fills up, then ws buffers on the sender
    let sent = 0
    const total = 96
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        await a.send(bytes(1024 * 1024, i))
        sent++
      }
    })()
    await new Promise((resolve) => setTimeout(resolve, 400))
    expect(sent).toBeLessThan(total)
    expect(clientSocket.bufferedAmount).toBeLessThanOrEqual(3 * 1024 * 1024)
    serverSocket.resume()
    const reading = readAll(b)
    await sending
    await a.close()
    const got = await reading
    expect(got.length).toBe(total)
    expect(got.every((message, i) => message.length === 1024 * 1024 && message[0] === i % 256)).toBe(true)
  })

  it('maps a close code through describeClose, and other codes to ERR_CHANNEL_CLOSED', async () => {
    const [clientSocket, serverSocket] = await socketPair()
    const custom = new ChannelClosedError('node offline')
    const a = channelFromWebSocket(clientSocket, { describeClose: (code) => (code === 4404 ? custom : undefined) })
    serverSocket.close(4404, 'gone')
    expect(await a.closed).toBe(custom)

    const [otherClient, otherServer] = await socketPair()
    const c = channelFromWebSocket(otherClient)
    otherServer.close(4999, 'why not')
    const reason = await c.closed
    expect((reason as Error & { code: string }).code).toBe('ERR_CHANNEL_CLOSED')
    expect(reason?.message).toContain('4999: why not')
  })

  it('closes with 4000 and a reason cut to the 123-byte limit when closed on an error', async () => {
    const [clientSocket, serverSocket] = await socketPair()
    const a = channelFromWebSocket(clientSocket)
    const peerClosed = once(serverSocket, 'close') as Promise<[number, Buffer]>
    await a.close(new Error('é'.repeat(100)))
    const [code, reason] = await peerClosed
    expect(code).toBe(WEBSOCKET_CLOSE_FAILED)
    expect(reason.length).toBeLessThanOrEqual(123)
    expect(reason.toString()).toMatch(/^é+$/)
  })

  it('refuses a send with an aborted signal and after the socket failed', async () => {
    const [clientSocket] = await socketPair()
    const a = channelFromWebSocket(clientSocket)
    expect(await outcome(a.send(bytes(1, 1), { signal: AbortSignal.abort() }))).toBe('AbortError')
    clientSocket.emit('error', new Error('boom'))
    expect((await a.closed as Error).message).toContain('boom')
    expect(await outcome(a.send(bytes(1, 1)))).toBe('ERR_CHANNEL_CLOSED')
  })
})
