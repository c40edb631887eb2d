#!/usr/bin/env node
/**
 * Two engines over TCP on 127.0.0.1, each in its own process, on generated data:
 * 2,000 files of 1–256 KiB in nested folders; one 512 MiB file; that file edited
 * (1 MiB changed in the middle, 100 bytes inserted near the start); then a 4 GiB file.
 * Prints times, MB/s, bytes on the wire, the receiver's peak RSS, and the edit's delta
 * next to what `rsync --no-whole-file --stats` moves for the same edit.
 *
 * BENCH_SYNC_BIG_GIB=0 skips the 4 GiB file; BENCH_DIR picks where data goes
 * (default /dev/shm, so the disk's write-back does not dominate).
 */
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { channelFromStream } from '@cloudbox/encrypted-messaging'
import { SyncEngine } from '../dist/index.js'
// The same generated data as the side-by-side benchmark.
import { MIB, writeBigFile, writeEditedCopy, writeSmallFiles } from '../../../bench/support/data.mjs'

const self = fileURLToPath(import.meta.url)

/** Resolves when the peer acknowledges the engine's current root (call after scan()). */
async function waitInSync(engine, timeoutMs = 600_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('sync timed out')), timeoutMs)
    const off = engine.status.on((event) => {
      if (event.type === 'peer' && event.state === 'in-sync' && Buffer.compare(event.root, engine.root) === 0) {
        clearTimeout(timer)
        off()
        resolve()
      }
    })
  })
}

