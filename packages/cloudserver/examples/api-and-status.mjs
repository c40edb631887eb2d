// A cloud server with its encrypted REST API and status page, and a paired device that
// uploads, lists and downloads through the API (every call sealed with HPKE and signed).
// Run it from packages/cloudserver after `pnpm build`: node examples/api-and-status.mjs
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CloudBox } from '@cloudbox/cloudbox'
import { CloudServer, CloudServerClient } from '@cloudbox/cloudserver'
import { Identity } from '@cloudbox/encrypted-messaging'

const root = await mkdtemp(join(tmpdir(), 'cloudserver-example-'))
await mkdir(join(root, 'cloud'))
await mkdir(join(root, 'laptop'))
const box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), name: 'Home', listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357' }, { identity: Identity.generate().identity })
const api = new CloudServer({ host: '127.0.0.1', port: 0, statusPage: true }, { box })
const laptopIdentity = Identity.generate().identity
const laptop = new CloudBox({ role: 'client', folder: join(root, 'laptop'), name: 'Laptop', sync: false }, { identity: laptopIdentity })
try {
  await box.start()
  await api.start()
  console.log(`API: ${api.url}/v1/api`)
  console.log(`status page (this machine only): ${api.statusUrl}`)

  // Only paired devices may call the API.
  await laptop.start()
  await laptop.pair(box.pairingUri(), '2468-1357')
  const client = new CloudServerClient({ url: api.url, server: box.id, identity: laptopIdentity })
  await writeFile(join(root, 'report.txt'), 'quarterly numbers\n')
  await client.upload(join(root, 'report.txt'), 'docs/report.txt', { onProgress: ({ bytes, total }) => console.log(`uploading: ${bytes}/${total} bytes`) })
  console.log(`docs/: ${(await client.list('docs')).map((entry) => `${entry.name} (${entry.size} B)`).join(', ')}`)
  await client.download('docs/report.txt', join(root, 'copy.txt'))
  console.log(`downloaded intact: ${await readFile(join(root, 'copy.txt'), 'utf8') === 'quarterly numbers\n'}`)

  // The status page's JSON snapshot shows the upload and the device.
  const state = await (await fetch(`${api.statusUrl}state`)).json()
  console.log(`status page: ${state.devices.length} device(s), last transfer ${state.transfers[0]?.path}`)
  console.log(`without the token: HTTP ${(await fetch(new URL('/status/not-the-token/state', api.url))).status}`)
} finally {
  await api.stop()
  await laptop.destroy()
  await box.destroy()
  await rm(root, { recursive: true, force: true })
}
