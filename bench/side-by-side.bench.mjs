#!/usr/bin/env node
/**
 * CloudBox next to what users would pick instead, in the same run on the same data, over
 * 127.0.0.1: CloudBox client → server (direct WebSocket, and through a router hub), rsync
 * (daemon on loopback, `--no-whole-file`) and Syncthing (two instances configured over
 * their REST API: loopback listen addresses; discovery, relays, NAT and reports off).
 *
 * The workloads run one after the other on the same pair (as a user meets them): 2,000
 * files of 1–256 KiB in nested folders; a 512 MiB file added; that file edited (100 bytes
 * inserted near the start, 1 MiB changed in the middle); 50,000 tiny files (0–8 KiB) in
 * nested folders; more tiny files until the folder holds 100,000; a rescan of that folder
 * with nothing changed; one file of it changed. Each is timed from the moment the files
 * are in place until the receiver holds them, and the receiver's folder is checked byte for
 * byte after every workload. Each program runs in its own processes; runs are interleaved
 * so machine noise spreads over all of them. CPU seconds (user + system, from /proc, of
 * both sides and their children) are reported beside wall time: on a busy machine they are
 * the steadier figure.
 *
 * BENCH_RUNS=3 (runs per program), BENCH_BIG_MIB=512, BENCH_TINY=50000 (tiny files),
 * BENCH_FOLDER=100000 (files in the folder at the end),
 * BENCH_PEERS=direct,hub,program,rsync,syncthing, BENCH_DIR (default /dev/shm, so the
 * disk's write-back does not dominate; set it to a folder on a disk for the real-disk table).
 * The age comparison (seal/open of 256 MiB) is packages/encrypted-messaging/bench/age.bench.mjs.
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { assertSameTree, fileDigest, MIB, treeDigest, writeBigFile, writeEditedCopy, writeSmallFiles, writeTinyFiles } from './support/data.mjs'
import { cloudboxPeer, cloudboxProgramPeer, rsyncPeer, syncthingPeer } from './support/peers.mjs'
import { ownChildrenSeconds, treeCpuSeconds } from './support/process-cpu.mjs'
import { watchPeakRss } from './support/process-memory.mjs'

const runs = Number(process.env.BENCH_RUNS ?? 3)
const bigMiB = Number(process.env.BENCH_BIG_MIB ?? 512)
const tinyCount = Number(process.env.BENCH_TINY ?? 50_000)
const folderCount = Number(process.env.BENCH_FOLDER ?? 100_000)
const wanted = new Set((process.env.BENCH_PEERS ?? 'direct,hub,program,rsync,syncthing').split(','))
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0

const base = process.env.BENCH_DIR ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir())
const root = mkdtempSync(join(base, 'cloudbox-bench-side-'))
// Never leave gigabytes in memory-backed /dev/shm behind, even when something fails.
process.on('exit', () => rmSync(root, { recursive: true, force: true }))
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130))

const skipped = []
const peers = []
if (wanted.has('direct')) peers.push(cloudboxPeer({ viaHub: false }))
if (wanted.has('hub')) peers.push(cloudboxPeer({ viaHub: true }))
if (wanted.has('program')) peers.push(cloudboxProgramPeer())
if (wanted.has('rsync')) {
  if (has('rsync')) peers.push(rsyncPeer())
  else skipped.push('rsync: skipped, not installed and could not be installed (apt-get install rsync)')
}
if (wanted.has('syncthing')) {
  if (has('syncthing')) peers.push(syncthingPeer())
  else skipped.push('Syncthing: skipped, not installed and could not be installed (apt-get install syncthing)')
}

// The data, made once.
const data = join(root, 'data')
const small = join(data, 'small')
mkdirSync(small, { recursive: true })
const smallBytes = writeSmallFiles(small)
writeBigFile(join(data, 'big.bin'), bigMiB)
writeEditedCopy(join(data, 'big.bin'), join(data, 'big-edited.bin'))
const smallDigest = treeDigest(small)
const bigDigest = fileDigest(join(data, 'big.bin'))
const editedDigest = fileDigest(join(data, 'big-edited.bin'))
const prefixed = (prefix, digests) => new Map([...digests].map(([path, digest]) => [`${prefix}/${path}`, digest]))
const tiny = join(data, 'tiny')
const tinyBytes = writeTinyFiles(tiny, tinyCount)
const tinyDigest = prefixed('tiny', treeDigest(tiny))
// The rest of the folder: the 2,000 files, the large file and the tiny ones are there already.
const moreCount = Math.max(0, folderCount - smallDigest.size - 1 - tinyCount)
const more = join(data, 'more')
const moreBytes = writeTinyFiles(more, moreCount, 'more')
const moreDigest = prefixed('more', treeDigest(more))
const changedPath = 'tiny/d0/e0/t0.bin'
const changedBytes = Buffer.from('one changed file in a folder of many\n'.repeat(100))
const changedDigest = createHash('sha256').update(changedBytes).digest('hex')
const copyTree = (from, to) => {
  const result = spawnSync('cp', ['-a', `${from}/.`, to])
  if (result.status !== 0) throw new Error(`cp failed: ${result.stderr}`)
}

const workloads = [
  {
    name: `2,000 files, 1–256 KiB (${(smallBytes / MIB).toFixed(0)} MiB)`,
    bytes: smallBytes,
    prepare: (source) => copyTree(small, source),
    expected: new Map(smallDigest),
  },
  {
    name: `${bigMiB} MiB file added`,
    bytes: bigMiB * MIB,
    prepare: (source) => copyFileSync(join(data, 'big.bin'), join(source, 'big.bin')),
    expected: new Map([...smallDigest, ['big.bin', bigDigest]]),
  },
  {
    name: `edit of the ${bigMiB} MiB file (100 B inserted, 1 MiB changed)`,
    bytes: bigMiB * MIB + 100,
    prepare: (source, work) => {
      // Replaced whole, as editors and tools save: a copy, then a rename over the old one.
      copyFileSync(join(data, 'big-edited.bin'), join(work, 'big.bin.new'))
      renameSync(join(work, 'big.bin.new'), join(source, 'big.bin'))
    },
    expected: new Map([...smallDigest, ['big.bin', editedDigest]]),
  },
  {
    name: `${tinyCount.toLocaleString('en')} tiny files, 0–8 KiB, nested (${(tinyBytes / MIB).toFixed(0)} MiB)`,
    bytes: tinyBytes,
    prepare: (source) => {
      mkdirSync(join(source, 'tiny'))
      copyTree(tiny, join(source, 'tiny'))
    },
    expected: new Map([...smallDigest, ['big.bin', editedDigest], ...tinyDigest]),
  },
  {
    name: `${moreCount.toLocaleString('en')} more tiny files: the folder holds ${folderCount.toLocaleString('en')}`,
    bytes: moreBytes,
    prepare: (source) => {
      mkdirSync(join(source, 'more'))
      copyTree(more, join(source, 'more'))
    },
    expected: new Map([...smallDigest, ['big.bin', editedDigest], ...tinyDigest, ...moreDigest]),
  },
  {
    name: `${folderCount.toLocaleString('en')}-file folder, nothing changed (a rescan)`,
    bytes: 0,
    prepare: () => {},
    expected: new Map([...smallDigest, ['big.bin', editedDigest], ...tinyDigest, ...moreDigest]),
  },
  {
    name: `${folderCount.toLocaleString('en')}-file folder, one file changed`,
    bytes: changedBytes.length,
    prepare: (source) => writeFileSync(join(source, changedPath), changedBytes),
    expected: new Map([...smallDigest, ['big.bin', editedDigest], ...tinyDigest, ...moreDigest, [changedPath, changedDigest]]),
  },
]

const results = new Map(peers.map((peer) => [peer.name, workloads.map(() => [])]))
for (let run = 0; run < runs; run++) {
  for (const peer of peers) {
    const work = join(root, `run${run}`)
    const dirs = { work, source: join(work, 'source'), target: join(work, 'target') }
    mkdirSync(dirs.source, { recursive: true })
    mkdirSync(dirs.target, { recursive: true })
    try {
      await peer.start(dirs)
      for (const [index, workload] of workloads.entries()) {
        workload.prepare(dirs.source, work)
        const sender = watchPeakRss(() => peer.pids().sender, { descendants: peer.descendants })
        const receiver = watchPeakRss(() => peer.pids().receiver, { descendants: peer.descendants })
        const wireBefore = peer.wire()
        const cpu = () => treeCpuSeconds([...peer.pids().sender, ...peer.pids().receiver], true) + ownChildrenSeconds()
        const cpuBefore = cpu()
        const started = performance.now()
        await peer.sync()
        const seconds = (performance.now() - started) / 1000
        const cpuSeconds = cpu() - cpuBefore
        const wire = peer.wire() - wireBefore
        const row = { seconds, cpuSeconds, wire, senderMiB: sender.stop(), receiverMiB: receiver.stop() }
        assertSameTree(workload.expected, dirs.target, `${peer.name}, ${workload.name}`)
        results.get(peer.name)[index].push(row)
        console.error(`run ${run + 1}/${runs} ${peer.name}: ${workload.name}: ${seconds.toFixed(2)} s, ${wire.toLocaleString('en')} B`)
      }
    } finally {
      await peer.stop()
      rmSync(work, { recursive: true, force: true })
    }
  }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const version = (command, args) => spawnSync(command, args, { encoding: 'utf8' }).stdout?.split('\n')[0].trim() ?? ''
console.log(`Same data, same machine, one run after another over 127.0.0.1; data in ${base}; median of ${runs} runs (min–max).`)
console.log(`Node ${process.version}${peers.some((p) => p.name === 'rsync') ? `; ${version('rsync', ['--version']).replace(/\s+protocol.*/, '')}` : ''}${peers.some((p) => p.name === 'Syncthing') ? `; ${version('syncthing', ['--version']).split(' ').slice(0, 2).join(' ')}` : ''}.`)
for (const line of skipped) console.log(line)
// Ratios against the programs users would pick instead (the targets are stated that way).
const against = ['Syncthing', 'rsync'].filter((name) => results.has(name))
const medianOf = (name, index, key) => median(results.get(name)[index].map((row) => row[key]))
const ratio = (value, base) => (base > 0 ? `${(value / base).toFixed(2)}×` : '–')
for (const [index, workload] of workloads.entries()) {
  console.log(`\n### ${workload.name}\n`)
  const heads = ['program', 'transport', 'median s', 'min–max s', 'CPU s', 'MB/s', 'bytes on the wire', 'sender peak RSS MiB', 'receiver peak RSS MiB', ...against.map((name) => `time ÷ ${name}`), ...against.map((name) => `wire ÷ ${name}`)]
  console.log(`| ${heads.join(' | ')} |`)
  console.log(`|${heads.map(() => '---').join('|')}|`)
  for (const peer of peers) {
    const rows = results.get(peer.name)[index]
    const seconds = rows.map((row) => row.seconds)
    const s = median(seconds)
    const wire = median(rows.map((row) => row.wire))
    const cells = [
      peer.name,
      peer.transport,
      s.toFixed(2),
      `${Math.min(...seconds).toFixed(2)}–${Math.max(...seconds).toFixed(2)}`,
      median(rows.map((row) => row.cpuSeconds)).toFixed(2),
      workload.bytes > 0 ? (workload.bytes / 1e6 / s).toFixed(0) : '–',
      wire.toLocaleString('en'),
      median(rows.map((row) => row.senderMiB)).toFixed(0),
      median(rows.map((row) => row.receiverMiB)).toFixed(0),
      ...against.map((name) => ratio(s, medianOf(name, index, 'seconds'))),
      ...against.map((name) => ratio(wire, medianOf(name, index, 'wire'))),
    ]
    console.log(`| ${cells.join(' | ')} |`)
  }
}
console.log(`\nCPU s: user + system seconds of the sender and the receiver together, with their child processes, during the workload. Bytes on the wire: TCP payload between sender and receiver, both directions, counted by the same relay for every program (CloudBox through the hub: between device and hub). Peak RSS: the kernel's high-water mark per process, reset before each workload, or the sampled sum for forked processes (rsync; the program's \`sync --once\`, which starts and ends within the workload). Ratios above 1 mean the program took longer (or sent more) than the one named. Every CloudBox process runs with the V8 setting the cloudbox program makes for itself, --no-incremental-marking (apps/demo/src/gc-tuning.ts).`)
