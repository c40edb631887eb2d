#!/usr/bin/env node
/**
 * Encrypted REST API figures (cloudserver): upload and download of one 256 MiB file
 * through the API in 4 MiB sealed calls (the client's default), directly over HTTP on the server's listener
 * (127.0.0.1) and through a router hub (the server registered at the hub, no open port);
 * then directly again with the S3 back end on an s3rver (an S3-compatible test server, on
 * disk). The client runs here; the server, the hub and the s3rver each in a process of
 * their own (api-bench-node.mjs), as they would be deployed, so each peak RSS is one
 * process's. Median of 5 runs with min–max (the spread here is wide). BENCH_CPU_PROF=<dir>
 * writes a CPU profile of every process there. Every process runs with the V8 setting the
 * cloudbox program makes for itself (--no-incremental-marking, apps/demo/src/gc-tuning.ts).
 * Here rather than in packages/cloudserver because only the program may use both the API
 * and the hub.
 */
import { fork } from 'node:child_process'
import { setFlagsFromString } from 'node:v8'
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudServerClient, hubApiUrl } from '@cloudbox/cloudserver'

// As the program runs (see above); the forked processes get it as a flag.
const TUNING = ['--no-incremental-marking']
setFlagsFromString(TUNING.join(' '))

const SIZE = 256 * 1024 * 1024
const RUNS = 5
const PIN = '2468-1357'
const node = new URL('./api-bench-node.mjs', import.meta.url).pathname

/** A forked process of the benchmark and its messages, in order. */
function spawnNode(...args) {
  const profile = process.env.BENCH_CPU_PROF === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF]
  const child = fork(node, args, { execArgv: [...TUNING, ...profile], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const queue = []
  const waiting = []
  child.on('message', (message) => (waiting.length > 0 ? waiting.shift().resolve(message) : queue.push(message)))
  child.on('exit', (code) => {
    for (const waiter of waiting.splice(0)) waiter.reject(new Error(`the ${args[0]} process exited with ${code}`))
  })
  const next = () => (queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise((resolve, reject) => waiting.push({ resolve, reject })))
  return {
    next,
    send: (message) => child.send(message),
    /** Stops it; resolves with its peak RSS in bytes. */
    async stop() {
      child.send({ type: 'stop' })
      const { peak } = await next()
      await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve()))
      return peak
    },
  }
}

const root = await mkdtemp(join(tmpdir(), 'cloudserver-bench-'))
// An interrupted run must not leave its 256 MiB behind (the finally below does not run then).
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => {
  rmSync(root, { recursive: true, force: true })
  process.exit(130)
})
const processes = []
try {
  await mkdir(join(root, 'cloud'))
  await mkdir(join(root, 'device'))
  await mkdir(join(root, 's3'))
  const hub = spawnNode('hub')
  processes.push(hub)
  const { url: hubUrl } = await hub.next()
  const server = spawnNode('server', join(root, 'cloud'), hubUrl, PIN)
  processes.push(server)
  const served = await server.next()
  const identity = Identity.generate().identity
  const device = new CloudBox({ role: 'client', folder: join(root, 'device'), sync: false }, { identity })
  await device.start()
  await device.pair(served.pairingUri, PIN)
  await device.stop()

  // Written in small pieces: the client's peak RSS is the API's, not the test file's.
  const source = join(root, 'source.bin')
  const out = await open(source, 'w')
  for (let at = 0; at < SIZE; at += 1024 * 1024) await out.write(randomBytes(1024 * 1024))
  await out.close()

  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
  const range = (values) => `${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)}`
  const rows = []
  const measure = async (path, client) => {
    const up = []
    const down = []
    for (let run = 0; run < RUNS; run++) {
      let started = performance.now()
      await client.upload(source, `run-${run}.bin`, { overwrite: true })
      up.push(SIZE / 1e6 / ((performance.now() - started) / 1000))
      started = performance.now()
      await client.download(`run-${run}.bin`, join(root, `back-${run}.bin`))
      down.push(SIZE / 1e6 / ((performance.now() - started) / 1000))
      await rm(join(root, `back-${run}.bin`))
      await client.remove(`run-${run}.bin`)
    }
    rows.push(`| API upload, ${path} | ${median(up).toFixed(0)} MB/s (${range(up)}) |`, `| API download, ${path} | ${median(down).toFixed(0)} MB/s (${range(down)}) |`)
  }
  await measure('direct', new CloudServerClient({ url: served.direct, server: served.id, identity }))
  await measure('through the hub', new CloudServerClient({ url: hubApiUrl(hubUrl, served.id), server: served.id, identity }))

  server.send({ type: 'peak' })
  const localPeak = (await server.next()).peak
  // The same, directly, with the files in an object store instead of the local folder.
  const s3 = spawnNode('s3', join(root, 's3'))
  processes.push(s3)
  const { endpoint } = await s3.next()
  server.send({ type: 's3', endpoint })
  await server.next()
  await measure('direct, S3 back end (s3rver)', new CloudServerClient({ url: served.direct, server: served.id, identity }))

  const peaks = { server: await server.stop(), hub: await hub.stop(), s3rver: await s3.stop() }
  processes.length = 0
  const mib = (bytes) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`
  console.log('| figure (256 MiB file, 4 MiB sealed calls, 127.0.0.1) | value |')
  console.log('|---|---|')
  for (const row of rows) console.log(row)
  console.log(`| peak RSS, client process | ${mib(process.resourceUsage().maxRSS * 1024)} |`)
  console.log(`| peak RSS, server process, local folder | ${mib(localPeak)} |`)
  console.log(`| peak RSS, server process, with the S3 back end too | ${mib(peaks.server)} |`)
  console.log(`| peak RSS, hub process | ${mib(peaks.hub)} |`)
  console.log(`| peak RSS, s3rver process (the test store) | ${mib(peaks.s3rver)} |`)
  await device.destroy()
} finally {
  for (const each of processes) await each.stop().catch(() => {})
  await rm(root, { recursive: true, force: true })
}
