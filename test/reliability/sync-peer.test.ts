/**
 * A paired peer that turns hostile on the sync lane: deletions aimed through symbolic
 * links, at files this device never indexed or ignores; a hello in another device's name;
 * records with empty chunks; index records without end; chunk requests without reading;
 * 0777 modes; rules pushed into the receiver's ignore list. Each is refused or contained,
 * the session at most is closed, and no file outside the peer's reach changes.
 */
import { createHash } from 'node:crypto'
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createMemoryChannelPair, type MessageChannel } from '@cloudbox/encrypted-messaging'
import { SyncEngine, syncCodec, validateRelativePath } from '@cloudbox/cloudsync'
import { waitFor } from '../integration/helpers.js'
import { recordOutcome } from './support/outcomes.js'
import { tempRoot } from './support/nodes.js'

let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

const FOLDER = 'f'
const hashOf = (bytes: Uint8Array) => new Uint8Array(createHash('sha256').update(bytes).digest())

async function victim(folder: string, deviceId = 'victim', options: Partial<ConstructorParameters<typeof SyncEngine>[0]> = {}): Promise<SyncEngine> {
  mkdirSync(folder, { recursive: true })
  const engine = new SyncEngine({ folder, deviceId, folderId: FOLDER, watch: false, rescanIntervalMs: 3_600_000, ...options })
  await engine.start()
  cleanups.push(() => engine.stop())
  return engine
}

/** The attacker's end of a session: it speaks the sync protocol by hand. */
function hostilePeer(engine: SyncEngine, provenAs: string, options: { read?: boolean } = {}) {
  const [mine, theirs] = createMemoryChannelPair()
  const session = engine.connect(theirs, { peer: provenAs })
  const inbox = mine[Symbol.asyncIterator]()
  const received: ReturnType<typeof syncCodec.decode>[] = []
  let ended: Error | undefined | 'open' = 'open'
  void (async () => {
    try {
      // A peer that never reads lets the engine's answers pile up on its side.
      if (options.read === false) {
        ended = await theirs.closed
        return
      }
      for (;;) {
        const next = await inbox.next()
        if (next.done === true) break
        received.push(syncCodec.decode(next.value as Uint8Array))
      }
      ended = undefined
    } catch (error) {
      ended = error as Error
    }
  })()
  const send: MessageChannel['send'] = (message) => mine.send(message)
  return {
    session,
    received,
    get open() {
      return ended === 'open'
    },
    hello: (device: string, sequence = 0) => send(syncCodec.encode('hello', { folder: FOLDER, device, root: new Uint8Array(32), sequence })),
    index: (records: Parameters<typeof syncCodec.encode<'index'>>[1]['records']) => send(syncCodec.encode('index', { records })),
    indexEnd: (sequence: number) => send(syncCodec.encode('indexEnd', { sequence, root: new Uint8Array(32) })),
    send,
    /** Resolves once the engine acknowledged up to `sequence` (it applied the batch). */
    acked: (sequence: number) => waitFor(() => received.some((message) => message.kind === 'ack' && message.body.sequence >= sequence), `the ack of ${sequence}`, 10_000),
  }
}

const tombstone = (path: string, sequence: number, by = 'mallory') => ({ path, size: 0, mtimeMs: Date.now(), mode: 0o644, chunkHashes: new Uint8Array(0), chunkLengths: [], chunkSize: 0, version: { victim: 1, [by]: 1_000 }, deleted: true, sequence })
const fileRecord = (path: string, content: Uint8Array, sequence: number, extra: Record<string, unknown> = {}) => ({ path, size: content.length, mtimeMs: 1_700_000_000_000, mode: 0o644, chunkHashes: hashOf(content), chunkLengths: [content.length], chunkSize: 65536, version: { mallory: sequence }, deleted: false, sequence, ...extra })

