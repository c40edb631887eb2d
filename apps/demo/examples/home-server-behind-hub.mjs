// A router hub, a home server that only connects out to it (no open port), and a device
// that pairs and syncs through the hub. The hub relays Noise frames it cannot read.
// Run it from apps/demo after `pnpm build`: node examples/home-server-behind-hub.mjs
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'
import { RouterHub } from '@cloudbox/router-hub'

const root = await mkdtemp(join(tmpdir(), 'router-hub-example-'))
await mkdir(join(root, 'home'))
await mkdir(join(root, 'laptop'))
const hub = new RouterHub({ host: '127.0.0.1', port: 0 })
await hub.start()
console.log(`hub: ${hub.url}`)
// No `listen`: the server opens no port; it registers at the hub and waits for devices there.
const server = new CloudBox({ role: 'server', folder: join(root, 'home'), name: 'Home', masterPin: '2468-1357', hub: hub.url }, { identity: Identity.generate().identity })
const laptop = new CloudBox({ role: 'client', folder: join(root, 'laptop'), name: 'Laptop' }, { identity: Identity.generate().identity })
try {
  await server.start()
  const deadline = Date.now() + 10_000
  while (!hub.hasNode(server.id) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  console.log(`server registered at the hub: ${hub.hasNode(server.id)}`)
  console.log(`pairing URI: ${server.pairingUri()}`)

  await laptop.start()
  await laptop.pair(server.pairingUri(), '2468-1357')
  await writeFile(join(root, 'laptop', 'hello.txt'), 'hello through the hub\n')
  let arrived
  while (arrived === undefined && Date.now() < deadline + 20_000) {
    arrived = await readFile(join(root, 'home', 'hello.txt'), 'utf8').catch(() => undefined)
    if (arrived === undefined) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  console.log(`the home server has hello.txt: ${arrived === 'hello through the hub\n'}`)
  const metrics = await (await fetch(`${hub.url.replace(/^ws/, 'http')}/metrics`)).text()
  console.log(metrics.split('\n').filter((line) => line.startsWith('cloudbox_hub_') && !line.startsWith('#')).slice(0, 4).join('\n'))
} finally {
  await laptop.destroy()
  await server.destroy()
  await hub.stop()
  await rm(root, { recursive: true, force: true })
}
