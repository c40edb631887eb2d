#!/usr/bin/env node
/**
 * The reliability suite (test/reliability: faults, hostile input, load) run once, with its
 * tally turned into the summary table: what was injected, how much the system survived,
 * how many files were lost. CI runs the same tests in `npm test`; this adds the table.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'cloudbox-reliability-'))
const log = join(dir, 'outcomes.jsonl')
try {
  const started = performance.now()
  const run = spawnSync(join(root, 'node_modules', '.bin', 'vitest'), ['run', '--project', 'reliability'], {
    cwd: root,
    env: { ...process.env, CLOUDBOX_RELIABILITY_LOG: log },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const minutes = (performance.now() - started) / 60_000
  const order = ['faults', 'hostile input', 'load']
  const outcomes = (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line)) : []).sort((a, b) => order.indexOf(a.group) - order.indexOf(b.group))
  console.log(`test/reliability in ${minutes.toFixed(1)} min: the tests ${run.status === 0 ? 'passed' : `FAILED (vitest exit ${run.status})`}.\n`)
  console.log('| group | fault or attack | injected | survived | data lost | notes |')
  console.log('|---|---|---|---|---|---|')
  for (const outcome of outcomes) {
    console.log(`| ${outcome.group} | ${outcome.what} | ${outcome.injected.toLocaleString('en')} | ${outcome.survived.toLocaleString('en')} | ${outcome.dataLost} | ${outcome.note ?? ''} |`)
  }
  const total = (key) => outcomes.reduce((sum, outcome) => sum + outcome[key], 0)
  console.log(`| **all** | ${outcomes.length} scenarios | ${total('injected').toLocaleString('en')} | ${total('survived').toLocaleString('en')} | ${total('dataLost')} | |`)
  if (run.status !== 0) process.exitCode = 1
} finally {
  rmSync(dir, { recursive: true, force: true })
}
