import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { isSyncError, VersionStore, type KeptVersion, type VersionPolicy } from '../src/index.js'
import { link, makeEngine, removeDir, sameRoot, snapshot, tempDir, until } from './helpers.js'

const dirs: string[] = []
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
  for (const dir of dirs.splice(0)) removeDir(dir)
})

function pair(options: Parameters<typeof makeEngine>[2] = {}) {
  const root = tempDir('versions-')
  dirs.push(root)
  const a = makeEngine(join(root, 'a'), 'alice', options)
  const b = makeEngine(join(root, 'b'), 'bob', options)
  cleanups.push(() => a.stop(), () => b.stop())
  return { root, a, b }
}

describe('versions of what a peer replaces or deletes', () => {
  it('keeps the old content of a replaced and a deleted file, and restores both as changes that sync back', async () => {
    const { a, b } = pair()
    writeFileSync(join(a.folder, 'report.txt'), 'first draft')
    mkdirSync(join(a.folder, 'notes'))
    writeFileSync(join(a.folder, 'notes', 'todo.txt'), 'buy milk')
    await a.start()
    await b.start()
    link(a, b)
    await until(() => sameRoot(a, b), 10_000, 'first sync')

    // Alice overwrites one file and deletes the other; Bob keeps both old contents.
    writeFileSync(join(a.folder, 'report.txt'), 'second draft, longer')
    removeDir(join(a.folder, 'notes', 'todo.txt'))
    await a.scan()
    await until(() => sameRoot(a, b) && !existsSync(join(b.folder, 'notes', 'todo.txt')), 10_000, 'changes reach bob')
    expect(readFileSync(join(b.folder, 'report.txt'), 'utf8')).toBe('second draft, longer')

    const kept = b.versions.list()
    expect(kept.map((version) => [version.path, version.reason, version.replacedBy, version.device, version.size])).toEqual([
      ['notes/todo.txt', 'deleted', 'alice', 'alice', 8],
      ['report.txt', 'replaced', 'alice', 'alice', 11],
    ])
    expect(b.versions.list('notes').map((version) => version.path)).toEqual(['notes/todo.txt'])
    expect(b.versions.list('notes/todo.txt')).toHaveLength(1)
    for (const version of kept) expect(version.id).toMatch(/^\d{8}-\d{6}-[0-9a-f]{4}$/)
    // Alice made the changes: nothing of hers was replaced by a peer.
    expect(a.versions.list()).toEqual([])

    // Restored on Bob: the old contents become new changes that reach Alice.
    for (const version of kept) expect((await b.versions.restore(version.id)).changed).toBe(true)
    await b.scan()
    await until(() => sameRoot(a, b) && existsSync(join(a.folder, 'notes', 'todo.txt')), 10_000, 'restores reach alice')
    expect(readFileSync(join(a.folder, 'report.txt'), 'utf8')).toBe('first draft')
    expect(readFileSync(join(a.folder, 'notes', 'todo.txt'), 'utf8')).toBe('buy milk')
    // The draft Bob's restore replaced is kept too (a restore never loses what it replaces)…
    const setAside = b.versions.list('report.txt').find((version) => version.reason === 'restore') as KeptVersion
    expect(setAside.size).toBe('second draft, longer'.length)
    // …and on Alice, the replaced draft is a version of Bob's change.
    expect(a.versions.list('report.txt').map((version) => [version.reason, version.replacedBy])).toEqual([['replaced', 'bob']])
    // A plain restore picks the newest version a change made, never what a restore set aside.
    expect(b.versions.newest('report.txt')?.reason).toBe('replaced')
    // Restoring what is already there changes nothing.
    expect((await b.versions.restore(b.versions.newest('report.txt')!.id)).changed).toBe(false)
  })

  it('restores to another place with `to`, leaving the folder alone; unknown IDs are ERR_VERSION_NOT_FOUND', async () => {
    const { root, a, b } = pair()
    writeFileSync(join(a.folder, 'photo.jpg'), Buffer.alloc(300_000, 7))
    await a.start()
    await b.start()
    link(a, b)
    await until(() => sameRoot(a, b), 10_000, 'first sync')
    writeFileSync(join(a.folder, 'photo.jpg'), Buffer.alloc(300_001, 8))
    await a.scan()
    await until(() => sameRoot(a, b), 10_000, 'edit reaches bob')
    const [version] = b.versions.list('photo.jpg') as [KeptVersion]
    const out = join(root, 'out', 'old.jpg')
    await b.versions.restore(version.id, { to: out })
    expect(readFileSync(out).equals(Buffer.alloc(300_000, 7))).toBe(true)
    expect(statSync(join(b.folder, 'photo.jpg')).size).toBe(300_001)
    await expect(b.versions.restore('20260101-000000-abcd')).rejects.toSatisfy((error) => isSyncError(error, 'ERR_VERSION_NOT_FOUND'))
    await expect(b.versions.restore('../../etc/passwd')).rejects.toSatisfy((error) => isSyncError(error, 'ERR_VERSION_NOT_FOUND'))
  })

  it('refuses to restore through a symbolic link in the path (attacker: a link planted where a folder was)', async () => {
    const { root, a, b } = pair()
    mkdirSync(join(a.folder, 'docs'))
    writeFileSync(join(a.folder, 'docs', 'a.txt'), 'A')
    await a.start()
    await b.start()
    link(a, b)
    await until(() => sameRoot(a, b), 10_000, 'first sync')
    removeDir(join(a.folder, 'docs'))
    await a.scan()
    await until(() => !existsSync(join(b.folder, 'docs', 'a.txt')), 10_000, 'delete reaches bob')
    const [version] = b.versions.list('docs') as [KeptVersion]
    await b.stop()
    const outside = join(root, 'outside')
    mkdirSync(outside)
    removeDir(join(b.folder, 'docs'))
    symlinkSync(outside, join(b.folder, 'docs'))
    const store = VersionStore.open(b.folder)
    try {
      await expect(store.restore(version.id)).rejects.toSatisfy((error) => isSyncError(error, 'ERR_UNSAFE_PATH'))
      expect(existsSync(join(outside, 'a.txt'))).toBe(false)
    } finally {
      store.close()
    }
  })

  it('keeps nothing with the policy off', async () => {
    const { a, b } = pair({ versions: { policy: { kind: 'off' } } })
    writeFileSync(join(a.folder, 'x.txt'), 'x')
    await a.start()
    await b.start()
    link(a, b)
    await until(() => sameRoot(a, b), 10_000, 'first sync')
    removeDir(join(a.folder, 'x.txt'))
    await a.scan()
    await until(() => sameRoot(a, b) && !existsSync(join(b.folder, 'x.txt')), 10_000, 'delete reaches bob')
    expect(b.versions.list()).toEqual([])
    expect(snapshot(b.folder)).toEqual({})
  })
})

