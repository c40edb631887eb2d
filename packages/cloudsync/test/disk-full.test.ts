import { execFileSync, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import Database from 'better-sqlite3'
import { FolderIndex } from '../src/folder-index.js'
import { link, makeEngine, removeDir, sameRoot, tempDir, until } from './helpers.js'

// A real full disk: a small tmpfs. Mounting needs root (CI and this machine run as root);
// elsewhere the test says why it cannot run.
const canMount = (() => {
  if (process.getuid?.() !== 0) return false
  const probe = tempDir('cloudsync-mount-probe-')
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe]).status === 0
  if (mounted) spawnSync('umount', [probe])
  removeDir(probe)
  return mounted
})()

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/**
 * Alice on the normal disk, Bob on a 3 MiB tmpfs, linked; resolves once Bob reports the
 * full disk. Alice's folder holds `files` and a random `big` file that cannot fit.
 */
async function fullDiskPair(options: { bigBytes: number; bigName?: string; files?: Record<string, Buffer>; bobFiles?: Record<string, string> }) {
  const root = tempDir()
  cleanups.push(() => removeDir(root))
  const disk = join(root, 'disk')
  mkdirSync(disk)
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', disk])
  cleanups.push(() => void spawnSync('umount', ['-l', disk]))
  const a = makeEngine(join(root, 'a'), 'alice')
  const b = makeEngine(join(disk, 'b'), 'bob')
  const big = randomBytes(options.bigBytes)
  for (const [name, bytes] of Object.entries(options.files ?? {})) writeFileSync(join(a.folder, name), bytes)
  writeFileSync(join(a.folder, options.bigName ?? 'big.bin'), big)
  for (const [name, text] of Object.entries(options.bobFiles ?? {})) writeFileSync(join(b.folder, name), text)
  await a.start()
  await b.start()
  cleanups.push(() => b.stop())
  cleanups.push(() => a.stop())
  const [, session] = link(a, b)
  await until(() => b.events.some((event) => event.type === 'error' && event.error.code === 'ERR_DISK_FULL'), 15_000, 'the disk-full error')
  return { a, b, big, session, grow: () => execFileSync('mount', ['-o', 'remount,size=32m', disk]) }
}

describe('a full disk on the receiver', () => {
  it.runIf(canMount)('stops downloads with ERR_DISK_FULL, damages nothing, and completes once space returns', { timeout: 45_000 }, async () => {
    const small = Buffer.from('small and important')
    const { a, b, big, session, grow } = await fullDiskPair({ bigBytes: 6 * 1024 * 1024, bigName: 'z-big.bin', files: { 'small.txt': small }, bobFiles: { 'existing.txt': 'already here' } })
    await until(() => existsSync(join(b.folder, 'small.txt')), 5_000, 'small.txt')
    expect(readFileSync(join(b.folder, 'small.txt')).equals(small)).toBe(true)
    expect(readFileSync(join(b.folder, 'existing.txt'), 'utf8')).toBe('already here')
    expect(existsSync(join(b.folder, 'z-big.bin'))).toBe(false)
    // Space returns; a new session finishes the file too.
    grow()
    await session.close()
    link(a, b)
    await until(() => sameRoot(a, b), 15_000, 'the sync to complete')
    expect(readFileSync(join(b.folder, 'z-big.bin')).equals(big)).toBe(true)
  })

  it.runIf(canMount)('retries what did not fit on the same session once space returns: a later change does not mark it done', { timeout: 30_000 }, async () => {
    const { a, b, big, grow } = await fullDiskPair({ bigBytes: 6 * 1024 * 1024 })
    grow()
    // A later change makes the next pass: it must carry big.bin along, not mark it done.
    writeFileSync(join(a.folder, 'later.txt'), 'a later change')
    await a.scan()
    await until(() => existsSync(join(b.folder, 'later.txt')), 10_000, 'the later change')
    await until(() => sameRoot(a, b), 20_000, 'big.bin on the same session')
    expect(readFileSync(join(b.folder, 'big.bin')).equals(big)).toBe(true)
  })

  it.runIf(canMount)('retries by itself, with no new change and no reconnection, once space returns', { timeout: 30_000 }, async () => {
    const { a, b, big, grow } = await fullDiskPair({ bigBytes: 5 * 1024 * 1024 })
    grow()
    await until(() => sameRoot(a, b), 20_000, 'big.bin after space returns')
    expect(readFileSync(join(b.folder, 'big.bin')).equals(big)).toBe(true)
  })
})

describe('the index on a full disk', () => {
  const record = (path: string) => ({
    path,
    size: 5,
    mtimeMs: 1_700_000_000_000,
    mode: 0o644,
    chunkHashes: new Uint8Array(createHash('sha256').update(path).digest()),
    chunkLengths: [5],
    chunkSize: 16_384,
    version: { device: 1 },
    deleted: false,
  })

  it.runIf(canMount)('a group whose commit meets a full disk keeps its records and lands once space returns', { timeout: 20_000 }, async () => {
    const disk = tempDir('cloudsync-index-full-')
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', disk])
    cleanups.push(() => removeDir(disk))
    cleanups.push(() => void spawnSync('umount', ['-l', disk]))
    const index = await FolderIndex.open(join(disk, 'state'))
    cleanups.push(() => index.close())
    for (let i = 0; i < 20; i++) index.put(record(`first-${i}.txt`))
    index.commit()
    const reader = new Database(join(disk, 'state', 'index.sqlite'), { readonly: true })
    cleanups.push(() => void reader.close())
    const committed = () => (reader.prepare('SELECT count(*) AS n FROM files').get() as { n: number }).n
    for (let i = 0; i < 300; i++) index.put(record(`later-${i}.txt`))
    // Every page of the disk taken: the group's commit cannot grow the write-ahead log.
    const filler = join(disk, 'filler')
    try {
      for (;;) appendFileSync(filler, Buffer.alloc(4096))
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC')
    }
    expect(() => index.commit()).toThrow(expect.objectContaining({ code: 'SQLITE_FULL' }))
    // Nothing of the group is gone from what the index answers, and it keeps taking writes.
    expect(index.get('later-299.txt')?.size).toBe(5)
    index.put(record('during.txt'))
    await new Promise((resolve) => setTimeout(resolve, 1_300))
    expect(committed()).toBe(20)
    expect(index.live.files).toBe(321)
    rmSync(filler)
    await until(() => committed() === 321, 5_000, 'the group to land by itself')
    index.close()
    const reopened = await FolderIndex.open(join(disk, 'state'))
    expect(reopened.live.files).toBe(321)
    expect(reopened.get('during.txt')?.size).toBe(5)
    reopened.close()
  })
})
