import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CloudBox } from '@cloudbox/cloudbox'
import { API_REQUEST_MEDIA_TYPE, Identity, sealApiRequest } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient } from '../src/index.js'
import { backendFixture, type BackendFixture } from './backends.js'
import { codeOf } from './outcomes.js'

let root: string
let box: CloudBox
let server: CloudServer
const boxes: CloudBox[] = []
const MiB = 1024 * 1024

/** A device paired with the cloud (sync off: these tests use the API only). */
async function pairedDevice(pin = '2468-1357'): Promise<{ identity: Identity; client: CloudServerClient; device: CloudBox }> {
  const identity = Identity.generate().identity
  const device = new CloudBox({ role: 'client', folder: join(root, `device-${boxes.length}`), sync: false, name: `device ${boxes.length}` }, { identity })
  boxes.push(device)
  await mkdir(device.init.folder, { recursive: true })
  await device.start()
  await device.pair(box.pairingUri(), pin)
  return { identity, device, client: new CloudServerClient({ url: server.url, server: box.id, identity, chunkSize: MiB }) }
}

describe.each(['local', 's3'] as const)('encrypted REST API on the %s back end', (kind) => {
  let backend: BackendFixture
  beforeAll(async () => {
    backend = await backendFixture(kind)
    root = await mkdtemp(join(tmpdir(), 'cloudserver-api-'))
    await mkdir(join(root, 'cloud'))
    box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357', watch: false }, { identity: Identity.generate().identity })
    await box.start()
    server = new CloudServer({ host: '127.0.0.1', port: 0 }, { box, storage: backend.storageFor(box) })
    await server.start()
  })

  afterAll(async () => {
    await server.stop()
    for (const device of boxes) await device.destroy()
    await box.destroy()
    boxes.length = 0
    await backend.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('lists, uploads, downloads, renames, copies, searches and deletes for a paired device', async () => {
    const { client } = await pairedDevice()
    expect(await client.list()).toEqual([])
    expect(await client.mkdir('docs')).toMatchObject({ path: 'docs', type: 'folder' })
    const content = randomBytes(5 * MiB + 123)
    await writeFile(join(root, 'local.bin'), content)
    const progress: number[] = []
    const uploaded = await client.upload(join(root, 'local.bin'), 'docs/big.bin', { onProgress: ({ bytes }) => progress.push(bytes) })
    expect(uploaded).toMatchObject({ path: 'docs/big.bin', type: 'file', size: content.length })
    expect(progress.at(-1)).toBe(content.length)
    expect(progress.length).toBe(6)
    expect((await backend.storedFile(box, 'docs/big.bin')).equals(content)).toBe(true)
    expect(await client.list('docs')).toMatchObject([{ name: 'big.bin', size: content.length }])

    await client.download('docs/big.bin', join(root, 'back.bin'))
    expect((await readFile(join(root, 'back.bin'))).equals(content)).toBe(true)
    expect(Buffer.from(await client.read('docs/big.bin', 10, 5)).equals(content.subarray(10, 15))).toBe(true)

    await client.rename('docs/big.bin', 'docs/renamed.bin')
    await client.copy('docs/renamed.bin', 'archive/copy.bin')
    expect((await client.search('RENAMED')).map((entry) => entry.path)).toEqual(['docs/renamed.bin'])
    expect(await codeOf(client.rename('archive/copy.bin', 'docs/renamed.bin'))).toBe('ERR_ALREADY_EXISTS')
    await client.rename('archive/copy.bin', 'docs/renamed.bin', { overwrite: true })
    expect((await client.storage())).toMatchObject({ files: 1, usedBytes: content.length })
    await client.remove('docs')
    expect(await client.list()).toMatchObject([{ name: 'archive', type: 'folder' }])
    expect(await codeOf(client.stat('docs/renamed.bin'))).toBe('ERR_NOT_FOUND')
  })

  it.runIf(kind === 'local')('keeps what the API replaces or deletes among the folder\'s versions, naming the caller', async () => {
    const { identity, client } = await pairedDevice()
    await writeFile(join(root, 'v1.txt'), 'first')
    await writeFile(join(root, 'v2.txt'), 'second, longer')
    await client.upload(join(root, 'v1.txt'), 'kept/doc.txt')
    await client.upload(join(root, 'v2.txt'), 'kept/doc.txt', { overwrite: true })
    await client.copy('kept/doc.txt', 'kept/copy.txt')
    await client.upload(join(root, 'v1.txt'), 'kept/other.txt')
    await client.rename('kept/other.txt', 'kept/copy.txt', { overwrite: true })
    await client.remove('kept')
    const versions = box.engine!.versions.list('kept')
    expect(versions.map((version) => [version.path, version.reason, version.size, version.replacedBy])).toEqual([
      ['kept/copy.txt', 'deleted', 5, identity.publicId],
      ['kept/copy.txt', 'replaced', 14, identity.publicId],
      ['kept/doc.txt', 'deleted', 14, identity.publicId],
      ['kept/doc.txt', 'replaced', 5, identity.publicId],
    ])
    // Each keeps its bytes: the first upload comes back.
    const first = versions.find((version) => version.path === 'kept/doc.txt' && version.reason === 'replaced')!
    await box.engine!.versions.restore(first.id)
    expect(await readFile(join(box.init.folder, 'kept', 'doc.txt'), 'utf8')).toBe('first')
  })

  it('keeps the bytes of concurrent transfers apart (every large buffer is pooled and reused), and HEAD answers without a body', async () => {
    const devices = [await pairedDevice(), await pairedDevice()]
    const contents = [randomBytes(3 * MiB + 77), randomBytes(4 * MiB - 5), randomBytes(2 * MiB + 1)]
    await Promise.all(contents.map((content, i) => writeFile(join(root, `pooled-${i}.bin`), content)))
    await Promise.all(contents.map((_, i) => devices[i % 2]!.client.upload(join(root, `pooled-${i}.bin`), `pooled/${i}.bin`)))
    for (const [i, content] of contents.entries()) expect((await backend.storedFile(box, `pooled/${i}.bin`)).equals(content)).toBe(true)
    // Each file down twice, all at once, while the first file goes up again.
    const downloads = [0, 1, 2, 0, 1, 2].map((i, n) => devices[n % 2]!.client.download(`pooled/${i}.bin`, join(root, `pooled-back-${n}.bin`)))
    await Promise.all([...downloads, devices[1]!.client.upload(join(root, 'pooled-0.bin'), 'pooled/again.bin')])
    for (const [n, i] of [0, 1, 2, 0, 1, 2].entries()) expect((await readFile(join(root, `pooled-back-${n}.bin`))).equals(contents[i]!)).toBe(true)
    expect((await backend.storedFile(box, 'pooled/again.bin')).equals(contents[0]!)).toBe(true)
    expect(await devices[0]!.client.call('HEAD', '/v1/content?path=pooled%2F1.bin&offset=0&length=1048576')).toHaveLength(0)
  })

  it('resumes an interrupted upload and an interrupted download', async () => {
    const { identity, client } = await pairedDevice()
    const content = randomBytes(4 * MiB)
    await writeFile(join(root, 'resume.bin'), content)
    // The first two chunks arrive, then the connection is "lost".
    await client.call('POST', `/v1/uploads?upload=resume-1234&offset=0&total=${content.length}`, content.subarray(0, MiB))
    await client.call('POST', `/v1/uploads?upload=resume-1234&offset=${MiB}&total=${content.length}`, content.subarray(MiB, 2 * MiB))
    // A chunk at the wrong offset is refused with where the upload stands.
    const wrong = await client.call('POST', '/v1/uploads?upload=resume-1234&offset=0', content.subarray(0, 10)).catch((error: unknown) => error)
    expect(wrong).toMatchObject({ code: 'ERR_UPLOAD_OFFSET', expectedOffset: 2 * MiB })
    // Another run of the program resumes from 2 MiB.
    const again = new CloudServerClient({ url: server.url, server: box.id, identity, chunkSize: MiB })
    expect(await again.uploadStatus('resume-1234')).toBe(2 * MiB)
    const progress: number[] = []
    await again.upload(join(root, 'resume.bin'), 'resumed.bin', { upload: 'resume-1234', onProgress: ({ bytes }) => progress.push(bytes) })
    expect(progress).toEqual([3 * MiB, 4 * MiB])
    expect((await backend.storedFile(box, 'resumed.bin')).equals(content)).toBe(true)
    // Another device cannot see or touch this device's uploads.
    const other = await pairedDevice()
    expect(await other.client.uploadStatus('resume-1234')).toBeUndefined()

    // Download: 1.5 MiB are already in the .part file.
    await writeFile(join(root, 'down.bin.part'), content.subarray(0, 1.5 * MiB))
    const seen: number[] = []
    await client.download('resumed.bin', join(root, 'down.bin'), { onProgress: ({ bytes }) => seen.push(bytes) })
    expect(seen[0]).toBe(2.5 * MiB)
    expect((await readFile(join(root, 'down.bin'))).equals(content)).toBe(true)
  })

  it('refuses a replayed or tampered request, and the server goes on', async () => {
    const { identity } = await pairedDevice()
    const sealed = await sealApiRequest(identity, box.id, { method: 'DELETE', path: '/v1/files?path=archive' })
    const post = (body: Uint8Array) => fetch(`${server.url}/v1/api`, { method: 'POST', headers: { 'content-type': API_REQUEST_MEDIA_TYPE }, body })
    const first = await post(sealed.message)
    expect(first.status).toBe(200)
    expect((await sealed.openResponse(new Uint8Array(await first.arrayBuffer()))).status).toBe(204)
    const replay = await post(sealed.message)
    expect(replay.status).toBe(409)
    expect(await replay.json()).toMatchObject({ code: 'ERR_API_REQUEST_REPLAYED' })
    const fresh = await sealApiRequest(identity, box.id, { method: 'GET', path: '/v1/files' })
    const tampered = Buffer.from(fresh.message)
    tampered[tampered.length - 20]! ^= 1
    const refused = await post(tampered)
    expect(refused.status).toBe(400)
    expect(await refused.json()).toMatchObject({ code: 'ERR_API_REQUEST_INVALID' })
    expect((await post(fresh.message)).status).toBe(200)
    const clear = await fetch(`${server.url}/v1/api`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"path":"/"}' })
    expect(clear.status).toBe(415)
  })

  it('serves paired, enabled devices only: unpaired, blocked and revoked callers are refused', async () => {
    const stranger = new CloudServerClient({ url: server.url, server: box.id, identity: Identity.generate().identity })
    expect(await codeOf(stranger.list())).toBe('ERR_FORBIDDEN')
    const { client, identity } = await pairedDevice()
    expect(await codeOf(client.list())).toBe('ok')
    await box.admin.blockDevice(identity.publicId)
    expect(await codeOf(client.list())).toBe('ERR_FORBIDDEN')
    await box.admin.unblockDevice(identity.publicId)
    expect(await codeOf(client.list())).toBe('ok')
    await box.admin.revokeDevice(identity.publicId)
    expect(await codeOf(client.list())).toBe('ERR_FORBIDDEN')
  })

  it('keeps every path inside the cloud folder', async () => {
    const { client } = await pairedDevice()
    for (const path of ['../outside.txt', '/etc/passwd', 'a/../../b', '.cloudbox/state', 'bad\0name', 'a\\b', 'C:/x']) {
      expect([path, await codeOf(client.stat(path))]).toEqual([path, 'ERR_UNSAFE_PATH'])
      expect([path, await codeOf(client.mkdir(path))]).toEqual([path, 'ERR_UNSAFE_PATH'])
    }
    expect((await client.list()).map((entry) => entry.name)).not.toContain('.cloudbox')
    if (kind !== 'local') return
    // On disk, a symbolic link inside the folder must not lead out of it.
    const outside = await mkdtemp(join(tmpdir(), 'cloudserver-outside-'))
    await writeFile(join(outside, 'secret.txt'), 'secret')
    await symlink(outside, join(root, 'cloud', 'escape'))
    try {
      for (const path of ['escape/secret.txt', 'escape']) {
        expect([path, await codeOf(client.stat(path))]).toEqual([path, 'ERR_UNSAFE_PATH'])
      }
      expect(await codeOf(client.read('escape/secret.txt'))).toBe('ERR_UNSAFE_PATH')
      expect(await codeOf(client.mkdir('escape/new'))).toBe('ERR_UNSAFE_PATH')
      expect((await client.list()).map((entry) => entry.name)).not.toContain('escape')
    } finally {
      await rm(join(root, 'cloud', 'escape'))
      await rm(outside, { recursive: true, force: true })
    }
  })

  it('gives owner devices the admin functions and refuses members', async () => {
    const { client } = await pairedDevice()
    const devices = await client.admin.listDevices()
    expect(devices.length).toBeGreaterThan(0)
    const { pin } = await client.admin.addPin({ label: 'guest', role: 'member' })
    const member = await pairedDevice(pin)
    expect(await codeOf(member.client.admin.listDevices())).toBe('ERR_FORBIDDEN')
    expect(await codeOf(client.admin.blockDevice('not-an-id'))).toBe('ERR_UNKNOWN_DEVICE')
    expect(await codeOf(client.call('POST', '/v1/admin/blockDevice', { args: [42] }))).toBe('ERR_INVALID_ADMIN_CALL')
    expect(await codeOf(client.call('POST', '/v1/admin/format', { args: [] }))).toBe('ERR_INVALID_ADMIN_CALL')
    expect(await codeOf(client.call('POST', '/v1/admin/listDevices', { args: 'x' }))).toBe('ERR_BAD_REQUEST')
  })
})
