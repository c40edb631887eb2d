#!/usr/bin/env node
/**
 * Encrypted REST API figures (cloudserver): upload and download of one 256 MiB file
 * through the API in 8 MiB sealed calls, directly over HTTP on 127.0.0.1 and through a
 * router hub (the server registered at the hub, no open port). Server, client and hub in
 * one process as the demo runs them; then directly again with the S3 back end on an
 * s3rver (an S3-compatible test server, on disk) on 127.0.0.1. Median of 3 runs with min–max. Here rather than in
 * packages/cloudserver because only the program may use both the API and the hub.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient, hubApiUrl, S3Storage } from '@cloudbox/cloudserver'
import S3rver from 's3rver'
import { RouterHub } from '@cloudbox/router-hub'

const SIZE = 256 * 1024 * 1024
const RUNS = 3
const root = await mkdtemp(join(tmpdir(), 'cloudserver-bench-'))
try {
  await mkdir(join(root, 'cloud'))
  await mkdir(join(root, 'device'))
  const hub = new RouterHub({ host: '127.0.0.1', port: 0 })
  await hub.start()
  const box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, hub: hub.url, masterPin: '2468-1357', watch: false, sync: false }, { identity: Identity.generate().identity })
  const registered = new Promise((resolve) => box.status.on((event) => event.type === 'hub' && event.state === 'registered' && resolve()))
  await box.start()
  await registered
  const api = new CloudServer({ host: '127.0.0.1', port: 0 }, { box })
  await api.start()
  const identity = Identity.generate().identity
  const device = new CloudBox({ role: 'client', folder: join(root, 'device'), sync: false }, { identity })
  await device.start()
  await device.pair(box.pairingUri(), '2468-1357')
  const clients = {
    direct: new CloudServerClient({ url: api.url, server: box.id, identity }),
    'through the hub': new CloudServerClient({ url: hubApiUrl(hub.url, box.id), server: box.id, identity }),
  }
  const source = join(root, 'source.bin')
  const chunk = randomBytes(16 * 1024 * 1024)
  await writeFile(source, Buffer.concat(Array.from({ length: SIZE / chunk.length }, () => chunk)))

  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
  const range = (values) => `${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)}`
  let peak = 0
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50)
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
  for (const [path, client] of Object.entries(clients)) await measure(path, client)

  // The same, directly, with the files in an object store instead of the local folder.
  await api.stop()
  await mkdir(join(root, 's3'))
  const s3rver = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(root, 's3'), configureBuckets: [{ name: 'bench' }] })
  const { port } = await s3rver.run()
  const storage = new S3Storage({
    bucket: 'bench',
    s3: { endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } },
    identity: box.identity,
  })
  const s3Api = new CloudServer({ host: '127.0.0.1', port: 0 }, { box, storage })
  await s3Api.start()
  await measure('direct, S3 back end (s3rver)', new CloudServerClient({ url: s3Api.url, server: box.id, identity }))
  await s3Api.stop()
  await storage.close()
  await s3rver.close()
  clearInterval(sampler)
  console.log('| figure (256 MiB file, 8 MiB sealed calls, 127.0.0.1) | value |')
  console.log('|---|---|')
  for (const row of rows) console.log(row)
  console.log(`| peak RSS, server, client and hub in one process | ${(peak / 1024 / 1024).toFixed(0)} MiB |`)
  await device.destroy()
  await box.destroy()
  await hub.stop()
} finally {
  await rm(root, { recursive: true, force: true })
}
