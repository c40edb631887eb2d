#!/usr/bin/env node
/**
 * Hub relay figures. The hub runs alone in a child process (one core); this process
 * plays a registered node and a client on the other core and pushes 64 KiB frames
 * (the size of a Noise message) through a route, one way, as fast as backpressure
 * allows. Reported: MB/s end to end, MB relayed per second of hub CPU (the one-core
 * figure), and the hub's memory per idle connection.
 *
 * `node relay.bench.mjs --hub` is the child.
 */
import { fork } from 'node:child_process'
import WebSocket from 'ws'
import { Identity } from '@cloudbox/encrypted-messaging'
import { hubCodec, signRegistration } from '@cloudbox/encrypted-messaging/hub'

function open(url) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 20 })
    const early = []
    socket.on('message', (data) => early.push(data))
    socket.once('open', () => resolve({ socket, early }))
    socket.once('error', reject)
  })
}

const next = (early, socket) =>
  early.length > 0 ? Promise.resolve(early.shift()) : new Promise((resolve) => socket.once('message', (data) => (early.splice(0), resolve(data))))

const RUNS = 7

async function main() {
  const child = fork(new URL(import.meta.url).pathname, ['--hub'], { execArgv: ['--expose-gc', ...(process.env.HUB_FLAGS ? process.env.HUB_FLAGS.split(' ') : []), ...(process.env.HUB_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/hubprof'] : [])] })
  const ask = (message) => new Promise((resolve) => child.once('message', resolve) && child.send(message))
  const { url } = await new Promise((resolve) => child.once('message', resolve))
  const identity = Identity.generate().identity

  // Register the node.
  const node = await open(`${url}/v1/node`)
  const challenge = hubCodec.decode(await next(node.early, node.socket))
  node.socket.send(hubCodec.encode('register', signRegistration(identity, challenge.body.nonce, url)))
  await next(node.early, node.socket)
  const incoming = []
  node.socket.on('message', (data) => incoming.push(hubCodec.decode(data).body))
  const route = async () => {
    const client = await open(`${url}/v1/route/${identity.publicId}`)
    while (incoming.length === 0) await new Promise((resolve) => setTimeout(resolve, 1))
    const { route: id, token } = incoming.shift()
    const accept = await open(`${url}/v1/accept/${id}?token=${Buffer.from(token).toString('hex')}`)
    return { client: client.socket, accept: accept.socket }
  }

  // Throughput: client → hub → node side, 64 KiB frames, bounded by the sender's buffer.
  const frame = Buffer.alloc(65_535, 7)
  const runs = []
  // Run 0 warms the JIT up and is not counted.
  for (let run = 0; run <= RUNS; run++) {
    const { client, accept } = await route()
    const total = 2 * 1024 * 1024 * 1024 / 4 // 512 MiB per run
    let received = 0
    const done = new Promise((resolve) => accept.on('message', (data) => (received += data.length) >= total - frame.length + 1 && resolve()))
    const before = await ask('cpu')
    const started = performance.now()
    let sent = 0
    while (sent < total) {
      client.send(frame)
      sent += frame.length
      if (client.bufferedAmount > 4 * 1024 * 1024) await new Promise((resolve) => setImmediate(resolve))
    }
    await done
    const seconds = (performance.now() - started) / 1000
    const after = await ask('cpu')
    const hubCpu = (after.cpuBeforeGc.user + after.cpuBeforeGc.system - before.cpu.user - before.cpu.system) / 1e6
    const system = (after.cpuBeforeGc.system - before.cpu.system) / 1e6
    if (run > 0) runs.push({ mbps: received / 1e6 / seconds, perCore: received / 1e6 / hubCpu, cpuShare: hubCpu / seconds, systemShare: system / hubCpu })
    client.close()
    accept.close()
  }
  const median = (key) => [...runs].sort((a, b) => a[key] - b[key])[Math.floor(runs.length / 2)][key]
  const range = (key) => `${Math.min(...runs.map((r) => r[key])).toFixed(0)}–${Math.max(...runs.map((r) => r[key])).toFixed(0)}`

  // Memory per idle route (two WebSockets on the hub each).
  const idle = 500
  const base = await ask('cpu')
  const routes = []
  for (let i = 0; i < idle; i++) routes.push(await route())
  await new Promise((resolve) => setTimeout(resolve, 500))
  const loaded = await ask('cpu')
  const perRouteRss = (loaded.memory.rss - base.memory.rss) / idle
  const perRouteHeap = (loaded.memory.heapUsed - base.memory.heapUsed) / idle
  for (const { client, accept } of routes) (client.terminate(), accept.terminate())
  node.socket.terminate()
  child.send('stop')

  console.log('| figure | value |')
  console.log('|---|---|')
  console.log(`| relay throughput, 64 KiB frames, end to end (median of ${RUNS} × 512 MiB, after a warm-up run) | ${median('mbps').toFixed(0)} MB/s (${range('mbps')}) |`)
  console.log(`| relay per hub CPU-second (one core) | ${median('perCore').toFixed(0)} MB/s (${range('perCore')}) — target ≥ 500 |`)
  console.log(`| hub CPU busy during relay | ${(median('cpuShare') * 100).toFixed(0)} % of one core, ${(median('systemShare') * 100).toFixed(0)} % of it in the kernel (socket copies) |`)
  console.log(`| hub memory per idle route (2 WebSockets), ${idle} routes | RSS ${(perRouteRss / 1024).toFixed(1)} KiB, JS heap ${(perRouteHeap / 1024).toFixed(1)} KiB |`)
  console.log(`| hub memory per idle WebSocket connection | RSS ${(perRouteRss / 2048).toFixed(1)} KiB |`)
}

if (process.argv.includes('--hub')) {
  const { RouterHub } = await import('../dist/index.js')
  const hub = new RouterHub({ maxConnectionsPerAddress: 1_000_000, maxRoutesPerNode: 1_000_000 })
  await hub.start()
  process.send({ url: hub.url })
  process.on('message', (message) => {
    if (message === 'cpu') {
      // CPU is read on both sides of the forced GC, so a run counts neither.
      const before = process.cpuUsage()
      globalThis.gc?.()
      process.send({ cpuBeforeGc: before, cpu: process.cpuUsage(), memory: process.memoryUsage(), relayed: hub.metrics.bytesRelayed })
    } else if (message === 'stop') void hub.stop().then(() => process.exit(0))
  })
} else {
  await main()
}

