/**
 * Hubs side by side on a real Redis: a server registered on hub A (a `cloudbox hub
 * --redis` process behind a small load balancer) and a device given hub B pair and sync;
 * killing hub A moves the server to hub B on reconnect, and sync goes on. Hub B runs in
 * this process with a frame hook, to check that no plaintext ever passes through it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CloudBox } from '@cloudbox/cloudbox'
import { hubApiUrl, CloudServer, CloudServerClient } from '@cloudbox/cloudserver'
import { Identity } from '@cloudbox/encrypted-messaging'
import { RouterHub } from '@cloudbox/router-hub'
import { startRedis, type RedisFixture } from '../../../test/support/redis-server.js'

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const PIN = '2468-1357'
const MARKER = 'plaintext-marker-7f3a9c'

let dir: string
let redis: RedisFixture
let hubA: ChildProcess
let hubAUrl: string
let hubB: RouterHub
let balancer: Server
const frames: Buffer[] = []
const boxes: CloudBox[] = []

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A TCP load balancer in front of the hubs: each connection goes to the first hub that answers. */
const balanced = new Set<Socket>()
function startBalancer(ports: () => number[]): Promise<Server> {
  const server = createServer((client: Socket) => {
    balanced.add(client)
    client.once('close', () => balanced.delete(client))
    client.pause()
    const tryNext = (index: number) => {
      const port = ports()[index]
      if (port === undefined) return client.destroy()
      const upstream = connect(port, '127.0.0.1')
      balanced.add(upstream)
      upstream.once('close', () => balanced.delete(upstream))
      upstream.once('connect', () => {
        upstream.on('error', () => client.destroy())
        client.on('error', () => upstream.destroy())
        client.pipe(upstream).pipe(client)
        client.resume()
      })
      upstream.once('error', () => tryNext(index + 1))
    }
    tryNext(0)
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)))
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cloudbox-cluster-'))
  redis = await startRedis()
  // The balancer first: both hubs must know it is what nodes dial (registrations are signed for it).
  const portOf = (url: string) => Number(new URL(url.replace(/^ws/, 'http')).port)
  balancer = await startBalancer(() => [portOf(hubAUrl), hubB.address.port])
  const lb = `ws://127.0.0.1:${(balancer.address() as { port: number }).port}`
  hubA = spawn(process.execPath, [cli, 'hub', '--port', '0', '--redis', redis.url, '--proxy-url', lb, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  hubAUrl = await new Promise<string>((resolve, reject) => {
    let text = ''
    hubA.stdout!.on('data', (data: Buffer) => {
      text += data.toString()
      const line = text.split('\n').find((each) => each.includes('"listening"'))
      if (line !== undefined) resolve(String((JSON.parse(line) as { url: string }).url))
    })
    hubA.once('exit', (code) => reject(new Error(`hub A exited (${code}): ${text}`)))
  })
  hubB = new RouterHub({ host: '127.0.0.1', port: 0, publicUrls: [lb], cluster: { redis: redis.url, presenceTtlMs: 3_000 } }, { frameHook: (frame) => (frames.push(Buffer.from(frame)), frame) })
  await hubB.start()
}, 60_000)

