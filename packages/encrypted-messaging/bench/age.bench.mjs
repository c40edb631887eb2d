#!/usr/bin/env node
/**
 * Seal and open of the same 256 MiB file by CloudBox (sealFile/openFile) and by the
 * `age` tool, alternating, several runs each. Prints a markdown table: median time,
 * min–max, MB/s, peak RSS, and our throughput as a ratio of age's (target ≥ 0.8×).
 *
 * Ours runs in a child process per implementation and operation, so its peak RSS is its
 * own; the child repeats the operation: the first run is cold (fresh process, worker
 * threads starting), the median of the others is what a running node or server gets.
 * age's time is the whole process (its start-up is a few milliseconds).
 *
 * BENCH_AGE_MIB=64 BENCH_RUNS=3 node bench/age.bench.mjs  for a quicker run.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)

if (process.argv[2] === '--child') {
  // One process, several operations: the first is cold (fresh process, worker threads
  // starting), the others warm (a long-running node or server sealing many files).
  const { sealFile, openFile, parseAgeIdentityFile } = await import('../dist/index.js')
  const [, , , operation, input, output, key, mode, count] = process.argv
  const parallel = mode === 'threads'
  const identities = operation === 'open' ? parseAgeIdentityFile(readFileSync(key, 'utf8')) : undefined
  const times = []
  for (let i = 0; i < Number(count); i++) {
    const started = performance.now()
    if (operation === 'seal') await sealFile(input, output, [key], { parallel })
    else await openFile(input, output, identities, { parallel })
    times.push((performance.now() - started) / 1000)
  }
  process.stdout.write(JSON.stringify({ times, maxRssKiB: process.resourceUsage().maxRSS }))
  process.exit(0)
}

const MIB = 1024 * 1024
const sizeMiB = Number(process.env.BENCH_AGE_MIB ?? 256)
const runs = Number(process.env.BENCH_RUNS ?? 5)
if (!existsSync(new URL('../dist/index.js', import.meta.url))) {
  console.error('Build first: pnpm build')
  process.exit(1)
}
const hasAge = spawnSync('age', ['--version']).status === 0
const timeTool = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined

// Files live in memory (tmpfs) when the machine has one, so the figures compare the
// implementations, not the disk's write-back (on this VM a plain `cp` of 256 MiB varies 2×).
const base = process.env.BENCH_DIR ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir())
const dir = mkdtempSync(join(base, 'cloudbox-bench-age-'))
try {
  const plain = join(dir, 'plain.bin')
  const fd = openSync(plain, 'w')
  for (let i = 0; i < sizeMiB; i++) writeSync(fd, randomBytes(MIB))
  closeSync(fd)
  const keyFile = join(dir, 'key.txt')
  execFileSync('age-keygen', ['-o', keyFile], { stdio: 'pipe' })
  const recipient = /# public key: (age1\S+)/.exec(readFileSync(keyFile, 'utf8'))?.[1]

  // Ours: one child per implementation and operation, runs + 1 operations each.
  const ours = (operation, input, output, mode) => {
    const result = spawnSync(process.execPath, [self, '--child', operation, input, output, operation === 'seal' ? recipient : keyFile, mode, String(runs + 1)], { encoding: 'utf8' })
    if (result.status !== 0) throw new Error(`ours ${operation} failed: ${result.stderr}`)
    const { times, maxRssKiB } = JSON.parse(result.stdout)
    return { cold: times[0], warm: times.slice(1).map((seconds) => ({ seconds, maxRssKiB })) }
  }
  const age = (args) => {
    const command = timeTool ? [timeTool, ['-f', '%M', 'age', ...args]] : ['age', args]
    const started = performance.now()
    const result = spawnSync(command[0], command[1], { encoding: 'utf8' })
    const seconds = (performance.now() - started) / 1000
    if (result.status !== 0) throw new Error(`age ${args.join(' ')} failed: ${result.stderr}`)
    const rss = timeTool ? Number(result.stderr.trim().split('\n').pop()) : Number.NaN
    return { seconds, maxRssKiB: rss }
  }

  const oursSeal = ours('seal', plain, join(dir, 'ours.age'), 'threads')
  const oursSealOne = ours('seal', plain, join(dir, 'ours1.age'), 'one-thread')
  const oursOpen = ours('open', join(dir, 'ours.age'), join(dir, 'ours.out'), 'threads')
  const oursOpenOne = ours('open', join(dir, 'ours.age'), join(dir, 'ours.out'), 'one-thread')
  const ageSeal = []
  const ageOpen = []
  for (let run = 0; run < runs && hasAge; run++) {
    ageSeal.push(age(['-r', recipient, '-o', join(dir, 'theirs.age'), plain]))
    ageOpen.push(age(['-d', '-i', keyFile, '-o', join(dir, 'theirs.out'), join(dir, 'ours.age')]))
    rmSync(join(dir, 'theirs.out'), { force: true })
  }
  // Cross-check: age opened what we sealed (above); we open what age sealed.
  if (hasAge) ours('open', join(dir, 'theirs.age'), join(dir, 'check.out'), 'threads')

  const stats = (list) => {
    const times = list.map((s) => s.seconds).sort((a, b) => a - b)
    const median = times[Math.floor(times.length / 2)]
    return { median, min: times[0], max: times[times.length - 1], mbps: (sizeMiB * MIB) / 1e6 / median, rssMiB: Math.max(...list.map((s) => s.maxRssKiB)) / 1024 }
  }
  const rows = [
    ['seal', 'CloudBox, worker threads (default)', oursSeal, ageSeal],
    ['seal', 'CloudBox, parallel: false', oursSealOne, ageSeal],
    ['seal', 'age', { warm: ageSeal }],
    ['open', 'CloudBox, worker threads (default)', oursOpen, ageOpen],
    ['open', 'CloudBox, parallel: false', oursOpenOne, ageOpen],
    ['open', 'age', { warm: ageOpen }],
  ]
  console.log(`age v1 seal/open of a ${sizeMiB} MiB random file in ${base}, ${runs} runs each, one X25519 recipient${hasAge ? `; age ${execFileSync('age', ['--version']).toString().trim()}` : ''}.\n`)
  console.log('| operation | implementation | median s | min–max s | MB/s | ratio to age | first run in a fresh process | peak RSS MiB |')
  console.log('|---|---|---|---|---|---|---|---|')
  for (const [operation, who, result, peer] of rows) {
    if (result.warm.length === 0) {
      console.log(`| ${operation} | ${who} | skipped: the age tool is not installed | | | | | |`)
      continue
    }
    const s = stats(result.warm)
    const ratio = peer && peer.length > 0 ? `${(s.mbps / stats(peer).mbps).toFixed(2)}×` : ''
    const cold = result.cold === undefined ? '' : `${result.cold.toFixed(3)} s (${((sizeMiB * MIB) / 1e6 / result.cold).toFixed(0)} MB/s)`
    console.log(`| ${operation} | ${who} | ${s.median.toFixed(3)} | ${s.min.toFixed(3)}–${s.max.toFixed(3)} | ${s.mbps.toFixed(0)} | ${ratio} | ${cold} | ${Number.isFinite(s.rssMiB) ? s.rssMiB.toFixed(0) : 'n/a'} |`)
  }
  console.log('\nTarget: CloudBox ≥ 0.8× age for both seal and open. CloudBox medians are warm operations in a running process (library use), each including fsync before the atomic rename (age does not fsync); the first run in a fresh process, worker start-up included, is shown apart. age times are its whole process (start-up is milliseconds).')
} finally {
  rmSync(dir, { recursive: true, force: true })
}
