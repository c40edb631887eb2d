import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createMemoryChannelPair, type MessageChannel } from '@cloudbox/encrypted-messaging'
import { afterEach, describe, expect, it } from 'vitest'
import { syncCodec, type SyncEngine } from '../src/index.js'
import { link, makeEngine, removeDir, sameRoot, snapshot, tempDir, until } from './helpers.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function pair(prepare?: (a: string, b: string) => void) {
  const root = tempDir()
  const a = makeEngine(join(root, 'a'), 'alice')
  const b = makeEngine(join(root, 'b'), 'bob')
  prepare?.(a.folder, b.folder)
  await a.start()
  await b.start()
  cleanups.push(() => removeDir(root))
  cleanups.push(() => b.stop())
  cleanups.push(() => a.stop())
  return { root, a, b }
}

async function synced(a: SyncEngine, b: SyncEngine): Promise<void> {
  await until(() => sameRoot(a, b), 15_000, 'the indexes to be in sync')
  expect(snapshot(b.folder)).toEqual(snapshot(a.folder))
}

describe('two engines over a memory pair', () => {
  it('sync both ways on first contact: nested folders, Unicode names, empty files', async () => {
    const { a, b } = await pair((fa, fb) => {
      mkdirSync(join(fa, 'docs/deep'), { recursive: true })
      writeFileSync(join(fa, 'docs/deep/report.txt'), 'quarterly numbers')
      writeFileSync(join(fa, 'empty.txt'), '')
      writeFileSync(join(fa, 'ünïcødé ✓.md'), 'unicode')
      writeFileSync(join(fb, 'photo.bin'), randomBytes(300_000))
    })
    link(a, b)
    await synced(a, b)
    expect(Object.keys(snapshot(b.folder))).toEqual(['docs/deep/report.txt', 'empty.txt', 'photo.bin', 'ünïcødé ✓.md'])
    expect(a.events.some((event) => event.type === 'latency')).toBe(true)
  })

  it('sends only the changed chunks of an edited file, and nothing for a rename', async () => {
    // Seeded, so the cut points (and the bytes sent) are the same every run.
    const noise = (size: number, seed: string) => createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16)).update(Buffer.alloc(size))
    const data = noise(4 * 1024 * 1024, 'big')
    const { a, b } = await pair((fa) => writeFileSync(join(fa, 'big.bin'), data))
    const [, sessionB] = link(a, b)
    await synced(a, b)
    const first = sessionB.bytesReceived
    expect(first).toBe(data.length)
    // 10 KiB changed in the middle, 100 bytes inserted near the start.
    const edited = Buffer.concat([data.subarray(0, 1000), noise(100, 'inserted'), data.subarray(1000)])
    noise(10 * 1024, 'changed').copy(edited, 2 * 1024 * 1024)
    writeFileSync(join(a.folder, 'big.bin'), edited)
    await a.scan()
    await synced(a, b)
    const delta = sessionB.bytesReceived - first
    expect(delta).toBeGreaterThan(10 * 1024)
    // The chunks around the two edits (64 KiB on average): a few of them, not the file.
    expect(delta).toBeLessThan(5 * 64 * 1024)
    renameSync(join(a.folder, 'big.bin'), join(a.folder, 'moved.bin'))
    await a.scan()
    await synced(a, b)
    expect(sessionB.bytesReceived - first - delta).toBe(0)
    expect(existsSync(join(b.folder, 'big.bin'))).toBe(false)
    expect(readFileSync(join(b.folder, 'moved.bin')).equals(edited)).toBe(true)
  })

  it('deletes propagate; an edit beats a concurrent delete', async () => {
    const { a, b } = await pair((fa) => {
      writeFileSync(join(fa, 'gone.txt'), 'bye')
      writeFileSync(join(fa, 'kept.txt'), 'v1')
    })
    let [sa] = link(a, b)
    await synced(a, b)
    rmSync(join(a.folder, 'gone.txt'))
    await a.scan()
    await synced(a, b)
    expect(existsSync(join(b.folder, 'gone.txt'))).toBe(false)
    // Disconnect; A deletes kept.txt while B edits it.
    await sa.close()
    rmSync(join(a.folder, 'kept.txt'))
    await a.scan()
    writeFileSync(join(b.folder, 'kept.txt'), 'v2 from bob')
    await b.scan()
    ;[sa] = link(a, b)
    await synced(a, b)
    expect(readFileSync(join(a.folder, 'kept.txt'), 'utf8')).toBe('v2 from bob')
  })

  it('a file changed on both sides is never lost: the loser becomes a conflict copy', async () => {
    const { a, b } = await pair((fa) => writeFileSync(join(fa, 'notes.txt'), 'base'))
    const [sa] = link(a, b)
    await synced(a, b)
    await sa.close()
    writeFileSync(join(a.folder, 'notes.txt'), 'alice version')
    await a.scan()
    await new Promise((resolve) => setTimeout(resolve, 20))
    writeFileSync(join(b.folder, 'notes.txt'), 'bob version (later)')
    await b.scan()
    link(a, b)
    await synced(a, b)
    const files = snapshot(a.folder)
    const names = Object.keys(files)
    expect(names).toHaveLength(2)
    const contents = Object.values(files).map((v) => Buffer.from(v, 'base64').toString())
    expect(contents.sort()).toEqual(['alice version', 'bob version (later)'])
    expect(Buffer.from(files['notes.txt'] as string, 'base64').toString()).toBe('bob version (later)')
    expect(names.find((n) => n !== 'notes.txt')).toMatch(/^notes\.sync-conflict-\d{8}-\d{6}-alice\.txt$/)
    expect(a.events.some((event) => event.type === 'conflict') || b.events.some((event) => event.type === 'conflict')).toBe(true)
  })

  it('brings held deletions back from a peer instead of deleting them, and needs a peer for it', async () => {
    const { a, b } = await pair((fa) => {
      for (let i = 0; i < 20; i++) writeFileSync(join(fa, `f${i}.txt`), `file ${i}`)
    })
    const [sa] = link(a, b)
    await synced(a, b)
    await sa.close()
    for (let i = 0; i < 16; i++) rmSync(join(a.folder, `f${i}.txt`))
    await a.scan()
    expect(a.heldDeletes).toHaveLength(16)
    await expect(a.restoreHeldDeletes()).rejects.toMatchObject({ code: 'ERR_NO_PEER' })
    const before = a.events.length
    link(a, b)
    await until(() => a.events.slice(before).some((event) => event.type === 'peer' && event.state === 'connected'), 5_000, 'the peer')
    // The peer's copy of one of them changed meanwhile (not scanned there yet): that one
    // cannot come back as it was, and stays held; nothing is deleted.
    writeFileSync(join(b.folder, 'f0.txt'), 'changed on bob')
    const first = await a.restoreHeldDeletes()
    expect(first.failed.map((failure) => [failure.path, failure.error.code])).toEqual([['f0.txt', 'ERR_CHUNK_UNAVAILABLE']])
    expect(first.restored.sort()).toEqual(Array.from({ length: 15 }, (_, i) => `f${i + 1}.txt`).sort())
    expect(a.heldDeletes).toEqual(['f0.txt'])
    expect(a.state).toBe('paused')
    expect(readFileSync(join(b.folder, 'f0.txt'), 'utf8')).toBe('changed on bob')
    // Once bob has scanned his edit, it comes back too (his version, which is newer).
    await b.scan()
    await until(() => existsSync(join(a.folder, 'f0.txt')), 5_000, 'bob\'s edit')
    await a.scan()
    expect(a.heldDeletes).toEqual([])
    expect(a.state).not.toBe('paused')
    for (let i = 1; i < 20; i++) expect(readFileSync(join(a.folder, `f${i}.txt`), 'utf8')).toBe(`file ${i}`)
    expect(readFileSync(join(a.folder, 'f0.txt'), 'utf8')).toBe('changed on bob')
    await synced(a, b)
    expect(readdirSync(b.folder).filter((n) => n.endsWith('.txt'))).toHaveLength(20)
  })

  it('a copied or moved folder of small files is put together from what is here, not downloaded again', async () => {
    const files = Array.from({ length: 20 }, (_, i) => [`docs/n${i}.txt`, randomBytes(200 + i * 300)] as const)
    const { a, b } = await pair((fa) => {
      mkdirSync(join(fa, 'docs'))
      for (const [path, bytes] of files) writeFileSync(join(fa, path), bytes)
    })
    link(a, b)
    await synced(a, b)
    mkdirSync(join(a.folder, 'copy'))
    for (const [path, bytes] of files) writeFileSync(join(a.folder, path.replace('docs/', 'copy/')), bytes)
    await a.scan()
    await synced(a, b)
    const arrived = b.events.filter((event) => event.type === 'file' && event.action === 'downloaded' && event.path.startsWith('copy/'))
    expect(arrived).toHaveLength(files.length)
    expect(arrived.every((event) => event.type === 'file' && event.bytesFromPeer === 0 && event.bytesReused > 0)).toBe(true)
  })

  it('pauses a mass delete until confirmed', async () => {
    const { a, b } = await pair((fa) => {
      for (let i = 0; i < 20; i++) writeFileSync(join(fa, `f${i}.txt`), `file ${i}`)
    })
    link(a, b)
    await synced(a, b)
    for (let i = 0; i < 16; i++) rmSync(join(a.folder, `f${i}.txt`))
    const result = await a.scan()
    expect(result.pausedDeletes).toHaveLength(16)
    expect(a.state).toBe('paused')
    expect(a.events.some((event) => event.type === 'error' && event.error.code === 'ERR_MASS_DELETE')).toBe(true)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(readdirSync(b.folder).filter((n) => n.endsWith('.txt'))).toHaveLength(20)
    await a.confirmDeletes()
    await synced(a, b)
    expect(readdirSync(b.folder).filter((n) => n.endsWith('.txt'))).toHaveLength(4)
  })

  it('holds a mass delete that arrives in small batches (a slow rm -rf): deletions of the last minute count together', async () => {
    const { a, b } = await pair((fa) => {
      for (let i = 0; i < 30; i++) writeFileSync(join(fa, `f${i}.txt`), `file ${i}`)
    })
    link(a, b)
    await synced(a, b)
    // Each batch alone is under the guard's share (and the first under its minimum).
    for (let i = 0; i < 8; i++) rmSync(join(a.folder, `f${i}.txt`))
    expect((await a.scan()).deleted).toHaveLength(8)
    for (let i = 8; i < 16; i++) rmSync(join(a.folder, `f${i}.txt`))
    const second = await a.scan()
    expect(second.deleted).toEqual([])
    expect(second.pausedDeletes).toHaveLength(8)
    expect(a.state).toBe('paused')
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(readdirSync(b.folder).filter((n) => n.endsWith('.txt'))).toHaveLength(22)
    // Confirmed: they go, and the window starts again (the next small deletion is not held).
    await a.confirmDeletes()
    await synced(a, b)
    expect(readdirSync(b.folder).filter((n) => n.endsWith('.txt'))).toHaveLength(14)
    rmSync(join(a.folder, 'f16.txt'))
    expect((await a.scan()).deleted).toEqual(['f16.txt'])
  })

  it('resumes a transfer cut mid-file from the chunks already received', async () => {
    const data = randomBytes(3 * 1024 * 1024)
    const { a, b } = await pair((fa) => writeFileSync(join(fa, 'large.bin'), data))
    // A relay that cuts the connection once some chunks went through (a data message holds up to 1 MiB).
    const [ax, relayA] = createMemoryChannelPair()
    const [relayB, bx] = createMemoryChannelPair()
    let chunksSeen = 0
    const pump = async (from: MessageChannel, to: MessageChannel, countData: boolean) => {
      try {
        for await (const message of from) {
          if (countData && syncCodec.decode(message).kind === 'data' && ++chunksSeen > 1) {
            await to.close(new Error('cut'))
            await from.close(new Error('cut'))
            return
          }
          await to.send(message)
        }
      } catch {
        // cut
      }
    }
    void pump(relayA, relayB, true)
    void pump(relayB, relayA, false)
    const first = b.connect(bx, { peer: a.deviceId })
    a.connect(ax, { peer: b.deviceId })
    await first.closed
    expect(existsSync(join(b.folder, 'large.bin'))).toBe(false)
    const received = first.bytesReceived
    expect(received).toBeGreaterThan(0)
    const [, second] = link(a, b)
    await synced(a, b)
    expect(second.bytesReceived + received).toBeLessThan(data.length + 200 * 1024)
    expect(second.bytesReceived).toBeLessThan(data.length)
    expect(readFileSync(join(b.folder, 'large.bin')).equals(data)).toBe(true)
  })
})

