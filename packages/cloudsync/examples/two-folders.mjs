// Two folders kept in sync by two engines over an in-memory channel (in CloudBox the
// channel is a Noise channel over a WebSocket or a hub): a first sync, an edit that
// sends only the changed chunks, and live status events.
// Run it from packages/cloudsync after `pnpm build`: node examples/two-folders.mjs
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createMemoryChannelPair } from '@cloudbox/encrypted-messaging'
import { SyncEngine } from '@cloudbox/cloudsync'

const root = await mkdtemp(join(tmpdir(), 'cloudsync-example-'))
const folders = { laptop: join(root, 'laptop'), server: join(root, 'server') }
await mkdir(folders.laptop)
await mkdir(folders.server)
const video = randomBytes(8 * 1024 * 1024)
await writeFile(join(folders.laptop, 'video.bin'), video)
await writeFile(join(folders.laptop, 'notes.md'), '# Notes\n')

const laptop = new SyncEngine({ folder: folders.laptop, deviceId: 'laptop', folderId: 'documents' })
const server = new SyncEngine({ folder: folders.server, deviceId: 'server', folderId: 'documents' })
let received = 0
server.status.on((event) => {
  if (event.type === 'file' && event.action === 'downloaded') {
    received += event.bytesFromPeer
    console.log(`server got ${event.path}: ${event.bytesFromPeer} bytes sent, ${event.bytesReused} reused`)
  }
})

async function until(check, what) {
  const deadline = Date.now() + 30_000
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
const same = async (name) => Buffer.compare(await readFile(join(folders.laptop, name)), await readFile(join(folders.server, name)).catch(() => Buffer.alloc(0))) === 0

try {
  await laptop.start()
  await server.start()
  const [a, b] = createMemoryChannelPair()
  // Over a real network, name the peer by the key its channel proved (SecureChannel.remotePublicId).
  laptop.connect(a, { peer: 'server' })
  server.connect(b, { peer: 'laptop' })
  await until(async () => (await same('video.bin')) && (await same('notes.md')), 'the first sync')

  // 64 KiB changed in the middle of the 8 MiB file: only the chunks around it travel.
  const before = received
  const handle = await open(join(folders.laptop, 'video.bin'), 'r+')
  await handle.write(randomBytes(64 * 1024), 0, 64 * 1024, 4 * 1024 * 1024)
  await handle.close()
  await laptop.scan() // the watcher would notice too; scanning now is quicker
  await until(() => same('video.bin'), 'the edit')
  console.log(`the edit cost ${received - before} bytes on the wire for an 8 MiB file`)
} finally {
  await laptop.stop()
  await server.stop()
  await rm(root, { recursive: true, force: true })
}
