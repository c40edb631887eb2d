/**
 * Hostile input against every decoder a peer, a hub or a file can feed: random bytes and
 * mutations (bit flips, truncation, extension, duplication) of valid encodings. Each either
 * decodes or fails with a typed error (a stable ERR_ code): never a crash, a hang or an
 * untyped exception. Then unsafe names from a peer, and PIN guessing.
 */
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join, resolve, sep } from 'node:path'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import {
  acceptSecureChannel,
  ApiRequestOpener,
  createMemoryChannelPair,
  Identity,
  initiateSecureChannel,
  openBytes,
  parseAgeIdentity,
  parseAgeRecipient,
  parsePublicId,
  parseSignerKey,
  sealApiRequest,
  sealBytes,
  signDocument,
  verifyDocument,
} from '@cloudbox/encrypted-messaging'
import { hubCodec, decodeApiReply, encodeApiReply } from '@cloudbox/encrypted-messaging/hub'
import { SyncEngine, syncCodec } from '@cloudbox/cloudsync'
import { VaultStorage } from '@cloudbox/securestorage'
import { parsePairingUri, formatPairingUri } from '@cloudbox/cloudbox'
import { recordOutcome } from './support/outcomes.js'
import { tempRoot } from './support/nodes.js'

let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

const area = () => tempRoot('cloudbox-hostile-', cleanups)

/** The error is one of ours: it carries a stable code. */
function typed(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' && /^ERR_[A-Z0-9_]+$/.test(code)
}

/** Mutations of a valid encoding: the ways a frame or file gets damaged or forged. */
function mutated(sample: Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, mask]) => {
      const copy = Uint8Array.from(sample)
      if (copy.length > 0) copy[at % copy.length] = (copy[at % copy.length] as number) ^ mask
      return copy
    }),
    fc.nat().map((cut) => sample.subarray(0, sample.length === 0 ? 0 : cut % sample.length)),
    fc.uint8Array({ minLength: 1, maxLength: 64 }).map((tail) => Uint8Array.from([...sample, ...tail])),
    fc.constant(Uint8Array.from([...sample, ...sample])),
    fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([at, junk]) => {
      const i = sample.length === 0 ? 0 : at % sample.length
      return Uint8Array.from([...sample.subarray(0, i), ...junk, ...sample.subarray(i)])
    }),
  )
}

interface Decoder {
  name: string
  samples: Uint8Array[]
  decode(input: Uint8Array): unknown
  runs?: number
}

const identity = Identity.generate().identity
const other = Identity.generate().identity
const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1')
const bytesOf = (value: string) => new Uint8Array(Buffer.from(value, 'latin1'))

async function decoders(): Promise<Decoder[]> {
  const sealed = sealBytes(new TextEncoder().encode('a secret'), [identity.ageRecipient])
  const signature = await signDocument(identity, new TextEncoder().encode('a contract'))
  const request = await sealApiRequest(other, identity.publicId, { method: 'GET', path: '/files' })
  const opener = new ApiRequestOpener(identity)
  const uri = formatPairingUri({ id: identity.publicId, name: 'home', hub: 'ws://127.0.0.1:7070', addresses: ['ws://127.0.0.1:7443'] })
  return [
    {
      name: 'sync protocol messages (CBOR)',
      samples: [
        syncCodec.encode('hello', { folder: 'f', device: 'd', root: new Uint8Array(32), sequence: 3 }),
        syncCodec.encode('index', { records: [{ path: 'a.txt', size: 1, mtimeMs: 1, mode: 0o644, chunkHashes: new Uint8Array(32), chunkLengths: [1], chunkSize: 65536, version: { d: 1 }, deleted: false, sequence: 1 }] }),
        syncCodec.encode('data', { chunks: [[1, new Uint8Array(100)]] }),
        syncCodec.encode('fetch', { requests: [{ id: 1, path: 'a.txt', offset: 0, length: 1 }] }),
      ],
      decode: (input) => syncCodec.decode(input),
    },
    {
      name: 'hub wire messages (CBOR) and API replies',
      samples: [hubCodec.encode('challenge', { nonce: new Uint8Array(32) }), encodeApiReply({ status: 200, sealed: new Uint8Array([1, 2, 3]) })],
      decode: (input) => (input[0] === 0 ? decodeApiReply(input) : hubCodec.decode(input)),
    },
    { name: 'age files (header and payload)', samples: [sealed], decode: (input) => openBytes(input, identity) },
    { name: 'age identities and recipients', samples: [bytesOf(identity.ageRecipient)], decode: (input) => (input.length % 2 === 0 ? parseAgeRecipient(text(input)) : parseAgeIdentity(text(input))) },
    { name: 'minisign signatures', samples: [bytesOf(signature)], decode: (input) => verifyDocument(new TextEncoder().encode('a contract'), text(input), identity.publicId), runs: 150 },
    { name: 'minisign public keys and CloudBox IDs', samples: [bytesOf(identity.publicId)], decode: (input) => (input.length % 2 === 0 ? parseSignerKey(text(input)) : parsePublicId(text(input))) },
    { name: 'HPKE-sealed API requests', samples: [request.message], decode: (input) => opener.open(input), runs: 150 },
    { name: 'pairing URIs', samples: [bytesOf(uri)], decode: (input) => parsePairingUri(text(input)) },
    { name: 'recovery phrases', samples: [bytesOf(Identity.generate().recoveryPhrase)], decode: (input) => Identity.fromRecoveryPhrase(text(input)), runs: 100 },
  ]
}

