#!/usr/bin/env node
/**
 * Seal and open of the same 256 MiB file by CloudBox (sealFile/openFile) and by the
 * `age` tool, alternating, several runs each. Prints a markdown table: median time,
 * min–max, MB/s, peak RSS, and our throughput as a ratio of age's (target ≥ 0.8×).
 *
 * Ours runs in a child process per operation so its peak RSS is its own; its time is
 * measured inside that process (what a library caller pays), without Node's start-up.
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
  const { sealFile, openFile, parseAgeIdentityFile } = await import('../dist/index.js')
  const [, , , operation, input, output, key, mode] = process.argv
  const parallel = mode === 'threads'
  const started = performance.now()
  if (operation === 'seal') await sealFile(input, output, [key], { parallel })
  else await openFile(input, output, parseAgeIdentityFile(readFileSync(key, 'utf8')), { parallel })
  const seconds = (performance.now() - started) / 1000
  process.stdout.write(JSON.stringify({ seconds, maxRssKiB: process.resourceUsage().maxRSS }))
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

  const ours = (operation, input, output, mode = 'threads') => {
    const result = spawnSync(process.execPath, [self, '--child', operation, input, output, operation === 'seal' ? recipient : keyFile, mode], { encoding: 'utf8' })
    if (result.status !== 0) throw new Error(`ours ${operation} failed: ${result.stderr}`)
    return JSON.parse(result.stdout)
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

  const samples = { oursSeal: [], oursSealOne: [], ageSeal: [], oursOpen: [], oursOpenOne: [], ageOpen: [] }
  for (let run = 0; run < runs; run++) {
    samples.oursSeal.push(ours('seal', plain, join(dir, 'ours.age')))
    samples.oursSealOne.push(ours('seal', plain, join(dir, 'ours.age'), 'one-thread'))
    if (hasAge) samples.ageSeal.push(age(['-r', recipient, '-o', join(dir, 'theirs.age'), plain]))
    samples.oursOpen.push(ours('open', join(dir, 'ours.age'), join(dir, 'ours.out')))
    samples.oursOpenOne.push(ours('open', join(dir, 'ours.age'), join(dir, 'ours.out'), 'one-thread'))
    if (hasAge) samples.ageOpen.push(age(['-d', '-i', keyFile, '-o', join(dir, 'theirs.out'), join(dir, 'ours.age')]))
    rmSync(join(dir, 'ours.out'), { force: true })
    rmSync(join(dir, 'theirs.out'), { force: true })
  }
  // Cross-check: age opened what we sealed (above); we open what age sealed.
  if (hasAge) ours('open', join(dir, 'theirs.age'), join(dir, 'check.out'))

  const stats = (list) => {
    const times = list.map((s) => s.seconds).sort((a, b) => a - b)
    const median = times[Math.floor(times.length / 2)]
    return { median, min: times[0], max: times[times.length - 1], mbps: (sizeMiB * MIB) / 1e6 / median, rssMiB: Math.max(...list.map((s) => s.maxRssKiB)) / 1024 }
  }
  const rows = [
    ['seal', 'CloudBox (worker threads, default)', samples.oursSeal, samples.ageSeal],
    ['seal', 'CloudBox (parallel: false)', samples.oursSealOne, samples.ageSeal],
    ['seal', 'age', samples.ageSeal],
    ['open', 'CloudBox (worker threads, default)', samples.oursOpen, samples.ageOpen],
    ['open', 'CloudBox (parallel: false)', samples.oursOpenOne, samples.ageOpen],
    ['open', 'age', samples.ageOpen],
  ]
  console.log(`age v1 seal/open of a ${sizeMiB} MiB random file in ${base}, ${runs} runs each, one X25519 recipient${hasAge ? `; age ${execFileSync('age', ['--version']).toString().trim()}` : ''}.\n`)
  console.log('| operation | implementation | median s | min–max s | MB/s | peak RSS MiB | ratio to age (MB/s) |')
  console.log('|---|---|---|---|---|---|---|')
  for (const [operation, who, list, peer] of rows) {
    if (list.length === 0) {
      console.log(`| ${operation} | ${who} | skipped: the age tool is not installed | | | | |`)
      continue
    }
    const s = stats(list)
    const ratio = peer && peer.length > 0 ? `${(s.mbps / stats(peer).mbps).toFixed(2)}×` : ''
    console.log(`| ${operation} | ${who} | ${s.median.toFixed(3)} | ${s.min.toFixed(3)}–${s.max.toFixed(3)} | ${s.mbps.toFixed(0)} | ${Number.isFinite(s.rssMiB) ? s.rssMiB.toFixed(0) : 'n/a'} | ${ratio} |`)
  }
  console.log('\nTarget: CloudBox ≥ 0.8× age for both seal and open. CloudBox time is in-process (library use) and includes fsync before the atomic rename (age does not fsync); age time is its whole process.')
} finally {
  rmSync(dir, { recursive: true, force: true })
}
