#!/usr/bin/env node
/**
 * Router hubs in cluster mode on a real Redis (Debian's redis-server on 127.0.0.1):
 * - relay throughput: a 128 MiB download through the encrypted API, the server on hub A
 *   and the client on hub A (one hub) or on hub B (across two);
 * - route set-up latency: small API calls (each opens a route), one hub vs across two;
 * - route lookup cost as the cluster grows to 100,000 registered nodes (simulated: entries
 *   written to the cluster's node table), as the latency of a call across two hubs.
 * Median of several runs with min–max. Skips with a line when redis-server is missing.
 */
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity, encodePublicId } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient, hubApiUrl } from '@cloudbox/cloudserver'
import { RouterHub } from '@cloudbox/router-hub'

if (spawnSync('sh', ['-c', 'command -v redis-server && command -v redis-cli'], { stdio: 'ignore' }).status !== 0) {
  console.log('skipped: redis-server/redis-cli not installed (apt-get install redis-server)')
  process.exit(0)
}

const SIZE = 128 * 1024 * 1024
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const range = (values, digits = 0) => `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`
const port = await new Promise((resolve) => {
  const server = createServer().listen(0, '127.0.0.1', () => {
    const { port } = server.address()
    server.close(() => resolve(port))
  })
})
const redis = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] })
await new Promise((resolve) => redis.stdout.on('data', (data) => String(data).includes('Ready to accept') && resolve()))
const redisUrl = `redis://127.0.0.1:${port}`
const root = await mkdtemp(join(tmpdir(), 'hub-cluster-bench-'))
const stops = []
try {
  const hubA = new RouterHub({ host: '127.0.0.1', port: 0, cluster: { redis: redisUrl } })
  const hubB = new RouterHub({ host: '127.0.0.1', port: 0, cluster: { redis: redisUrl } })
  await hubA.start()
  await hubB.start()
  stops.push(() => hubB.stop(), () => hubA.stop())
  await mkdir(join(root, 'cloud'))
  await mkdir(join(root, 'device'))
  const box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), hub: hubA.url, clusterHubs: [hubB.url], masterPin: '2468-1357', watch: false, sync: false }, { identity: Identity.generate().identity })
  const registered = new Promise((resolve) => box.status.on((event) => event.type === 'hub' && event.state === 'registered' && resolve()))
  await box.start()
  await registered
  const api = new CloudServer({ host: '127.0.0.1', port: 0, thumbnails: false }, { box })
  await api.start()
  const identity = Identity.generate().identity
  const device = new CloudBox({ role: 'client', folder: join(root, 'device'), sync: false }, { identity })
  await device.start()
  await device.pair(box.pairingUri(), '2468-1357', { hub: hubA.url })
  stops.unshift(() => api.stop(), () => device.destroy(), () => box.destroy())
  const clients = {
    'one hub': new CloudServerClient({ url: hubApiUrl(hubA.url, box.id), server: box.id, identity }),
    'across two hubs': new CloudServerClient({ url: hubApiUrl(hubB.url, box.id), server: box.id, identity }),
  }
  const chunk = randomBytes(16 * 1024 * 1024)
  await writeFile(join(root, 'cloud', 'big.bin'), Buffer.concat(Array.from({ length: SIZE / chunk.length }, () => chunk)))

  const latency = async (client, calls) => {
    const times = []
    for (let i = 0; i < calls; i++) {
      const started = performance.now()
      await client.stat('big.bin')
      times.push(performance.now() - started)
    }
    return times
  }
  const rows = []
  for (const [path, client] of Object.entries(clients)) {
    await client.download('big.bin', join(root, 'warm.bin'))
    const rates = []
    for (let run = 0; run < 3; run++) {
      await rm(join(root, 'copy.bin'), { force: true })
      const started = performance.now()
      await client.download('big.bin', join(root, 'copy.bin'))
      rates.push(SIZE / 1e6 / ((performance.now() - started) / 1000))
    }
    await latency(client, 20)
    const times = await latency(client, 200)
    rows.push(`| ${path} | ${median(rates).toFixed(0)} (${range(rates)}) | ${median(times).toFixed(2)} (${range(times, 2)}) |`)
  }
  console.log('Relay through the hubs (encrypted API, 128 MiB download in 8 MiB calls; latency of one small call, each a new route):\n')
  console.log('| path | download MB/s | call latency ms |')
  console.log('|---|---|---|')
  for (const row of rows) console.log(row)

  // Simulated registrations: node IDs held by hub A, written to the cluster's node table.
  console.log('\nRoute lookup as the cluster grows (latency of one small call across two hubs, 200 calls):\n')
  console.log('| registered nodes | call latency ms | lookups (HGET + EXISTS) per s, one connection |')
  console.log('|---|---|---|')
  let filled = 1
  for (const target of [1, 1_000, 10_000, 100_000]) {
    if (target > filled) {
      const lines = []
      for (let i = filled; i < target; i++) lines.push(`HSET cloudbox:hub:nodes ${encodePublicId(randomBytes(32))} ${hubA.clusterId}`)
      const fill = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '--pipe'], { input: `${lines.join('\r\n')}\r\n`, encoding: 'utf8' })
      if (fill.status !== 0) throw new Error(`redis-cli --pipe failed: ${fill.stderr}`)
      filled = target
    }
    await latency(clients['across two hubs'], 20)
    const times = await latency(clients['across two hubs'], 200)
    const probe = spawnSync('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-c', '1', '-n', '20000', '-q', 'HGET', 'cloudbox:hub:nodes', box.id], { encoding: 'utf8' })
    const perSecond = /([\d.]+) requests per second/.exec(probe.stdout ?? '')?.[1]
    rows.length = 0
    console.log(`| ${target.toLocaleString('en')} | ${median(times).toFixed(2)} (${range(times, 2)}) | ${perSecond === undefined ? 'n/a' : `${Math.round(Number(perSecond) / 2).toLocaleString('en')}`} |`)
  }
} finally {
  for (const stop of stops) await stop().catch(() => {})
  redis.kill('SIGTERM')
  await rm(root, { recursive: true, force: true })
}
