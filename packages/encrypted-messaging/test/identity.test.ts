import { readFileSync } from 'node:fs'
import { derivePath, getMasterKeyFromSeed } from 'ed25519-hd-key'
import { describe, expect, it } from 'vitest'
import {
  Identity,
  NODE_KEY_PATH,
  encodePublicId,
  isEncryptedMessagingError,
  isPublicId,
  parsePublicId,
  subCloudKeyPath,
} from '../src/index.js'
import { mnemonicToSeed, recoveryPhraseFromEntropy } from '../src/identity/mnemonic.js'
import { ed25519KeyPairFromSeed } from '../src/crypto.js'

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')
const bip39 = JSON.parse(readFileSync(new URL('./vectors/bip39-english.json', import.meta.url), 'utf8')) as {
  vectors: { entropy: string; mnemonic: string; passphrase: string; seed: string }[]
}
const slip10 = JSON.parse(readFileSync(new URL('./vectors/slip10-ed25519.json', import.meta.url), 'utf8')) as {
  vectors: { seed: string; chains: { path: string; chainCode: string; privateKey: string }[] }[]
}
const PHRASE = recoveryPhraseFromEntropy(new Uint8Array(32).fill(7))

describe('BIP39 reference vectors', () => {
  it.each(bip39.vectors)('$mnemonic', (vector) => {
    expect(recoveryPhraseFromEntropy(Buffer.from(vector.entropy, 'hex'))).toBe(vector.mnemonic)
    expect(hex(mnemonicToSeed(vector.mnemonic, vector.passphrase))).toBe(vector.seed)
  })
})

describe('SLIP-0010 Ed25519 vectors', () => {
  const cases = slip10.vectors.flatMap((vector) => vector.chains.map((chain) => ({ seed: vector.seed, ...chain })))
  it.each(cases)('$path of seed $seed', ({ seed, path, chainCode, privateKey }) => {
    // The library derives the master key by its own name; the rest by path.
    const derived = path === 'm' ? getMasterKeyFromSeed(seed) : derivePath(path, seed)
    expect(hex(derived.key)).toBe(privateKey)
    expect(hex(derived.chainCode)).toBe(chainCode)
  })
})

