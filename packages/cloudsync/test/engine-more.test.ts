import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { acceptSecureChannel, channelFromStream, Identity, initiateSecureChannel } from '@cloudbox/encrypted-messaging'
import { afterEach, describe, expect, it } from 'vitest'
import type { SyncEngine, SyncEvent } from '../src/index.js'
import { link, makeEngine, removeDir, sameRoot, snapshot, tempDir, until } from './helpers.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function engines(options: Parameters<typeof makeEngine>[2] = {}, prepare?: (a: string, b: string) => void): Promise<{ a: SyncEngine & { events: SyncEvent[] }; b: SyncEngine & { events: SyncEvent[] } }> {
  const root = tempDir()
  const a = makeEngine(join(root, 'a'), 'alice', options)
  const b = makeEngine(join(root, 'b'), 'bob', options)
  prepare?.(a.folder, b.folder)
  await a.start()
  await b.start()
  cleanups.push(() => removeDir(root))
  cleanups.push(() => b.stop())
  cleanups.push(() => a.stop())
  return { a, b }
}

describe('engines over real sockets and the secure channel', () => {
  it('sync over TCP 127.0.0.1 inside a Noise secure channel', async () => {
    const { a, b } = await engines({}, (fa) => {
      mkdirSync(join(fa, 'sub'))
      writeFileSync(join(fa, 'sub/data.bin'), randomBytes(700_000))
      writeFileSync(join(fa, 'note.txt'), 'over the wire')
    })
    const server = Identity.generate().identity
    const client = Identity.generate().identity
    const sockets: Socket[] = []
    const listener: Server = createServer(async (socket) => {
      sockets.push(socket)
      const channel = await acceptSecureChannel(channelFromStream(socket), { identity: server })
      b.connect(channel, { peer: a.deviceId })
    })
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise<void>((resolve) => listener.close(() => resolve())))
    cleanups.push(() => sockets.forEach((socket) => socket.destroy()))
    const socket = connect((listener.address() as { port: number }).port, '127.0.0.1')
    sockets.push(socket)
    await new Promise((resolve) => socket.once('connect', resolve))
    a.connect(await initiateSecureChannel(channelFromStream(socket), { identity: client, remotePublicKey: server.publicId }), { peer: b.deviceId })
    await until(() => sameRoot(a, b), 15_000)
    expect(snapshot(b.folder)).toEqual(snapshot(a.folder))
  })
})

