import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { createMemoryChannelPair } from '@cloudbox/encrypted-messaging'
import { afterEach, describe, expect, it } from 'vitest'
import { bump, syncCodec, type SyncEvent } from '../src/index.js'
import { link, makeEngine, removeDir, sameRoot, tempDir, until } from './helpers.js'

const dirs: string[] = []
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
  for (const dir of dirs.splice(0)) removeDir(dir)
})

/** Every entry of a folder (not .cloudbox/): folders, links with their target text, files with their content. */
function tree(folder: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      const rel = relative(folder, path)
      if (rel === '.cloudbox') continue
      const info = lstatSync(path)
      if (info.isSymbolicLink()) out[rel] = `link → ${readlinkSync(path)}`
      else if (info.isDirectory()) {
        out[rel] = 'folder'
        walk(path)
      } else out[rel] = `file ${readFileSync(path, 'utf8')}`
    }
  }
  walk(folder)
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)))
}

async function pair() {
  const root = tempDir('entries-')
  dirs.push(root)
  const a = makeEngine(join(root, 'a'), 'alice')
  const b = makeEngine(join(root, 'b'), 'bob')
  cleanups.push(() => a.stop(), () => b.stop())
  return { root, a, b }
}

describe('folders and symbolic links sync', () => {
  it('creates empty folders and links as links (a target outside the folder is kept as text, never resolved), then their changes and deletions', async () => {
    const { root, a, b } = await pair()
    mkdirSync(join(a.folder, 'empty', 'deeper'), { recursive: true })
    mkdirSync(join(a.folder, 'docs'))
    writeFileSync(join(a.folder, 'docs', 'readme.txt'), 'read me')
    symlinkSync('docs/readme.txt', join(a.folder, 'latest'))
    symlinkSync('/etc/passwd', join(a.folder, 'outside'))
    symlinkSync('../nowhere', join(a.folder, 'docs', 'dangling'))
    await a.start()
    await b.start()
    link(a, b)
    await until(() => sameRoot(a, b), 10_000, 'first sync')
    expect(tree(b.folder)).toEqual(tree(a.folder))
    expect(tree(b.folder)).toMatchObject({ empty: 'folder', 'empty/deeper': 'folder', latest: 'link → docs/readme.txt', outside: 'link → /etc/passwd', 'docs/dangling': 'link → ../nowhere' })
    expect(lstatSync(join(b.folder, 'outside')).isSymbolicLink()).toBe(true)
    // Files count files only.
    expect(b.usage.files).toBe(1)

    // A link changes target, an empty folder goes, a folder with its files goes, a link goes (not what it points to).
    rmSync(join(a.folder, 'latest'))
    symlinkSync('docs', join(a.folder, 'latest'))
    rmSync(join(a.folder, 'empty'), { recursive: true })
    rmSync(join(a.folder, 'outside'))
    await a.scan()
    await until(() => sameRoot(a, b), 10_000, 'changes reach bob')
    expect(tree(b.folder)).toEqual(tree(a.folder))
    expect(readlinkSync(join(b.folder, 'latest'))).toBe('docs')
    expect(existsSync(join(b.folder, 'empty'))).toBe(false)
    expect(existsSync('/etc/passwd')).toBe(true)

    rmSync(join(a.folder, 'docs'), { recursive: true })
    await a.scan()
    await until(() => sameRoot(a, b) && !existsSync(join(b.folder, 'docs')), 10_000, 'folder deletion reaches bob')
    // The deleted file is among bob's versions; the folder itself is simply gone.
    expect(b.versions.list('docs').map((version) => version.path)).toEqual(['docs/readme.txt'])
    expect(tree(b.folder)).toEqual({ latest: 'link → docs' })
    void root
  })

  it('a folder deleted by a peer stays (and comes back to the peer) when it holds a file the peer never had', async () => {
    const { a, b } = await pair()
    mkdirSync(join(a.folder, 'shared'))
    await a.start()
    await b.start()
    link(a, b)
    await until(() => sameRoot(a, b) && existsSync(join(b.folder, 'shared')), 10_000, 'folder reaches bob')
    await b.stop()
    writeFileSync(join(b.folder, 'shared', 'mine.txt'), 'only on bob')
    rmSync(join(a.folder, 'shared'), { recursive: true })
    await a.scan()
    await b.start()
    link(a, b)
    await until(() => sameRoot(a, b) && existsSync(join(a.folder, 'shared', 'mine.txt')), 10_000, 'bob\'s file brings the folder back')
    expect(tree(a.folder)).toEqual({ shared: 'folder', 'shared/mine.txt': 'file only on bob' })
  })

  it('a file replaced by a link (or a folder) on the peer is kept as a version here', async () => {
    const { a, b } = await pair()
    writeFileSync(join(a.folder, 'config'), 'original config')
    writeFileSync(join(a.folder, 'becomes-folder'), 'was a file')
    await a.start()
    await b.start()
    link(a, b)
    await until(() => sameRoot(a, b), 10_000, 'first sync')
    rmSync(join(a.folder, 'config'))
    symlinkSync('/etc/hostname', join(a.folder, 'config'))
    rmSync(join(a.folder, 'becomes-folder'))
    mkdirSync(join(a.folder, 'becomes-folder'))
    writeFileSync(join(a.folder, 'becomes-folder', 'inside.txt'), 'inside')
    await a.scan()
    await until(() => sameRoot(a, b), 10_000, 'replacements reach bob')
    expect(tree(b.folder)).toEqual(tree(a.folder))
    expect(b.versions.list().map((version) => [version.path, version.size])).toEqual([
      ['becomes-folder', 10],
      ['config', 15],
    ])
  })
})

