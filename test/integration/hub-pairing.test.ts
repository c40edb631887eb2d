import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocketServer } from 'ws'
import { acceptSecureChannel, channelFromWebSocket, Identity } from '@cloudbox/encrypted-messaging'
import { RouterHub, type FrameHook } from '@cloudbox/router-hub'
import { parsePairingUri, formatPairingUri, type CloudBox, type CloudBoxEvent } from '@cloudbox/cloudbox'
import { fileIs, nextEvent, noise, scratch, waitFor } from './helpers.js'

let cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

async function setup(hubOptions: ConstructorParameters<typeof RouterHub>[0] = {}, frameHook?: FrameHook) {
  const area = await scratch()
  const hub = new RouterHub(hubOptions, frameHook === undefined ? {} : { frameHook })
  await hub.start()
  cleanups.push(() => area.cleanup(), () => hub.stop())
  return { area, hub }
}

async function pairedPair(area: Awaited<ReturnType<typeof scratch>>, hub: RouterHub, serverInit: Partial<Parameters<typeof area.box>[0]> = {}) {
  const server = area.box({ role: 'server', name: 'home', hub: hub.url, masterPin: '2468', ...serverInit })
  await server.start()
  await waitFor(() => hub.hasNode(server.id), 'the server to register')
  const client = area.box({ role: 'client', name: 'laptop' })
  await client.start()
  await client.pair(server.pairingUri(), '2468')
  await client.waitConnected()
  return { server, client }
}

const digest = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex')
const codeOf = (event: CloudBoxEvent) => ('error' in event ? event.error?.code : undefined)

