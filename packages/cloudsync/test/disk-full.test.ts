import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
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

/** Alice on the normal disk, Bob on a 3 MiB tmpfs; Alice's folder holds `big` (Bob's fills up). */
async function fullDiskPair(bigBytes: number) {
  const root = tempDir()
  cleanups.push(() => removeDir(root))
  const disk = join(root, 'disk')
  mkdirSync(disk)
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', disk])
  cleanups.push(() => void spawnSync('umount', ['-l', disk]))
  const a = makeEngine(join(root, 'a'), 'alice')
  const b = makeEngine(join(disk, 'b'), 'bob')
  const big = randomBytes(bigBytes)
  writeFileSync(join(a.folder, 'big.bin'), big)
  await a.start()
  await b.start()
  cleanups.push(() => b.stop())
  cleanups.push(() => a.stop())
  link(a, b)
  await until(() => b.events.some((event) => event.type === 'error' && event.error.code === 'ERR_DISK_FULL'), 15_000, 'the disk-full error')
  return { a, b, big, grow: () => execFileSync('mount', ['-o', 'remount,size=32m', disk]) }
}

describe('a full disk on the receiver', () => {
  it.runIf(canMount)('stops downloads with ERR_DISK_FULL, damages nothing, and completes once space returns', async () => {
    const root = tempDir()
    cleanups.push(() => removeDir(root))
    const disk = join(root, 'disk')
    mkdirSync(disk)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', disk])
    cleanups.push(() => void spawnSync('umount', ['-l', disk]))
    const a = makeEngine(join(root, 'a'), 'alice')
    const b = makeEngine(join(disk, 'b'), 'bob')
    const small = Buffer.from('small and important')
    const big = randomBytes(6 * 1024 * 1024)
    writeFileSync(join(a.folder, 'small.txt'), small)
    writeFileSync(join(a.folder, 'z-big.bin'), big)
    writeFileSync(join(b.folder, 'existing.txt'), 'already here')
    await a.start()
    await b.start()
    cleanups.push(() => b.stop())
    cleanups.push(() => a.stop())
    let [, session] = link(a, b)
    await until(() => b.events.some((event) => event.type === 'error' && event.error.code === 'ERR_DISK_FULL'), 15_000, 'the disk-full error')
    await until(() => existsSync(join(b.folder, 'small.txt')), 5_000, 'small.txt')
    expect(readFileSync(join(b.folder, 'small.txt')).equals(small)).toBe(true)
    expect(readFileSync(join(b.folder, 'existing.txt'), 'utf8')).toBe('already here')
    expect(existsSync(join(b.folder, 'z-big.bin'))).toBe(false)
    // Space returns; the next session finishes the file.
    execFileSync('mount', ['-o', 'remount,size=32m', disk])
    await session.close()
    ;[, session] = link(a, b)
    await until(() => sameRoot(a, b), 15_000, 'the sync to complete')
    expect(readFileSync(join(b.folder, 'z-big.bin')).equals(big)).toBe(true)
  })

  it.runIf(canMount)('retries what did not fit on the same session once space returns: a later change does not mark it done', { timeout: 30_000 }, async () => {
    const { a, b, big, grow } = await fullDiskPair(6 * 1024 * 1024)
    grow()
    // A later change makes the next pass: it must carry big.bin along, not mark it done.
    writeFileSync(join(a.folder, 'later.txt'), 'a later change')
    await a.scan()
    await until(() => existsSync(join(b.folder, 'later.txt')), 10_000, 'the later change')
    await until(() => sameRoot(a, b), 20_000, 'big.bin on the same session')
    expect(readFileSync(join(b.folder, 'big.bin')).equals(big)).toBe(true)
  })

  it.runIf(canMount)('retries by itself, with no new change and no reconnection, once space returns', { timeout: 30_000 }, async () => {
    const { a, b, big, grow } = await fullDiskPair(5 * 1024 * 1024)
    grow()
    await until(() => sameRoot(a, b), 20_000, 'big.bin after space returns')
    expect(readFileSync(join(b.folder, 'big.bin')).equals(big)).toBe(true)
  })
})
