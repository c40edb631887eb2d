#!/usr/bin/env node
/**
 * Runs every benchmark (`bench/*.bench.mjs`, `packages/*\/bench/*.bench.mjs`,
 * `apps/*\/bench/*.bench.mjs`) one after another (they measure throughput: running two at once on 2 cores would skew both),
 * prints their markdown tables, and keeps them in bench/results/<date>.md.
 * `node scripts/bench.mjs age` runs only benchmarks whose path contains "age".
 * First it installs the programs the selected benchmarks compare against (Debian's
 * packages, when run as root); a benchmark whose peer is still missing skips it with a line.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

import { installMissingCommands } from './debian-packages.mjs'

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..')
const filter = process.argv[2]
const benches = []
for (const file of readdirSync(join(root, 'bench')).sort()) {
  if (file.endsWith('.bench.mjs')) benches.push(join(root, 'bench', file))
}
for (const group of ['packages', 'apps']) {
  for (const name of readdirSync(join(root, group))) {
    const dir = join(root, group, name, 'bench')
    if (!existsSync(dir)) continue
    for (const file of readdirSync(dir).sort()) {
      if (file.endsWith('.bench.mjs')) benches.push(join(dir, file))
    }
  }
}
const selected = benches.filter((path) => filter === undefined || relative(root, path).includes(filter))
if (selected.length === 0) {
  console.error(filter === undefined ? 'No benchmarks found.' : `No benchmark matches "${filter}".`)
  process.exit(1)
}

// The programs each benchmark measures against: command → Debian package.
const peers = {
  'side-by-side': { rsync: 'rsync', syncthing: 'syncthing' },
  'sync.bench': { rsync: 'rsync' },
  'age.bench': { age: 'age', 'age-keygen': 'age' },
  'hub-cluster': { 'redis-server': 'redis-server', 'redis-cli': 'redis-tools' },
}
const needed = Object.assign({}, ...Object.entries(peers).filter(([name]) => selected.some((path) => path.includes(name))).map(([, commands]) => commands))
for (const [command, pkg] of installMissingCommands(needed, { recommends: false }).stillMissing) {
  console.log(`${command} is missing and could not be installed (apt-get install ${pkg}): the benchmarks that compare with it skip it.`)
}

const sections = [`# CloudBox benchmarks, ${new Date().toISOString()}`, '', `Node ${process.version}, ${process.platform}/${process.arch}.`, '']
let failed = 0
for (const path of selected) {
  const name = relative(root, path)
  console.log(`\n## ${name}\n`)
  const result = spawnSync(process.execPath, ['--expose-gc', path], { cwd: relative(root, path).startsWith('bench') ? root : join(path, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' })
  process.stdout.write(result.stdout)
  sections.push(`## ${name}`, '', result.stdout.trim(), '')
  if (result.status !== 0) {
    failed += 1
    sections.push(`(exited with ${result.status})`, '')
  }
}
mkdirSync(join(root, 'bench', 'results'), { recursive: true })
// A filtered run gets its own file, so it never replaces the full run's figures.
const stem = `${new Date().toISOString().slice(0, 10)}${filter === undefined ? '' : `-${filter.replace(/[^A-Za-z0-9-]/g, '_')}`}`
const out = join(root, 'bench', 'results', `${stem}.md`)
writeFileSync(out, `${sections.join('\n')}\n`)
console.log(`\nResults written to ${relative(root, out)}`)
process.exit(failed === 0 ? 0 : 1)
