/**
 * A minisign signature relabelled: the two algorithm bytes are covered by no signature, so
 * a prehashed (`ED`) signature of a document, relabelled legacy (`Ed`), verifies for a
 * different document: the 64-byte BLAKE2b hash of the first. CloudBox refuses legacy
 * signatures unless asked for, and a relabelled one even then.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Identity, signDocument, verifyDocument } from '@cloudbox/encrypted-messaging'
import { recordOutcome } from './support/outcomes.js'
import { tempRoot } from './support/nodes.js'

let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

/** The same signature file with its algorithm bytes changed from ED to Ed. */
function relabel(signature: string): string {
  const lines = signature.split('\n')
  const body = Buffer.from(lines[1] as string, 'base64')
  body.write('Ed', 0, 'latin1')
  lines[1] = body.toString('base64')
  return lines.join('\n')
}

const codeOf = (promise: Promise<unknown>) => promise.then(() => 'valid', (error: { code?: string }) => error.code ?? String(error))

describe('relabelled minisign signatures', () => {
  it('refuses an ED signature relabelled Ed for the hash of the signed document, by default and with legacy allowed', { timeout: 30_000 }, async () => {
    const signer = Identity.generate().identity
    const original = Buffer.from('I agree to pay 100 EUR.\n')
    const hash = new Uint8Array(createHash('blake2b512').update(original).digest())
    const forged = relabel(await signDocument(signer, original))
    const outcomes = [await codeOf(verifyDocument(hash, forged, signer.publicId)), await codeOf(verifyDocument(hash, forged, signer.publicId, { allowLegacy: true }))]

    // The same with minisign's own prehashed signature (its trusted comment says "hashed").
    const dir = tempRoot('cloudbox-minisign-', cleanups)
    const pub = join(dir, 'minisign.pub')
    const sec = join(dir, 'minisign.key')
    execFileSync('minisign', ['-G', '-W', '-p', pub, '-s', sec], { stdio: 'pipe' })
    const file = join(dir, 'contract.txt')
    writeFileSync(file, original)
    execFileSync('minisign', ['-S', '-s', sec, '-m', file], { stdio: 'pipe' })
    const minisignForged = relabel(readFileSync(`${file}.minisig`, 'utf8'))
    outcomes.push(await codeOf(verifyDocument(hash, minisignForged, readFileSync(pub, 'utf8'))), await codeOf(verifyDocument(hash, minisignForged, readFileSync(pub, 'utf8'), { allowLegacy: true })))
    expect(outcomes).toEqual(['ERR_SIGNATURE_LEGACY', 'ERR_SIGNATURE_LEGACY', 'ERR_SIGNATURE_LEGACY', 'ERR_SIGNATURE_LEGACY'])
    // The untouched signatures still verify for the document.
    await expect(verifyDocument(original, readFileSync(`${file}.minisig`, 'utf8'), readFileSync(pub, 'utf8'))).resolves.toMatchObject({ prehashed: true })
    recordOutcome({ group: 'hostile input', what: 'prehashed minisign signatures relabelled legacy, for the hash as a document (CloudBox and minisign made)', injected: outcomes.length, survived: outcomes.length, dataLost: 0 })
  })
})