describe('version policies', () => {
  function storeWith(policy: VersionPolicy, maxDiskShare?: number) {
    const folder = tempDir('versions-policy-')
    dirs.push(folder)
    const store = VersionStore.open(folder, { policy, deviceId: 'me', ...(maxDiskShare === undefined ? {} : { maxDiskShare }) })
    cleanups.push(() => store.close())
    const keepOne = (path: string, content: string) => {
      writeFileSync(join(folder, path), content)
      return store.keep(path, { move: true, reason: 'deleted' }) as KeptVersion
    }
    return { folder, store, keepOne }
  }

  it('simple keeps the last N of each file', () => {
    const { store, keepOne } = storeWith({ kind: 'simple', keep: 2 })
    for (let i = 0; i < 5; i++) keepOne('a.txt', `a${i}`)
    keepOne('b.txt', 'b')
    expect(store.list('a.txt')).toHaveLength(2)
    expect(store.list('b.txt')).toHaveLength(1)
  })

  it('trash and staggered drop what is older than their days; staggered thins out by age', () => {
    const { store, keepOne } = storeWith({ kind: 'trash', days: 7 })
    keepOne('a.txt', 'a')
    const day = 24 * 3_600_000
    expect(store.prune(Date.now() + 6 * day)).toBe(0)
    expect(store.prune(Date.now() + 8 * day)).toBe(1)
    expect(store.list()).toEqual([])

    // Staggered: ten versions kept within a second, looked at two hours later, fall in the same hour: one stays.
    store.policy = { kind: 'staggered', days: 30 }
    for (let i = 0; i < 10; i++) keepOne('s.txt', `s${i}`)
    expect(store.list('s.txt')).toHaveLength(10) // all kept while younger than 30 s
    store.prune(Date.now() + 2 * 3_600_000)
    expect(store.list('s.txt')).toHaveLength(1)
    store.prune(Date.now() + 31 * day)
    expect(store.list('s.txt')).toHaveLength(0)
  })

  it('the disk bound removes the oldest versions first', () => {
    // A share so small that no version fits: everything past it goes, oldest first.
    const { store, keepOne, folder } = storeWith({ kind: 'trash', days: 30 }, 1e-12)
    const kept = keepOne('big.bin', 'x'.repeat(10_000))
    store.prune()
    expect(store.get(kept.id)).toBeUndefined()
    expect(existsSync(join(folder, '.cloudbox', 'versions', kept.id))).toBe(false)
  })

  it('refuses bad policies with a RangeError', () => {
    const folder = tempDir('versions-bad-')
    dirs.push(folder)
    expect(() => makeEngine(folder, 'me', { versions: { policy: { kind: 'simple', keep: 0 } } })).toThrow(RangeError)
    expect(() => makeEngine(folder, 'me', { versions: { policy: { kind: 'weekly' } as never } })).toThrow(RangeError)
  })
})