describe('deletions from a hostile peer', () => {
  it('never deletes through a symbolic link (only a synced link itself), nor a file this device did not index, ignores, or changed since its scan', { timeout: 30_000 }, async () => {
    const root = tempRoot('cloudbox-delete-', cleanups)
    const folder = join(root, 'folder')
    const outside = join(root, 'outside')
    mkdirSync(join(folder, 'real'), { recursive: true })
    mkdirSync(outside)
    writeFileSync(join(outside, 'precious.txt'), 'outside the synced folder')
    writeFileSync(join(outside, 'linked-file.txt'), 'reached by a file link')
    symlinkSync('../outside', join(folder, 'linked'))
    symlinkSync('../outside/linked-file.txt', join(folder, 'file-link'))
    writeFileSync(join(folder, '.cloudboxignore'), '*.log\n')
    writeFileSync(join(folder, 'app.log'), 'ignored here')
    writeFileSync(join(folder, 'real/tracked.txt'), 'tracked, deleted for real')
    writeFileSync(join(folder, 'edited.txt'), 'before the edit')
    const engine = await victim(folder)
    // After the scan: a file it never indexed, and an edit it has not seen yet.
    writeFileSync(join(folder, 'untracked.txt'), 'made after the scan')
    writeFileSync(join(folder, 'edited.txt'), 'after the edit, longer')

    const peer = hostilePeer(engine, 'mallory')
    await peer.hello('mallory')
    const targets = ['linked/precious.txt', 'file-link', 'app.log', 'untracked.txt', 'edited.txt', 'real/tracked.txt']
    await peer.index(targets.map((path, i) => tombstone(path, i + 1)))
    await peer.indexEnd(targets.length)
    await peer.acked(targets.length)

    expect(readFileSync(join(outside, 'precious.txt'), 'utf8')).toBe('outside the synced folder')
    expect(readFileSync(join(outside, 'linked-file.txt'), 'utf8')).toBe('reached by a file link')
    // The link itself is a synced entry the peer may delete: it goes, what it points to stays.
    expect(existsSync(join(folder, 'linked'))).toBe(true)
    expect(lstatSync(join(folder, 'file-link'), { throwIfNoEntry: false })).toBeUndefined()
    expect(readFileSync(join(folder, 'app.log'), 'utf8')).toBe('ignored here')
    expect(readFileSync(join(folder, 'untracked.txt'), 'utf8')).toBe('made after the scan')
    expect(readFileSync(join(folder, 'edited.txt'), 'utf8')).toBe('after the edit, longer')
    // What the peer may delete, it does.
    expect(existsSync(join(folder, 'real/tracked.txt'))).toBe(false)
    // The kept files are not lost on the next scan either: they become new versions.
    await engine.scan()
    for (const path of ['untracked.txt', 'edited.txt']) expect(engine.records().find((record) => record.path === path)?.deleted, path).toBe(false)
    recordOutcome({ group: 'hostile input', what: 'deletions from a peer: through a folder link, of a file link, of ignored, untracked and locally edited files', injected: 5, survived: 5, dataLost: 0 })
  })
})

describe('a peer speaking for another device', () => {
  it('refuses a hello naming anyone but the proven peer, so another device\'s offline changes are still fetched', { timeout: 30_000 }, async () => {
    const root = tempRoot('cloudbox-impostor-', cleanups)
    const server = await victim(join(root, 'server'), 'server')
    const honest = await victim(join(root, 'honest'), 'honest')
    const connect = () => {
      const [x, y] = createMemoryChannelPair()
      return [server.connect(x, { peer: 'honest' }), honest.connect(y, { peer: 'server' })] as const
    }
    let [toHonest, toServer] = connect()
    writeFileSync(join(honest.folder, 'first.txt'), 'synced while connected')
    await honest.scan()
    await waitFor(() => existsSync(join(server.folder, 'first.txt')), 'the first file')
    await toServer.close()
    await toHonest.closed

    // Offline, the honest device changes something; meanwhile a member proven as
    // "mallory" says it is "honest" and claims to have sent a billion changes.
    writeFileSync(join(honest.folder, 'offline.txt'), 'made while offline')
    await honest.scan()
    const mallory = hostilePeer(server, 'mallory')
    await mallory.hello('honest', 1_000_000_000)
    await mallory.indexEnd(1_000_000_000).catch(() => {})
    await waitFor(() => !mallory.open, 'the impostor\'s session to close', 5_000)
    ;[toHonest, toServer] = connect()
    await waitFor(() => existsSync(join(server.folder, 'offline.txt')), 'the honest device\'s offline change to reach the server', 10_000)
    recordOutcome({ group: 'hostile input', what: 'hello in another device\'s name, with a huge sequence', injected: 1, survived: 1, dataLost: 0 })
  })
})