describe('races with local edits', () => {
  it('keeps a local edit that a scan records while a download of the same file runs', { timeout: 30_000 }, async () => {
    const { a, b } = await pair((fa) => writeFileSync(join(fa, 'todo.md'), '# Todo\n'))
    const [first] = link(a, b)
    await synced(a, b)
    await first.close()
    writeFileSync(join(b.folder, 'todo.md'), '# Todo\n- from bob\n')
    await b.scan()
    writeFileSync(join(a.folder, 'todo.md'), '# Todo\n- from alice, not scanned yet\n')
    // A relay that holds bob's chunks until alice has scanned her own edit.
    const [ax, relayA] = createMemoryChannelPair()
    const [relayB, bx] = createMemoryChannelPair()
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    let held = false
    const pump = async (from: MessageChannel, to: MessageChannel, hold: boolean) => {
      try {
        for await (const message of from) {
          if (hold && syncCodec.decode(message).kind === 'data') {
            held = true
            await released
          }
          await to.send(message)
        }
      } catch {
        // closed at the end of the test
      }
    }
    void pump(relayA, relayB, false)
    void pump(relayB, relayA, true)
    a.connect(ax, { peer: b.deviceId })
    b.connect(bx, { peer: a.deviceId })
    await until(() => held, 10_000, 'bob\'s chunks to be on their way')
    await a.scan()
    release()
    await until(() => a.events.some((event) => event.type === 'conflict'), 10_000, 'alice to keep her edit as a conflict copy')
    await a.scan() // the copy is a new file here (no watcher in these tests)
    await synced(a, b)
    // Nothing lost: both edits are there. (When each side settles the conflict on its own
    // before hearing from the other, one edit can end up in two copies.)
    const texts = readdirSync(a.folder).filter((name) => name.endsWith('.md')).map((name) => readFileSync(join(a.folder, name), 'utf8'))
    expect([...new Set(texts)].sort()).toEqual(['# Todo\n- from alice, not scanned yet\n', '# Todo\n- from bob\n'])
    expect(texts.length).toBeLessThanOrEqual(3)
    // In sync and quiet: no batches traded back and forth once there is nothing to do.
    // (A loop trades hundreds of batches a second; the last ack of the exchange may still land.)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const before = a.events.length + b.events.length
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(a.events.length + b.events.length - before).toBeLessThan(20)
  })
})