if (process.argv[2] === '--sender') {
  // The sending engine for the large-file run, in its own process.
  const [, , , folder, port] = process.argv
  const engine = new SyncEngine({ folder, deviceId: 'sender', folderId: 'bench', watch: false, rescanIntervalMs: 3_600_000 })
  const started = performance.now()
  await engine.start()
  const scanSeconds = (performance.now() - started) / 1000
  const socket = connect(Number(port), '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  const inSync = waitInSync(engine, 1_800_000)
  engine.connect(channelFromStream(socket), { peer: 'receiver' })
  await inSync
  const seconds = (performance.now() - started) / 1000
  process.send({ seconds, scanSeconds, wire: socket.bytesWritten + socket.bytesRead, maxRssMiB: process.resourceUsage().maxRSS / 1024 })
  socket.destroy()
  await engine.stop()
  process.exit(0)
} else if (process.argv[2] === '--receiver') {
  // The receiving engine, in its own process so its RSS is its own.
  const folder = process.argv[3]
  const engine = new SyncEngine({ folder, deviceId: 'receiver', folderId: 'bench', watch: false, rescanIntervalMs: 3_600_000 })
  await engine.start()
  const server = createServer((socket) => {
    engine.connect(channelFromStream(socket), { peer: 'sender' })
  })
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
  process.on('message', async (message) => {
    if (message === 'rss') process.send({ maxRssMiB: process.resourceUsage().maxRSS / 1024 })
    if (message === 'stop') {
      server.close()
      await engine.stop()
      process.exit(0)
    }
  })
} else {
  const base = process.env.BENCH_DIR ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir())
  const root = mkdtempSync(join(base, 'cloudbox-bench-sync-'))
  // Never leave gigabytes in memory-backed /dev/shm behind, even when something fails.
  process.on('exit', () => rmSync(root, { recursive: true, force: true }))
  const bigGiB = Number(process.env.BENCH_SYNC_BIG_GIB ?? 4)
  const source = join(root, 'source')
  const target = join(root, 'target')
  mkdirSync(source)
  mkdirSync(target)

  const smallBytes = writeSmallFiles(source)

  const receiver = spawn(process.execPath, [self, '--receiver', target], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const port = await new Promise((resolve) => receiver.once('message', (message) => resolve(message.port)))
  receiver.once('exit', (code) => {
    if (code !== 0) console.error(`The receiver process exited with ${code}.`)
  })
  const ask = (message) => new Promise((resolve) => { receiver.once('message', resolve); receiver.send(message) })

  const engine = new SyncEngine({ folder: source, deviceId: 'sender', folderId: 'bench', watch: false, rescanIntervalMs: 3_600_000 })
  const rows = []
  let started = performance.now()
  await engine.start()
  const scanSeconds = (performance.now() - started) / 1000
  const socket = connect(port, '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  const wire = () => socket.bytesWritten + socket.bytesRead

  started = performance.now()
  const inSync1 = waitInSync(engine)
  engine.connect(channelFromStream(socket), { peer: 'receiver' })
  await inSync1
  let seconds = (performance.now() - started) / 1000
  rows.push(['2,000 files, 1–256 KiB (initial sync)', smallBytes, seconds, wire(), `sender scan ${scanSeconds.toFixed(2)} s`])

  const bigPath = join(source, 'big.bin')
  writeBigFile(bigPath, 512)
  let before = wire()
  started = performance.now()
  await engine.scan()
  let inSync = waitInSync(engine)
  await inSync
  seconds = (performance.now() - started) / 1000
  rows.push(['512 MiB file (scan + sync)', 512 * MIB, seconds, wire() - before, ''])

  // The edit, streamed (no whole-file buffers): 100 bytes inserted near the start, 1 MiB
  // changed in the middle.
  const rsyncDir = join(root, 'rsync')
  mkdirSync(rsyncDir)
  copyFileSync(bigPath, join(rsyncDir, 'big.bin'))
  writeEditedCopy(bigPath, `${bigPath}.new`)
  renameSync(`${bigPath}.new`, bigPath)
  before = wire()
  started = performance.now()
  await engine.scan()
  inSync = waitInSync(engine)
  await inSync
  seconds = (performance.now() - started) / 1000
  const delta = wire() - before
  rows.push(['edit of the 512 MiB file (delta)', 512 * MIB, seconds, delta, ''])

  let rsyncLine = 'rsync: not installed, skipped'
  let rsyncBytes
  const rsync = spawnSync('rsync', ['--no-whole-file', '--stats', '-a', bigPath, join(rsyncDir, 'big.bin')], { encoding: 'utf8' })
  if (rsync.status === 0) {
    const sent = Number(/Total bytes sent: ([\d,]+)/.exec(rsync.stdout)?.[1].replaceAll(',', ''))
    const received = Number(/Total bytes received: ([\d,]+)/.exec(rsync.stdout)?.[1].replaceAll(',', ''))
    rsyncBytes = sent + received
    rsyncLine = `rsync --no-whole-file moved ${sent.toLocaleString('en')} B sent + ${received.toLocaleString('en')} B received = ${rsyncBytes.toLocaleString('en')} B; CloudBox ${delta.toLocaleString('en')} B on the wire (both directions) = ${(delta / rsyncBytes).toFixed(2)}× rsync (target ≤ 1.2×)`
  }
  rmSync(rsyncDir, { recursive: true, force: true })

  const { maxRssMiB } = await ask('rss')
  const senderRss = process.resourceUsage().maxRSS / 1024
  receiver.send('stop')
  await new Promise((resolve) => receiver.once('exit', resolve))
  socket.destroy()
  await engine.stop()

  // The large file alone, between two fresh processes, so their peak RSS is this job's.
  let bigLine = ''
  if (bigGiB > 0) {
    const hugeSource = join(root, 'huge-source')
    const hugeTarget = join(root, 'huge-target')
    mkdirSync(hugeSource)
    mkdirSync(hugeTarget)
    rmSync(source, { recursive: true, force: true })
    rmSync(target, { recursive: true, force: true })
    writeBigFile(join(hugeSource, 'huge.bin'), bigGiB * 1024, 'huge')
    const bigReceiver = spawn(process.execPath, [self, '--receiver', hugeTarget], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const bigPort = await new Promise((resolve) => bigReceiver.once('message', (message) => resolve(message.port)))
    const sender = spawn(process.execPath, [self, '--sender', hugeSource, String(bigPort)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    // Keep this process waiting for the sender whatever its IPC listeners are doing.
    const keepAlive = setInterval(() => {}, 1000)
    const result = await new Promise((resolve, reject) => {
      sender.once('message', resolve)
      sender.once('exit', (code) => reject(new Error(`the sender process exited with ${code} before finishing`)))
    })
    // The receiver answers with its peak RSS; if it is gone, say so instead of waiting.
    const receiverRss = bigReceiver.exitCode !== null
      ? { maxRssMiB: Number.NaN }
      : await Promise.race([
          new Promise((resolve) => {
            bigReceiver.once('message', resolve)
            bigReceiver.send('rss')
          }),
          new Promise((resolve) => setTimeout(() => resolve({ maxRssMiB: Number.NaN }), 10_000)),
        ])
    if (Number.isNaN(receiverRss.maxRssMiB)) console.error(`The large-file receiver did not report (exit code ${bigReceiver.exitCode}).`)
    if (bigReceiver.exitCode === null) {
      bigReceiver.send('stop')
      await new Promise((resolve) => bigReceiver.once('exit', resolve))
    }
    if (sender.exitCode === null) await new Promise((resolve) => sender.once('exit', resolve))
    clearInterval(keepAlive)
    rows.push([`${bigGiB} GiB file alone (scan + sync, fresh processes)`, bigGiB * 1024 * MIB, result.seconds, result.wire, `sender scan ${result.scanSeconds.toFixed(1)} s`])
    bigLine = `Peak RSS with the ${bigGiB} GiB file alone: receiver ${receiverRss.maxRssMiB.toFixed(0)} MiB, sender ${result.maxRssMiB.toFixed(0)} MiB (target < 150 MB = 143 MiB).`
  }

  console.log(`Two engines over TCP 127.0.0.1 (plain length-prefixed channel, no encryption), data in ${base}.\n`)
  console.log('| workload | data | time s | MB/s | bytes on the wire | note |')
  console.log('|---|---|---|---|---|---|')
  for (const [name, bytes, time, onWire, note] of rows) {
    console.log(`| ${name} | ${(bytes / MIB).toFixed(1)} MiB | ${time.toFixed(2)} | ${(bytes / 1e6 / time).toFixed(0)} | ${onWire.toLocaleString('en')} | ${note} |`)
  }
  console.log(`\n${rsyncLine}`)
  console.log(`Peak RSS through the 2,000 files and the 512 MiB file: receiver ${maxRssMiB.toFixed(0)} MiB, sender ${senderRss.toFixed(0)} MiB.`)
  if (bigLine !== '') console.log(bigLine)
  rmSync(root, { recursive: true, force: true })
}
