/**
 * A paired member attacking the encrypted REST API's limits: uploads that declare a small
 * total (or none) and send more, staged uploads that never commit, a commit after the
 * quota went down (every way ends in ERR_QUOTA_EXCEEDED before the quota is passed); and
 * the replay memory: a request replayed after a restart, strangers and a member's flood
 * trying to push other devices' requests out of the window.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CloudBox } from '@cloudbox/cloudbox'
import { API_REQUEST_MEDIA_TYPE, API_RESPONSE_MEDIA_TYPE, Identity, sealApiRequest } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient, S3Storage } from '@cloudbox/cloudserver'
import { backendFixture, BUCKET, startS3, type BackendFixture } from '../../packages/cloudserver/test/backends.js'
import { recordOutcome } from './support/outcomes.js'

const PIN = '2468-1357'
const KiB = 1024

describe.each(['local', 's3'] as const)('quota on the %s back end', (kind) => {
  let backend: BackendFixture
  let root: string
  let box: CloudBox
  let server: CloudServer
  let member: CloudServerClient
  let device: CloudBox
  beforeAll(async () => {
    backend = await backendFixture(kind)
    root = await mkdtemp(join(tmpdir(), 'cloudbox-quota-'))
    await mkdir(join(root, 'cloud'))
    box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN, watch: false }, { identity: Identity.generate().identity })
    await box.start()
    server = new CloudServer({}, { box, storage: backend.storageFor(box) })
    await server.start()
    const identity = Identity.generate().identity
    device = new CloudBox({ role: 'client', folder: join(root, 'member'), sync: false }, { identity })
    await mkdir(device.init.folder, { recursive: true })
    await device.start()
    await device.pair(box.pairingUri(), PIN)
    member = new CloudServerClient({ url: server.url, server: box.id, identity })
  })
  afterAll(async () => {
    await server.stop()
    await device.destroy()
    await box.destroy()
    await backend.stop()
    await rm(root, { recursive: true, force: true })
  })

  const outcome = (call: Promise<unknown>) => call.then(() => 'ok', (error: { code?: string }) => error.code ?? String(error))
  // The attacker writes the calls itself: nothing makes it declare the right total.
  const append = (upload: string, offset: number, bytes: number, total?: number) => outcome(member.call('POST', `/v1/uploads?upload=${upload}&offset=${offset}${total === undefined ? '' : `&total=${total}`}`, new Uint8Array(bytes).fill(1)))
  const commit = (upload: string, path: string) => outcome(member.call('POST', '/v1/uploads/commit', { upload, path }))

  it('refuses every chunk past the quota whatever the declared total, counts staged uploads, and checks the real size at commit', { timeout: 60_000 }, async () => {
    const start = await member.storage()
    const base = start.usedBytes + start.sharedBytes + (start.stagedBytes ?? 0)
    await box.admin.setQuota(base + 1_000)
    const outcomes: string[] = []
    try {
      // A 5 MiB file declared as 10 bytes, in 64 KiB chunks: the first chunk is already too much.
      outcomes.push(await append('liar-upload-1', 0, 64 * KiB, 10))
      // No total at all, in small chunks: refused once the chunks reach the quota.
      let offset = 0
      let refusedAt: number | undefined
      for (let i = 0; i < 40 && refusedAt === undefined; i++) {
        const answer = await append('creeping-upload', offset, 100)
        if (answer === 'ok') offset += 100
        else refusedAt = offset
        if (answer !== 'ok') outcomes.push(answer)
      }
      expect(refusedAt).toBe(1_000)
      // Staged bytes count: another upload finds no room while that one waits uncommitted.
      outcomes.push(await append('second-upload', 0, 10))
      // The staged 1,000 bytes commit (the total does not grow)…
      expect(await commit('creeping-upload', 'creeping.bin')).toBe('ok')
      // …but not once the quota was lowered meanwhile.
      await box.admin.setQuota(base + 2_000)
      expect(await append('late-upload', 0, 10)).toBe('ok')
      await box.admin.setQuota(base + 500)
      outcomes.push(await commit('late-upload', 'late.bin'))
      const usage = await member.storage()
      expect(usage.usedBytes + usage.sharedBytes + (usage.stagedBytes ?? 0) - base).toBe(1_010)
    } finally {
      await box.admin.setQuota(null)
    }
    expect(outcomes.slice(0, 3)).toEqual(['ERR_QUOTA_EXCEEDED', 'ERR_QUOTA_EXCEEDED', 'ERR_QUOTA_EXCEEDED'])
    expect(outcomes[3]).toBe('ERR_QUOTA_EXCEEDED')
    recordOutcome({ group: 'hostile input', what: `uploads past the quota (${kind}): a false total, no total, staged uploads, a commit after the quota fell`, injected: 4, survived: 4, dataLost: 0 })
  })
})

describe('the state folder through the API', () => {
  it('refuses every spelling a case-insensitive disk would open as .cloudbox: read, list, delete, write', { timeout: 30_000 }, async () => {
    const backend = await backendFixture('local')
    const root = await mkdtemp(join(tmpdir(), 'cloudbox-statefolder-'))
    await mkdir(join(root, 'cloud'))
    const box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN, watch: false }, { identity: Identity.generate().identity })
    await box.start()
    const server = new CloudServer({}, { box, storage: backend.storageFor(box) })
    await server.start()
    const identity = Identity.generate().identity
    const device = new CloudBox({ role: 'client', folder: join(root, 'member'), sync: false }, { identity })
    await mkdir(device.init.folder, { recursive: true })
    await device.start()
    await device.pair(box.pairingUri(), PIN)
    const member = new CloudServerClient({ url: server.url, server: box.id, identity })
    const code = (call: Promise<unknown>) => call.then(() => 'ok', (error: { code?: string }) => error.code ?? String(error))
    try {
      const spellings = ['.CloudBox/box/cloudbox.json', '.CLOUDBOX/box/cloudbox.json', 'CLOUDB~1/box/cloudbox.json', '.cloudbox\u200b/box/cloudbox.json', 'sub/.Cloudbox/index.cbor']
      const outcomes: string[] = []
      for (const path of spellings) {
        const folder = path.slice(0, path.lastIndexOf('/'))
        outcomes.push(await code(member.read(path)), await code(member.list(folder)), await code(member.remove(folder)))
        outcomes.push(await code(member.call('POST', '/v1/folders', { path })))
      }
      expect(outcomes.filter((each) => each !== 'ERR_UNSAFE_PATH'), JSON.stringify(outcomes)).toEqual([])
      recordOutcome({ group: 'hostile input', what: 'the state folder through the API in other spellings (case, zero-width, 8.3, nested): read, list, delete, create', injected: outcomes.length, survived: outcomes.length, dataLost: 0 })
    } finally {
      await server.stop()
      await device.destroy()
      await box.destroy()
      await backend.stop()
      await rm(root, { recursive: true, force: true })
    }
  })
})

describe('replays and the replay memory', () => {
  let root: string
  let box: CloudBox
  let member: Identity
  let device: CloudBox
  let now = Date.UTC(2026, 11, 1)
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cloudbox-replay-'))
    await mkdir(join(root, 'cloud'))
    box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN, watch: false }, { identity: Identity.generate().identity })
    await box.start()
    member = Identity.generate().identity
    device = new CloudBox({ role: 'client', folder: join(root, 'member'), sync: false }, { identity: member })
    await mkdir(device.init.folder, { recursive: true })
    await device.start()
    await device.pair(box.pairingUri(), PIN)
  })
  afterAll(async () => {
    await device.destroy()
    await box.destroy()
    await rm(root, { recursive: true, force: true })
  })

  /** Posts sealed bytes as they are (an attacker replays what it captured) and says how they were answered. */
  async function post(server: CloudServer, sealed: { message: Uint8Array; openResponse(bytes: Uint8Array): Promise<{ status: number; body: Uint8Array }> }): Promise<string> {
    const response = await fetch(`${server.url}/v1/api`, { method: 'POST', headers: { 'content-type': API_REQUEST_MEDIA_TYPE }, body: sealed.message })
    const bytes = new Uint8Array(await response.arrayBuffer())
    if (response.headers.get('content-type') !== API_RESPONSE_MEDIA_TYPE) return (JSON.parse(Buffer.from(bytes).toString()) as { code: string }).code
    const answer = await sealed.openResponse(bytes)
    return answer.status === 200 ? 'ok' : (JSON.parse(Buffer.from(answer.body).toString()) as { code: string }).code
  }
  const request = (identity: Identity, time = now) => sealApiRequest(identity, box.id, { method: 'GET', path: '/v1/storage' }, { now: time })

  it('refuses a request captured before a restart and replayed just after it', { timeout: 30_000 }, async () => {
    const first = new CloudServer({ envelope: { now: () => now } }, { box })
    await first.start()
    const captured = await request(member)
    expect(await post(first, captured)).toBe('ok')
    await first.stop()
    now += 5_000
    const second = new CloudServer({ envelope: { now: () => now } }, { box })
    await second.start()
    try {
      expect(await post(second, captured)).toBe('ERR_API_REQUEST_REPLAYED')
      expect(await post(second, await request(member))).toBe('ok')
    } finally {
      await second.stop()
    }
    recordOutcome({ group: 'hostile input', what: 'an API request replayed right after the server restarted', injected: 1, survived: 1, dataLost: 0 })
  })

  it('strangers cannot fill the replay memory, nor can one member, with a future-dated request first, push others\' requests out', { timeout: 60_000 }, async () => {
    const server = new CloudServer({ envelope: { now: () => now, maxEntries: 300, maxEntriesPerClient: 100, journal: join(root, 'nonces-2') } }, { box })
    await server.start()
    try {
      // 400 strangers' requests: refused, and not remembered.
      const strangers = await Promise.all(Array.from({ length: 400 }, () => request(Identity.generate().identity)))
      const answers = []
      for (const each of strangers) answers.push(await post(server, each))
      expect(new Set(answers)).toEqual(new Set(['ERR_FORBIDDEN']))
      // A paired device whose clock is 10 s behind is still served.
      expect(await post(server, await request(member, now - 10_000))).toBe('ok')

      // A member sends one request dated almost a minute ahead, then floods.
      const other = Identity.generate().identity
      const otherDevice = new CloudBox({ role: 'client', folder: join(root, 'other'), sync: false }, { identity: other })
      await mkdir(otherDevice.init.folder, { recursive: true })
      await otherDevice.start()
      await otherDevice.pair(box.pairingUri(), PIN)
      try {
        expect(await post(server, await request(member, now + 59_000))).toBe('ok')
        const flood = await Promise.all(Array.from({ length: 320 }, (_, i) => request(member, now - i)))
        const floodAnswers = []
        for (const each of flood) floodAnswers.push(await post(server, each))
        expect(floodAnswers).toContain('ERR_API_RATE_LIMITED')
        // The other device, 10 s behind, is not locked out by a raised floor.
        expect(await post(server, await request(other, now - 10_000))).toBe('ok')
      } finally {
        await otherDevice.destroy()
      }
    } finally {
      await server.stop()
    }
    recordOutcome({ group: 'hostile input', what: 'filling the API replay memory: 400 strangers, then a member\'s future-dated request and flood', injected: 2, survived: 2, dataLost: 0 })
  })
})

