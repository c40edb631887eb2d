// A receiving engine in its own process, for the kill -9 test: prints its port, then
// the bytes it received whenever a file lands. Runs the built package (dist/).
import { createServer } from 'node:net'
import { channelFromStream } from '@cloudbox/encrypted-messaging'
import { SyncEngine } from '../dist/index.js'

const [folder, window] = process.argv.slice(2)
const engine = new SyncEngine({ folder, deviceId: 'receiver', folderId: 'crash-test', watch: false, windowBytes: Number(window) * 65536 })
await engine.start()
const server = createServer((socket) => {
  const session = engine.connect(channelFromStream(socket), { peer: 'sender' })
  engine.status.on((event) => {
    if (event.type === 'file') process.stdout.write(`${JSON.stringify({ file: event.path, received: session.bytesReceived })}\n`)
  })
})
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`))
process.on('SIGTERM', async () => {
  server.close()
  await engine.stop()
  process.exit(0)
})