describe('records that would bloat the index or the memory', () => {
  it('refuses records with empty chunks or chunks below the minimum, bounding a record\'s chunk list by its size', { timeout: 30_000 }, async () => {
    const root = tempRoot('cloudbox-chunks-', cleanups)
    const engine = await victim(join(root, 'folder'))
    const peer = hostilePeer(engine, 'mallory')
    await peer.hello('mallory')
    // (A record of more chunks than any file may have, 131,072, fails validation and closes the session.)
    const zeros = 100_000
    const empty = { ...fileRecord('empty.bin', new Uint8Array(0), 1), chunkHashes: new Uint8Array(zeros * 32), chunkLengths: Array.from({ length: zeros }, () => 0) }
    const tinyCount = 50_000
    const tiny = { ...fileRecord('tiny-chunks.bin', new Uint8Array(0), 2), size: tinyCount * 10, chunkHashes: new Uint8Array(tinyCount * 32), chunkLengths: Array.from({ length: tinyCount }, () => 10) }
    await peer.index([empty])
    await peer.index([tiny])
    await peer.indexEnd(2)
    await peer.acked(2)
    for (const path of ['empty.bin', 'tiny-chunks.bin']) expect(engine.records().find((record) => record.path === path), path).toBeUndefined()
    expect(peer.received.filter((message) => message.kind === 'error').length).toBe(2)
    expect(peer.open).toBe(true)
    recordOutcome({ group: 'hostile input', what: 'records with 100,000 empty chunks, or 50,000 chunks below the minimum size', injected: 2, survived: 2, dataLost: 0 })
  })

  it('closes a session that sends index records without end, or chunk requests without reading the answers', { timeout: 60_000 }, async () => {
    const root = tempRoot('cloudbox-flood-', cleanups)
    const engine = await victim(join(root, 'folder'))
    writeFileSync(join(engine.folder, 'served.bin'), Buffer.alloc(64 * 1024, 7))
    await engine.scan()

    const flooder = hostilePeer(engine, 'mallory')
    await flooder.hello('mallory')
    // 3.2 MiB of chunk hashes per message (a 6.5 GB file each), never applied: each one's
    // chunks are requested but never served, so the records pile up.
    const count = 100_000
    const huge = (i: number) => ({ path: `huge-${i}.bin`, size: count * 65536, mtimeMs: 1, mode: 0o644, chunkHashes: new Uint8Array(count * 32), chunkLengths: Array.from({ length: count }, () => 65536), chunkSize: 65536, version: { mallory: i + 1 }, deleted: false, sequence: i + 1 })
    let sent = 0
    while (flooder.open && sent < 60) {
      await flooder.index([huge(sent)]).catch(() => {})
      sent++
      await new Promise((resolve) => setImmediate(resolve))
    }
    await waitFor(() => !flooder.open, 'the flooding session to close', 5_000)
    expect(sent).toBeLessThan(20)

    const requester = hostilePeer(engine, 'mallory', { read: false })
    await requester.hello('mallory')
    const length = engine.records().find((record) => record.path === 'served.bin')?.chunkLengths[0] as number
    let requests = 0
    while (requester.open && requests < 200_000) {
      const batch = Array.from({ length: 4096 }, (_, i) => ({ id: requests + i + 1, path: 'served.bin', offset: 0, length }))
      await requester.send(syncCodec.encode('fetch', { requests: batch })).catch(() => {})
      requests += batch.length
    }
    await waitFor(() => !requester.open, 'the requesting session to close', 5_000)
    expect(requests).toBeLessThan(200_000)
    // The engine goes on: an honest peer still syncs.
    expect(engine.state).not.toBe('stopped')
    recordOutcome({ group: 'hostile input', what: 'index records that are never applied (3.2 MiB each), chunk requests without reading', injected: 2, survived: 2, dataLost: 0, note: `closed after ${sent} index messages and ${requests} requests` })
  })
})