describe('live changes, status and limits', () => {
  it('the watcher picks up a new file without an explicit scan, and status events can be iterated', async () => {
    const { a, b } = await engines({ watch: true })
    link(a, b)
    const seen: SyncEvent[] = []
    const iterate = (async () => {
      for await (const event of b.status) {
        seen.push(event)
        if (event.type === 'file' && event.path === 'live.txt') return
      }
    })()
    await new Promise((resolve) => setTimeout(resolve, 50))
    writeFileSync(join(a.folder, 'live.txt'), 'written while running')
    await until(() => existsSync(join(b.folder, 'live.txt')), 10_000, 'the watcher to sync live.txt')
    await iterate
    expect(readFileSync(join(b.folder, 'live.txt'), 'utf8')).toBe('written while running')
    expect(seen.some((event) => event.type === 'progress' && event.path === 'live.txt' && event.totalBytes > 0)).toBe(true)
  })

  it('deletions the watcher sees in several batches are judged together: the first few do not slip past the mass-delete guard', { timeout: 30_000 }, async () => {
    const { a, b } = await engines({ watch: true }, (fa) => {
      for (let i = 0; i < 20; i++) writeFileSync(join(fa, `f${i}.txt`), `file ${i}`)
    })
    link(a, b)
    await until(() => sameRoot(a, b), 10_000, 'the first sync')
    // Three files, then (after more than the watcher's batching) the rest: alone, the
    // three would be a small deletion, let go to the peer.
    for (let i = 0; i < 3; i++) rmSync(join(a.folder, `f${i}.txt`))
    await new Promise((resolve) => setTimeout(resolve, 400))
    for (let i = 3; i < 16; i++) rmSync(join(a.folder, `f${i}.txt`))
    await until(() => a.heldDeletes.length === 16, 10_000, 'all sixteen held')
    expect(a.state).toBe('paused')
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(readdirSync(b.folder).filter((name) => name.endsWith('.txt'))).toHaveLength(20)
    // A single deletion later still goes, after the quiet time.
    await a.confirmDeletes()
    await until(() => readdirSync(b.folder).filter((name) => name.endsWith('.txt')).length === 4, 10_000, 'the confirmed deletions')
    rmSync(join(a.folder, 'f16.txt'))
    await until(() => !existsSync(join(b.folder, 'f16.txt')), 10_000, 'a single deletion')
  })

  it('an edit made just after a download lands, in a file or a folder the engine made, still syncs back (the engine skips only its own writes)', { timeout: 30_000 }, async () => {
    const { a, b } = await engines({ watch: true })
    link(a, b)
    await new Promise((resolve) => setTimeout(resolve, 50))
    mkdirSync(join(a.folder, 'new', 'deeper'), { recursive: true })
    writeFileSync(join(a.folder, 'new', 'deeper', 'note.txt'), 'from alice')
    await until(() => b.events.some((event) => event.type === 'file' && event.path === 'new/deeper/note.txt' && event.action === 'downloaded'), 10_000, 'the download')
    // At once, before the watcher's report of the download: same size, new content; and a new file in the new folder.
    writeFileSync(join(b.folder, 'new', 'deeper', 'note.txt'), 'from bobby')
    writeFileSync(join(b.folder, 'new', 'deeper', 'added.txt'), 'bob added this')
    await until(() => existsSync(join(a.folder, 'new', 'deeper', 'added.txt')) && readFileSync(join(a.folder, 'new', 'deeper', 'note.txt'), 'utf8') === 'from bobby', 10_000, 'bob\'s edits at alice')
    await until(() => sameRoot(a, b), 10_000, 'the same root')
  })

  it('a .cloudbox folder at any depth (another synced folder\'s state, a copied home) never leaves the device', async () => {
    const { a, b } = await engines({}, (folder) => {
      mkdirSync(join(folder, 'projects', 'old-sync', '.cloudbox'), { recursive: true })
      writeFileSync(join(folder, 'projects', 'old-sync', '.cloudbox', 'index.sqlite'), 'state of another folder')
      mkdirSync(join(folder, 'deep', 'er', '.CloudBox'), { recursive: true })
      writeFileSync(join(folder, 'deep', 'er', '.CloudBox', 'vault'), 'secret')
      writeFileSync(join(folder, 'projects', 'old-sync', 'kept.txt'), 'an ordinary file')
    })
    link(a, b)
    await until(() => existsSync(join(b.folder, 'projects', 'old-sync', 'kept.txt')), 10_000, 'the ordinary file')
    await until(() => sameRoot(a, b), 10_000, 'the same root')
    expect(existsSync(join(b.folder, 'projects', 'old-sync', '.cloudbox', 'index.sqlite'))).toBe(false)
    expect(existsSync(join(b.folder, 'deep', 'er', '.CloudBox'))).toBe(false)
  })

  it('names that differ only by case are refused with ERR_CASE_CLASH; the quota stops downloads with ERR_QUOTA_EXCEEDED', async () => {
    const { a, b } = await engines({}, (fa, fb) => {
      writeFileSync(join(fa, 'README.md'), 'upper')
      writeFileSync(join(fb, 'readme.md'), 'lower')
    })
    link(a, b)
    await until(() => b.events.some((event) => event.type === 'error' && event.error.code === 'ERR_CASE_CLASH'), 10_000, 'a case clash')
    expect(readFileSync(join(b.folder, 'readme.md'), 'utf8')).toBe('lower')
    // The refused name was not created beside the existing one.
    expect(readdirSync(b.folder).filter((name) => name.toLowerCase() === 'readme.md')).toEqual(['readme.md'])

    const limited = await engines({ quotaBytes: 100_000 }, (fa) => writeFileSync(join(fa, 'big.bin'), randomBytes(200_000)))
    link(limited.a, limited.b)
    await until(() => limited.b.events.some((event) => event.type === 'error' && event.error.code === 'ERR_QUOTA_EXCEEDED'), 10_000, 'the quota error')
    expect(existsSync(join(limited.b.folder, 'big.bin'))).toBe(false)
  })

  it('a damaged index is set aside and the folder rescanned, with ERR_INDEX_CORRUPTED', async () => {
    const root = tempDir()
    cleanups.push(() => removeDir(root))
    const folder = join(root, 'f')
    const first = makeEngine(folder, 'alice')
    writeFileSync(join(folder, 'a.txt'), 'kept')
    await first.start()
    await first.stop()
    writeFileSync(join(folder, '.cloudbox/index.sqlite'), randomBytes(100))
    const second = makeEngine(folder, 'alice')
    await second.start()
    cleanups.push(() => second.stop())
    expect(second.events.some((event) => event.type === 'error' && event.error.code === 'ERR_INDEX_CORRUPTED')).toBe(true)
    expect(second.records().map((record) => record.path)).toEqual(['a.txt'])
    expect(readdirSync(join(folder, '.cloudbox')).some((name) => name.startsWith('index.sqlite.corrupt-'))).toBe(true)
  })

  it('a peer of another folder is refused with ERR_FOLDER_MISMATCH', async () => {
    const { a } = await engines()
    const root = tempDir()
    cleanups.push(() => removeDir(root))
    const other = makeEngine(join(root, 'o'), 'oscar', { folderId: 'another-folder' })
    await other.start()
    cleanups.push(() => other.stop())
    const [sa, so] = link(a, other)
    const results = await Promise.all([sa.closed, so.closed])
    expect(results.some((result) => (result as { code?: string } | undefined)?.code === 'ERR_FOLDER_MISMATCH')).toBe(true)
  })
})

