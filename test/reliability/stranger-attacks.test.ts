/**
 * Strangers with no PIN, and hubs that misbehave: big messages on the sync lane before any
 * pairing, many half-open sessions from one address, wrong PINs from one place meant to
 * lock out the owner's next device, a hub passing another hub's challenge on, a hub sending
 * the server to a machine of its choice, one address taking a node's route slots, and API
 * calls held open to make a hub buffer gigabytes. Each is refused early or contained.
 */
import { createServer, type Server } from 'node:http'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket, { WebSocketServer } from 'ws'
import { channelFromWebSocket, createChannelMux, Identity, initiateSecureChannel } from '@cloudbox/encrypted-messaging'
import { hubCodec, signRegistration } from '@cloudbox/encrypted-messaging/hub'
import { RouterHub } from '@cloudbox/router-hub'
import type { CloudBoxEvent } from '@cloudbox/cloudbox'
import { fileIs, scratch, waitFor } from '../integration/helpers.js'
import { recordOutcome } from './support/outcomes.js'

const PIN = '2468-1357'
let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

function openSocket(url: string, localAddress?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, ...(localAddress === undefined ? {} : { localAddress }) })
    socket.once('open', () => resolve(socket))
    socket.once('error', reject)
    socket.once('unexpected-response', (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)))
  })
}

/** A stranger's secure session to the server: a key of its own, no PIN, no hello. */
async function strangerSession(url: string, serverId: string) {
  const socket = await openSocket(`${url}/v1/cloud/${serverId}`)
  // The stranger's own side lets anything out.
  const secure = await initiateSecureChannel(channelFromWebSocket(socket), { identity: Identity.generate().identity, remotePublicKey: serverId, maxMessageSize: 64 * 1024 * 1024 })
  const started = Date.now()
  const closedAfter = secure.closed.then(() => Date.now() - started)
  return { secure, closedAfter, lanes: createChannelMux(secure, 2) }
}

