/**
 * The systemd units in apps/demo/systemd: `systemd-analyze verify` accepts them (where it
 * exists), and the command line each one runs, with its environment, starts on real
 * processes, takes the vault passphrase from the credential file, and stops with exit 0
 * on SIGTERM.
 */
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const unitsDir = fileURLToPath(new URL('../systemd/', import.meta.url))
const UNITS = ['cloudbox-serve.service', 'cloudbox-hub.service']
const INSTALLED_BINARY = '/usr/local/bin/cloudbox'
const PASSPHRASE = 'correct horse battery staple'
const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0

let dir: string
let wrapper: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cloudbox-systemd-'))
  // The units name the installed program; here it is the built one.
  wrapper = join(dir, 'cloudbox')
  writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(cli)} "$@"\n`)
  chmodSync(wrapper, 0o755)
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function unitText(name: string): string {
  return readFileSync(join(unitsDir, name), 'utf8')
}

/** Every `Key=value` of the [Service] section, in order (keys may repeat). */
function serviceEntries(text: string): [string, string][] {
  const section = text.split(/^\[Service\]$/m)[1]!.split(/^\[/m)[0]!
  return section
    .split('\n')
    .filter((line) => /^[A-Za-z]+=/.test(line))
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)])
}

/** The ExecStart argv as systemd builds it: ${VAR} kept as one word, $VAR split at spaces. */
function execStart(text: string, environment: Record<string, string>): string[] {
  const command = serviceEntries(text).find(([key]) => key === 'ExecStart')![1]
  return command.split(/\s+/).flatMap((word) => {
    const braced = /^\$\{(\w+)\}$/.exec(word)
    if (braced) return [environment[braced[1]!] ?? '']
    const bare = /^\$(\w+)$/.exec(word)
    if (bare) return (environment[bare[1]!] ?? '').split(/\s+/).filter(Boolean)
    return [word === INSTALLED_BINARY ? wrapper : word]
  })
}

/** The unit's own Environment= lines, with %d (the credentials directory) filled in. */
function unitEnvironment(text: string, credentials: string): Record<string, string> {
  const result: Record<string, string> = {}
  for (const [key, value] of serviceEntries(text)) {
    if (key !== 'Environment') continue
    const [name, ...rest] = value.split('=')
    result[name!] = rest.join('=').replaceAll('%d', credentials)
  }
  return result
}

async function runUntilReady(argv: string[], environment: NodeJS.ProcessEnv, ready: RegExp): Promise<{ stop: () => Promise<{ code: number | null; output: string; seconds: number }> }> {
  const child = spawn(argv[0]!, argv.slice(1), { env: environment, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`did not start: ${output}`)), 30_000)
    const onData = (chunk: Buffer): void => {
      output += chunk.toString()
      if (ready.test(output)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    void exited.then((code) => reject(new Error(`exited with ${code}: ${output}`)))
  })
  return {
    stop: async () => {
      const started = performance.now()
      child.kill('SIGTERM')
      const code = await exited
      return { code, output, seconds: (performance.now() - started) / 1000 }
    },
  }
}

function timeoutStopSec(text: string): number {
  return Number(serviceEntries(text).find(([key]) => key === 'TimeoutStopSec')![1])
}

describe('systemd units', () => {
  it.runIf(hasSystemdAnalyze)('pass systemd-analyze verify without a warning', () => {
    const copies = UNITS.map((name) => {
      const copy = join(dir, name)
      writeFileSync(copy, unitText(name).replaceAll(INSTALLED_BINARY, wrapper))
      return copy
    })
    const result = spawnSync('systemd-analyze', ['verify', ...copies], { encoding: 'utf8' })
    expect(result.status, result.stderr).toBe(0)
    expect(`${result.stdout}${result.stderr}`.trim()).toBe('')
  })

  it('cloudbox-serve.service: its command serves with the passphrase from the credential, and SIGTERM stops it with exit 0', async () => {
    const text = unitText('cloudbox-serve.service')
    const state = join(dir, 'var-lib-cloudbox')
    const credentials = join(dir, 'credentials')
    mkdirSync(credentials, { recursive: true })
    writeFileSync(join(credentials, 'passphrase'), `${PASSPHRASE}\n`, { mode: 0o600 })
    const unitEnv = unitEnvironment(text, credentials)
    expect(unitEnv['CLOUDBOX_PASSPHRASE_FILE']).toBe(join(credentials, 'passphrase'))
    // The unit's paths, moved under the test folder; the rest as written.
    const environment = {
      ...unitEnv,
      CLOUDBOX_HOME: unitEnv['CLOUDBOX_HOME']!.replace('/var/lib/cloudbox', state),
      CLOUDBOX_FOLDER: unitEnv['CLOUDBOX_FOLDER']!.replace('/var/lib/cloudbox', state),
      CLOUDBOX_SERVE_OPTIONS: '--listen 127.0.0.1:0',
    }
    const processEnv = { PATH: process.env['PATH'], NO_COLOR: '1', DBUS_SESSION_BUS_ADDRESS: '', ...environment }
    // The README's first step: make the identity once, in a vault.
    const init = spawnSync(wrapper, ['init', '--home', environment.CLOUDBOX_HOME, '--storage', 'vault'], { env: { ...processEnv, CLOUDBOX_PASSPHRASE_FILE: '', CLOUDBOX_PASSPHRASE: PASSPHRASE }, encoding: 'utf8' })
    expect(init.status, init.stderr).toBe(0)

    const server = await runUntilReady(execStart(text, environment), processEnv, /Pairing URI/)
    const stopped = await server.stop()
    expect(stopped.code, stopped.output).toBe(0)
    expect(stopped.seconds).toBeLessThan(timeoutStopSec(text))
    expect(stopped.output).not.toMatch(/Error|ERR_/)

    // A credential that gives no passphrase is a plain error, not a hang or a stack trace.
    writeFileSync(join(credentials, 'passphrase'), '\n')
    const refused = spawnSync(execStart(text, environment)[0]!, execStart(text, environment).slice(1), { env: processEnv, encoding: 'utf8', timeout: 30_000 })
    expect(refused.status).toBe(1)
    expect(refused.stderr).toContain('ERR_PASSPHRASE_REQUIRED')
    expect(refused.stderr).toContain('CLOUDBOX_PASSPHRASE_FILE')
  }, 60_000)

  it('cloudbox-hub.service: its command runs a hub, and SIGTERM stops it with exit 0', async () => {
    const text = unitText('cloudbox-hub.service')
    const environment = { ...unitEnvironment(text, dir), CLOUDBOX_HUB_OPTIONS: '--host 127.0.0.1 --port 0' }
    const hub = await runUntilReady(execStart(text, environment), { PATH: process.env['PATH'], NO_COLOR: '1', ...environment }, /hub listening on ws:\/\/127\.0\.0\.1:\d+/)
    const stopped = await hub.stop()
    expect(stopped.code, stopped.output).toBe(0)
    expect(stopped.seconds).toBeLessThan(timeoutStopSec(text))
    expect(stopped.output).toContain('hub stopped')
  }, 60_000)
})