describe('a bucket rolled back', () => {
  it('an S3 back end made with no state file of its own still refuses an older, validly signed index', { timeout: 30_000 }, async () => {
    const s3 = await startS3()
    const root = await mkdtemp(join(tmpdir(), 'cloudbox-rollback-'))
    const before = process.env.XDG_STATE_HOME
    process.env.XDG_STATE_HOME = join(root, 'state')
    const identity = Identity.generate().identity
    const made: S3Storage[] = []
    const open = () => {
      const storage = new S3Storage({ bucket: BUCKET, prefix: 'rolled/', s3: s3.config, identity })
      made.push(storage)
      return storage
    }
    try {
      const store = open()
      await store.uploadAppend('u1', 0, Buffer.from('first'))
      await store.uploadCommit('u1', 'v1.txt', { overwrite: false })
      const old = (await s3.get('rolled/index'))!
      await store.uploadAppend('u2', 0, Buffer.from('second'))
      await store.uploadCommit('u2', 'v2.txt', { overwrite: false })
      // The bucket's holder puts the older index back (it is validly signed by the server).
      await s3.put('rolled/index', old)
      const outcome = await open().open().then(() => 'ok', (error: { code?: string }) => error.code)
      expect(outcome).toBe('ERR_STORAGE_ROLLBACK')
      recordOutcome({ group: 'hostile input', what: 'an S3 bucket rolled back to an older signed index, with no state file configured', injected: 1, survived: 1, dataLost: 0 })
    } finally {
      for (const each of made) await each.close()
      if (before === undefined) delete process.env.XDG_STATE_HOME
      else process.env.XDG_STATE_HOME = before
      await s3.stop()
      await rm(root, { recursive: true, force: true })
    }
  })
})