describe('strangers before pairing', () => {
  it('closes a session that sends sync messages before its welcome, or big ones, at once; caps half-open sessions per address', { timeout: 60_000 }, async () => {
    const area = await scratch()
    cleanups.push(() => area.cleanup())
    const server = area.box({ role: 'server', listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN })
    await server.start()
    const url = server.directUrl as string

    // 12 × 16 MiB on the sync lane, no hello: the first one ends the session.
    const big = await strangerSession(url, server.id)
    let sent = 0
    for (let i = 0; i < 12; i++) {
      const ok = await big.lanes[1]!.send(new Uint8Array(16 * 1024 * 1024)).then(() => true, () => false)
      if (!ok) break
      sent++
    }
    const bigClosed = await big.closedAfter
    // A small sync message before the welcome is a protocol error too.
    const early = await strangerSession(url, server.id)
    await early.lanes[1]!.send(new Uint8Array(100)).catch(() => {})
    const earlyClosed = await early.closedAfter
    expect(bigClosed, 'a 16 MiB message').toBeLessThan(5_000)
    expect(sent).toBeLessThanOrEqual(1)
    expect(earlyClosed, 'a sync message before the welcome').toBeLessThan(5_000)

    // 40 sessions from one address that never say hello: only 16 are kept waiting (the
    // others are closed before or right after their handshake).
    const idle = await Promise.allSettled(Array.from({ length: 40 }, () => strangerSession(url, server.id)))
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    const opened = idle.flatMap((each) => (each.status === 'fulfilled' ? [each.value] : []))
    const stillOpen = (await Promise.all(opened.map((each) => Promise.race([each.closedAfter.then(() => false), Promise.resolve(true)])))).filter(Boolean).length
    const closedEarly = 40 - stillOpen
    expect(stillOpen).toBeLessThanOrEqual(16)
    for (const each of opened) await each.secure.close().catch(() => {})

    // Meanwhile the owner's device pairs and syncs.
    const device = area.box({ role: 'client', name: 'owner' })
    await device.start()
    await device.pair(server.pairingUri(), PIN)
    writeFileSync(join(device.init.folder, 'fine.txt'), 'still works')
    await waitFor(() => fileIs(join(server.init.folder, 'fine.txt'), 'still works'), 'the owner\'s file')
    recordOutcome({ group: 'hostile input', what: 'strangers before pairing: 16 MiB sync messages, sync before welcome, 40 half-open sessions from one address', injected: 3, survived: 3, dataLost: 0, note: `big message closed in ${bigClosed} ms (${sent} of 12 sent), early sync in ${earlyClosed} ms, ${closedEarly} of 40 idle sessions closed at once` })
  })

  it('wrong PINs from one address lock that address, not the owner\'s next device elsewhere', { timeout: 60_000 }, async () => {
    const hub = new RouterHub()
    await hub.start()
    cleanups.push(() => hub.stop())
    const area = await scratch()
    cleanups.push(() => area.cleanup())
    let now = Date.UTC(2026, 11, 1)
    const server = area.box({ role: 'server', hub: hub.url, listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN }, Identity.generate().identity, () => now)
    await server.start()
    await waitFor(() => hub.hasNode(server.id), 'the server to register')
    const direct = new URLSearchParams(server.pairingUri().slice('cloudbox://pair?'.length))
    direct.delete('hub')
    const viaHub = new URLSearchParams(server.pairingUri().slice('cloudbox://pair?'.length))
    viaHub.delete('addr')
    // Strangers on 127.0.0.1 (directly), each with a fresh key, guess over a simulated day.
    const strangers = Array.from({ length: 5 }, () => area.box({ role: 'client', sync: false }))
    for (const stranger of strangers) await stranger.start()
    const codes: string[] = []
    for (let hour = 0; hour < 12; hour++) {
      if (hour > 0) now += 60 * 60_000
      for (const stranger of strangers) codes.push(await stranger.pair(`cloudbox://pair?${direct}`, String(10_000_000 + hour * 10 + strangers.indexOf(stranger))).then(() => 'paired', (error: { code?: string }) => error.code ?? 'untyped'))
    }
    expect(codes).not.toContain('paired')
    expect(codes).not.toContain('untyped')
    // The owner's new device, from elsewhere (through the hub), pairs with the right PIN at once.
    const owner = area.box({ role: 'client', name: 'owner-phone' })
    await owner.start()
    const outcome = await owner.pair(`cloudbox://pair?${viaHub}`, PIN).then(() => 'paired', (error: { code?: string }) => error.code ?? 'untyped')
    expect(outcome).toBe('paired')
    // And the strangers' address is still locked for them.
    expect(await strangers[0]!.pair(`cloudbox://pair?${direct}`, PIN).then(() => 'paired', (error: { code?: string }) => error.code)).toBe('ERR_PIN_LOCKED')
    recordOutcome({ group: 'hostile input', what: 'wrong PINs from one address for 12 hours, to lock out the owner\'s next device', injected: codes.length, survived: codes.length, dataLost: 0, note: `${codes.filter((code) => code === 'ERR_WRONG_PIN').length} checked, the rest locked; the owner's device paired from another address` })
  })
})

/** A stand-in hub: speaks the hub wire to a node however the test wants. */
async function fakeHub(onNode: (socket: WebSocket) => void): Promise<{ url: string; close(): Promise<void> }> {
  const http: Server = createServer()
  const wss = new WebSocketServer({ server: http })
  wss.on('connection', onNode)
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  const url = `ws://127.0.0.1:${(http.address() as { port: number }).port}`
  return {
    url,
    close: async () => {
      for (const client of wss.clients) client.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      await new Promise<void>((resolve) => http.close(() => resolve()))
    },
  }
}

