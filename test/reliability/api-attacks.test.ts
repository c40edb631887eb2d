/**
 * A paired member attacking the encrypted REST API's limits: uploads that declare a small
 * total (or none) and send more, staged uploads that never commit, a commit after the
 * quota went down. Every way ends in ERR_QUOTA_EXCEEDED before the quota is passed.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient } from '@cloudbox/cloudserver'
import { backendFixture, type BackendFixture } from '../../packages/cloudserver/test/backends.js'
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
