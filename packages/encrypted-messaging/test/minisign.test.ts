import { execFileSync, spawnSync } from 'node:child_process'
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatMinisignPublicKey, Identity, isEncryptedMessagingError, signDocument, verifyDocument } from '../src/index.js'

let dir: string
const alice = Identity.generate().identity
const mallory = Identity.generate().identity

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cloudbox-minisign-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const document = new TextEncoder().encode('I agree to the terms.\n')

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
    return undefined
  } catch (error) {
    expect(isEncryptedMessagingError(error)).toBe(true)
    return (error as { code: string }).code
  }
}

describe('document signatures (minisign format)', () => {
  it('round-trips with signer, time, file name and scope in the trusted comment', async () => {
    const timestamp = new Date('2026-11-23T10:00:00Z')
    const signature = await signDocument(alice, document, { scope: 'accept', fileName: '/tmp/terms.txt', timestamp })
    const verified = await verifyDocument(document, signature, alice.publicId)
    expect(verified).toMatchObject({ scope: 'accept', fileName: 'terms.txt', signerId: alice.publicId, prehashed: true })
    expect(verified.timestamp?.toISOString()).toBe(timestamp.toISOString())
    expect(verified.trustedComment).toContain('\thashed\t')
  })

  it('hashes streams in constant memory and gives the same signature as bytes', async () => {
    const path = join(dir, 'stream.bin')
    writeFileSync(path, Buffer.alloc(3 * 1024 * 1024, 7))
    const timestamp = new Date(0)
    const fromStream = await signDocument(alice, createReadStream(path), { timestamp })
    const fromBytes = await signDocument(alice, readFileSync(path), { timestamp })
    expect(fromStream).toBe(fromBytes)
    await expect(verifyDocument(createReadStream(path), fromStream, alice.publicId)).resolves.toBeTruthy()
  })

  it('refuses a changed document, a changed trusted comment, another signer and garbage', async () => {
    const signature = await signDocument(alice, document, { scope: 'viewed' })
    const changed = new Uint8Array(document)
    changed[0] = (changed[0] ?? 0) ^ 1
    expect(await codeOf(verifyDocument(changed, signature, alice.publicId))).toBe('ERR_SIGNATURE_INVALID')
    const upgraded = signature.replace('scope:viewed', 'scope:accept')
    expect(await codeOf(verifyDocument(document, upgraded, alice.publicId))).toBe('ERR_SIGNATURE_INVALID')
    expect(await codeOf(verifyDocument(document, signature, mallory.publicId))).toBe('ERR_SIGNER_MISMATCH')
    expect(await codeOf(verifyDocument(document, 'not a signature', alice.publicId))).toBe('ERR_SIGNATURE_MALFORMED')
    expect(await codeOf(verifyDocument(document, signature.split('\n').slice(0, 3).join('\n'), alice.publicId))).toBe('ERR_SIGNATURE_MALFORMED')
  })

  it('refuses a signature whose key ID was swapped to the victim’s (the Ed25519 check still fails)', async () => {
    const forged = await signDocument(mallory, document)
    const lines = forged.split('\n')
    const body = Buffer.from(lines[1]!, 'base64')
    const victim = Buffer.from((await signDocument(alice, document)).split('\n')[1]!, 'base64')
    victim.copy(body, 2, 2, 10)
    lines[1] = body.toString('base64')
    expect(await codeOf(verifyDocument(document, lines.join('\n'), alice.publicId))).toBe('ERR_SIGNATURE_INVALID')
  })

  it('refuses a trusted comment that names another signer than the key', async () => {
    // A signer cannot claim to be someone else in its own trusted comment.
    const signature = await signDocument(mallory, document)
    const lying = signature.replace(mallory.publicId, alice.publicId)
    expect(await codeOf(verifyDocument(document, lying, mallory.publicId))).toBe('ERR_SIGNATURE_INVALID')
  })

  it('never crashes on mutated signature files (fuzz)', async () => {
    const signature = await signDocument(alice, document)
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: signature.length - 1 }), fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }), async (position, character) => {
        const mutated = signature.slice(0, position) + character + signature.slice(position + 1)
        if (mutated === signature) return
        const code = await codeOf(verifyDocument(document, mutated, alice.publicId))
        // A mutation of the untrusted comment is harmless (it is not signed); all else fails with a code.
        if (code === undefined) expect(position).toBeLessThan(signature.indexOf('\n'))
      }),
      { numRuns: 300 },
    )
  })

  it('rejects an unknown scope from the caller', async () => {
    await expect(signDocument(alice, document, { scope: 'approve' as 'accept' })).rejects.toThrow(RangeError)
  })
})

describe('interop with the minisign tool', () => {
  it('minisign -V verifies what CloudBox signs', async () => {
    const file = join(dir, 'contract.txt')
    writeFileSync(file, document)
    writeFileSync(`${file}.minisig`, await signDocument(alice, document, { fileName: file, scope: 'accept' }))
    writeFileSync(join(dir, 'alice.pub'), formatMinisignPublicKey(alice.publicKey))
    const output = execFileSync('minisign', ['-V', '-p', join(dir, 'alice.pub'), '-m', file], { encoding: 'utf8' })
    expect(output).toContain('Signature and comment signature verified')
    expect(output).toContain(`signer:${alice.publicId}`)
    // And refuses it once the file changes.
    writeFileSync(file, 'I do not agree.\n')
    const refused = spawnSync('minisign', ['-V', '-p', join(dir, 'alice.pub'), '-m', file], { encoding: 'utf8' })
    expect(refused.status).not.toBe(0)
  })

  it.each([
    ['prehashed', []],
    ['legacy', ['-l']],
  ])('CloudBox verifies what minisign signs (%s)', async (_name, flags) => {
    const keyDir = mkdtempSync(join(dir, 'key-'))
    const pub = join(keyDir, 'minisign.pub')
    const sec = join(keyDir, 'minisign.key')
    execFileSync('minisign', ['-G', '-W', '-p', pub, '-s', sec], { stdio: 'pipe' })
    const file = join(keyDir, 'report.txt')
    writeFileSync(file, 'quarterly report\n')
    execFileSync('minisign', ['-S', ...flags, '-s', sec, '-m', file, '-t', 'reviewed by ops'], { stdio: 'pipe' })
    const signature = readFileSync(`${file}.minisig`, 'utf8')
    // Legacy signatures only when asked for.
    if (flags.length > 0) expect(await codeOf(verifyDocument(readFileSync(file), signature, readFileSync(pub, 'utf8')))).toBe('ERR_SIGNATURE_LEGACY')
    const allowLegacy = { allowLegacy: flags.length > 0 }
    const verified = await verifyDocument(createReadStream(file), signature, readFileSync(pub, 'utf8'), allowLegacy)
    expect(verified.trustedComment).toBe('reviewed by ops')
    expect(verified.prehashed).toBe(flags.length === 0)
    // The base64 line alone works too, as `minisign -P` takes it.
    await expect(verifyDocument(readFileSync(file), signature, readFileSync(pub, 'utf8').split('\n')[1]!, allowLegacy)).resolves.toBeTruthy()
    expect(await codeOf(verifyDocument(new TextEncoder().encode('forged report\n'), signature, readFileSync(pub, 'utf8'), allowLegacy))).toBe('ERR_SIGNATURE_INVALID')
    expect(await codeOf(verifyDocument(readFileSync(file), signature, alice.publicId, allowLegacy))).toBe('ERR_SIGNER_MISMATCH')
  })
})