describe('hubs that misbehave', () => {
  it('a registration a node signed for one hub is refused by another, so a hub cannot register a node elsewhere', { timeout: 30_000 }, async () => {
    const honest = new RouterHub()
    await honest.start()
    cleanups.push(() => honest.stop())
    // The malicious hub passes the honest hub's challenge to the node, and the answer back.
    const relay = await fakeHub((fromNode) => {
      const toHonest = new WebSocket(`${honest.url}/v1/node`)
      toHonest.on('message', (data: Buffer) => fromNode.readyState === WebSocket.OPEN && fromNode.send(data))
      fromNode.on('message', (data: Buffer) => toHonest.readyState === WebSocket.OPEN && toHonest.send(data))
      fromNode.on('close', () => toHonest.close())
      toHonest.on('close', () => fromNode.close())
    })
    cleanups.push(() => relay.close())
    const area = await scratch()
    cleanups.push(() => area.cleanup())
    const server = area.box({ role: 'server', hub: relay.url, masterPin: PIN })
    await server.start()
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    expect(honest.hasNode(server.id)).toBe(false)
    expect(honest.metrics.registrationsFailed).toBeGreaterThan(0)
    // Registered at the URL it dials, it is accepted.
    const straight = area.box({ role: 'server', hub: honest.url, masterPin: PIN })
    await straight.start()
    await waitFor(() => honest.hasNode(straight.id), 'a direct registration')
    recordOutcome({ group: 'hostile input', what: 'a hub relaying another hub\'s registration challenge', injected: 1, survived: 1, dataLost: 0 })
  })

  it('a node does not follow a route to a hub it does not trust', { timeout: 30_000 }, async () => {
    // The trap: where a hostile hub would send the server (a machine on the server's LAN).
    let trapped = 0
    const trap = await fakeHub(() => trapped++)
    cleanups.push(() => trap.close())
    const hostile = await fakeHub((node) => {
      node.send(hubCodec.encode('challenge', { nonce: new Uint8Array(32) }))
      node.once('message', () => {
        node.send(hubCodec.encode('registered', { id: 'x' }))
        node.send(hubCodec.encode('incoming', { route: 1, token: new Uint8Array(16), hub: trap.url }))
        node.send(hubCodec.encode('incoming', { route: 2, token: new Uint8Array(16), hub: trap.url, kind: 1 }))
      })
    })
    cleanups.push(() => hostile.close())
    const area = await scratch()
    cleanups.push(() => area.cleanup())
    const server = area.box({ role: 'server', hub: hostile.url, masterPin: PIN })
    const refused: string[] = []
    server.status.on((event: CloudBoxEvent) => {
      if (event.type === 'session-error' && event.error.code === 'ERR_HUB_UNTRUSTED') refused.push(event.error.message)
    })
    await server.start()
    await waitFor(() => refused.length >= 2, 'the untrusted routes to be refused', 10_000)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(trapped).toBe(0)
    recordOutcome({ group: 'hostile input', what: 'a hub sending the server to accept routes at a machine of its choice', injected: 2, survived: 2, dataLost: 0 })
  })

  it('one address cannot take all of a node\'s routes, nor make the hub buffer many API calls', { timeout: 60_000 }, async () => {
    const hub = new RouterHub({ maxRoutesPerNode: 100, setupTimeoutMs: 2_000 })
    await hub.start()
    cleanups.push(() => hub.stop())
    // A node that registers and then never accepts anything.
    const identity = Identity.generate().identity
    // Listening before the socket opens: the challenge can come in the upgrade's own packet.
    const node = new WebSocket(`${hub.url}/v1/node`)
    await new Promise<void>((resolve) => node.once('message', (data: Buffer) => {
      const challenge = hubCodec.decode(data)
      if (challenge.kind === 'challenge') node.send(hubCodec.encode('register', signRegistration(identity, challenge.body.nonce, hub.url)))
      resolve()
    }))
    await waitFor(() => hub.hasNode(identity.publicId), 'the node to register')
    cleanups.push(() => node.terminate())

    const route = (localAddress: string) =>
      new Promise<string>((resolve) => {
        const socket = new WebSocket(`${hub.url}/v1/route/${identity.publicId}`, { localAddress, perMessageDeflate: false })
        socket.once('close', (code) => resolve(String(code)))
        socket.once('error', () => resolve('error'))
        socket.once('open', () => setTimeout(() => resolve('open'), 300))
        cleanups.push(() => socket.terminate())
      })
    const fromOne = await Promise.all(Array.from({ length: 100 }, () => route('127.0.0.1')))
    const fromOther = await route('127.0.0.2')
    expect(fromOne.filter((code) => code === '4429').length).toBeGreaterThan(0)
    expect(fromOther).toBe('open')

    const calls = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`${hub.url.replace('ws://', 'http://')}/n/${identity.publicId}/api/v1/api`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(8 * 1024 * 1024) }).then((response) => response.status, () => 0),
      ),
    )
    expect(calls.filter((status) => status === 429).length).toBeGreaterThanOrEqual(12)
    recordOutcome({ group: 'hostile input', what: 'one address taking a node\'s route slots, or holding 20 API calls of 8 MiB at a hub', injected: 2, survived: 2, dataLost: 0, note: `${fromOne.filter((code) => code === '4429').length} of 100 routes refused to one address, another still served; ${calls.filter((status) => status === 429).length} of 20 API calls refused at once` })
  })
})
