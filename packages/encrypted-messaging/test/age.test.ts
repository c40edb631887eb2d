import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  formatAgeIdentity,
  formatAgeRecipient,
  generateAgeIdentity,
  Identity,
  isEncryptedMessagingError,
  openBytes,
  openFile,
  openStream,
  parseAgeIdentity,
  parseAgeIdentityFile,
  parseAgeRecipient,
  parseRecipient,
  sealBytes,
  sealFile,
  sealStream,
  type X25519KeyAgreement,
} from '../src/index.js'

const CHUNK = 64 * 1024
let dir: string
let ageKey: X25519KeyAgreement
let ageRecipient: string
let keyFile: string

function codeOf(run: () => unknown): string {
  try {
    run()
  } catch (error) {
    if (isEncryptedMessagingError(error)) return error.code
    throw error
  }
  return 'no error'
}

async function codeOfAsync(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    if (isEncryptedMessagingError(error)) return error.code
    throw error
  }
  return 'no error'
}

function pseudoRandom(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length)
  let x = seed >>> 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** Byte equality without vitest's element-by-element diff, which is slow on megabytes. */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  const same = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))
  expect(same, `bytes differ (lengths ${actual.length} and ${expected.length})`).toBe(true)
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const part of source) parts.push(part)
  return new Uint8Array(Buffer.concat(parts))
}

