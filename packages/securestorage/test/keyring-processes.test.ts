import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

// These scenarios need fresh processes, so they run the built package (`pnpm build`,
// which `npm test` does first).
const script = fileURLToPath(new URL('./child-scenarios.mjs', import.meta.url))
const built = existsSync(fileURLToPath(new URL('../dist/index.js', import.meta.url)))
const dir = mkdtempSync(join(tmpdir(), 'cloudbox-keyring-proc-'))

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

function scenario(command: string, args: string[], env: NodeJS.ProcessEnv): Record<string, unknown> {
  const result = spawnSync(command, args, { env, encoding: 'utf8', timeout: 30_000 })
  expect(result.status, result.stderr).toBe(0)
  return JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as Record<string, unknown>
}

describe('keyring in separate processes', () => {
  it('the package is built (these tests run dist/)', () => {
    expect(built, 'run `pnpm build` (npm test does it) before these tests').toBe(true)
  })

  it('no D-Bus session: start fails with ERR_KEYRING_UNAVAILABLE and openSecureStorage falls back to the vault with a notice', () => {
    const env = { ...process.env }
    delete env.DBUS_SESSION_BUS_ADDRESS
    const outcome = scenario(process.execPath, [script, 'unavailable', `cloudbox-test-${process.pid}`, join(dir, 'fallback.cbv')], env)
    expect(outcome).toEqual({ start: 'ERR_KEYRING_UNAVAILABLE', fallbackKind: 'vault', notices: ['KEYRING_FALLBACK'], preferKeyring: 'ERR_KEYRING_UNAVAILABLE' })
  })

  it('the kernel keyring (keyutils) stores, lists and deletes, inside a `keyctl session`', () => {
    const outcome = scenario('keyctl', ['session', '-', process.execPath, script, 'keyutils', `cloudbox-test-${process.pid}`], process.env)
    expect(outcome).toEqual({ a: [1, 2, 3], list: ['a', 'b'], deleted: true, after: ['b'], missing: true })
  })
})
