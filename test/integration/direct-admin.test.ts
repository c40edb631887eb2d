import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Identity } from '@cloudbox/encrypted-messaging'
import { fileIs, nextEvent, scratch, waitFor } from './helpers.js'

let cleanup: (() => Promise<void>) | undefined
afterEach(async () => {
  await cleanup?.()
  cleanup = undefined
})

describe('direct WebSocket, remote admin and sub-clouds', () => {
  it('pairs and syncs over a direct WebSocket without any hub', async () => {
    const area = await scratch()
    cleanup = area.cleanup
    const server = area.box({ role: 'server', listen: { host: '127.0.0.1', port: 0 }, masterPin: '1357' })
    await server.start()
    const uri = server.pairingUri()
    expect(uri).toContain(`addr=${encodeURIComponent(server.directUrl as string)}`)
    const client = area.box({ role: 'client' })
    await client.start()
    await client.pair(uri, '1357')
    await writeFile(join(server.init.folder, 'direct.txt'), 'no hub')
    await waitFor(() => fileIs(join(client.init.folder, 'direct.txt'), 'no hub'), 'direct sync')
    const latency = await nextEvent(client.status, (event) => event.type === 'latency')
    expect(latency).toMatchObject({ peer: server.id })
  })

  it('lets an owner device administer the cloud and its sub-clouds remotely', async () => {
    const area = await scratch()
    cleanup = area.cleanup
    const server = area.box({ role: 'server', listen: { port: 0 }, masterPin: '1357', quotaBytes: 10_000_000 })
    await server.start()
    const owner = area.box({ role: 'client', name: 'owner' })
    await owner.start()
    await owner.pair(server.pairingUri(), '1357')
    await owner.waitConnected()

    const { pin } = await owner.admin.addPin({ label: 'guest', role: 'member' })
    const guest = area.box({ role: 'client', name: 'guest' })
    await guest.start()
    await guest.pair(server.pairingUri(), pin)
    expect((await owner.admin.listDevices()).map((device) => [device.label, device.role]).sort()).toEqual([['guest', 'member'], ['owner', 'owner']])
    expect(await owner.admin.storage()).toMatchObject({ quotaBytes: 10_000_000 })
    await owner.admin.setQuota(null)
    expect(await owner.admin.storage()).not.toHaveProperty('quotaBytes')
    await expect(owner.admin.revokeDevice('cb1nope')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_DEVICE' })
    await expect(owner.admin.removePin('nope')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_PIN' })

    // A sub-cloud: its own key (the phrase's sub-cloud path), folder and devices.
    const sub = await owner.admin.createSubCloud({ name: 'accounting', quotaBytes: 1_000_000 })
    expect(sub.id).toBe(server.identity.subCloud(sub.index).publicId)
    expect(sub.id).not.toBe(server.id)
    const clerk = area.box({ role: 'client', name: 'clerk' })
    await clerk.start()
    await expect(clerk.pair(sub.uri, sub.pin)).resolves.toMatchObject({ id: sub.id, role: 'owner' })
    await writeFile(join(clerk.init.folder, 'ledger.txt'), 'sub-cloud data')
    const subFolder = server.subCloud(sub.index)?.init.folder as string
    await waitFor(() => fileIs(join(subFolder, 'ledger.txt'), 'sub-cloud data'), 'sync into the sub-cloud')
    expect(existsSync(join(server.init.folder, 'ledger.txt'))).toBe(false)
    expect((await owner.admin.listSubClouds()).map((each) => each.name)).toEqual(['accounting'])

    await owner.admin.destroySubCloud(sub.index, { wipe: true })
    expect(existsSync(subFolder)).toBe(false)
    expect(await owner.admin.listSubClouds()).toEqual([])
    await expect(owner.admin.destroySubCloud(sub.index)).rejects.toMatchObject({ code: 'ERR_UNKNOWN_SUBCLOUD' })
    // The destroyed sub-cloud's key is no longer served: its device is cut off.
    await waitFor(() => !clerk.connected, 'the clerk to be disconnected')

    // Restarting the server brings its sub-clouds back (the listener moves: port 0).
    const second = await server.admin.createSubCloud({ name: 'archive' })
    await server.stop()
    await server.start()
    expect(server.subCloud(second.index)?.id).toBe(second.id)
    expect((await server.admin.listSubClouds()).map((each) => each.name)).toEqual(['archive'])
  })

  it('signs documents with the instance key', async () => {
    const area = await scratch()
    cleanup = area.cleanup
    const identity = Identity.generate().identity
    const box = area.box({ role: 'server' }, identity)
    const signature = await box.sign(new TextEncoder().encode('contract'), { scope: 'accept' })
    await expect(box.verify(new TextEncoder().encode('contract'), signature)).resolves.toMatchObject({ signerId: box.id, scope: 'accept' })
    await expect(box.verify(new TextEncoder().encode('contract!'), signature)).rejects.toMatchObject({ code: 'ERR_SIGNATURE_INVALID' })
  })
})
