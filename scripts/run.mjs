#!/usr/bin/env node
/**
 * The README's commands on a fresh machine with only Node 20: `npm test`, `npm run demo`,
 * `npm run bench`. Brings pnpm (pinned), installs the workspace, builds it, then runs.
 * No dependency of its own: it must work before `pnpm install` has run.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const pinned = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).packageManager.split('+')[0] // pnpm@x.y.z
const env = {
  ...process.env,
  TURBO_TELEMETRY_DISABLED: '1',
  DO_NOT_TRACK: '1',
  // Native add-ons compile against the headers Debian's Node ships (no download).
  ...(existsSync('/usr/include/node/node.h') && !process.env.npm_config_nodedir ? { npm_config_nodedir: '/usr' } : {}),
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: root, env, stdio: 'inherit', ...options })
  if (result.error) throw result.error
  return result.status ?? 1
}

function must(command, args, what) {
  const status = run(command, args)
  if (status !== 0) {
    console.error(`\n${what} failed (exit ${status}).`)
    process.exit(status)
  }
}

function pnpmCommand() {
  const wanted = pinned.split('@')[1]
  const probe = spawnSync('pnpm', ['--version'], { env, encoding: 'utf8' })
  if (probe.status === 0 && probe.stdout.trim() === wanted) return ['pnpm', []]
  return ['npx', ['--yes', pinned]]
}

const [pnpm, pnpmArgs] = pnpmCommand()
const p = (...args) => [pnpm, [...pnpmArgs, ...args]]

function install() {
  const marker = join(root, 'node_modules', '.modules.yaml')
  const lock = join(root, 'pnpm-lock.yaml')
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return
  must(...p('install', '--frozen-lockfile'), 'Installing dependencies')
}

function build() {
  must(...p('exec', 'turbo', 'run', 'build', '--output-logs=errors-only'), 'Building the packages')
}

const task = process.argv[2]
const rest = process.argv.slice(3)

switch (task) {
  case 'test': {
    install()
    build()
    must('node', ['scripts/check-deps.mjs'], 'The one-way dependency check')
    must(...p('exec', 'turbo', 'run', 'typecheck', '--output-logs=errors-only'), 'Typechecking')
    const results = join(root, '.vitest-results.json')
    rmSync(results, { force: true })
    const status = run(...p('exec', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${results}`, ...rest))
    if (existsSync(results)) {
      const summary = JSON.parse(readFileSync(results, 'utf8'))
      rmSync(results, { force: true })
      // The plain closing line CI reads.
      console.log(`\n${summary.numPassedTests} passed, ${summary.numFailedTests} failed, ${summary.numPendingTests + summary.numTodoTests} skipped`)
    }
    process.exit(status)
  }
  case 'demo': {
    install()
    build()
    process.exit(run('node', ['apps/demo/dist/cli.js', 'demo', ...rest]))
  }
  case 'bench': {
    install()
    build()
    process.exit(run('node', ['scripts/bench.mjs', ...rest]))
  }
  default:
    console.error('usage: node scripts/run.mjs test|demo|bench [args…]')
    process.exit(2)
}