describe('pairing and sync through the hub', () => {
  it('pairs with the QR URI and a PIN, then syncs a folder both ways', async () => {
    const { area, hub } = await setup()
    const server = area.box({ role: 'server', name: 'home', hub: hub.url, masterPin: '2468' })
    await server.start()
    await waitFor(() => hub.hasNode(server.id), 'the server to register')
    const uri = server.pairingUri()
    expect(parsePairingUri(uri)).toEqual({ id: server.id, name: 'home', hub: hub.url, addresses: [] })
    expect(await server.pairingQr('svg')).toContain('<svg')
    expect((await server.pairingQr('png')).subarray(1, 4).toString()).toBe('PNG')
    expect(await server.pairingQr('terminal')).toMatch(/[▀▄█]/)

    const client = area.box({ role: 'client', name: 'laptop' })
    await client.start()
    const paired = await client.pair(uri, '2468')
    expect(paired).toMatchObject({ id: server.id, role: 'owner', hub: hub.url })
    const devices = await server.admin.listDevices()
    expect(devices.map((device) => [device.id, device.label, device.state])).toEqual([[client.id, 'laptop', 'enabled']])

    await writeFile(join(server.init.folder, 'from-server.txt'), 'hello client')
    await waitFor(() => fileIs(join(client.init.folder, 'from-server.txt'), 'hello client'), 'server → client')
    await writeFile(join(client.init.folder, 'from-client.txt'), 'hello server')
    await waitFor(() => fileIs(join(server.init.folder, 'from-client.txt'), 'hello server'), 'client → server')
    expect(hub.metrics.bytesRelayed).toBeGreaterThan(0)

    // After pairing the key alone authenticates: a restarted client reconnects without a PIN.
    await client.stop()
    await client.start()
    await client.waitConnected()
  })

  it('locks pairing after five wrong PINs, with growing delays, across restarts', async () => {
    const { area, hub } = await setup()
    let now = Date.UTC(2026, 10, 23)
    const serverIdentity = Identity.generate().identity
    const server = area.box({ role: 'server', hub: hub.url, masterPin: '2468' }, serverIdentity, () => now)
    await server.start()
    await waitFor(() => hub.hasNode(server.id), 'the server to register')
    const client = area.box({ role: 'client' })
    await client.start()
    const uri = server.pairingUri()
    const codes: string[] = []
    for (let i = 0; i < 5; i++) codes.push(await client.pair(uri, `000${i}`).then(() => 'paired', (error) => error.code))
    expect(codes).toEqual(['ERR_WRONG_PIN', 'ERR_WRONG_PIN', 'ERR_WRONG_PIN', 'ERR_WRONG_PIN', 'ERR_PIN_LOCKED'])
    // Locked: even the right PIN is refused, and the lock survives a restart.
    await server.stop()
    await server.start()
    await waitFor(() => hub.hasNode(server.id), 'the server to register again')
    const locked = await client.pair(uri, '2468').catch((error) => error)
    expect(locked.code).toBe('ERR_PIN_LOCKED')
    expect(locked.retryAfterMs).toBeGreaterThan(25_000)
    now += 31_000
    // One more wrong PIN locks again, for twice as long.
    const again = await client.pair(uri, '9999').catch((error) => error)
    expect(again.code).toBe('ERR_PIN_LOCKED')
    expect(again.retryAfterMs).toBe(60_000)
    now += 61_000
    await expect(client.pair(uri, '2468')).resolves.toMatchObject({ id: server.id })
    expect(JSON.stringify(await readFile(join(server.stateDir, 'cloudbox.json'), 'utf8'))).not.toContain('2468')
  })

  it('one-time PINs pair once, expire, and give the role they were made for', async () => {
    const { area, hub } = await setup()
    let now = Date.UTC(2026, 10, 23)
    const server = area.box({ role: 'server', hub: hub.url }, undefined, () => now)
    await server.start()
    await waitFor(() => hub.hasNode(server.id), 'the server to register')
    const { pin } = await server.admin.addPin({ label: 'phone', role: 'member', expiresInMs: 60_000 })
    expect(pin).toMatch(/^\d{8}$/)
    const phone = area.box({ role: 'client', name: 'phone' })
    await phone.start()
    await expect(phone.pair(server.pairingUri(), pin)).resolves.toMatchObject({ role: 'member' })
    const tablet = area.box({ role: 'client', name: 'tablet' })
    await tablet.start()
    await expect(tablet.pair(server.pairingUri(), pin)).rejects.toMatchObject({ code: 'ERR_WRONG_PIN' })
    const second = await server.admin.addPin({ label: 'tablet', expiresInMs: 1_000 })
    expect((await server.admin.listPins()).map((each) => each.label)).toEqual(['tablet'])
    now += 2_000
    await expect(tablet.pair(server.pairingUri(), second.pin)).rejects.toMatchObject({ code: 'ERR_WRONG_PIN' })
    // A member may not administer the cloud.
    await phone.waitConnected()
    await expect(phone.admin.listDevices()).rejects.toMatchObject({ code: 'ERR_NOT_OWNER' })
  })

  it('revokes a device mid-sync: its session drops at once and its key is refused', async () => {
    const { area, hub } = await setup()
    const { server, client } = await pairedPair(area, hub)
    const events: CloudBoxEvent[] = []
    client.status.on((event) => events.push(event))
    await writeFile(join(server.init.folder, 'big.bin'), noise(48 * 1024 * 1024))
    await nextEvent(client.status, (event) => event.type === 'sync' && event.event.type === 'progress')
    await server.admin.revokeDevice(client.id)
    const refused = await nextEvent(client.status, (event) => event.type === 'refused')
    expect(codeOf(refused)).toBe('ERR_DEVICE_REVOKED')
    expect(client.connected).toBe(false)
    expect(await server.admin.listDevices()).toEqual([])
    // Nothing half-written at the final path.
    expect(existsSync(join(client.init.folder, 'big.bin'))).toBe(false)
    // The key no longer opens a session: the client stays disconnected.
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(client.connected).toBe(false)
    expect(events.filter((event) => event.type === 'connection' && event.state === 'connected')).toEqual([])
  })

  it('blocks and unblocks a device', async () => {
    const { area, hub } = await setup()
    const { server, client } = await pairedPair(area, hub)
    await server.admin.blockDevice(client.id)
    const refused = await nextEvent(client.status, (event) => event.type === 'refused')
    expect(codeOf(refused)).toBe('ERR_DEVICE_BLOCKED')
    expect((await server.admin.listDevices())[0]).toMatchObject({ state: 'blocked', online: false })
    await server.admin.unblockDevice(client.id)
    await client.waitConnected()
  })

  it('detects a hub that tampers with frames and drops only that session', async () => {
    let tamper = false
    let replay = false
    const { area, hub } = await setup({}, (frame, direction) => {
      if (direction === 'to-node' && frame.length > 1000 && tamper) {
        tamper = false
        const copy = Buffer.from(frame)
        copy[copy.length - 20] ^= 1
        return copy
      }
      if (direction === 'to-node' && frame.length > 1000 && replay) {
        replay = false
        return [frame, frame]
      }
      return frame
    })
    const { server, client } = await pairedPair(area, hub)
    const content = noise(3 * 1024 * 1024, 7)
    tamper = true
    const dropped = nextEvent(server.status, (event) => event.type === 'connection' && event.state === 'disconnected')
    await writeFile(join(client.init.folder, 'a.bin'), content)
    expect(codeOf(await dropped)).toBe('ERR_BAD_FRAME')
    // The client reconnects by itself; the file arrives intact.
    await waitFor(async () => existsSync(join(server.init.folder, 'a.bin')) && (await digest(join(server.init.folder, 'a.bin'))) === createHash('sha256').update(content).digest('hex'), 'a.bin intact')

    replay = true
    const droppedAgain = nextEvent(server.status, (event) => event.type === 'connection' && event.state === 'disconnected')
    await writeFile(join(client.init.folder, 'b.bin'), noise(2 * 1024 * 1024, 9))
    expect(codeOf(await droppedAgain)).toBe('ERR_BAD_FRAME')
    await waitFor(() => existsSync(join(server.init.folder, 'b.bin')), 'b.bin after reconnection')
    expect(await digest(join(server.init.folder, 'b.bin'))).toBe(await digest(join(client.init.folder, 'b.bin')))
  })

  it('refuses an impostor: a key it does not hold can be neither registered nor answered', async () => {
    const { area, hub } = await setup()
    const genuine = area.box({ role: 'server', hub: hub.url, masterPin: '2468' })
    await genuine.start()
    // An impostor listens where the URI's address points and answers with its own key.
    const impostor = Identity.generate().identity
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await new Promise((resolve) => wss.once('listening', resolve))
    let pinSeen = false
    wss.on('connection', (socket) => {
      void acceptSecureChannel(channelFromWebSocket(socket), { identity: impostor, timeoutMs: 2_000 }).then(
        () => (pinSeen = true),
        () => socket.terminate(),
      )
    })
    cleanups.push(() => new Promise((resolve) => wss.close(() => resolve())))
    const address = wss.address() as { port: number }
    const uri = formatPairingUri({ id: genuine.id, name: 'home', addresses: [`ws://127.0.0.1:${address.port}`] })
    const client = area.box({ role: 'client' })
    await client.start()
    const error = await client.pair(uri, '2468').catch((caught) => caught)
    expect(error.code).toBe('ERR_SERVER_UNVERIFIED')
    expect(pinSeen).toBe(false)
    expect(client.paired).toBeUndefined()
  })

  it('reads a server that turns it away while starting or stopping (close code 4502) as unreachable, never as an impostor', async () => {
    const { area, hub } = await setup()
    const genuine = area.box({ role: 'server', hub: hub.url, masterPin: '2468' })
    await genuine.start()
    // What a CloudBox server sends before its sub-clouds are open, or after they closed.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
    await new Promise((resolve) => wss.once('listening', resolve))
    wss.on('connection', (socket) => socket.close(4502, 'starting or stopping'))
    cleanups.push(() => new Promise((resolve) => wss.close(() => resolve())))
    const uri = formatPairingUri({ id: genuine.id, name: 'home', addresses: [`ws://127.0.0.1:${(wss.address() as { port: number }).port}`] })
    const client = area.box({ role: 'client' })
    await client.start()
    const error = await client.pair(uri, '2468').catch((caught) => caught)
    expect(error.code).toBe('ERR_UNREACHABLE')
    expect(error.message).toContain('starting or stopping')
    expect(error.message).not.toContain('impostor')
  })

  it('reconnects after a hub restart and resumes the transfer', async () => {
    const { area, hub } = await setup()
    const { server, client } = await pairedPair(area, hub)
    const port = hub.address.port
    const content = noise(40 * 1024 * 1024, 3)
    await writeFile(join(server.init.folder, 'resume.bin'), content)
    await nextEvent(client.status, (event) => event.type === 'sync' && event.event.type === 'progress')
    await hub.stop()
    const restarted = new RouterHub({ port })
    await restarted.start()
    cleanups.push(() => restarted.stop())
    await waitFor(() => restarted.hasNode(server.id), 'the server to register at the restarted hub')
    await waitFor(async () => existsSync(join(client.init.folder, 'resume.bin')), 'resume.bin', 60_000)
    expect(await digest(join(client.init.folder, 'resume.bin'))).toBe(createHash('sha256').update(content).digest('hex'))
    await writeFile(join(client.init.folder, 'after.txt'), 'after restart')
    await waitFor(() => fileIs(join(server.init.folder, 'after.txt'), 'after restart'), 'sync after restart')
  }, 90_000)
})
