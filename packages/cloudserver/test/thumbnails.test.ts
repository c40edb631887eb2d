import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import sharp from 'sharp'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient } from '../src/index.js'
import { backendFixture, type BackendFixture } from './backends.js'

let root: string
let box: CloudBox
let server: CloudServer
let client: CloudServerClient
let device: CloudBox
const cache = () => join(root, 'cloud', '.cloudbox', 'thumbnails')

const image = (format: 'jpeg' | 'png' | 'webp', width: number, height: number, color: { r: number; g: number; b: number }) =>
  sharp({ create: { width, height, channels: 3, background: color } }).toFormat(format).toBuffer()

async function uploadBytes(name: string, bytes: Buffer, overwrite = false): Promise<void> {
  const local = join(root, `upload-${name.replace(/\//g, '_')}`)
  await writeFile(local, bytes)
  await client.upload(local, name, { overwrite })
}

describe.each(['local', 's3'] as const)('thumbnails on the %s back end', (kind) => {
  let backend: BackendFixture
  beforeAll(async () => {
    backend = await backendFixture(kind)
    root = await mkdtemp(join(tmpdir(), 'cloudserver-thumbs-'))
    await mkdir(join(root, 'cloud'))
    await mkdir(join(root, 'device'))
    box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357' }, { identity: Identity.generate().identity })
    await box.start()
    server = new CloudServer({ thumbnails: { maxInputPixels: 4_000_000 } }, { box, storage: backend.storageFor(box) })
    await server.start()
    const identity = Identity.generate().identity
    device = new CloudBox({ role: 'client', folder: join(root, 'device'), keepAliveMs: 2_000 }, { identity })
    await device.start()
    await device.pair(box.pairingUri(), '2468-1357')
    client = new CloudServerClient({ url: server.url, server: box.id, identity })
  })

  afterAll(async () => {
    await server.stop()
    await device.destroy()
    await box.destroy()
    await backend.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('are made for JPEG, PNG and WebP as they arrive, 128 px WebP, and ride along in listings', async () => {
    await uploadBytes('pics/a.jpg', await image('jpeg', 800, 600, { r: 255, g: 0, b: 0 }))
    await uploadBytes('pics/b.png', await image('png', 300, 900, { r: 0, g: 255, b: 0 }))
    await uploadBytes('pics/c.webp', await image('webp', 64, 64, { r: 0, g: 0, b: 255 }))
    await uploadBytes('pics/notes.txt', Buffer.from('not an image'))
    await server.thumbnails!.idle()
    const entries = await client.list('pics')
    const byName = Object.fromEntries(entries.map((entry) => [entry.name, entry]))
    expect(byName['notes.txt']?.thumbnail).toBeUndefined()
    const sizes: Record<string, [number, number]> = { 'a.jpg': [128, 96], 'b.png': [43, 128], 'c.webp': [64, 64] }
    for (const [name, [width, height]] of Object.entries(sizes)) {
      const thumbnail = Buffer.from(byName[name]?.thumbnail ?? '', 'base64')
      const meta = await sharp(thumbnail).metadata()
      expect([name, meta.format, meta.width, meta.height]).toEqual([name, 'webp', width, height])
      expect(thumbnail.length).toBeLessThan(4096)
    }
    expect((await sharp(Buffer.from(await client.thumbnail('pics/a.jpg'))).metadata()).width).toBe(128)
  })

  it('fails alone on a broken or oversized image, and is remade when the file changes', async () => {
    await uploadBytes('odd/broken.jpg', Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), randomBytes(5000)]))
    await uploadBytes('odd/huge.png', await image('png', 4000, 2000, { r: 9, g: 9, b: 9 })) // 8 MP over the 4 MP limit
    await uploadBytes('odd/fine.png', await image('png', 200, 200, { r: 1, g: 2, b: 3 }))
    await server.thumbnails!.idle()
    const entries = Object.fromEntries((await client.list('odd')).map((entry) => [entry.name, entry]))
    expect(entries['broken.jpg']?.thumbnail).toBeUndefined()
    expect(entries['huge.png']?.thumbnail).toBeUndefined()
    expect(entries['fine.png']?.thumbnail).toBeDefined()
    await expect(client.thumbnail('odd/broken.jpg')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' })
    expect((await readdir(cache())).filter((name) => name.endsWith('.failed')).length).toBe(2)

    // A changed file gets a new thumbnail; the old one is dropped from the cache.
    const before = (await readdir(cache())).filter((name) => name.endsWith('.webp')).length
    await uploadBytes('odd/fine.png', await image('png', 100, 300, { r: 200, g: 2, b: 3 }), true)
    await server.thumbnails!.idle()
    const after = Object.fromEntries((await client.list('odd')).map((entry) => [entry.name, entry]))
    expect((await sharp(Buffer.from(after['fine.png']!.thumbnail!, 'base64')).metadata()).height).toBe(128)
    expect((await readdir(cache())).filter((name) => name.endsWith('.webp')).length).toBe(before)
  })

  // Sync writes the server's local folder; with S3 the API's files live in the bucket instead.
  if (kind === 'local') it('are made for images that arrive by sync', async () => {
    await writeFile(join(root, 'device', 'synced.jpg'), await image('jpeg', 640, 480, { r: 50, g: 60, b: 70 }))
    const until = Date.now() + 20_000
    while (!existsSync(join(root, 'cloud', 'synced.jpg')) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(existsSync(join(root, 'cloud', 'synced.jpg'))).toBe(true)
    await new Promise((resolve) => setTimeout(resolve, 50))
    await server.thumbnails!.idle()
    const entry = (await client.list()).find((each) => each.name === 'synced.jpg')
    expect(entry?.thumbnail).toBeDefined()
  })
})
