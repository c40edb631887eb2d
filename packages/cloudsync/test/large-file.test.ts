import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { link, makeEngine, removeDir, sameRoot, tempDir, until } from './helpers.js'

const GIB = 1024 ** 3
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r')
  try {
    const buffer = Buffer.alloc(length)
    readSync(fd, buffer, 0, length, offset)
    return buffer
  } finally {
    closeSync(fd)
  }
}

describe('files over 4 GiB', () => {
  it('a 4.5 GiB sparse file syncs with offsets past 2^32 intact (zero runs deduplicate)', async () => {
    const root = tempDir()
    cleanups.push(() => removeDir(root))
    const a = makeEngine(join(root, 'a'), 'alice')
    const b = makeEngine(join(root, 'b'), 'bob')
    const path = join(a.folder, 'sparse.img')
    const size = 4.5 * GIB
    const fd = openSync(path, 'w')
    writeSync(fd, Buffer.from('head of the file'), 0, 16, 0)
    writeSync(fd, Buffer.from('beyond four gibibytes'), 0, 21, 4 * GIB + 12345)
    writeSync(fd, Buffer.from('tail'), 0, 4, size - 4)
    closeSync(fd)
    expect(statSync(path).size).toBe(size)
    await a.start()
    await b.start()
    cleanups.push(() => b.stop())
    cleanups.push(() => a.stop())
    const [, session] = link(a, b)
    await until(() => sameRoot(a, b), 240_000, 'the 4.5 GiB file to sync')
    const copy = join(b.folder, 'sparse.img')
    expect(statSync(copy).size).toBe(size)
    expect(readAt(copy, 0, 16).toString()).toBe('head of the file')
    expect(readAt(copy, 4 * GIB + 12345, 21).toString()).toBe('beyond four gibibytes')
    expect(readAt(copy, size - 4, 4).toString()).toBe('tail')
    expect(readAt(copy, 3 * GIB, 8).equals(Buffer.alloc(8))).toBe(true)
    // Identical zero chunks travel once.
    expect(session.bytesReceived).toBeLessThan(64 * 1024 * 1024)
  }, 300_000)
})
