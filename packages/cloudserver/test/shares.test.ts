import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'
import { newShareId } from '../src/api/routes/shares.js'
import { CloudServer, CloudServerClient } from '../src/index.js'
import { backendFixture, type BackendFixture } from './backends.js'

let root: string
let box: CloudBox
let server: CloudServer
const devices: CloudBox[] = []
const MiB = 1024 * 1024

async function person(name: string): Promise<{ identity: Identity; client: CloudServerClient }> {
  const identity = Identity.generate().identity
  const device = new CloudBox({ role: 'client', folder: join(root, name), sync: false, name }, { identity })
  devices.push(device)
  await mkdir(device.init.folder, { recursive: true })
  await device.start()
  await device.pair(box.pairingUri(), '2468-1357')
  return { identity, client: new CloudServerClient({ url: server.url, server: box.id, identity, chunkSize: MiB }) }
}

const errorCode = (promise: Promise<unknown>) => promise.then(() => 'ok', (error: { code?: string }) => error.code ?? String(error))

describe.each(['local', 's3'] as const)('drop box on the %s back end', (kind) => {
  let backend: BackendFixture
  beforeAll(async () => {
    backend = await backendFixture(kind)
    root = await mkdtemp(join(tmpdir(), 'cloudserver-shares-'))
    await mkdir(join(root, 'cloud'))
    box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357', watch: false }, { identity: Identity.generate().identity })
    await box.start()
    server = new CloudServer({}, { box, storage: backend.storageFor(box) })
    await server.start()
  })

  afterAll(async () => {
    await server.stop()
    for (const device of devices) await device.destroy()
    await box.destroy()
    devices.length = 0
    await backend.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('carries a sealed, signed file from one identity to another; the server keeps ciphertext the age tool opens with the recipient key', async () => {
    const alice = await person('alice')
    const bob = await person('bob')
    const carol = await person('carol')
    const secret = Buffer.concat([Buffer.from('quarterly figures: '), randomBytes(3 * MiB)])
    await writeFile(join(root, 'report.pdf'), secret)
    const share = await alice.client.share(join(root, 'report.pdf'), [bob.identity.publicId], { signer: alice.identity })
    expect(share).toMatchObject({ from: alice.identity.publicId, to: [bob.identity.publicId], name: 'report.pdf' })

    // What the server stores is an age file it cannot open; the age tool opens it with Bob's key.
    const stored = (await backend.storedShare(box, share.id))!
    expect(stored.subarray(0, 21).toString()).toBe('age-encryption.org/v1')
    expect(stored.includes('quarterly figures')).toBe(false)
    const keyFile = join(root, 'bob.key')
    await writeFile(keyFile, bob.identity.exportAgeIdentity() + '\n', { mode: 0o600 })
    const storedFile = join(root, `${share.id}.age`)
    await writeFile(storedFile, stored)
    const opened = spawnSync('age', ['--decrypt', '-i', keyFile, storedFile], { maxBuffer: 64 * MiB })
    expect(opened.status).toBe(0)
    expect(opened.stdout.equals(secret)).toBe(true)

    // Bob sees it, downloads it in chunks, checks Alice's signature and opens it.
    expect((await bob.client.inbox()).map((each) => each.id)).toEqual([share.id])
    const received = await bob.client.receive(share.id, join(root, 'bob-report.pdf'), bob.identity)
    expect(received.signedBy).toBe(alice.identity.publicId)
    expect((await readFile(join(root, 'bob-report.pdf'))).equals(secret)).toBe(true)

    // Carol is paired too, but it is not for her: she neither sees nor reads it.
    expect(await carol.client.inbox()).toEqual([])
    expect(await errorCode(carol.client.call('GET', `/v1/shares/content?id=${share.id}`))).toBe('ERR_NOT_FOUND')
    expect(await errorCode(carol.client.removeShare(share.id))).toBe('ERR_NOT_FOUND')

    // Once its only recipient removes it, the server forgets it.
    await bob.client.removeShare(share.id)
    expect(await bob.client.inbox()).toEqual([])
    expect(await backend.storedShare(box, share.id)).toBeUndefined()
  })

  it('refuses a share whose stored ciphertext was altered: signed ones fail the signature, unsigned ones fail to open', async () => {
    const alice = await person('alice2')
    const bob = await person('bob2')
    await writeFile(join(root, 'note.txt'), 'meet at noon')
    const signed = await alice.client.share(join(root, 'note.txt'), [bob.identity.publicId], { signer: alice.identity })
    const unsigned = await alice.client.share(join(root, 'note.txt'), [bob.identity.publicId, alice.identity.publicId], { name: 'copy.txt' })
    for (const share of [signed, unsigned]) {
      const bytes = (await backend.storedShare(box, share.id))!
      bytes[bytes.length - 5]! ^= 1
      await backend.alterStoredShare(box, share.id, bytes)
    }
    expect(await errorCode(bob.client.receive(signed.id, join(root, 'a.txt'), bob.identity))).toBe('ERR_SIGNATURE_INVALID')
    expect(await errorCode(bob.client.receive(unsigned.id, join(root, 'b.txt'), bob.identity))).toMatch(/^ERR_AGE_/)
    expect(existsSync(join(root, 'a.txt')) || existsSync(join(root, 'b.txt'))).toBe(false)
    // The sender may withdraw a share for everyone.
    await alice.client.removeShare(unsigned.id)
    expect((await bob.client.inbox()).map((each) => each.id)).toEqual([signed.id])
    expect(await backend.storedShare(box, unsigned.id)).toBeUndefined()
  })

  it('counts drop-box shares toward the quota, and frees it when they go', async () => {
    const alice = await person('alice4')
    const bob = await person('bob4')
    const before = await alice.client.storage()
    await writeFile(join(root, 'half.bin'), randomBytes(MiB))
    await box.admin.setQuota(before.usedBytes + before.sharedBytes + before.stagedBytes + 1.5 * MiB)
    try {
      const share = await alice.client.share(join(root, 'half.bin'), [bob.identity.publicId])
      const after = await alice.client.storage()
      expect(after.sharedBytes - before.sharedBytes).toBe(share.size)
      // The next megabyte would not fit beside the share: refused before any of it is stored.
      expect(await errorCode(alice.client.upload(join(root, 'half.bin'), 'big.bin'))).toBe('ERR_QUOTA_EXCEEDED')
      expect(await errorCode(alice.client.share(join(root, 'half.bin'), [bob.identity.publicId]))).toBe('ERR_QUOTA_EXCEEDED')
      await bob.client.removeShare(share.id)
      expect(await errorCode(alice.client.upload(join(root, 'half.bin'), 'big.bin'))).toBe('ok')
    } finally {
      await box.admin.setQuota(null)
    }
  })

  it('takes age1… recipients: one that is a paired device\'s age key reaches its inbox; any other opens it with the age tool', async () => {
    const alice = await person('alice4')
    const dave = await person('dave')
    const outsider = spawnSync('age-keygen', [], { encoding: 'utf8' })
    const outsiderKey = join(root, 'outsider.key')
    await writeFile(outsiderKey, outsider.stdout, { mode: 0o600 })
    const outsiderRecipient = /public key: (age1[a-z0-9]+)/.exec(outsider.stderr + outsider.stdout)![1]!
    await writeFile(join(root, 'for-age.txt'), 'for age keys')
    const share = await alice.client.share(join(root, 'for-age.txt'), [dave.identity.ageRecipient, outsiderRecipient], { signer: alice.identity })
    expect(share.to).toEqual([dave.identity.ageRecipient, outsiderRecipient])
    expect((await dave.client.inbox()).map((each) => each.id)).toEqual([share.id])
    await dave.client.receive(share.id, join(root, 'dave.txt'), dave.identity)
    expect(await readFile(join(root, 'dave.txt'), 'utf8')).toBe('for age keys')
    const storedFile = join(root, `${share.id}-age.age`)
    await writeFile(storedFile, (await backend.storedShare(box, share.id))!)
    expect(spawnSync('age', ['--decrypt', '-i', outsiderKey, storedFile], { encoding: 'utf8' }).stdout).toBe('for age keys')
  })

  it('refuses malformed shares: no recipients, a bad ID, a name with a slash', async () => {
    const alice = await person('alice3')
    await writeFile(join(root, 'x.txt'), 'x')
    expect(await errorCode(alice.client.share(join(root, 'x.txt'), []))).toBe('ERR_BAD_REQUEST')
    expect(await errorCode(alice.client.share(join(root, 'x.txt'), ['cb1notanid']))).not.toBe('ok')
    expect(await errorCode(alice.client.share(join(root, 'x.txt'), [alice.identity.publicId], { name: '../../etc/passwd' }))).toBe('ERR_BAD_REQUEST')
  })
})

describe('share IDs', () => {
  it('never start with "-" (a command line would read the ID as an option)', () => {
    // One in 64 random base64url IDs would: 5,000 of them all but surely hold some.
    const ids = Array.from({ length: 5_000 }, () => newShareId())
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{23}$/)
    expect(new Set(ids).size).toBe(ids.length)
  })
})
