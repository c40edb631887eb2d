#!/usr/bin/env node
/**
 * Encrypted REST API figures: upload and download of one 256 MiB file through the API
 * (8 MiB sealed calls, over HTTP on 127.0.0.1), server and client in one process as an
 * embedding app would run them. Median of 3 runs with min–max. Through the hub: not yet
 * (the API's exposure through the hub is still to come, issue 5).
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient } from '../dist/index.js'

const SIZE = 256 * 1024 * 1024
const RUNS = 3
const root = await mkdtemp(join(tmpdir(), 'cloudserver-bench-'))
try {
  await mkdir(join(root, 'cloud'))
  await mkdir(join(root, 'device'))
  const box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357', watch: false, sync: false }, { identity: Identity.generate().identity })
  await box.start()
  const api = new CloudServer({ host: '127.0.0.1', port: 0 }, { box })
  await api.start()
  const identity = Identity.generate().identity
  const device = new CloudBox({ role: 'client', folder: join(root, 'device'), sync: false }, { identity })
  await device.start()
  await device.pair(box.pairingUri(), '2468-1357')
  const client = new CloudServerClient({ url: api.url, server: box.id, identity })
  const source = join(root, 'source.bin')
  const chunk = randomBytes(16 * 1024 * 1024)
  await writeFile(source, Buffer.concat(Array.from({ length: SIZE / chunk.length }, () => chunk)))

  const up = []
  const down = []
  let peak = 0
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50)
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
  clearInterval(sampler)
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
  const range = (values) => `${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)}`
  console.log('| figure (256 MiB file, 8 MiB sealed calls, 127.0.0.1) | value |')
  console.log('|---|---|')
  console.log(`| API upload, direct | ${median(up).toFixed(0)} MB/s (${range(up)}) |`)
  console.log(`| API download, direct | ${median(down).toFixed(0)} MB/s (${range(down)}) |`)
  console.log(`| peak RSS, server and client in one process | ${(peak / 1024 / 1024).toFixed(0)} MiB |`)
  console.log('| through the hub | not measured yet: the hub exposure of the API is still to come |')
  await api.stop()
  await device.destroy()
  await box.destroy()
} finally {
  await rm(root, { recursive: true, force: true })
}
