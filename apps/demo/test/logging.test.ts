/**
 * Logs of the long-running commands: pino JSON lines on stderr off a terminal, the level
 * from --log-level or CLOUDBOX_LOG_LEVEL, secrets censored, results untouched on stdout.
 */
import { spawn, spawnSync } from 'node:child_process'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { loggerOptions, prettyLine, REDACTED } from '../src/log.js'

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))

/** Runs a hub until it listens, stops it with SIGTERM, and returns what it wrote. */
async function hubRun(args: string[], environment: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [cli, 'hub', '--host', '127.0.0.1', '--port', '0', ...args], { env: { ...process.env, NO_COLOR: '1', CLOUDBOX_LOG_LEVEL: '', ...environment }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      if (stdout.includes('listening')) resolve()
    })
    void exited.then((code) => reject(new Error(`hub exited with ${code}: ${stderr}`)))
  })
  child.kill('SIGTERM')
  return { code: await exited, stdout, stderr }
}

const entries = (stderr: string) => stderr.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>)

describe('logs', () => {
  it('are pino JSON lines on stderr when it is not a terminal; the result stays on stdout', async () => {
    const run = await hubRun([])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^CloudBox hub listening on ws:\/\/127\.0\.0\.1:\d+\n$/)
    const lines = entries(run.stderr)
    expect(lines.map((line) => line['msg'])).toEqual(expect.arrayContaining(['hub started', 'hub stopped']))
    for (const line of lines) {
      expect(line).toMatchObject({ name: 'hub', level: 30 })
      expect(typeof line['time']).toBe('number')
    }
    // --json results are unchanged by logging.
    const json = await hubRun(['--json'])
    expect(JSON.parse(json.stdout.trim().split('\n')[0]!)).toMatchObject({ event: 'listening' })
    expect(entries(json.stderr).map((line) => line['msg'])).toContain('hub stopped')
  })

  it('take their level from --log-level, else CLOUDBOX_LOG_LEVEL, and refuse an unknown one', async () => {
    expect((await hubRun(['--log-level', 'warn'])).stderr).toBe('')
    expect((await hubRun([], { CLOUDBOX_LOG_LEVEL: 'silent' })).stderr).toBe('')
    // The option wins over the variable.
    expect(entries((await hubRun(['--log-level', 'info'], { CLOUDBOX_LOG_LEVEL: 'silent' })).stderr).length).toBeGreaterThan(0)
    const bad = spawnSync(process.execPath, [cli, 'hub', '--port', '0', '--log-level', 'loud'], { encoding: 'utf8', env: { ...process.env, CLOUDBOX_LOG_LEVEL: '' } })
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain('--log-level takes one of fatal, error, warn, info, debug, trace, silent')
    const badVariable = spawnSync(process.execPath, [cli, 'sync', '/nonexistent-x', '--once'], { encoding: 'utf8', env: { ...process.env, CLOUDBOX_LOG_LEVEL: 'chatty' } })
    expect(badVariable.status).toBe(2)
    expect(badVariable.stderr).toContain('CLOUDBOX_LOG_LEVEL takes one of')
  })

  it('censor PINs, tokens, passphrases and keys, also one level down', () => {
    let written = ''
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        written += chunk.toString()
        callback()
      },
    })
    const log = pino(loggerOptions('serve', 'info'), sink)
    log.info({ pin: '2468-1357', token: 'abc', device: { pin: '1111', passphrase: 'p', label: 'phone' }, statusUrl: 'http://127.0.0.1:1/status/t', secretKey: 'k', recoveryPhrase: 'w1 w2' }, 'paired')
    expect(written).not.toMatch(/2468-1357|"abc"|1111|"p"|status\/t|"k"|w1 w2/)
    const entry = JSON.parse(written) as Record<string, unknown>
    expect(entry).toMatchObject({ pin: REDACTED, token: REDACTED, device: { pin: REDACTED, passphrase: REDACTED, label: 'phone' }, statusUrl: REDACTED, secretKey: REDACTED, recoveryPhrase: REDACTED, msg: 'paired' })
  })

  it('read as short lines on a terminal', () => {
    const line = prettyLine(JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 1, 12, 0, 0), pid: 1, name: 'sync', msg: 'retrying the cloud', code: 'ERR_UNREACHABLE' }), false)
    expect(line).toMatch(/^\d\d:\d\d:\d\d WARN  retrying the cloud {2}code=ERR_UNREACHABLE$/)
    expect(prettyLine(JSON.stringify({ level: 50, time: 0, msg: 'x' }), true)).toContain('\x1b[31m')
  })
})