describe('hostile peers', () => {
  async function fakePeer(engine: SyncEngine) {
    const [mine, theirs] = createMemoryChannelPair()
    const session = engine.connect(theirs, { peer: 'mallory' })
    const inbox = mine[Symbol.asyncIterator]()
    const next = async () => syncCodec.decode((await inbox.next()).value as Uint8Array)
    await mine.send(syncCodec.encode('hello', { folder: 'test-folder', device: 'mallory', root: new Uint8Array(32), sequence: 1 }))
    return { mine, session, next }
  }

  const record = (path: string, content: Buffer) => {
    const hash = new Uint8Array(createHash('sha256').update(content).digest())
    return { path, size: content.length, mtimeMs: Date.now(), mode: 0o644, chunkHashes: hash, chunkLengths: [content.length], chunkSize: 65536, version: { mallory: 1 }, deleted: false, sequence: 1 }
  }

  it('refuses unsafe names with ERR_UNSAFE_PATH and goes on with the rest', async () => {
    const { a } = await pair()
    const outside = join(a.folder, '..', 'outside')
    mkdirSync(outside)
    symlinkSync(outside, join(a.folder, 'link'))
    const { mine, next } = await fakePeer(a)
    const good = Buffer.from('good content')
    const evil = ['../escape.txt', '/etc/passwd', 'a/../../b.txt', 'nul\u0000.txt', '.cloudbox/index.cbor', 'CON', 'link/inside.txt', 'back\\slash']
    await mine.send(syncCodec.encode('index', { records: [...evil.map((p) => record(p, good)), record('ok.txt', good)] }))
    await mine.send(syncCodec.encode('indexEnd', { sequence: 1, root: new Uint8Array(32) }))
    // Serve whatever is asked (only ok.txt and link/inside.txt should get this far).
    const refusedHere: string[] = []
    for (;;) {
      const message = await next()
      if (message.kind === 'fetch') await mine.send(syncCodec.encode('data', { chunks: message.body.requests.map((request) => [request.id, good] as [number, Uint8Array]) }))
      if (message.kind === 'error') refusedHere.push(message.body.code)
      if (message.kind === 'ack') break
    }
    // The peer is told about each refusal, so its owner can see why.
    expect(refusedHere).toEqual(evil.map(() => 'ERR_UNSAFE_PATH'))
    expect(readFileSync(join(a.folder, 'ok.txt'), 'utf8')).toBe('good content')
    expect(readdirSync(outside)).toEqual([])
    const codes = a.events.filter((event) => event.type === 'error').map((event) => (event as { error: { code: string } }).error.code)
    expect(codes.filter((code) => code === 'ERR_UNSAFE_PATH')).toHaveLength(evil.length)
  })

  it('a malformed message or a forged chunk closes that session only', async () => {
    const { a, b } = await pair()
    const { mine, session } = await fakePeer(a)
    await mine.send(new Uint8Array([0xff, 0x00, 0x13]))
    expect(await session.closed).toMatchObject({ code: 'ERR_SYNC_PROTOCOL' })
    // A chunk that does not match its hash.
    const second = await fakePeer(a)
    await second.mine.send(syncCodec.encode('index', { records: [record('forged.txt', Buffer.from('real'))] }))
    await second.mine.send(syncCodec.encode('indexEnd', { sequence: 1, root: new Uint8Array(32) }))
    for (;;) {
      const message = await second.next()
      if (message.kind === 'fetch') {
        await second.mine.send(syncCodec.encode('data', { chunks: [[message.body.requests[0]!.id, Buffer.from('fake')]] }))
        break
      }
    }
    expect(await second.session.closed).toMatchObject({ code: 'ERR_CHUNK_MISMATCH' })
    expect(existsSync(join(a.folder, 'forged.txt'))).toBe(false)
    // The engine still syncs with an honest peer.
    writeFileSync(join(b.folder, 'honest.txt'), 'hello')
    await b.scan()
    link(a, b)
    await synced(a, b)
  })
})