describe('hostile input to every decoder', () => {
  it('random bytes and damaged valid encodings end in a typed error or a valid result', async () => {
    let cases = 0
    for (const decoder of await decoders()) {
      const runs = decoder.runs ?? 400
      const input = fc.oneof(fc.uint8Array({ maxLength: 600 }), ...decoder.samples.map(mutated))
      await fc.assert(
        fc.asyncProperty(input, async (bytes) => {
          cases += 1
          try {
            await decoder.decode(bytes)
          } catch (error) {
            if (!typed(error)) throw new Error(`${decoder.name}: an untyped ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`)
          }
        }),
        { numRuns: runs },
      )
    }
    recordOutcome({ group: 'hostile input', what: 'fuzzed decoders: sync, hub wire, age, age keys, minisign, signer keys, HPKE requests, pairing URIs, recovery phrases', injected: cases, survived: cases, dataLost: 0 })
  })

  it('vault files: damaged or foreign bytes are refused with a typed error, never read as secrets', async () => {
    const root = area()
    const kdf = { opsLimit: 1, memLimit: 8 * 1024 * 1024 }
    const good = join(root, 'good.vault')
    const vault = new VaultStorage({ path: good, passphrase: 'pass phrase', kdf })
    await vault.start()
    await vault.set('node-key', new TextEncoder().encode('secret'))
    await vault.stop()
    const sample = new Uint8Array(readFileSync(good))
    let cases = 0
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 300 }), mutated(sample)), async (bytes) => {
        cases += 1
        const path = join(root, `case-${cases}.vault`)
        writeFileSync(path, bytes)
        const storage = new VaultStorage({ path, passphrase: 'pass phrase', kdf })
        try {
          await storage.start()
          // Opened: the bytes were a whole valid vault, so the secret must be the real one.
          const secret = await storage.get('node-key')
          if (secret !== undefined) expect(new TextDecoder().decode(secret)).toBe('secret')
        } catch (error) {
          if (!typed(error)) throw new Error(`vault: an untyped ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`)
        } finally {
          await storage.stop().catch(() => {})
          rmSync(path, { force: true })
          rmSync(`${path}.lock`, { force: true })
        }
      }),
      { numRuns: 60 },
    )
    recordOutcome({ group: 'hostile input', what: 'fuzzed vault files', injected: cases, survived: cases, dataLost: 0 })
  })

  it('Noise handshakes: garbage in place of either side\'s handshake message fails typed, within the timeout', async () => {
    let cases = 0
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.boolean(), async (garbage, againstResponder) => {
        cases += 1
        const [mine, theirs] = createMemoryChannelPair()
        const victim = againstResponder
          ? acceptSecureChannel(theirs, { identity, timeoutMs: 1_000 })
          : initiateSecureChannel(theirs, { identity: other, remotePublicKey: identity.publicKey, timeoutMs: 1_000 })
        const outcome = victim.then(() => undefined, (error: unknown) => error)
        if (!againstResponder) {
          // The initiator speaks first; answer its message with garbage.
          const inbox = mine[Symbol.asyncIterator]()
          await inbox.next()
        }
        await mine.send(garbage).catch(() => {})
        const error = await outcome
        await mine.close().catch(() => {})
        expect(typed(error), String(error)).toBe(true)
      }),
      { numRuns: 150 },
    )
    recordOutcome({ group: 'hostile input', what: 'garbage Noise handshake messages (both roles)', injected: cases, survived: cases, dataLost: 0 })
  })
})

