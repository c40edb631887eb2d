/**
 * The S3 back end from the store's side: what a bucket holds is opaque, and whatever the
 * store (or whoever holds the bucket) changes is detected, never served.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Identity } from '@cloudbox/encrypted-messaging'
import { S3Storage } from '../src/index.js'
import { padme } from '../src/storage/s3-objects.js'
import { BUCKET, startS3, type S3Fixture } from './backends.js'

let s3: S3Fixture
let root: string
const identity = Identity.generate().identity
const opened: S3Storage[] = []
const MiB = 1024 * 1024
let prefixes = 0
let states = 0

/** A back end on a prefix of its own (one per test, so tests do not see each other's objects). */
function storage(options: { prefix?: string; identity?: Identity; key?: Uint8Array; state?: string | false; chunkSize?: number } = {}): S3Storage {
  const made = new S3Storage({
    bucket: BUCKET,
    prefix: options.prefix ?? `t${prefixes++}/`,
    s3: s3.config,
    identity: options.identity ?? identity,
    ...(options.key === undefined ? {} : { key: options.key }),
    stateFile: options.state === false ? false : (options.state ?? join(root, `state-${states++}.json`)),
    ...(options.chunkSize === undefined ? {} : { chunkSize: options.chunkSize }),
  })
  opened.push(made)
  return made
}

async function put(store: S3Storage, path: string, content: Uint8Array, upload = `u-${path}`): Promise<void> {
  await store.uploadAppend(upload, 0, content)
  await store.uploadCommit(upload, path, { overwrite: true })
}

async function code(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'ok',
    (error: { code?: string }) => error.code ?? String(error),
  )
}

beforeAll(async () => {
  s3 = await startS3()
  root = await mkdtemp(join(tmpdir(), 'cloudserver-s3-'))
})

afterAll(async () => {
  for (const each of opened) await each.close()
  await s3.stop()
  await rm(root, { recursive: true, force: true })
})

