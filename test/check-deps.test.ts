import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'

const script = fileURLToPath(new URL('../scripts/check-deps.mjs', import.meta.url))
const layers = ['securestorage', 'encrypted-messaging', 'cloudsync', 'cloudbox', 'cloudserver']
const apps = ['router-hub', 'demo']
let root: string

function fixture(extra: (root: string) => void = () => {}): string {
  root = mkdtempSync(join(tmpdir(), 'cloudbox-deps-'))
  for (const name of [...layers.map((n) => `packages/${n}`), ...apps.map((n) => `apps/${n}`)]) {
    mkdirSync(join(root, name, 'src'), { recursive: true })
    writeFileSync(join(root, name, 'package.json'), JSON.stringify({ name: `@cloudbox/${name.split('/')[1]}` }))
    writeFileSync(join(root, name, 'src', 'index.ts'), 'export {}\n')
  }
  extra(root)
  return root
}

function check(dir: string) {
  return spawnSync(process.execPath, [script, '--root', dir], { encoding: 'utf8' })
}

afterEach(() => rmSync(root, { recursive: true, force: true }))

describe('one-way dependency check', () => {
  it('passes a tree that respects the layers', () => {
    const dir = fixture((r) => {
      writeFileSync(join(r, 'packages/cloudsync/package.json'), JSON.stringify({ dependencies: { '@cloudbox/encrypted-messaging': 'workspace:^' } }))
      writeFileSync(join(r, 'packages/cloudsync/src/index.ts'), "import { Identity } from '@cloudbox/encrypted-messaging'\n")
    })
    expect(check(dir).status).toBe(0)
  })

  it('lets the cloudbox program host the router hub', () => {
    const dir = fixture((r) => {
      writeFileSync(join(r, 'apps/demo/package.json'), JSON.stringify({ dependencies: { '@cloudbox/router-hub': 'workspace:^' } }))
      writeFileSync(join(r, 'apps/demo/src/index.ts'), "import { RouterHub } from '@cloudbox/router-hub'\n")
    })
    expect(check(dir).status).toBe(0)
  })

  it.each([
    ['an upward package.json dependency', (r: string) => writeFileSync(join(r, 'packages/securestorage/package.json'), JSON.stringify({ dependencies: { '@cloudbox/cloudsync': '1' } }))],
    ['a sideways app dependency', (r: string) => writeFileSync(join(r, 'apps/router-hub/package.json'), JSON.stringify({ dependencies: { '@cloudbox/cloudbox': '1' } }))],
    ['the hub importing the program', (r: string) => writeFileSync(join(r, 'apps/router-hub/src/index.ts'), "import '@cloudbox/demo'\n")],
    ['an upward import', (r: string) => writeFileSync(join(r, 'packages/encrypted-messaging/src/index.ts'), "import '@cloudbox/cloudserver'\n")],
    ['a dynamic upward import in a test', (r: string) => {
      mkdirSync(join(r, 'packages/cloudsync/test'))
      writeFileSync(join(r, 'packages/cloudsync/test/a.test.ts'), "await import('@cloudbox/cloudbox')\n")
    }],
    ['a deep import of another package\'s src', (r: string) => writeFileSync(join(r, 'packages/cloudbox/src/index.ts'), "import '@cloudbox/cloudsync/src/engine.js'\n")],
    ['a relative path into another package', (r: string) => writeFileSync(join(r, 'packages/cloudsync/src/index.ts'), "import '../../encrypted-messaging/src/crypto.js'\n")],
  ])('fails on %s', (_name, mutate) => {
    const result = check(fixture(mutate))
    expect(result.status).toBe(1)
    expect(result.stderr).toContain('One-way dependency rule broken')
  })
})
