import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { API_REQUEST_MEDIA_TYPE, Identity, sealApiRequest } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient, hubApiUrl } from '@cloudbox/cloudserver'
import { RouterHub } from '@cloudbox/router-hub'
import { nextEvent, scratch } from './helpers.js'

const MiB = 1024 * 1024
let cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

/** A hub, a server with no open port registered at it, its API, and a paired device. */
async function setup() {
  const area = await scratch()
  const hub = new RouterHub({ host: '127.0.0.1', port: 0 })
  await hub.start()
  const box = area.box({ role: 'server', hub: hub.url, masterPin: '2468-1357', watch: false })
  const registered = nextEvent(box.status, (event) => event.type === 'hub' && event.state === 'registered')
  await box.start()
  await registered
  const api = new CloudServer({ host: '127.0.0.1', port: 0 }, { box })
  await api.start()
  const identity = Identity.generate().identity
  const device = area.box({ role: 'client', sync: false }, identity)
  await device.start()
  await device.pair(box.pairingUri(), '2468-1357')
  cleanups.push(async () => {
    await api.stop()
    await area.cleanup()
    await hub.stop()
  })
  const url = hubApiUrl(hub.url, box.id)
  return { area, hub, box, api, identity, url, client: new CloudServerClient({ url, server: box.id, identity, chunkSize: MiB }) }
}

describe('the REST API through the hub', () => {
  it('lists, uploads, downloads, renames and deletes through the hub, with no open port at the server', async () => {
    const { area, hub, box, client, url } = await setup()
    expect(box.pairingInfo().addresses).toEqual([])
    expect(url).toBe(`${hub.url.replace('ws://', 'http://')}/n/${box.id}/api`)
    const content = randomBytes(3 * MiB + 7)
    await writeFile(join(area.root, 'up.bin'), content)
    const relayedBefore = hub.metrics.bytesRelayed
    await client.upload(join(area.root, 'up.bin'), 'docs/up.bin')
    expect(hub.metrics.bytesRelayed - relayedBefore).toBeGreaterThan(content.length)
    expect(await client.list('docs')).toMatchObject([{ name: 'up.bin', size: content.length }])
    await client.download('docs/up.bin', join(area.root, 'down.bin'))
    expect((await readFile(join(area.root, 'down.bin'))).equals(content)).toBe(true)
    await client.rename('docs/up.bin', 'docs/renamed.bin')
    await client.remove('docs/renamed.bin')
    expect(await client.list('docs')).toEqual([])
  })

  it('keeps the bytes of concurrent transfers apart through the hub (its buffers are pooled and reused)', async () => {
    const { area, client } = await setup()
    const contents = [randomBytes(3 * MiB + 77), randomBytes(2 * MiB - 5), randomBytes(4 * MiB + 1)]
    await Promise.all(contents.map((content, i) => writeFile(join(area.root, `pooled-${i}.bin`), content)))
    await Promise.all(contents.map((_, i) => client.upload(join(area.root, `pooled-${i}.bin`), `pooled/${i}.bin`)))
    // Three at once, each with two calls in flight (the hub takes eight at once from one address).
    for (const batch of [0, 3]) await Promise.all(contents.map((_, i) => client.download(`pooled/${i}.bin`, join(area.root, `back-${batch + i}.bin`))))
    for (let n = 0; n < 6; n++) expect((await readFile(join(area.root, `back-${n}.bin`))).equals(contents[n % 3]!)).toBe(true)
  })

  it('refuses replays and strangers through the hub too, and says when the server is offline', async () => {
    const { box, identity, url, client } = await setup()
    const sealed = await sealApiRequest(identity, box.id, { method: 'GET', path: '/v1/files' })
    const post = (body: Uint8Array) => fetch(`${url}/v1/api`, { method: 'POST', headers: { 'content-type': API_REQUEST_MEDIA_TYPE }, body })
    expect((await post(sealed.message)).status).toBe(200)
    const replay = await post(sealed.message)
    expect(replay.status).toBe(409)
    expect(await replay.json()).toMatchObject({ code: 'ERR_API_REQUEST_REPLAYED' })
    const stranger = new CloudServerClient({ url, server: box.id, identity: Identity.generate().identity })
    await expect(stranger.list()).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' })
    await box.stop()
    await expect(client.list()).rejects.toMatchObject({ code: 'ERR_NODE_OFFLINE' })
  })
})
