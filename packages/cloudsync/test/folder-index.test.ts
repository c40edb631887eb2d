import { createHash, randomBytes } from 'node:crypto'
import { closeSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { FolderIndex, merkleRoot, type NewRecord } from '../src/folder-index.js'
import { removeDir, tempDir } from './helpers.js'

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) removeDir(dir)
})

async function openIndex(): Promise<{ index: FolderIndex; dir: string }> {
  const dir = tempDir('cloudsync-index-')
  dirs.push(dir)
  return { index: await FolderIndex.open(dir), dir }
}

function file(path: string, size = 10): NewRecord {
  return {
    path,
    size,
    mtimeMs: 1_700_000_000_000,
    mode: 0o644,
    chunkHashes: new Uint8Array(createHash('sha256').update(path).digest()),
    chunkLengths: [size],
    chunkSize: 16_384,
    version: { device: 1 },
    deleted: false,
  }
}

/** What the index holds, as a reader after a restart sees it. */
function consistent(index: FolderIndex): void {
  expect(index.root()).toEqual(merkleRoot(index.records()))
  const live = [...index.records()].filter((record) => !record.deleted)
  expect(index.live).toEqual({ files: live.length, bytes: live.reduce((sum, record) => sum + record.size, 0) })
}

describe('FolderIndex transactions', () => {
  it('a transaction that throws leaves nothing of itself, nested ones included', async () => {
    const { index } = await openIndex()
    index.put(file('kept.txt'))
    index.commit()
    const rootBefore = index.root()
    expect(() =>
      index.transaction(() => {
        index.put(file('a.txt'))
        index.transaction(() => {
          index.put(file('b.txt'))
          index.put(file('kept.txt', 99))
        })
        throw new Error('the scan was stopped')
      }),
    ).toThrow('the scan was stopped')
    expect(index.get('a.txt')).toBeUndefined()
    expect(index.get('b.txt')).toBeUndefined()
    expect(index.get('kept.txt')?.size).toBe(10)
    expect(index.root()).toEqual(rootBefore)
    consistent(index)
    // Later writes go on, with sequence numbers past the lost ones (peers may have seen them).
    const sequenceBefore = index.sequence
    const later = index.put(file('c.txt'))
    expect(later.sequence).toBeGreaterThan(sequenceBefore)
    index.commit()
    consistent(index)
    index.close()
  })

  it('writes made close together share one commit, made within 100 ms without a call to commit', async () => {
    const { index, dir } = await openIndex()
    // Another connection sees only what is committed (write-ahead log).
    const reader = new Database(join(dir, 'index.sqlite'), { readonly: true })
    const committed = () => (reader.prepare('SELECT count(*) AS n FROM files').get() as { n: number }).n
    for (let i = 0; i < 150; i++) index.put(file(`f${i}.txt`, i))
    // Later turns of the event loop join the same group.
    await new Promise((resolve) => setImmediate(resolve))
    for (let i = 150; i < 300; i++) index.put(file(`f${i}.txt`, i))
    expect(committed()).toBe(0)
    await new Promise((resolve) => setTimeout(resolve, 250))
    expect(committed()).toBe(300)
    reader.close()
    index.close()
    const reopened = await FolderIndex.open(dir)
    expect(reopened.live.files).toBe(300)
    consistent(reopened)
    reopened.close()
  })
  it('a transaction that throws takes back its own writes only, not the others of its group', async () => {
    const { index, dir } = await openIndex()
    index.put(file('kept-before.txt', 1))
    index.commit()
    index.touch('kept-before.txt', { mtimeMs: 5 })
    expect(() =>
      index.transaction(() => {
        index.put(file('dropped.txt', 2))
        index.setPeerSequence('peer', 7)
        throw new Error('the work failed')
      }),
    ).toThrow('the work failed')
    index.put(file('kept-after.txt', 3))
    expect(index.get('dropped.txt')).toBeUndefined()
    expect(index.peerSequence('peer')).toBe(0)
    expect(index.get('kept-before.txt')?.mtimeMs).toBe(5)
    consistent(index)
    index.close()
    const reopened = await FolderIndex.open(dir)
    expect([...reopened.records()].map((record) => record.path)).toEqual(['kept-after.txt', 'kept-before.txt'])
    consistent(reopened)
    reopened.close()
  })
})

describe('FolderIndex integrity check', () => {
  /** An index of many records, closed cleanly, a leaf page of one of its indexes overwritten (one that opening does not read); then `meta` set as given. */
  async function damaged(meta: Record<string, number>): Promise<string> {
    const { index, dir } = await openIndex()
    for (let i = 0; i < 2_000; i++) index.put(file(`folder/file-${i}.txt`, i))
    index.close()
    const path = join(dir, 'index.sqlite')
    const db = new Database(path)
    for (const [key, value] of Object.entries(meta)) db.prepare('UPDATE meta SET value = ? WHERE key = ?').run(value, key)
    db.pragma('wal_checkpoint(TRUNCATE)')
    const page = (db.prepare("SELECT pageno FROM dbstat WHERE name = 'chunks_by_path' AND pagetype = 'leaf' ORDER BY pageno DESC LIMIT 1").get() as { pageno: number }).pageno
    const pageSize = Number(db.pragma('page_size', { simple: true }))
    db.close()
    const fd = openSync(path, 'r+')
    writeSync(fd, randomBytes(pageSize), 0, pageSize, (page - 1) * pageSize)
    closeSync(fd)
    return dir
  }

  async function corruptionReported(dir: string): Promise<boolean> {
    let reported = false
    const index = await FolderIndex.open(dir, (error) => {
      expect(error.code).toBe('ERR_INDEX_CORRUPTED')
      reported = true
    })
    index.close()
    return reported
  }

  it('reads every page at open after an unclean close, or a day after the last check', async () => {
    expect(await corruptionReported(await damaged({ closed_clean: 0 }))).toBe(true)
    expect(await corruptionReported(await damaged({ checked_at: Date.now() - 25 * 3_600_000 }))).toBe(true)
  })

  it('skips the check after a clean close within a day of one, and sets aside what it finds later', async () => {
    const dir = await damaged({})
    expect(await corruptionReported(dir)).toBe(false)
    // That open was not closed cleanly on disk until its close: a crash now would check next time.
    const db = new Database(join(dir, 'index.sqlite'))
    expect((db.prepare("SELECT value FROM meta WHERE key = 'closed_clean'").get() as { value: number }).value).toBe(1)
    db.prepare("UPDATE meta SET value = 0 WHERE key = 'closed_clean'").run()
    db.close()
    expect(await corruptionReported(dir)).toBe(true)
  })
})