describe('S3 back end', () => {
  it('stores only padded ciphertext under keyed-hash names; equal content is stored once', async () => {
    const store = storage({ chunkSize: MiB })
    const marker = 'PLAINTEXT-MARKER-'
    const text = Buffer.from(marker.repeat(200_000)) // 3.4 MB of recognizable text
    await put(store, 'docs/letter.txt', text)
    await put(store, 'docs/small.txt', Buffer.from(`${marker} short`))
    const keys = await s3.keys(store.prefix)
    const chunks = keys.filter((key) => key.startsWith(`${store.prefix}c/`))
    expect(keys.filter((key) => !chunks.includes(key))).toEqual([`${store.prefix}index`])
    // 4 chunks of the letter (3 of 1 MiB, one shorter) and one of the small file.
    expect(chunks.length).toBe(5)
    for (const key of keys) {
      const object = (await s3.get(key))!
      expect(object.includes(marker)).toBe(false)
      expect(object.includes('letter')).toBe(false)
      expect(key).not.toMatch(/letter|docs/)
    }
    for (const key of chunks) expect(key.slice(store.prefix.length + 2)).toMatch(/^[0-9a-f]{64}$/)
    // Sizes are padded: the short file's chunk is not its length + tag.
    const sizes = await Promise.all(chunks.map(async (key) => (await s3.get(key))!.length))
    expect(sizes).toContain(padme(`${marker} short`.length) + 16)
    expect(sizes).toContain(padme(text.length - 3 * MiB) + 16)
    // A copy, and the same content under another name, store nothing new.
    await store.copy('docs/letter.txt', 'copy.txt', { overwrite: false })
    await put(store, 'again.txt', text)
    expect((await s3.keys(`${store.prefix}c/`)).length).toBe(5)
    // Deleting one of three references keeps the chunks; deleting all removes them.
    await store.remove('docs')
    expect((await s3.keys(`${store.prefix}c/`)).length).toBe(4)
    await store.remove('copy.txt')
    await store.remove('again.txt')
    expect(await s3.keys(`${store.prefix}c/`)).toEqual([])
  })

  it('reads files back after a restart, resumes staged uploads, and keeps folders', async () => {
    const prefix = 'restart/'
    const state = join(root, 'restart-state.json')
    const first = storage({ prefix, state, chunkSize: MiB })
    const content = randomBytes(2 * MiB + 77)
    await put(first, 'a/b/c.bin', content)
    await first.mkdir('empty/folder')
    expect(await first.uploadAppend('half', 0, content.subarray(0, MiB))).toBe(MiB)
    await first.close()

    const second = storage({ prefix, state, chunkSize: MiB })
    expect(Buffer.from(await second.read('a/b/c.bin', 0, content.length)).equals(content)).toBe(true)
    expect(Buffer.from(await second.read('a/b/c.bin', MiB - 10, 20)).equals(content.subarray(MiB - 10, MiB + 10))).toBe(true)
    expect((await second.list('')).map((entry) => `${entry.type}:${entry.name}`)).toEqual(['folder:a', 'folder:empty'])
    expect(await second.list('empty')).toMatchObject([{ name: 'folder', type: 'folder' }])
    expect(await second.uploadSize('half')).toBe(MiB)
    expect(await code(second.uploadAppend('half', 0, content))).toBe('ERR_UPLOAD_OFFSET')
    await second.uploadAppend('half', MiB, content.subarray(MiB))
    await second.uploadCommit('half', 'a/whole.bin', { overwrite: false })
    expect(Buffer.from(await second.read('a/whole.bin', 0, content.length)).equals(content)).toBe(true)
    expect(await code(second.uploadCommit('half', 'x', { overwrite: false }))).toBe('ERR_UNKNOWN_UPLOAD')
    expect(await code(second.mkdir('a/b/c.bin/d'))).toBe('ERR_NOT_A_FOLDER')
    expect(await code(second.move('a', 'a/b/inside', { overwrite: false }))).toBe('ERR_BAD_REQUEST')
    await second.move('a', 'moved', { overwrite: false })
    expect((await second.search('c.bin', 10)).map((entry) => entry.path)).toEqual(['moved/b/c.bin'])
    expect(await second.usage()).toEqual({ usedBytes: 2 * content.length, files: 2, sharedBytes: 0, stagedBytes: 0 })
  })

  it('refuses altered, swapped, truncated and missing chunks, and serves the untouched files', async () => {
    const store = storage({ chunkSize: MiB })
    const one = randomBytes(MiB)
    const two = randomBytes(MiB)
    const chunkKeys = () => s3.keys(`${store.prefix}c/`)
    await put(store, 'one.bin', one)
    const [keyOne] = await chunkKeys()
    await put(store, 'two.bin', two)
    const keyTwo = (await chunkKeys()).find((key) => key !== keyOne)!
    await put(store, 'three.bin', Buffer.from('untouched'))
    const fresh = () => storage({ prefix: store.prefix, state: false })
    expect(keyOne).toBeDefined()
    if (keyOne === undefined) return
    expect(keyTwo).toBeDefined()
    const original = { one: (await s3.get(keyOne))!, two: (await s3.get(keyTwo))! }
    const attempts: [string, () => Promise<void>][] = [
      ['flipped byte', () => s3.put(keyOne, Buffer.from(original.one.map((byte, index) => (index === 1000 ? byte ^ 1 : byte))))],
      ['swapped for another chunk of the same size', () => s3.put(keyOne, original.two)],
      ['truncated', () => s3.put(keyOne, original.one.subarray(0, original.one.length - 1))],
      ['deleted', () => s3.remove(keyOne)],
    ]
    for (const [what, attack] of attempts) {
      await attack()
      const reader = fresh()
      expect([what, await code(reader.read('one.bin', 0, MiB))]).toEqual([what, 'ERR_STORAGE_INTEGRITY'])
      expect(Buffer.from(await reader.read('three.bin', 0, 100)).toString()).toBe('untouched')
      await s3.put(keyOne, original.one)
    }
    expect(Buffer.from(await fresh().read('one.bin', 0, MiB)).equals(one)).toBe(true)
  })

  it('refuses an index that is rolled back, replaced, signed by another key or encrypted with another key', async () => {
    const prefix = 'index-attacks/'
    const state = join(root, 'index-state.json')
    const store = storage({ prefix, state })
    await put(store, 'v1.txt', Buffer.from('first'))
    const old = (await s3.get(`${prefix}index`))!
    await put(store, 'v2.txt', Buffer.from('second'))
    const current = (await s3.get(`${prefix}index`))!

    // The store serves the older (validly signed) index: the state file notices.
    await s3.put(`${prefix}index`, old)
    expect(await code(storage({ prefix, state }).open())).toBe('ERR_STORAGE_ROLLBACK')
    // Without a state file there is nothing to compare with (documented): it is accepted.
    expect(await code(storage({ prefix, state: false }).open())).toBe('ok')

    // An index written by another server's key under this prefix.
    const intruder = storage({ prefix: 'intruder/', identity: Identity.generate().identity, state: false })
    await put(intruder, 'planted.txt', Buffer.from('planted'))
    await s3.put(`${prefix}index`, (await s3.get('intruder/index'))!)
    expect(await code(storage({ prefix, state: false }).open())).toBe('ERR_STORAGE_INTEGRITY')

    // Flipped bytes anywhere in the index, and a truncated or empty one.
    for (const index of [0, 4, 6, 20, 40, current.length - 70, current.length - 1]) {
      const bad = Buffer.from(current)
      bad[index]! ^= 0x40
      await s3.put(`${prefix}index`, bad)
      expect([index, await code(storage({ prefix, state: false }).open())]).toEqual([index, 'ERR_STORAGE_INTEGRITY'])
    }
    for (const bad of [current.subarray(0, 30), Buffer.alloc(0)]) {
      await s3.put(`${prefix}index`, bad)
      expect(await code(storage({ prefix, state: false }).open())).toBe('ERR_STORAGE_INTEGRITY')
    }
    // The same identity with another storage key cannot read it.
    await s3.put(`${prefix}index`, current)
    expect(await code(storage({ prefix, state: false, key: randomBytes(32) }).open())).toBe('ERR_STORAGE_INTEGRITY')
    // A deleted index, when this server remembers writing one.
    await s3.remove(`${prefix}index`)
    expect(await code(storage({ prefix, state }).open())).toBe('ERR_STORAGE_INTEGRITY')
    // Restored: everything is back.
    await s3.put(`${prefix}index`, current)
    const back = storage({ prefix, state })
    expect((await back.list('')).map((entry) => entry.name)).toEqual(['v1.txt', 'v2.txt'])
  })

  it('derives the same storage key from the same recovery phrase', async () => {
    const phrase = Identity.generate().identity.exportRecoveryPhrase()
    const before = storage({ prefix: 'phrase/', identity: Identity.fromRecoveryPhrase(phrase) })
    await put(before, 'kept.txt', Buffer.from('kept'))
    const after = storage({ prefix: 'phrase/', identity: Identity.fromRecoveryPhrase(phrase) })
    expect(Buffer.from(await after.read('kept.txt', 0, 10)).toString()).toBe('kept')
  })

  it('sweeps chunks that no index names (left by a crash before the index was written)', async () => {
    const store = storage()
    await put(store, 'kept.txt', Buffer.from('kept'))
    await s3.put(`${store.prefix}c/${'ab'.repeat(32)}`, randomBytes(100))
    expect(await store.sweep()).toEqual({ removed: 1 })
    expect((await s3.keys(`${store.prefix}c/`)).length).toBe(1)
    expect(Buffer.from(await store.read('kept.txt', 0, 10)).toString()).toBe('kept')
  })

  it('reports an unreachable store with ERR_STORAGE_UNAVAILABLE', async () => {
    const unreachable = new S3Storage({
      bucket: BUCKET,
      s3: { ...s3.config, endpoint: 'http://127.0.0.1:9', maxAttempts: 1 },
      identity,
    })
    opened.push(unreachable)
    expect(await code(unreachable.list(''))).toBe('ERR_STORAGE_UNAVAILABLE')
    const noBucket = new S3Storage({ bucket: 'no-such-bucket', s3: { ...s3.config, maxAttempts: 1 }, identity })
    opened.push(noBucket)
    expect(await code(noBucket.uploadAppend('x', 0, Buffer.from('x')))).toBe('ERR_STORAGE_UNAVAILABLE')
  })
})