function runAge(args: string[], input?: Uint8Array): Buffer {
  const result = spawnSync('age', args, { input, maxBuffer: 256 * 1024 * 1024 })
  if (result.status !== 0) throw new Error(`age ${args.join(' ')} failed: ${result.stderr.toString()}`)
  return result.stdout
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cloudbox-age-'))
  keyFile = join(dir, 'key.txt')
  execFileSync('age-keygen', ['-o', keyFile], { stdio: 'pipe' })
  const text = readFileSync(keyFile, 'utf8')
  ageRecipient = /# public key: (age1[0-9a-z]+)/.exec(text)?.[1] ?? ''
  ;[ageKey] = parseAgeIdentityFile(text) as [X25519KeyAgreement]
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('age keys', () => {
  it('reads what age-keygen writes and derives the same recipient', () => {
    expect(formatAgeRecipient(ageKey.x25519PublicKey)).toBe(ageRecipient)
    expect(parseAgeRecipient(ageRecipient)).toEqual(ageKey.x25519PublicKey)
    const secretLine = readFileSync(keyFile, 'utf8').split('\n').find((line) => line.startsWith('AGE-SECRET-KEY-1')) ?? ''
    expect(formatAgeIdentity(ageKey.exportSecret())).toBe(secretLine)
    // age-keygen -y derives the recipient from the identity: ours must agree.
    const fromTool = execFileSync('age-keygen', ['-y', keyFile]).toString().trim()
    expect(fromTool).toBe(ageRecipient)
  })

  it('age-keygen -y agrees with the recipient we derive for a generated key and for an Identity', () => {
    const generated = generateAgeIdentity()
    const file = join(dir, 'generated.txt')
    writeFileSync(file, `${formatAgeIdentity(generated.exportSecret())}\n`)
    expect(execFileSync('age-keygen', ['-y', file]).toString().trim()).toBe(formatAgeRecipient(generated.x25519PublicKey))
    const { identity } = Identity.generate()
    writeFileSync(file, `${identity.exportAgeIdentity()}\n`)
    expect(execFileSync('age-keygen', ['-y', file]).toString().trim()).toBe(identity.ageRecipient)
    expect(parseRecipient(identity.publicId)).toEqual(parseRecipient(identity.ageRecipient))
    rmSync(file)
  })

  it('refuses damaged, mixed-case, plugin and wrong-length keys with ERR_INVALID_KEY', () => {
    const flipped = ageRecipient.slice(0, 10) + (ageRecipient[10] === 'q' ? 'p' : 'q') + ageRecipient.slice(11)
    expect(codeOf(() => parseAgeRecipient(flipped))).toBe('ERR_INVALID_KEY')
    expect(codeOf(() => parseAgeRecipient(ageRecipient.slice(0, 8) + ageRecipient.slice(8).toUpperCase()))).toBe('ERR_INVALID_KEY')
    expect(parseAgeRecipient(ageRecipient.toUpperCase())).toEqual(ageKey.x25519PublicKey)
    expect(codeOf(() => parseAgeRecipient('age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t'))).toBe('ERR_INVALID_KEY')
    expect(codeOf(() => parseAgeRecipient('age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq'))).toBe('ERR_INVALID_KEY')
    expect(codeOf(() => parseAgeIdentity(ageRecipient))).toBe('ERR_INVALID_KEY')
    expect(codeOf(() => parseAgeIdentityFile('# only a comment\n'))).toBe('ERR_INVALID_KEY')
    expect(codeOf(() => parseAgeIdentityFile('AGE-PLUGIN-YUBIKEY-1QQQQ\n'))).toBe('ERR_INVALID_KEY')
    expect(codeOf(() => parseRecipient('ssh-ed25519 AAAA'))).toBe('ERR_INVALID_KEY')
  })
})

describe('age interop with the age tool', () => {
  const sizes = [0, 1, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 1024 * 1024 + 7]

  it.each(sizes)('age -d opens what we seal (%i bytes), binary and armored', (size) => {
    const plaintext = pseudoRandom(size, size + 1)
    const other = generateAgeIdentity()
    const sealed = sealBytes(plaintext, [other.x25519PublicKey, ageRecipient])
    expectBytes(runAge(['-d', '-i', keyFile], sealed), plaintext)
    const armored = sealBytes(plaintext, [ageRecipient], { armor: true })
    expect(Buffer.from(armored).toString('latin1')).toMatch(/^-----BEGIN AGE ENCRYPTED FILE-----\n/)
    expectBytes(runAge(['-d', '-i', keyFile], armored), plaintext)
  })

  it.each(sizes)('we open what age seals (%i bytes), binary and armored', (size) => {
    const plaintext = pseudoRandom(size, size + 7)
    const stranger = generateAgeIdentity()
    const sealed = runAge(['-r', formatAgeRecipient(stranger.x25519PublicKey), '-r', ageRecipient], plaintext)
    expectBytes(openBytes(sealed, [ageKey]), plaintext)
    expectBytes(openBytes(sealed, [generateAgeIdentity(), stranger]), plaintext)
    const armored = runAge(['-a', '-r', ageRecipient], plaintext)
    expectBytes(openBytes(armored, ageKey), plaintext)
  })

  it('age -d opens a file sealed to an Identity (cb1 ID) with its exported age identity', async () => {
    const { identity } = Identity.generate()
    const plaintext = pseudoRandom(200_000, 3)
    const input = join(dir, 'doc.bin')
    writeFileSync(input, plaintext)
    await sealFile(input, `${input}.age`, [identity.publicId])
    const idFile = join(dir, 'identity.txt')
    writeFileSync(idFile, `${identity.exportAgeIdentity()}\n`)
    expectBytes(runAge(['-d', '-i', idFile, `${input}.age`]), plaintext)
    // And the other way: age seals to the identity's age1 recipient, the Identity opens it.
    writeFileSync(`${input}.2.age`, runAge(['-r', identity.ageRecipient], plaintext))
    await openFile(`${input}.2.age`, `${input}.out`, identity)
    expectBytes(readFileSync(`${input}.out`), plaintext)
  })
})

describe('age streams and files', () => {
  it('round-trips through streams with any chunking (property)', async () => {
    const key = generateAgeIdentity()
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 3 * CHUNK + 100 }), fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 8 }), fc.boolean(), async (size, cuts, armor) => {
        const plaintext = pseudoRandom(size, size + 11)
        const pieces = (bytes: Uint8Array): Uint8Array[] => {
          const out: Uint8Array[] = []
          let offset = 0
          let i = 0
          while (offset < bytes.length) {
            const n = cuts[i++ % cuts.length] as number
            out.push(bytes.slice(offset, offset + n))
            offset += n
          }
          return out
        }
        const sealed = await collect(sealStream(pieces(plaintext), [key.x25519PublicKey], { armor }))
        expectBytes(await collect(openStream(pieces(sealed), [key])), plaintext)
      }),
      { numRuns: 40 },
    )
  })

  it('a stream of single bytes seals and opens in time linear in its length', async () => {
    // One-byte pieces queue 65,536 parts per chunk. Taking a chunk out of them used to
    // Array#shift each part (moving the rest of the array every time): seconds per chunk,
    // so the property above timed out under load whenever it drew cuts of [1]. Linear,
    // this takes well under a second; quadratic, more than ten.
    const key = generateAgeIdentity()
    const plaintext = pseudoRandom(4 * CHUNK + 1, 21)
    const singleBytes = (bytes: Uint8Array): Uint8Array[] => Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1))
    const started = performance.now()
    const sealed = await collect(sealStream(singleBytes(plaintext), [key.x25519PublicKey]))
    expectBytes(await collect(openStream(singleBytes(sealed), [key])), plaintext)
    const elapsed = performance.now() - started
    expect(elapsed, `sealing and opening ${plaintext.length} single bytes took ${Math.round(elapsed)} ms`).toBeLessThan(6000)
  }, 60_000)

  it('sealFile/openFile write atomically and leave nothing behind on failure', async () => {
    const work = mkdtempSync(join(dir, 'files-'))
    const input = join(work, 'in.bin')
    writeFileSync(input, pseudoRandom(5 * CHUNK + 3, 5))
    await sealFile(input, join(work, 'in.bin.age'), [ageRecipient], {})
    expectBytes(runAge(['-d', '-i', keyFile, join(work, 'in.bin.age')]), readFileSync(input))
    // Tamper with the last byte: open fails, no output, no temporary file.
    const sealed = readFileSync(join(work, 'in.bin.age'))
    sealed[sealed.length - 1] = (sealed[sealed.length - 1] ?? 0) ^ 1
    writeFileSync(join(work, 'bad.age'), sealed)
    writeFileSync(join(work, 'existing.out'), 'keep me')
    expect(await codeOfAsync(openFile(join(work, 'bad.age'), join(work, 'existing.out'), ageKey))).toBe('ERR_AGE_PAYLOAD_CORRUPTED')
    expect(readFileSync(join(work, 'existing.out'), 'utf8')).toBe('keep me')
    expect(await codeOfAsync(openFile(join(work, 'in.bin.age'), join(work, 'x.out'), generateAgeIdentity()))).toBe('ERR_AGE_NO_MATCHING_IDENTITY')
    expect(existsSync(join(work, 'x.out'))).toBe(false)
    expect(readdirSync(work).filter((name) => name.endsWith('.tmp'))).toEqual([])
    // Abort stops the work and cleans up too.
    const controller = new AbortController()
    controller.abort()
    await expect(sealFile(input, join(work, 'aborted.age'), [ageRecipient], { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' })
    expect(readdirSync(work).sort()).toEqual(['bad.age', 'existing.out', 'in.bin', 'in.bin.age'])
  })
})

describe('large files on worker threads', () => {
  it('seal and open in parallel interoperate with age and refuse tampering, cuts and extensions', async () => {
    const work = mkdtempSync(join(dir, 'parallel-'))
    const input = join(work, 'big.bin')
    const plaintext = pseudoRandom(5 * 1024 * 1024 + 12345, 77)
    writeFileSync(input, plaintext)
    await sealFile(input, join(work, 'big.age'), [ageRecipient])
    expectBytes(runAge(['-d', '-i', keyFile, join(work, 'big.age')]), plaintext)
    // The threaded and the single-thread paths agree with each other.
    await openFile(join(work, 'big.age'), join(work, 'threads.out'), ageKey)
    await openFile(join(work, 'big.age'), join(work, 'one.out'), ageKey, { parallel: false })
    expectBytes(readFileSync(join(work, 'threads.out')), plaintext)
    expectBytes(readFileSync(join(work, 'one.out')), plaintext)
    writeFileSync(join(work, 'theirs.age'), runAge(['-r', ageRecipient], plaintext))
    await openFile(join(work, 'theirs.age'), join(work, 'theirs.out'), [generateAgeIdentity(), ageKey])
    expectBytes(readFileSync(join(work, 'theirs.out')), plaintext)

    const sealed = readFileSync(join(work, 'big.age'))
    const headerEnd = sealed.indexOf('\n---') + 1 + 48 + 16
    const cases: Array<[string, Uint8Array, string]> = []
    const flipped = Buffer.from(sealed)
    flipped.writeUInt8((flipped.readUInt8(headerEnd + 3 * (CHUNK + 16) + 5) ^ 1), headerEnd + 3 * (CHUNK + 16) + 5)
    cases.push(['flipped', flipped, 'ERR_AGE_PAYLOAD_CORRUPTED'])
    cases.push(['cut at a chunk boundary', sealed.subarray(0, headerEnd + 40 * (CHUNK + 16)), 'ERR_AGE_TRUNCATED'])
    cases.push(['cut inside a chunk', sealed.subarray(0, headerEnd + 40 * (CHUNK + 16) + 999), 'ERR_AGE_PAYLOAD_CORRUPTED'])
    cases.push(['extended', Buffer.concat([sealed, Buffer.alloc(20)]), 'ERR_AGE_PAYLOAD_CORRUPTED'])
    const reordered = Buffer.from(sealed)
    reordered.set(sealed.subarray(headerEnd + 20 * (CHUNK + 16), headerEnd + 21 * (CHUNK + 16)), headerEnd + 2 * (CHUNK + 16))
    cases.push(['chunk replaced by another', reordered, 'ERR_AGE_PAYLOAD_CORRUPTED'])
    for (const [name, bytes, code] of cases) {
      writeFileSync(join(work, 'bad.age'), bytes)
      expect(await codeOfAsync(openFile(join(work, 'bad.age'), join(work, 'bad.out'), ageKey)), name).toBe(code)
      expect(await codeOfAsync(openFile(join(work, 'bad.age'), join(work, 'bad.out'), ageKey, { parallel: false })), name).toBe(code)
      expect(existsSync(join(work, 'bad.out')), name).toBe(false)
    }
    expect(readdirSync(work).filter((name) => name.endsWith('.tmp'))).toEqual([])
  })
})

describe('age from the attacker side', () => {
  const key = generateAgeIdentity()
  const plaintext = pseudoRandom(2 * CHUNK + 500, 9)
  const sealed = sealBytes(plaintext, [key.x25519PublicKey])
  const headerLength = Buffer.from(sealed).indexOf('\n---') + 1 + 48

  it('every flipped bit in the header is refused with a typed error', () => {
    const codes = new Set<string>()
    for (let i = 0; i < headerLength; i++) {
      const copy = sealed.slice()
      copy[i] = (copy[i] ?? 0) ^ 0x01
      const code = codeOf(() => openBytes(copy, key))
      expect(code).not.toBe('no error')
      codes.add(code)
    }
    expect([...codes].every((code) => ['ERR_AGE_HEADER_INVALID', 'ERR_AGE_HEADER_MAC', 'ERR_AGE_NO_MATCHING_IDENTITY', 'ERR_AGE_UNSUPPORTED', 'ERR_AGE_TRUNCATED'].includes(code))).toBe(true)
  })

  it('flipped payload bytes, reordered, dropped and appended chunks are refused', () => {
    const payloadStart = headerLength + 16
    for (const position of [headerLength, headerLength + 15, payloadStart, payloadStart + CHUNK + 20, sealed.length - 1]) {
      const copy = sealed.slice()
      copy[position] = (copy[position] ?? 0) ^ 0x80
      expect(codeOf(() => openBytes(copy, key))).toBe('ERR_AGE_PAYLOAD_CORRUPTED')
    }
    const chunk = CHUNK + 16
    const first = sealed.subarray(payloadStart, payloadStart + chunk)
    const second = sealed.subarray(payloadStart + chunk, payloadStart + 2 * chunk)
    const swapped = Buffer.concat([sealed.subarray(0, payloadStart), second, first, sealed.subarray(payloadStart + 2 * chunk)])
    expect(codeOf(() => openBytes(swapped, key))).toBe('ERR_AGE_PAYLOAD_CORRUPTED')
    const dropLast = sealed.subarray(0, payloadStart + 2 * chunk)
    expect(codeOf(() => openBytes(dropLast, key))).toBe('ERR_AGE_TRUNCATED')
    const appended = Buffer.concat([sealed, new Uint8Array(1)])
    expect(codeOf(() => openBytes(appended, key))).toBe('ERR_AGE_PAYLOAD_CORRUPTED')
    // Two files' chunks do not mix, even for the same key and plaintext.
    const again = sealBytes(plaintext, [key.x25519PublicKey])
    const spliced = Buffer.concat([sealed.subarray(0, payloadStart + chunk), again.subarray(payloadStart + chunk)])
    expect(codeOf(() => openBytes(spliced, key))).toBe('ERR_AGE_PAYLOAD_CORRUPTED')
  })

  it('a file cut at any length is refused, never opened', () => {
    const small = sealBytes(pseudoRandom(CHUNK + 10, 4), [key.x25519PublicKey])
    for (let length = 0; length < small.length; length += length < 300 ? 1 : 997) {
      expect(codeOf(() => openBytes(small.subarray(0, length), key))).toMatch(/^ERR_AGE_(TRUNCATED|HEADER_INVALID|PAYLOAD_CORRUPTED)$/)
    }
  })

  it('refuses non-canonical encodings, a passphrase stanza mixed with others, and other versions', () => {
    const text = Buffer.from(sealed.subarray(0, headerLength)).toString('latin1')
    const payload = sealed.subarray(headerLength)
    const withHeader = (header: string) => Buffer.concat([Buffer.from(header, 'latin1'), payload])
    expect(codeOf(() => openBytes(withHeader(text.replace('age-encryption.org/v1', 'age-encryption.org/v2')), key))).toBe('ERR_AGE_UNSUPPORTED')
    expect(codeOf(() => openBytes(withHeader(text.replace('\n-> X25519 ', '\n-> X25519  ')), key))).toBe('ERR_AGE_HEADER_INVALID')
    expect(codeOf(() => openBytes(withHeader(text.replace(/\n/g, '\r\n')), key))).toBe('ERR_AGE_HEADER_INVALID')
    const scrypt = text.replace('\n---', '\n-> scrypt c2FsdHNhbHRzYWx0c2FsdA 18\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n---')
    expect(codeOf(() => openBytes(withHeader(scrypt), key))).toBe('ERR_AGE_HEADER_INVALID')
    const onlyScrypt = 'age-encryption.org/v1\n-> scrypt c2FsdHNhbHRzYWx0c2FsdA 18\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n'
    expect(codeOf(() => openBytes(withHeader(onlyScrypt), key))).toBe('ERR_AGE_UNSUPPORTED')
    const plugin = 'age-encryption.org/v1\n-> piv-p256 abc\nAAAA\n--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n'
    expect(codeOf(() => openBytes(withHeader(plugin), key))).toBe('ERR_AGE_UNSUPPORTED')
    expect(codeOf(() => openBytes(Buffer.from('hello world, not age'), key))).toBe('ERR_AGE_HEADER_INVALID')
    expect(codeOf(() => openBytes(new Uint8Array(0), key))).toBe('ERR_AGE_HEADER_INVALID')
  })

  it('never fails with anything but a typed error on random or mutated input (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const code = codeOf(() => openBytes(bytes, key))
        expect(code).toMatch(/^ERR_AGE_/)
      }),
      { numRuns: 300 },
    )
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (edits) => {
        const copy = sealed.slice()
        for (const [position, mask] of edits) {
          const at = position % copy.length
          copy[at] = (copy[at] ?? 0) ^ mask
        }
        expect(codeOf(() => openBytes(copy, key))).toMatch(/^ERR_AGE_/)
      }),
      { numRuns: 300 },
    )
  })

  it('refuses a malformed armor', () => {
    const armored = Buffer.from(sealBytes(pseudoRandom(1000, 2), [key.x25519PublicKey], { armor: true })).toString('latin1')
    const lines = armored.split('\n')
    const broken = [lines[0], (lines[1] ?? '').slice(0, 60), ...lines.slice(2)].join('\n')
    expect(codeOf(() => openBytes(Buffer.from(broken, 'latin1'), key))).toBe('ERR_AGE_HEADER_INVALID')
    expect(codeOf(() => openBytes(Buffer.from(armored.replace('-----END AGE ENCRYPTED FILE-----\n', ''), 'latin1'), key))).toBe('ERR_AGE_HEADER_INVALID')
    expect(codeOf(() => openBytes(Buffer.from(`${armored}trailing`, 'latin1'), key))).toBe('ERR_AGE_HEADER_INVALID')
    expect(openBytes(Buffer.from(`\n  ${armored.replace(/\n/g, '\r\n')}  \n`, 'latin1'), key)).toEqual(pseudoRandom(1000, 2))
  })
})