describe('a peer setting modes and rules for this device', () => {
  it('writes a peer\'s 0777 file with this device\'s umask, and keeps this device\'s own ignore rules whatever the peer syncs', { timeout: 30_000 }, async () => {
    const root = tempRoot('cloudbox-modes-', cleanups)
    const folder = join(root, 'folder')
    mkdirSync(folder, { recursive: true })
    writeFileSync(join(folder, '.cloudboxignore.local'), 'private/\n')
    mkdirSync(join(folder, 'private'))
    writeFileSync(join(folder, 'private/diary.txt'), 'never synced')
    const engine = await victim(folder, 'victim', { umask: 0o022 })
    expect(engine.records().some((record) => record.path.startsWith('private/'))).toBe(false)
    const content = Buffer.from('#!/bin/sh\necho hi\n')
    const rules = Buffer.from('# the peer says: sync everything\n!*\n')
    const peer = hostilePeer(engine, 'mallory')
    await peer.hello('mallory')
    await peer.index([
      { ...fileRecord('tool.sh', content, 1), mode: 0o777 },
      // Overwriting the local-only rules, or dropping a file into the ignored folder.
      fileRecord('.cloudboxignore.local', rules, 2),
      fileRecord('private/diary.txt', content, 3),
    ])
    await peer.indexEnd(3)
    for (;;) {
      await waitFor(() => peer.received.some((message) => message.kind === 'fetch' || message.kind === 'ack'), 'a fetch or the ack')
      const fetch = peer.received.find((message) => message.kind === 'fetch')
      if (fetch === undefined) break
      peer.received.splice(peer.received.indexOf(fetch), 1)
      await peer.send(syncCodec.encode('data', { chunks: fetch.body.requests.map((request) => [request.id, request.path === 'tool.sh' ? content : rules] as [number, Uint8Array]) }))
    }
    await peer.acked(3)
    expect(statSync(join(folder, 'tool.sh')).mode & 0o777).toBe(0o755)
    expect(readFileSync(join(folder, '.cloudboxignore.local'), 'utf8')).toBe('private/\n')
    expect(readFileSync(join(folder, 'private/diary.txt'), 'utf8')).toBe('never synced')
    // The mode the umask explains is no change to send back.
    const before = engine.records().find((record) => record.path === 'tool.sh')?.sequence
    chmodSync(join(folder, 'tool.sh'), 0o755)
    await engine.scan()
    expect(engine.records().find((record) => record.path === 'tool.sh')?.sequence).toBe(before)
    recordOutcome({ group: 'hostile input', what: 'a 0777 file, the local-only ignore file, and a file in a locally ignored folder from a peer', injected: 3, survived: 3, dataLost: 0 })
  })
})

describe('names a case-insensitive disk would take for the state folder', () => {
  it('refuses .cloudbox in any case, Unicode form or 8.3 alias, at any depth', () => {
    const aliases = ['.CloudBox/box/cloudbox.json', '.CLOUDBOX/index.cbor', 'CLOUDB~1/box/cloudbox.json', 'cloudb~2/x', 'CL3F2A~1/x', '.cloudbox\u200b/box', '.cloud\u00adbox/x', '.ｃｌｏｕｄｂｏｘ/x', 'sub/.cloudbox/index.cbor', 'a/b/.CloudBox', '.cloudboxignore.local', 'sub/.CLOUDBOXIGNORE.LOCAL']
    const refused = aliases.filter((path) => {
      try {
        validateRelativePath(path)
        return false
      } catch (error) {
        return (error as { code?: string }).code === 'ERR_UNSAFE_PATH'
      }
    })
    expect(refused).toEqual(aliases)
    for (const fine of ['cloudbox/notes.txt', '.cloudboxes/x', 'my.cloudbox.txt', 'report~1.pdf', 'CLOUDBOX', '.cloudboxignore']) expect(validateRelativePath(fine)).toBe(fine)
    recordOutcome({ group: 'hostile input', what: 'state-folder aliases (case, NFKC, zero-width, 8.3 short names, nested)', injected: aliases.length, survived: aliases.length, dataLost: 0 })
  })
})
