// The published packages as a user installs them: linted by publint and
// @arethetypeswrong/cli, loadable with require() (no top-level await anywhere in the
// chain), and packed with every file their READMEs link to.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const bin = (name: string): string => join(root, 'node_modules', '.bin', name)
const published = readdirSync(join(root, 'packages')).map((name) => join(root, 'packages', name))

interface Manifest {
  name: string
  version: string
  private?: boolean
  license?: string
  keywords?: string[]
  files?: string[]
}
const manifest = (dir: string): Manifest => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest

function run(command: string, args: string[], cwd: string): { status: number | null; output: string; stdout: string } {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }, timeout: 120_000 })
  return { status: result.status, output: `${result.stdout}${result.stderr}`, stdout: result.stdout }
}

describe.each(published)('%s', (dir) => {
  const pkg = manifest(dir)

  it('is a public package with a license, a LICENSE file and keywords', () => {
    expect(pkg.private).not.toBe(true)
    expect(pkg.license).toBe('Apache-2.0')
    expect(readFileSync(join(dir, 'LICENSE'), 'utf8')).toContain('Apache License')
    expect(pkg.keywords?.length ?? 0).toBeGreaterThan(2)
  })

  it('passes publint --strict and attw --profile esm-only on the packed tarball', () => {
    const lint = run(bin('publint'), ['--strict'], dir)
    expect(lint.status, lint.output).toBe(0)
    const types = run(bin('attw'), ['--pack', '.', '--profile', 'esm-only', '--format', 'ascii'], dir)
    expect(types.status, types.output).toBe(0)
  }, 120_000)

  it('packs every file its README links to', () => {
    const packed = run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], dir)
    expect(packed.status, packed.output).toBe(0)
    const listing = JSON.parse(packed.stdout) as { files: { path: string }[] }[]
    const files = new Set(listing[0]!.files.map((file) => file.path))
    const readme = readFileSync(join(dir, 'README.md'), 'utf8')
    const links = [...readme.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((match) => match[1]!).filter((target) => !/^[a-z]+:/i.test(target))
    for (const link of links) {
      const path = normalize(link).replace(/\/$/, '')
      // A link out of the package (to the repository) is not the package's to pack.
      if (path.startsWith('..')) continue
      expect(existsSync(join(dir, path)), `${link} exists`).toBe(true)
      expect([...files].some((file) => file === path || file.startsWith(`${path}/`)), `${link} is packed`).toBe(true)
    }
  })

  it('loads with require() from CommonJS', () => {
    const script = `const m = require(${JSON.stringify(dir)}); if (Object.keys(m).length === 0) process.exit(2); console.log('ok')`
    const loaded = run(process.execPath, ['-e', script], root)
    expect(loaded.output).not.toContain('ERR_REQUIRE_ASYNC_MODULE')
    expect(loaded.status, loaded.output).toBe(0)
  })
})

describe('the curve library loads without a top-level await', () => {
  it('makes the same keys, signatures and shared secrets before ready() (node:crypto) as after (libsodium), and asks for ready() where it must', () => {
    // A fresh process: the first lines run before the WASM module has loaded.
    const script = [
      `const em = require(${JSON.stringify(join(root, 'packages', 'encrypted-messaging'))})`,
      `const hex = (bytes) => Buffer.from(bytes).toString('hex')`,
      `const message = new TextEncoder().encode('signed before and after')`,
      `const measure = () => {`,
      `  const alice = em.Identity.fromRecoveryPhrase(phrase)`,
      `  const bob = em.Identity.fromRecoveryPhrase(bobPhrase)`,
      `  return { id: alice.publicId, age: alice.ageRecipient, signature: hex(alice.sign(message)), shared: hex(alice.agree(bob.x25519PublicKey)), lowOrder: alice.agree(new Uint8Array(32)) === undefined }`,
      `}`,
      `const { recoveryPhrase: phrase } = em.Identity.generate()`,
      `const { recoveryPhrase: bobPhrase } = em.Identity.generate()`,
      `const readyAtFirst = em.isReady()`,
      `const before = measure()`,
      `let code = 'none'`,
      `try { em.parsePublicId(before.id) } catch (error) { code = error.code }`,
      `let isIdCode = 'none'`,
      `try { em.isPublicId(before.id) } catch (error) { isIdCode = error.code }`,
      `em.ready().then(() => {`,
      `  const after = measure()`,
      `  console.log(JSON.stringify({ readyAtFirst, before, after, code, isIdCode, parsed: em.isPublicId(after.id) }))`,
      `})`,
    ].join('\n')
    const result = run(process.execPath, ['-e', script], root)
    expect(result.status, result.output).toBe(0)
    const report = JSON.parse(result.stdout) as { readyAtFirst: boolean; before: Record<string, unknown>; after: Record<string, unknown>; code: string; isIdCode: string; parsed: boolean }
    expect(report.readyAtFirst).toBe(false)
    expect(report.before).toEqual(report.after)
    expect(report.before['id']).toMatch(/^cb1/)
    expect(report.before['lowOrder']).toBe(true)
    expect(report.code).toBe('ERR_CRYPTO_NOT_READY')
    expect(report.isIdCode).toBe('ERR_CRYPTO_NOT_READY')
    expect(report.parsed).toBe(true)
  })
})

describe('the cloudbox program', () => {
  it('prints the version changesets gave it', () => {
    const { version } = manifest(join(root, 'apps', 'demo'))
    expect(version).toMatch(/^\d+\.\d+\.\d+/)
    expect(version).not.toBe('0.0.0')
    const printed = run(process.execPath, [join(root, 'apps', 'demo', 'dist', 'cli.js'), '--version'], root)
    expect(printed.status, printed.output).toBe(0)
    expect(printed.stdout.trim()).toBe(version)
  })
})
