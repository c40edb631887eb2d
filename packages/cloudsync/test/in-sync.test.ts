import { readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { link, makeEngine, removeDir, sameRoot, tempDir, until } from './helpers.js'

const dirs: string[] = []
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
  for (const dir of dirs.splice(0)) removeDir(dir)
})

describe('in sync means in sync', () => {
  it('a conflict copy the peer keeps of its own unscanned edit is in the root it acknowledges', async () => {
    const root = tempDir('in-sync-')
    dirs.push(root)
    const device = makeEngine(join(root, 'device'), 'device')
    const server = makeEngine(join(root, 'server'), 'server')
    cleanups.push(() => device.stop(), () => server.stop())
    writeFileSync(join(device.folder, 'plan.txt'), 'v1')
    await device.start()
    await server.start()
    let [toServer] = link(device, server)
    await until(() => sameRoot(device, server), 10_000, 'first sync')
    await toServer.close()
    await until(() => server.state !== 'syncing', 10_000, 'server idle')
    // Both edit; the server's edit is not scanned (no watcher) when the device's arrives.
    writeFileSync(join(server.folder, 'plan.txt'), 'server edit')
    utimesSync(join(server.folder, 'plan.txt'), new Date(), new Date(Date.now() - 60_000))
    writeFileSync(join(device.folder, 'plan.txt'), 'device edit, later')
    await device.scan()
    const inSync: boolean[] = []
    device.status.on((event) => {
      // At the moment the device hears "in sync", both folders must hold the same files.
      if (event.type === 'peer' && event.state === 'in-sync') inSync.push(sameRoot(device, server) && readdirSync(device.folder).length === readdirSync(server.folder).length)
    })
    ;[toServer] = link(device, server)
    await until(() => inSync.length > 0 && readdirSync(device.folder).some((name) => name.includes('sync-conflict')), 15_000, 'the conflict copy on the device')
    expect(inSync.every(Boolean)).toBe(true)
    expect(readdirSync(server.folder).filter((name) => name !== '.cloudbox').sort()).toEqual(readdirSync(device.folder).filter((name) => name !== '.cloudbox').sort())
  })
})
