import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudBox, DirectListener, formatPairingUri, parsePairingUri } from '../src/index.js'

const root = await mkdtemp(join(tmpdir(), 'cloudbox-instances-'))
afterAll(() => rm(root, { recursive: true, force: true }))

const resources = () => process.getActiveResourcesInfo().filter((kind) => kind !== 'TTYWrap' && kind !== 'Timeout').length

describe('CloudBox instances', () => {
  it('creates, starts, stops and destroys 100 servers in one process without leaking handles', async () => {
    const identity = Identity.generate().identity
    const before = resources()
    const heapBefore = process.memoryUsage().heapUsed
    const boxes = Array.from({ length: 100 }, (_, i) => new CloudBox({ role: 'server', folder: join(root, `box-${i}`), listen: { port: 0 } }, { identity: identity.subCloud(i + 1) }))
    for (let i = 0; i < boxes.length; i += 10) await Promise.all(boxes.slice(i, i + 10).map((box) => box.start()))
    expect(new Set(boxes.map((box) => box.directUrl)).size).toBe(100)
    expect(boxes.every((box) => box.state === 'running')).toBe(true)
    for (const box of boxes) await box.destroy({ wipe: true })
    expect(boxes.every((box) => box.state === 'destroyed')).toBe(true)
    expect(existsSync(join(root, 'box-0', '.cloudbox'))).toBe(false)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(resources()).toBeLessThanOrEqual(before)
    // Nothing keeps the instances alive: most of the heap they used is collectable.
    ;(globalThis as { gc?: () => void }).gc?.()
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024)
  }, 120_000)

  it('sets a master PIN on a running server that has none, and a client pairs with it', async () => {
    const server = new CloudBox({ role: 'server', folder: join(root, 'no-master'), listen: { host: '127.0.0.1', port: 0 }, watch: false }, { identity: Identity.generate().identity })
    const client = new CloudBox({ role: 'client', folder: join(root, 'no-master-client'), sync: false }, { identity: Identity.generate().identity })
    await server.start()
    await client.start()
    try {
      expect(await server.admin.listPins()).toEqual([])
      await expect(server.setMasterPin(' 1 ')).rejects.toMatchObject({ code: 'ERR_INVALID_PIN' })
      await server.setMasterPin('5555-1234')
      expect((await server.admin.listPins()).map((pin) => [pin.label, pin.master])).toEqual([['master', true]])
      expect(await client.pair(server.pairingUri(), '5555-1234')).toMatchObject({ id: server.id, role: 'owner' })
      await expect(client.setMasterPin('5555-1234')).rejects.toMatchObject({ code: 'ERR_ROLE' })
    } finally {
      await client.destroy({ wipe: true })
      await server.destroy({ wipe: true })
    }
  })

  it('keeps its state unless destroyed with wipe', async () => {
    const identity = Identity.generate().identity
    const folder = join(root, 'kept')
    const box = new CloudBox({ role: 'server', folder, masterPin: '1234' }, { identity })
    await box.start()
    await box.admin.addPin({ label: 'phone' })
    await box.destroy()
    await expect(box.start()).rejects.toMatchObject({ code: 'ERR_INSTANCE_STATE' })
    const again = new CloudBox({ role: 'server', folder }, { identity })
    await again.start()
    expect((await again.admin.listPins()).map((pin) => pin.label)).toEqual(['master', 'phone'])
    await again.destroy({ wipe: true })
    expect(existsSync(join(folder, '.cloudbox'))).toBe(false)
  })

  it('stops promptly whenever it is stopped, even while its session is being set up', async () => {
    const server = new CloudBox({ role: 'server', folder: join(root, 'race-server'), listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357', watch: false }, { identity: Identity.generate().identity })
    await server.start()
    // Right after pairing, the client reconnects; destroying it at every moment of that
    // set-up (hello, welcome) must not wait for a session nobody will close.
    for (let delay = 0; delay < 24; delay++) {
      const client = new CloudBox({ role: 'client', folder: join(root, `race-${delay}`), sync: false }, { identity: Identity.generate().identity })
      await client.start()
      await client.pair(server.pairingUri(), '2468-1357')
      await new Promise((resolve) => setTimeout(resolve, delay / 2))
      const stopped = await Promise.race([client.destroy().then(() => true), new Promise((resolve) => setTimeout(resolve, 5_000, false))])
      expect(stopped, `destroy ${delay / 2} ms after pairing`).toBe(true)
    }
    const started = Date.now()
    await server.destroy()
    expect(Date.now() - started).toBeLessThan(2_000)
  }, 60_000)

  it('refuses calls that do not fit the role or the lifecycle, with typed errors', async () => {
    const identity = Identity.generate().identity
    const client = new CloudBox({ role: 'client', folder: join(root, 'client') }, { identity })
    expect(() => client.pairingUri()).toThrow(expect.objectContaining({ code: 'ERR_ROLE' }))
    await expect(client.pair('cloudbox://pair?id=x', '1234')).rejects.toMatchObject({ code: 'ERR_INSTANCE_STATE' })
    await client.start()
    await expect(client.pair('https://example.com', '1234')).rejects.toMatchObject({ code: 'ERR_INVALID_PAIRING_URI' })
    await expect(client.pair(formatPairingUri({ id: identity.publicId, name: 'x', addresses: ['ws://127.0.0.1:9'] }), '12')).rejects.toMatchObject({ code: 'ERR_INVALID_PIN' })
    await expect(client.admin.listDevices()).rejects.toMatchObject({ code: 'ERR_UNREACHABLE' })
    await client.destroy({ wipe: true })
    expect(() => new CloudBox({ role: 'server', folder: join(root, 's'), masterPin: ' 12 ' }, { identity })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_PIN' }))
  })
})

describe('pairing URIs', () => {
  const id = Identity.generate().identity.publicId
  it('round-trips and normalizes', () => {
    const info = { id, name: 'home server', hub: 'wss://hub.example.com', addresses: ['ws://192.168.1.2:7070', 'ws://[::1]:7070'] }
    const uri = formatPairingUri(info)
    expect(uri.startsWith(`cloudbox://pair?id=${id}&hub=`)).toBe(true)
    expect(parsePairingUri(uri)).toEqual(info)
  })

  it('advertises the machine\'s external addresses, not 0.0.0.0, for a listener on every interface', async () => {
    const wildcard = new DirectListener({ host: '0.0.0.0', port: 0 })
    const loopback = new DirectListener({ host: '127.0.0.1', port: 0 })
    await wildcard.start()
    await loopback.start()
    try {
      const { port } = wildcard.address
      const external = Object.values(networkInterfaces()).flat().filter((each) => each !== undefined && !each.internal && each.family === 'IPv4')
      const expected = external.length > 0 ? external.map((each) => `ws://${each!.address}:${port}`) : [`ws://127.0.0.1:${port}`]
      expect(wildcard.reachableUrls()).toEqual(expected)
      expect(wildcard.reachableUrls().join()).not.toContain('0.0.0.0')
      expect(loopback.reachableUrls()).toEqual([loopback.url])
    } finally {
      await wildcard.stop()
      await loopback.stop()
    }
  })

  it.each([
    ['not a pairing URI', 'cloudbox://other?id=x'],
    ['no id', 'cloudbox://pair?hub=ws://h'],
    ['a bad id', 'cloudbox://pair?id=cb1abc&hub=ws://h'],
    ['an http hub', `cloudbox://pair?id=${id}&hub=http://h`],
    ['credentials in an address', `cloudbox://pair?id=${id}&addr=ws://u:p@h`],
    ['no way to reach it', `cloudbox://pair?id=${id}&name=x`],
    ['a huge URI', `cloudbox://pair?id=${id}&name=${'x'.repeat(3000)}`],
  ])('refuses %s', (_what, uri) => {
    expect(() => parsePairingUri(uri)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_PAIRING_URI' }))
  })
})