describe('one engine per folder', () => {
  it('refuses a second engine on a folder with ERR_FOLDER_IN_USE and the PID, and takes over a lock whose process is gone', async () => {
    const root = tempDir()
    cleanups.push(() => removeDir(root))
    const folder = join(root, 'shared')
    const first = makeEngine(folder, 'alice')
    await first.start()
    const second = makeEngine(folder, 'alice')
    await expect(second.start()).rejects.toMatchObject({ code: 'ERR_FOLDER_IN_USE', pid: process.pid })
    await first.stop()
    await second.start()
    await second.stop()

    // Held by another live process: refused, naming it.
    const { spawn } = await import('node:child_process')
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' })
    cleanups.push(() => void other.kill('SIGKILL'))
    const { hostname } = await import('node:os')
    writeFileSync(join(folder, '.cloudbox', 'lock'), `${other.pid} ${hostname()}\n`)
    const third = makeEngine(folder, 'alice')
    const refused = await third.start().then(() => undefined, (error: Error) => error)
    expect(refused).toMatchObject({ code: 'ERR_FOLDER_IN_USE', pid: other.pid })
    expect(refused?.message).toContain(`PID ${other.pid}`)
    // That process dies (kill -9): its lock is taken over.
    const exited = new Promise((resolve) => other.once('exit', resolve))
    other.kill('SIGKILL')
    await exited
    await third.start()
    expect(readFileSync(join(folder, '.cloudbox', 'lock'), 'utf8')).toBe(`${process.pid} ${hostname()}\n`)
    await third.stop()
    expect(existsSync(join(folder, '.cloudbox', 'lock'))).toBe(false)
  })
})