afterAll(async () => {
  for (const box of boxes.reverse()) await box.destroy().catch(() => {})
  for (const socket of balanced) socket.destroy()
  await new Promise((resolve) => balancer?.close(resolve))
  if (hubA !== undefined && hubA.exitCode === null && hubA.signalCode === null) {
    hubA.kill('SIGTERM')
    await new Promise((resolve) => hubA.once('exit', resolve))
  }
  await hubB?.stop()
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('router hubs in cluster mode', () => {
  it('a device on hub B pairs with and syncs to a server on hub A, and survives hub A being killed', { timeout: 120_000 }, async () => {
    const lb = `ws://127.0.0.1:${(balancer.address() as { port: number }).port}`
    mkdirSync(join(dir, 'server'))
    mkdirSync(join(dir, 'laptop'))
    // The cluster's members, where the hubs may ask the server to accept routes.
    const server = new CloudBox({ role: 'server', folder: join(dir, 'server'), name: 'Clustered', hub: lb, clusterHubs: [hubAUrl, hubB.url], masterPin: PIN }, { identity: Identity.generate().identity })
    boxes.push(server)
    const api = new CloudServer({ host: '127.0.0.1', port: 0 }, { box: server })
    await server.start()
    await api.start()
    // The balancer sends the server's registration to hub A: hub B does not hold it.
    await until(async () => ((await (await fetch(`${hubAUrl.replace(/^ws/, 'http')}/health`)).json()) as { nodes: number }).nodes === 1, 'the server to register at hub A')
    expect(hubB.hasNode(server.id)).toBe(false)

    const laptopIdentity = Identity.generate().identity
    const laptop = new CloudBox({ role: 'client', folder: join(dir, 'laptop'), name: 'Laptop', keepAliveMs: 2_000 }, { identity: laptopIdentity })
    boxes.push(laptop)
    await laptop.start()
    const paired = await laptop.pair(server.pairingUri(), PIN, { hub: hubB.url })
    expect(paired.role).toBe('owner')
    const secret = Buffer.concat([Buffer.from(`${MARKER}\n`), randomBytes(256 * 1024)])
    writeFileSync(join(dir, 'laptop', 'secret.bin'), secret)
    writeFileSync(join(dir, 'server', 'from-server.txt'), `${MARKER} from the server\n`)
    await until(() => existsSync(join(dir, 'server', 'secret.bin')) && readFileSync(join(dir, 'server', 'secret.bin')).equals(secret), 'the laptop\'s file to reach the server')
    await until(() => existsSync(join(dir, 'laptop', 'from-server.txt')), 'the server\'s file to reach the laptop')
    expect(hubB.metrics.routesForwarded).toBeGreaterThan(0)
    // The REST API through hub B reaches the server on hub A too.
    const client = new CloudServerClient({ url: hubApiUrl(hubB.url, server.id), server: server.id, identity: laptopIdentity })
    expect((await client.list('')).map((entry) => entry.name)).toContain('secret.bin')

    // Hub B relayed the route's frames, and none of them carried plaintext.
    expect(frames.length).toBeGreaterThan(0)
    const relayed = Buffer.concat(frames)
    expect(relayed.includes(Buffer.from(MARKER))).toBe(false)
    expect(relayed.includes(secret.subarray(64, 128))).toBe(false)

    // Hub A dies without a word: the server's reconnection lands on hub B through the balancer.
    hubA.kill('SIGKILL')
    await new Promise((resolve) => hubA.once('exit', resolve))
    await until(() => hubB.hasNode(server.id), 'the server to register at hub B', 60_000)
    writeFileSync(join(dir, 'laptop', 'after-failover.txt'), 'written after hub A died\n')
    await until(() => existsSync(join(dir, 'server', 'after-failover.txt')), 'sync to go on through hub B', 60_000)
    // A new device reaches the server through the balancer, now served by hub B alone.
    mkdirSync(join(dir, 'phone'))
    const phone = new CloudBox({ role: 'client', folder: join(dir, 'phone'), name: 'Phone' }, { identity: Identity.generate().identity })
    boxes.push(phone)
    await phone.start()
    await phone.pair(server.pairingUri(), PIN)
    await until(() => existsSync(join(dir, 'phone', 'after-failover.txt')), 'the phone to sync through hub B', 60_000)
    await api.stop()
  })

  it('answers a route to a node no hub holds at once, and refuses a bad --redis', { timeout: 60_000 }, async () => {
    const nobody = Identity.generate().identity.publicId
    const started = Date.now()
    const response = await fetch(`${hubApiUrl(hubB.url, nobody)}/v1/api`, { method: 'POST', body: new Uint8Array(8) })
    expect(response.status).toBe(404)
    expect(((await response.json()) as { code: string }).code).toBe('ERR_NODE_OFFLINE')
    expect(Date.now() - started).toBeLessThan(5_000)
    const bad = spawn(process.execPath, [cli, 'hub', '--port', '0', '--redis', 'http://nope'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    bad.stderr!.on('data', (data: Buffer) => (stderr += data.toString()))
    expect(await new Promise((resolve) => bad.once('exit', resolve))).toBe(2)
    expect(stderr).toContain('--redis takes a redis://')
    // Nothing listens on port 1: the hub says so and exits instead of retrying forever.
    const unreachable = spawn(process.execPath, [cli, 'hub', '--port', '0', '--redis', 'redis://127.0.0.1:1'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let said = ''
    unreachable.stderr!.on('data', (data: Buffer) => (said += data.toString()))
    expect(await new Promise((resolve) => unreachable.once('exit', resolve))).toBe(1)
    expect(said).toContain('ERR_REDIS_UNAVAILABLE')
  })
})
