import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// The README's example, run as a user would (against the built package).
describe('examples/pair-and-sync.mjs', () => {
  it('pairs, syncs a file, lists the device and checks a signature', () => {
    const cwd = fileURLToPath(new URL('..', import.meta.url))
    const result = spawnSync(process.execPath, ['examples/pair-and-sync.mjs'], { cwd, encoding: 'utf8', timeout: 60_000 })
    expect(result.stderr).toBe('')
    expect(result.status).toBe(0)
    expect(result.stdout).toMatch(/^cloudbox:\/\/pair\?id=cb1[0-9a-z]+&name=Home&addr=ws%3A%2F%2F127\.0\.0\.1%3A\d+$/m)
    expect(result.stdout).toContain('paired with "Home" as owner')
    expect(result.stdout).toContain('the server has hello.txt: "hello from the laptop\\n"')
    expect(result.stdout).toContain('devices: Laptop (owner, enabled)')
    expect(result.stdout).toContain('signature by the server checked: true')
  }, 70_000)
})
