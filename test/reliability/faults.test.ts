/**
 * Faults injected into real CloudBox nodes while they sync: kill -9 of either side at
 * random moments, a hub killed and restarted, connections cut in the middle of a chunk, and
 * a receiver whose disk fills up. After each: no file lost or damaged, and sync completes.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { Identity } from '@cloudbox/encrypted-messaging'
import { noise, scratch, waitFor } from '../integration/helpers.js'
import { recordOutcome } from './support/outcomes.js'
import { folderDigest, kill9, lostFiles, seededRandom, sha256, startNode, stopNode, tempRoot, type NodeProcess } from './support/nodes.js'

const PIN = '2468-1357'
const cli = fileURLToPath(new URL('../../apps/demo/dist/cli.js', import.meta.url))
let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

const area = () => tempRoot('cloudbox-faults-', cleanups)

/** Resolves once both folders hold the same files, and returns them. */
async function converged(a: string, b: string, timeoutMs: number): Promise<Map<string, string>> {
  let last = new Map<string, string>()
  await waitFor(() => {
    const left = folderDigest(a)
    const right = folderDigest(b)
    last = left
    return left.size === right.size && lostFiles(left, right).length === 0
  }, 'both folders to converge', timeoutMs)
  return last
}

describe('faults during sync', () => {
  it('kill -9 of the server or the client at random moments, then restart: nothing lost, sync completes', { timeout: 120_000 }, async () => {
    const seed = Number(process.env.CLOUDBOX_FAULT_SEED ?? Date.now() % 100_000)
    const random = seededRandom(seed)
    const root = area()
    const folders = { server: join(root, 'server'), client: join(root, 'client') }
    mkdirSync(folders.server)
    mkdirSync(folders.client)
    const written = new Map<string, Buffer>()
    const write = (side: 'server' | 'client', name: string, size: number) => {
      const bytes = noise(size, Math.floor(random() * 2 ** 31))
      writeFileSync(join(folders[side], name), bytes)
      written.set(name, bytes)
    }
    for (let i = 0; i < 12; i++) write('client', `c${i}.bin`, 64 * 1024 + Math.floor(random() * 512 * 1024))
    write('client', 'large-1.bin', 12 * 1024 * 1024)
    for (let i = 0; i < 4; i++) write('server', `s${i}.bin`, 256 * 1024)

    const phrases = { server: Identity.generate().recoveryPhrase, client: Identity.generate().recoveryPhrase }
    let server: NodeProcess = startNode(['server', folders.server, phrases.server, '0', PIN])
    const { uri, port } = (await server.line('uri')) as { uri: string; port: number }
    let client: NodeProcess = startNode(['client', folders.client, phrases.client, uri, PIN])
    cleanups.push(() => stopNode(client), () => stopNode(server))
    await client.line('ready')

    const kills = 6
    for (let round = 0; round < kills; round++) {
      // A new file each round, so there is always a transfer to interrupt.
      write(round % 2 === 0 ? 'client' : 'server', `round-${round}.bin`, (2 + Math.floor(random() * 6)) * 1024 * 1024)
      await new Promise((resolve) => setTimeout(resolve, 100 + random() * 1_400))
      if (random() < 0.5) {
        await kill9(server)
        server = startNode(['server', folders.server, phrases.server, String(port), PIN])
        await server.line('uri')
      } else {
        await kill9(client)
        client = startNode(['client', folders.client, phrases.client])
        await client.line('ready')
      }
    }
    const final = await converged(folders.server, folders.client, 60_000)
    const expected = new Map([...written].map(([name, bytes]) => [name, sha256(bytes)]))
    const lost = lostFiles(expected, final)
    // Nothing but the files written: no half-written or temporary file left in view.
    const unexpected = [...final.keys()].filter((name) => !written.has(name))
    recordOutcome({ group: 'faults', what: 'kill -9 of server or client mid-sync, then restart', injected: kills, survived: lost.length === 0 ? kills : 0, dataLost: lost.length, note: `seed ${seed}` })
    expect(lost, `seed ${seed}`).toEqual([])
    expect(unexpected, `seed ${seed}`).toEqual([])
  })

  it('a hub killed with SIGKILL and restarted on its address: both nodes reconnect and the transfer completes', { timeout: 90_000 }, async () => {
    const hubAt = async (port: number) => {
      const hub = spawn(process.execPath, [cli, 'hub', '--host', '127.0.0.1', '--port', String(port)], { stdio: ['ignore', 'pipe', 'ignore'] })
      let output = ''
      hub.stdout?.on('data', (data: Buffer) => (output += data.toString()))
      await waitFor(() => /ws:\/\/127\.0\.0\.1:\d+/.test(output), 'the hub to listen')
      return { hub, port: Number(/ws:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1]) }
    }
    let { hub, port } = await hubAt(0)
    cleanups.push(() => void hub.kill('SIGKILL'))
    const boxes = await scratch()
    cleanups.push(() => boxes.cleanup())
    const server = boxes.box({ role: 'server', hub: `ws://127.0.0.1:${port}`, masterPin: PIN })
    await server.start()
    const client = boxes.box({ role: 'client' })
    await client.start()
    await waitFor(async () => client.pair(server.pairingUri(), PIN).then(() => true, () => false), 'pairing through the hub')
    const content = noise(24 * 1024 * 1024, 5)
    let received = 0
    server.status.on((event) => {
      if (event.type === 'sync' && event.event.type === 'progress') received = event.event.doneBytes
    })
    writeFileSync(join(client.init.folder, 'through-the-hub.bin'), content)
    await waitFor(() => received > 0, 'the transfer to start')
    hub.kill('SIGKILL')
    await new Promise((resolve) => hub.once('exit', resolve))
    const reconnected = new Promise<void>((resolve) => client.status.on((event) => event.type === 'connection' && event.state === 'connected' && resolve()))
    ;({ hub } = await hubAt(port))
    await reconnected
    const target = join(server.init.folder, 'through-the-hub.bin')
    await waitFor(() => existsSync(target) && folderDigest(server.init.folder).get('through-the-hub.bin') === sha256(content), 'the file to arrive intact', 60_000)
    recordOutcome({ group: 'faults', what: 'hub killed (SIGKILL) mid-transfer and restarted', injected: 1, survived: 1, dataLost: 0 })
  })

  it('connections cut in the middle of a chunk, again and again: the transfer resumes and arrives intact', { timeout: 90_000 }, async () => {
    const boxes = await scratch()
    cleanups.push(() => boxes.cleanup())
    const server = boxes.box({ role: 'server', listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN })
    await server.start()
    const serverPort = Number(new URL(server.directUrl as string).port)
    // A relay that cuts the connection after a random number of bytes, five times.
    const random = seededRandom(7)
    let cuts = 0
    let cutAfter = Number.POSITIVE_INFINITY
    const sockets = new Set<Socket>()
    const relay: Server = createServer((inbound) => {
      const outbound = connect(serverPort, '127.0.0.1')
      sockets.add(inbound).add(outbound)
      let carried = 0
      const forward = (to: Socket) => (data: Buffer) => {
        carried += data.length
        if (carried > cutAfter && cuts < 5) {
          cuts += 1
          cutAfter = 200_000 + random() * 3_000_000
          inbound.destroy()
          outbound.destroy()
          return
        }
        to.write(data)
      }
      inbound.on('data', forward(outbound))
      outbound.on('data', forward(inbound))
      for (const socket of [inbound, outbound]) socket.on('error', () => {}).on('close', () => (inbound.destroy(), outbound.destroy()))
    })
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => {
      for (const socket of sockets) socket.destroy()
      return new Promise((resolve) => relay.close(() => resolve()))
    })
    const params = new URLSearchParams(server.pairingUri().slice('cloudbox://pair?'.length))
    params.set('addr', `ws://127.0.0.1:${(relay.address() as { port: number }).port}`)
    const client = boxes.box({ role: 'client' })
    await client.start()
    await client.pair(`cloudbox://pair?${params}`, PIN)
    await client.waitConnected()
    const content = noise(32 * 1024 * 1024, 11)
    cutAfter = 200_000 + random() * 3_000_000
    writeFileSync(join(client.init.folder, 'cut.bin'), content)
    await waitFor(() => folderDigest(server.init.folder).get('cut.bin') === sha256(content), 'cut.bin to arrive intact', 75_000)
    expect(cuts).toBe(5)
    recordOutcome({ group: 'faults', what: 'connection cut mid-chunk (5 times in one transfer)', injected: cuts, survived: cuts, dataLost: 0 })
  })

  // Mounting a tmpfs needs root (CI runs as root); elsewhere this test says why it skipped.
  const canMount = (() => {
    if (process.getuid?.() !== 0) return false
    const probe = mkdtempSync(join(tmpdir(), 'cloudbox-mount-probe-'))
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe]).status === 0
    if (mounted) spawnSync('umount', [probe])
    rmSync(probe, { recursive: true, force: true })
    return mounted
  })()

  it.runIf(canMount)('a full disk on the receiving server: a typed error, nothing damaged, and the rest arrives once space returns', { timeout: 90_000 }, async () => {
    const root = area()
    const disk = join(root, 'disk')
    mkdirSync(disk)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=10m', 'tmpfs', disk])
    cleanups.push(() => void spawnSync('umount', ['-l', disk]))
    const boxes = await scratch()
    cleanups.push(() => boxes.cleanup())
    const server = boxes.box({ role: 'server', folder: join(disk, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN })
    await server.start()
    writeFileSync(join(server.init.folder, 'already-there.txt'), 'kept')
    const errors: string[] = []
    server.status.on((event) => {
      if (event.type === 'sync' && event.event.type === 'error') errors.push(event.event.error.code)
    })
    const client = boxes.box({ role: 'client' })
    await client.start()
    await client.pair(server.pairingUri(), PIN)
    const files = { 'a-small.bin': noise(1024 * 1024, 1), 'b-medium.bin': noise(3 * 1024 * 1024, 2), 'c-large.bin': noise(9 * 1024 * 1024, 3) }
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(client.init.folder, name), bytes)
    await waitFor(() => errors.includes('ERR_DISK_FULL'), 'ERR_DISK_FULL on the server', 30_000)
    // Whatever is in view is whole: a file is there complete or not at all.
    const during = folderDigest(server.init.folder)
    for (const [name, digest] of during) {
      if (name === 'already-there.txt') continue
      expect(digest, name).toBe(sha256(files[name as keyof typeof files]))
    }
    expect(during.get('already-there.txt')).toBe(sha256(Buffer.from('kept')))
    execFileSync('mount', ['-o', 'remount,size=64m', disk])
    // The next change starts a new pass, which retries what did not fit.
    writeFileSync(join(client.init.folder, 'd-after.txt'), 'space is back')
    await waitFor(() => Object.entries(files).every(([name, bytes]) => folderDigest(server.init.folder).get(name) === sha256(bytes)), 'every file once space returns', 60_000)
    recordOutcome({ group: 'faults', what: 'disk full on the receiver (10 MiB tmpfs), then space returns', injected: 1, survived: 1, dataLost: 0 })
  })
})
