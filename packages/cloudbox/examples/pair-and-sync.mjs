// A cloud server and a client in one process: the client pairs with the server's
// pairing URI and PIN, then a file written on the client appears on the server.
// Run it from packages/cloudbox after `pnpm build`: node examples/pair-and-sync.mjs
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudBox } from '@cloudbox/cloudbox'

const root = await mkdtemp(join(tmpdir(), 'cloudbox-example-'))
const folders = { home: join(root, 'home'), laptop: join(root, 'laptop') }
await mkdir(folders.home)
await mkdir(folders.laptop)

// In a real app the identity comes from the node's recovery phrase in its vault
// (Identity.fromRecoveryPhrase); a fresh one will do here.
const server = new CloudBox(
  { role: 'server', folder: folders.home, name: 'Home', listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357' },
  { identity: Identity.generate().identity },
)
const client = new CloudBox({ role: 'client', folder: folders.laptop, name: 'Laptop' }, { identity: Identity.generate().identity })
client.status.on((event) => {
  if (event.type === 'connection' && event.state === 'connected') console.log(`connected to ${event.peer} (${event.transport})`)
})

try {
  await server.start()
  console.log(server.pairingUri()) // what the QR code holds
  console.log(await server.pairingQr('terminal'))

  await client.start()
  const cloud = await client.pair(server.pairingUri(), '2468-1357')
  console.log(`paired with "${cloud.name}" as ${cloud.role}`)

  await writeFile(join(folders.laptop, 'hello.txt'), 'hello from the laptop\n')
  const until = Date.now() + 15_000
  let arrived
  while (arrived === undefined && Date.now() < until) {
    arrived = await readFile(join(folders.home, 'hello.txt'), 'utf8').catch(() => undefined)
    if (arrived === undefined) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  if (arrived === undefined) throw new Error('hello.txt did not reach the server')
  console.log(`the server has hello.txt: ${JSON.stringify(arrived)}`)

  const devices = await server.admin.listDevices()
  console.log(`devices: ${devices.map((device) => `${device.label} (${device.role}, ${device.state})`).join(', ')}`)

  const signature = await server.sign(new TextEncoder().encode('minutes of the meeting'))
  const verified = await client.verify(new TextEncoder().encode('minutes of the meeting'), signature, server.id)
  console.log(`signature by the server checked: ${verified.signerId === server.id}`)
} finally {
  await client.destroy()
  await server.destroy()
  await rm(root, { recursive: true, force: true })
}
