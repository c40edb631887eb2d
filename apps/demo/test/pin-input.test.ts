/**
 * A PIN on the command line is readable by every local user (`ps`, /proc/PID/cmdline) for
 * as long as the command runs: the program takes it from a file or the environment too,
 * and then it appears nowhere in the process's arguments.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, it } from 'vitest'

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const PIN = '7531-8642'
const dir = mkdtempSync(join(tmpdir(), 'cloudbox-pin-input-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ ...process.env, CLOUDBOX_HOME: '', NO_COLOR: '1', CLOUDBOX_PASSPHRASE: 'correct horse battery staple', DBUS_SESSION_BUS_ADDRESS: '', CLOUDBOX_PIN: '', ...extra })

it('takes the PIN from --pin-file or CLOUDBOX_PIN, and it never shows in the arguments of a running server', { timeout: 90_000 }, async () => {
  const serverHome = join(dir, 'server-home')
  const deviceHome = join(dir, 'device-home')
  for (const home of [serverHome, deviceHome]) expect(spawnSync(process.execPath, [cli, 'init', '--home', home, '--storage', 'vault', '--json'], { env: env(), encoding: 'utf8' }).status).toBe(0)
  const pinFile = join(dir, 'master-pin')
  writeFileSync(pinFile, `${PIN}\n`, { mode: 0o600 })
  mkdirSync(join(dir, 'cloud'))
  const server = spawn(process.execPath, [cli, 'serve', join(dir, 'cloud'), '--home', serverHome, '--listen', '127.0.0.1:0', '--pin-file', pinFile, '--no-status-page', '--json'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] })
  try {
    const serving = await new Promise<Record<string, unknown>>((resolve, reject) => {
      let text = ''
      server.stdout!.on('data', (chunk: Buffer) => {
        text += chunk.toString()
        const line = text.split('\n').find((each) => each.includes('"serving"'))
        if (line !== undefined) resolve(JSON.parse(line) as Record<string, unknown>)
      })
      server.once('exit', (code) => reject(new Error(`serve exited with ${code}`)))
    })
    // What any local user sees of the running server.
    const cmdline = readFileSync(`/proc/${server.pid}/cmdline`, 'utf8')
    expect(cmdline).not.toContain(PIN)
    expect(serving).not.toHaveProperty('pin')
    // The device takes it from the environment: paired, so the file's PIN is the master PIN.
    const paired = spawnSync(process.execPath, [cli, 'pair', String(serving.uri), '--home', deviceHome, '--json'], { env: env({ CLOUDBOX_PIN: PIN }), encoding: 'utf8', timeout: 60_000 })
    expect(paired.status, paired.stderr).toBe(0)
    expect(JSON.parse(paired.stdout.trim().split('\n').at(-1) as string)).toMatchObject({ paired: { role: 'owner' } })
    // No PIN at all is a usage error that says where to put one.
    const none = spawnSync(process.execPath, [cli, 'pair', String(serving.uri), '--home', join(dir, 'nobody')], { env: env(), encoding: 'utf8', timeout: 60_000 })
    expect(none.status).toBe(2)
    expect(none.stderr).toContain('--pin-file')
  } finally {
    server.kill('SIGINT')
    await new Promise((resolve) => server.once('exit', resolve))
  }
})
