/**
 * The cloud part of `cloudbox demo`: a hub, a server and a laptop on 127.0.0.1, paired
 * with a PIN through the hub; a sample folder synced, a delta, a conflict, a sealed share
 * through the drop box and a signed document, each with its figures.
 */
import { randomBytes } from 'node:crypto'
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs'
import { mkdir, open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CloudBox, randomPin, type CloudBoxEvent } from '@cloudbox/cloudbox'
import type { CloudServer } from '@cloudbox/cloudserver'
import { Identity } from '@cloudbox/encrypted-messaging'
import type { RouterHub } from '@cloudbox/router-hub'
import { formatBytes } from '../progress.js'

const MiB = 1024 * 1024
const LARGE = 32 * MiB

export interface CloudTour {
  hub: RouterHub
  server: CloudBox
  api: CloudServer
  devices: CloudBox[]
  /** Stops everything. */
  close(): Promise<void>
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string | (() => string), timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`The demo timed out waiting for ${typeof what === 'string' ? what : what()}.`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const sameFile = (a: string, b: string) => existsSync(a) && existsSync(b) && statSync(a).size === statSync(b).size && readFileSync(a).equals(readFileSync(b))

export async function runCloudTour(workspace: string, say: (line?: string) => void, step: (name: string, data: Record<string, unknown>) => void): Promise<CloudTour> {
  // Loaded for the tour only (the program's other commands start without them).
  const [{ CloudServer, CloudServerClient, hubApiUrl }, { RouterHub }] = await Promise.all([import('@cloudbox/cloudserver'), import('@cloudbox/router-hub')])
  const hub = new RouterHub({ host: '127.0.0.1', port: 0 })
  await hub.start()
  const pin = randomPin()
  const serverFolder = join(workspace, 'server-cloud')
  const laptopFolder = join(workspace, 'laptop')
  await mkdir(join(serverFolder, 'docs'), { recursive: true })
  await mkdir(join(serverFolder, 'photos'), { recursive: true })
  await mkdir(laptopFolder, { recursive: true })

  // The server does not listen: everything goes through the hub, as for a home server behind NAT.
  // The sample folder: text, images, and one large file. The image library loads here, not
  // with the program: every other command would pay for it at start-up.
  const { default: sharp } = await import('sharp')
  const samples: Record<string, Buffer> = {
    'docs/readme.txt': Buffer.from('Welcome to your CloudBox. Everything here is end-to-end encrypted.\n'),
    'docs/todo.md': Buffer.from('# Todo\n- back up the photos\n'),
    'photos/sunset.png': await sharp({ create: { width: 800, height: 500, channels: 3, background: { r: 250, g: 120, b: 40 } } }).png().toBuffer(),
    'photos/lake.jpg': await sharp({ create: { width: 1024, height: 768, channels: 3, background: { r: 30, g: 90, b: 160 } } }).jpeg().toBuffer(),
    'video/holiday.bin': randomBytes(LARGE),
  }
  await mkdir(join(serverFolder, 'video'), { recursive: true })
  for (const [path, bytes] of Object.entries(samples)) await writeFile(join(serverFolder, path), bytes)
  const sampleBytes = Object.values(samples).reduce((sum, bytes) => sum + bytes.length, 0)

  const server = new CloudBox({ role: 'server', folder: serverFolder, name: 'Demo cloud', hub: hub.url, masterPin: pin }, { identity: Identity.generate().identity })
  const devices: CloudBox[] = []
  const api = new CloudServer({ host: '127.0.0.1', port: 0, statusPage: true }, { box: server })
  const close = async () => {
    await api.stop()
    for (const device of devices) await device.stop()
    await server.stop()
    await hub.stop()
  }
  try {
    await server.start()
    await api.start()
    await waitFor(() => hub.hasNode(server.id), 'the server to register at the hub')
    say(`\n4. A hub (${hub.url}) and a server for ${serverFolder} (${server.id}); the server registered at the hub, no open port needed.`)
    say(`   Pairing URI: ${server.pairingUri()}`)
    say(`   Master PIN: ${pin}`)
    say(`   Status page (open it to watch; the token in the URL is its password): ${api.statusUrl}`)
    step('cloud', { hub: hub.url, server: server.id, uri: server.pairingUri(), pin, statusPage: api.statusUrl })

    // Pair a laptop through the hub, then sync the sample folder to it.
    const laptop = new CloudBox({ role: 'client', folder: laptopFolder, name: 'laptop' }, { identity: Identity.generate().identity })
    devices.push(laptop)
    await laptop.start()
    let started = performance.now()
    const paired = await laptop.pair(server.pairingUri(), pin)
    const pairSeconds = (performance.now() - started) / 1000
    started = performance.now()
    await waitFor(() => Object.keys(samples).every((path) => sameFile(join(serverFolder, path), join(laptopFolder, path))), 'the first sync')
    const syncSeconds = (performance.now() - started) / 1000
    say(`\n5. The laptop paired with the PIN in ${pairSeconds.toFixed(2)} s (Noise IK to the key in the URI; role ${paired.role}),`)
    say(`   then received ${Object.keys(samples).length} files, ${formatBytes(sampleBytes)}, through the hub in ${syncSeconds.toFixed(2)} s (${(sampleBytes / MiB / syncSeconds).toFixed(0)} MiB/s).`)
    step('sync', { files: Object.keys(samples).length, bytes: sampleBytes, pairSeconds, syncSeconds })

    // A delta: 1 MiB changed in the middle of the large file on the laptop.
    const arrivals: { bytesFromPeer: number; bytesReused: number }[] = []
    const stopWatching = server.status.on((event: CloudBoxEvent) => {
      if (event.type === 'sync' && event.event.type === 'file' && event.event.path === 'video/holiday.bin' && event.event.action === 'downloaded') arrivals.push(event.event)
    })
    const handle = await open(join(laptopFolder, 'video/holiday.bin'), 'r+')
    await handle.write(randomBytes(MiB), 0, MiB, LARGE / 2)
    await handle.close()
    started = performance.now()
    await waitFor(() => arrivals.length > 0 && sameFile(join(serverFolder, 'video/holiday.bin'), join(laptopFolder, 'video/holiday.bin')), 'the edited file to reach the server')
    stopWatching()
    const delta = arrivals.at(-1)!
    say(`\n6. Changed 1 MiB in the middle of video/holiday.bin (${formatBytes(LARGE)}) on the laptop: the server fetched ${formatBytes(delta.bytesFromPeer)}`)
    say(`   and reused ${formatBytes(delta.bytesReused)} it already had (${(((performance.now() - started) / 1000)).toFixed(2)} s).`)
    step('delta', { fileBytes: LARGE, bytesFromPeer: delta.bytesFromPeer, bytesReused: delta.bytesReused })

    // A conflict: both sides edit the same file while the laptop is offline.
    await laptop.stop()
    await writeFile(join(serverFolder, 'docs/todo.md'), '# Todo\n- back up the photos\n- renew the domain (server)\n')
    await writeFile(join(laptopFolder, 'docs/todo.md'), '# Todo\n- back up the photos\n- buy milk (laptop)\n')
    const conflicts: string[] = []
    const onConflict = (event: CloudBoxEvent) => {
      if (event.type === 'sync' && event.event.type === 'conflict') conflicts.push(event.event.copy)
    }
    const stopServerConflicts = server.status.on(onConflict)
    const stopLaptopConflicts = laptop.status.on(onConflict)
    await laptop.start()
    await waitFor(() => conflicts.length > 0 && existsSync(join(laptopFolder, conflicts[0]!)) && existsSync(join(serverFolder, conflicts[0]!)), () => `the conflict to settle (conflict copies seen: ${conflicts.join(', ') || 'none'}; on the laptop: ${conflicts.filter((copy) => existsSync(join(laptopFolder, copy))).join(', ') || 'none'}; on the server: ${conflicts.filter((copy) => existsSync(join(serverFolder, copy))).join(', ') || 'none'})`)
    stopServerConflicts()
    stopLaptopConflicts()
    say(`\n7. Both sides edited docs/todo.md while the laptop was offline: one version kept as docs/todo.md,`)
    say(`   the other as ${conflicts[0]} on both sides. Nothing is lost.`)
    step('conflict', { path: 'docs/todo.md', copy: conflicts[0] })

    // A sealed share through the drop box, from the laptop to Bob's phone.
    const bobIdentity = Identity.generate().identity
    const phone = new CloudBox({ role: 'client', folder: join(workspace, 'phone'), name: 'Bob\'s phone', sync: false }, { identity: bobIdentity })
    devices.push(phone)
    await mkdir(phone.init.folder, { recursive: true })
    await phone.start()
    await phone.pair(server.pairingUri(), pin)
    const apiUrl = hubApiUrl(hub.url, server.id)
    const laptopApi = new CloudServerClient({ url: apiUrl, server: server.id, identity: laptop.identity })
    const phoneApi = new CloudServerClient({ url: apiUrl, server: server.id, identity: bobIdentity })
    const contract = join(workspace, 'contract.pdf')
    await writeFile(contract, randomBytes(2 * MiB))
    started = performance.now()
    const share = await laptopApi.share(contract, [bobIdentity.publicId], { signer: laptop.identity })
    const received = await phoneApi.receive(share.id, join(workspace, 'contract-received.pdf'), bobIdentity)
    const intact = sameFile(contract, join(workspace, 'contract-received.pdf'))
    say(`\n8. The laptop sealed contract.pdf for Bob (age format) and left it in the server's drop box through the hub's API route;`)
    say(`   Bob's phone downloaded it, verified the laptop's signature (${received.signedBy === laptop.id ? 'yes' : 'NO'}) and opened it: intact ${intact ? 'yes' : 'NO'} (${((performance.now() - started) / 1000).toFixed(2)} s).`)
    say('   The server stored only ciphertext it cannot open.')
    step('share', { id: share.id, sealedBytes: share.size, signedBy: received.signedBy ?? null, intact })

    // A signed document, checked by the server.
    const signature = await laptop.sign(createReadStream(join(laptopFolder, 'docs/readme.txt')), { fileName: 'readme.txt', scope: 'viewed' })
    const verified = await server.verify(createReadStream(join(serverFolder, 'docs/readme.txt')), signature, laptop.id)
    say(`\n9. The laptop signed docs/readme.txt (scope: viewed); the server verified it against its own copy: signer ${verified.signerId === laptop.id ? 'matches' : 'DOES NOT MATCH'}.`)
    step('document', { signer: verified.signerId, scope: 'viewed' })
    if (!intact || received.signedBy !== laptop.id || verified.signerId !== laptop.id) process.exitCode = 1
    return { hub, server, api, devices, close }
  } catch (error) {
    await close().catch(() => {})
    throw error
  }
}