describe('a hostile peer and links', () => {
  it('cannot write through a link it sent, nor send a link with content, and the session goes on', async () => {
    const root = tempDir('entries-attack-')
    dirs.push(root)
    const outside = join(root, 'outside')
    mkdirSync(outside)
    const victim = makeEngine(join(root, 'victim'), 'victim')
    cleanups.push(() => victim.stop())
    await victim.start()
    const [mine, theirs] = createMemoryChannelPair()
    victim.connect(mine, { peer: 'mallory' })
    const errors: SyncEvent[] = []
    victim.status.on((event) => {
      if (event.type === 'error') errors.push(event)
    })
    const record = (fields: Record<string, unknown>, sequence: number) => ({
      path: 'x',
      size: 0,
      mtimeMs: Date.now(),
      mode: 0o644,
      chunkHashes: new Uint8Array(0),
      chunkLengths: [],
      chunkSize: 0,
      version: bump({}, 'mallory'),
      deleted: false,
      sequence,
      ...fields,
    })
    await theirs.send(syncCodec.encode('hello', { folder: 'test-folder', device: 'mallory', root: new Uint8Array(32), sequence: 3 }))
    // First a link to outside, then a file "inside" it, then a link that claims content.
    await theirs.send(
      syncCodec.encode('index', {
        records: [
          record({ path: 'escape', kind: 'symlink', target: outside }, 1),
          record({ path: 'escape/pwned.txt', size: 0, chunkSize: 65536 }, 2),
          record({ path: 'fat-link', kind: 'symlink', target: 'x', size: 5, chunkSize: 8192, chunkLengths: [5], chunkHashes: new Uint8Array(32) }, 3),
        ],
      }),
    )
    await theirs.send(syncCodec.encode('indexEnd', { sequence: 3, root: new Uint8Array(32) }))
    await until(() => errors.length >= 2, 10_000, 'both refusals')
    expect(readlinkSync(join(victim.folder, 'escape'))).toBe(outside)
    expect(readdirSync(outside)).toEqual([])
    expect(existsSync(join(victim.folder, 'fat-link'))).toBe(false)
    const codes = errors.map((event) => (event as Extract<SyncEvent, { type: 'error' }>).error.code).sort()
    expect(codes).toEqual(['ERR_SYNC_PROTOCOL', 'ERR_UNSAFE_PATH'])
    await theirs.close()
  })
})