describe('unsafe names from a peer', () => {
  it('any path a peer sends is refused with ERR_UNSAFE_PATH or written inside the folder, never outside', { timeout: 60_000 }, async () => {
    const root = area()
    const folder = join(root, 'folder')
    const outside = join(root, 'outside')
    mkdirSync(folder)
    mkdirSync(outside)
    // A symbolic link inside the folder that points out of it: writing through it is an escape.
    symlinkSync(outside, join(folder, 'link'))
    const engine = new SyncEngine({ folder, deviceId: 'victim', folderId: 'f', watch: false })
    await engine.start()
    cleanups.push(() => engine.stop())
    const segment = fc.oneof(fc.constantFrom('..', '.', '', 'link', '.cloudbox', 'CON', 'a\u0000b', 'x\\..\\y', '/', '~', 'ok'), fc.string({ maxLength: 6 }))
    const evilPath = fc.tuple(fc.array(segment, { minLength: 1, maxLength: 5 }), fc.constantFrom('/', '\\', '//')).map(([parts, separator]) => parts.join(separator))
    const paths = fc.sample(fc.oneof(evilPath, fc.constantFrom('../escape', '/etc/passwd', 'link/through.txt', 'a/../../b', 'C:\\windows\\x', '\\\\server\\share\\x')), 200)
    const content = Buffer.from('payload')
    const hash = new Uint8Array(createHash('sha256').update(content).digest())
    const [mine, theirs] = createMemoryChannelPair()
    const session = engine.connect(theirs, { peer: 'mallory' })
    const inbox = mine[Symbol.asyncIterator]()
    await mine.send(syncCodec.encode('hello', { folder: 'f', device: 'mallory', root: new Uint8Array(32), sequence: paths.length }))
    for (let i = 0; i < paths.length; i += 100) {
      const records = paths.slice(i, i + 100).map((path, j) => ({ path, size: content.length, mtimeMs: 1_700_000_000_000, mode: 0o644, chunkHashes: hash, chunkLengths: [content.length], chunkSize: 65536, version: { mallory: i + j + 1 }, deleted: false, sequence: i + j + 1 }))
      await mine.send(syncCodec.encode('index', { records }))
    }
    await mine.send(syncCodec.encode('indexEnd', { sequence: paths.length, root: new Uint8Array(32) }))
    let refused = 0
    for (;;) {
      const next = await inbox.next()
      if (next.done === true) break
      const message = syncCodec.decode(next.value as Uint8Array)
      if (message.kind === 'fetch') await mine.send(syncCodec.encode('data', { chunks: message.body.requests.map((request) => [request.id, content] as [number, Uint8Array]) }))
      if (message.kind === 'error') {
        expect(['ERR_UNSAFE_PATH', 'ERR_CASE_CLASH']).toContain(message.body.code)
        refused += 1
      }
      if (message.kind === 'ack') break
    }
    await session.close()
    // Nothing landed outside; whatever landed is inside the folder.
    expect(readdirSync(outside)).toEqual([])
    const inside = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? inside(join(dir, entry.name)) : [join(dir, entry.name)]))
    for (const file of inside(folder)) expect(resolve(file).startsWith(resolve(folder) + sep)).toBe(true)
    expect(refused).toBeGreaterThan(0)
    recordOutcome({ group: 'hostile input', what: 'unsafe names and symlink escapes from a peer', injected: paths.length, survived: paths.length, dataLost: 0, note: `${refused} refused, the rest written inside the folder` })
  })
})
