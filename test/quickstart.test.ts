/**
 * The README's quickstart, as a newcomer runs it: a fresh clone of this repository (no
 * node_modules, no build), fresh CloudBox home folders, and exactly the two commands the
 * README shows. The test command runs with one small test file, so it does not recurse
 * into this suite; everything before vitest (install, build, dependency check, typecheck)
 * is the same.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const isClone = spawnSync('git', ['rev-parse', '--is-inside-work-tree'], { cwd: root, encoding: 'utf8' }).stdout.trim() === 'true'
let dir: string
let clone: string

/** The commands in the README's Quickstart code block, comments stripped. */
function quickstartCommands(): string[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const section = readme.split(/^## /m).find((part) => part.startsWith('Quickstart'))
  const block = /```sh\n([\s\S]*?)```/.exec(section ?? '')?.[1] ?? ''
  return block
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter((line) => line !== '')
}

/** Runs a command line in the clone with a fresh CloudBox home; resolves with its output. */
function sh(command: string, home: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, CLOUDBOX_HOME: home, NO_COLOR: '1' }
    // Nothing of this run's own setup leaks in: no vitest or pnpm state from the outer run.
    for (const key of Object.keys(env)) if (key.startsWith('VITEST') || key.startsWith('npm_') || key === 'NODE_OPTIONS' || key === 'PNPM_SCRIPT_SRC_DIR') delete env[key]
    const child = spawn('sh', ['-c', command], { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (data: Buffer) => (output += data.toString()))
    child.stderr.on('data', (data: Buffer) => (output += data.toString()))
    child.on('close', (code) => resolve({ code, output }))
  })
}

describe.skipIf(!isClone)('the README quickstart from a clean clone', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cloudbox-quickstart-'))
    clone = join(dir, 'cloudbox')
    const cloned = spawnSync('git', ['clone', '--quiet', '--no-hardlinks', root, clone], { encoding: 'utf8' })
    if (cloned.status !== 0) throw new Error(`git clone failed: ${cloned.stderr}`)
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('has exactly two commands: one runs the demo, one runs all tests', () => {
    expect(quickstartCommands()).toEqual(['npm run demo', 'npm test'])
    // .ci/run runs that same test command.
    expect(readFileSync(join(root, '.ci', 'run'), 'utf8')).toMatch(/^npm test$/m)
  })

  it('the demo command installs, builds and runs the demo to the end', { timeout: 600_000 }, async () => {
    expect(existsSync(join(clone, 'node_modules'))).toBe(false)
    const [demo] = quickstartCommands()
    const { code, output } = await sh(`${demo} -- --exit`, join(dir, 'home-demo'))
    expect(code, output.slice(-3000)).toBe(0)
    expect(output).toMatch(/then received 5 files, 32\.\d MiB, through the hub/)
    expect(output).toContain("verified the laptop's signature (yes) and opened it: intact yes")
    expect(output).toMatch(/Status page .*http:\/\/127\.0\.0\.1:\d+\/status\//)
    // The demo keeps its files in a temporary workspace and removes it; the home stays empty.
    expect(existsSync(join(dir, 'home-demo', 'identity.json'))).toBe(false)
  })

  it('the test command checks dependencies, typechecks and runs vitest', { timeout: 600_000 }, async () => {
    const [, test] = quickstartCommands()
    const { code, output } = await sh(`${test} -- test/check-deps.test.ts`, join(dir, 'home-test'))
    expect(code, output.slice(-3000)).toBe(0)
    expect(output).toMatch(/\n\d+ passed, 0 failed, 0 skipped\n/)
  })
})