describe('Identity', () => {
  it('derives the node key at the CloudBox path and is deterministic', () => {
    const a = Identity.fromRecoveryPhrase(PHRASE)
    const b = Identity.fromRecoveryPhrase(`  ${PHRASE.toUpperCase().replaceAll(' ', '\n ')}  `)
    expect(a.derivationPath).toBe(NODE_KEY_PATH)
    expect(NODE_KEY_PATH).toBe("m/7331'/0'/0'")
    expect(a.publicId).toBe(b.publicId)
    expect(a.publicId).toMatch(/^cb1[02-9ac-hj-np-z]{58}$/)
    // The key is SLIP-0010 at m/7331'/0'/0' of the BIP39 seed, nothing else.
    const derivedSeed = derivePath("m/7331'/0'/0'", hex(mnemonicToSeed(PHRASE))).key
    expect(hex(a.publicKey)).toBe(hex(ed25519KeyPairFromSeed(derivedSeed).publicKey))
  })

  it('pins the public ID of a known phrase (golden value: changing it breaks every paired device)', () => {
    const golden = Identity.fromRecoveryPhrase(bip39.vectors[8]!.mnemonic)
    expect(golden.publicId).toMatchInlineSnapshot(`"cb1nq4l3k8zn87rpzc2cd9w6j6cgkdzy0y837rs00hxeq6fmdtfze0sudufgg"`)
    expect(golden.ageRecipient).toMatchInlineSnapshot(`"age1ha7c05huvz2zqs7h9zv4enemsszmv3uweu04up2q8rmgmszjmezqxldm6w"`)
  })

  it('sub-clouds have their own keys from the same phrase, recoverable from it', () => {
    const node = Identity.fromRecoveryPhrase(PHRASE)
    const first = node.subCloud(0)
    const second = node.subCloud(1)
    expect(first.derivationPath).toBe(subCloudKeyPath(0))
    expect(subCloudKeyPath(3)).toBe("m/7331'/1'/3'")
    expect(new Set([node.publicId, first.publicId, second.publicId]).size).toBe(3)
    expect(Identity.fromRecoveryPhrase(PHRASE, { subCloud: 1 }).publicId).toBe(second.publicId)
    expect(() => node.subCloud(-1)).toThrow(RangeError)
    expect(() => node.subCloud(2 ** 31)).toThrow(RangeError)
    expect(() => node.subCloud(1.5)).toThrow(RangeError)
  })

  it('a passphrase gives a different identity', () => {
    expect(Identity.fromRecoveryPhrase(PHRASE, { passphrase: 'x' }).publicId).not.toBe(Identity.fromRecoveryPhrase(PHRASE).publicId)
  })

  it('generates 24-word phrases that restore the same identity', () => {
    const { identity, recoveryPhrase } = Identity.generate()
    expect(recoveryPhrase.split(' ')).toHaveLength(24)
    expect(Identity.fromRecoveryPhrase(recoveryPhrase).publicId).toBe(identity.publicId)
    expect(identity.exportRecoveryPhrase()).toBe(recoveryPhrase)
  })

  it('signs with Ed25519 and agrees X25519 keys with the converted key', async () => {
    const alice = Identity.generate().identity
    const bob = Identity.generate().identity
    const shared1 = alice.agree(bob.x25519PublicKey)!
    const shared2 = bob.agree(alice.x25519PublicKey)!
    expect(hex(shared1)).toBe(hex(shared2))
    expect(alice.agree(new Uint8Array(32))).toBeUndefined() // low-order point
    const message = new TextEncoder().encode('hello')
    const signature = alice.sign(message)
    const nodeCrypto = await import('node:crypto')
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), alice.publicKey])
    const publicKey = nodeCrypto.createPublicKey({ key: spki, format: 'der', type: 'spki' })
    expect(nodeCrypto.verify(null, message, publicKey, signature)).toBe(true)
  })

  it('refuses bad phrases with a code and a helpful message', () => {
    const words = PHRASE.split(' ')
    const cases = [
      words.slice(0, 12).join(' '),
      [...words.slice(0, 23), 'notaword'].join(' '),
      [...words.slice(1), words[0]].join(' '), // checksum
      '',
    ]
    for (const phrase of cases) {
      let caught: unknown
      try {
        Identity.fromRecoveryPhrase(phrase)
      } catch (error) {
        caught = error
      }
      expect(isEncryptedMessagingError(caught, 'ERR_INVALID_MNEMONIC')).toBe(true)
      // Messages point at positions, never echo the phrase.
      expect((caught as Error).message).not.toContain(words[5])
    }
  })

  it('keeps secrets out of logs and JSON, and destroy() makes it unusable', async () => {
    const { identity, recoveryPhrase } = Identity.generate()
    const { inspect } = await import('node:util')
    const shown = inspect(identity) + JSON.stringify(identity)
    expect(shown).toContain(identity.publicId)
    expect(shown).not.toContain(recoveryPhrase.split(' ')[0] + ' ' + recoveryPhrase.split(' ')[1])
    identity.destroy()
    expect(() => identity.sign(new Uint8Array(1))).toThrow(TypeError)
    expect(() => identity.exportRecoveryPhrase()).toThrow(TypeError)
  })
})

describe('public IDs', () => {
  const identity = Identity.fromRecoveryPhrase(PHRASE)

  it('round-trip, case-insensitively, with white space', () => {
    expect(hex(parsePublicId(identity.publicId))).toBe(hex(identity.publicKey))
    expect(hex(parsePublicId(` ${identity.publicId.toUpperCase()}\n`))).toBe(hex(identity.publicKey))
    expect(encodePublicId(identity.publicKey)).toBe(identity.publicId)
    expect(identity.publicId.length).toBe(61)
  })

  it('refuse typos, wrong prefixes, mixed case, wrong lengths and non-points', () => {
    const id = identity.publicId
    const typo = id.slice(0, 20) + (id[20] === 'q' ? 'p' : 'q') + id.slice(21)
    const swapped = id.slice(0, 20) + id[21] + id[20] + id.slice(22)
    const mixed = id.slice(0, 30) + id.slice(30).toUpperCase()
    const notPoint = encodePublicId(Buffer.from('02'.padEnd(64, 'f'), 'hex')) // y ≥ p: not a point
    for (const bad of [typo, swapped, mixed, id.slice(0, -1), `ab${id.slice(2)}`, 'cb1', '', 'age1qqq', notPoint]) {
      if (bad === swapped && id[20] === id[21]) continue
      expect(isPublicId(bad), bad).toBe(false)
      expect(() => parsePublicId(bad)).toThrowError(expect.objectContaining({ code: 'ERR_INVALID_PUBLIC_ID' }))
    }
  })
})
