import { createCipheriv, createDecipheriv } from 'node:crypto'
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core'
import { beforeAll, describe, expect, it } from 'vitest'
import { ready, x25519PublicKey } from '../src/crypto.js'
import { exportSecret, setupRecipient, setupSender } from '../src/api/hpke.js'

const hex = (text: string) => Buffer.from(text, 'hex')

// RFC 9180, appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
const vector = {
  info: hex('4f6465206f6e2061204772656369616e2055726e'),
  skEm: hex('52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736'),
  pkEm: hex('37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431'),
  skRm: hex('4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8'),
  pkRm: hex('3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d'),
  key: '4531685d41d65f03dc48f6b8302c05b0',
  baseNonce: '56d890e5accaaf011cff4b7d',
  exporterSecret: '45ff1c2e220db587171952c0592d5f5ebe103f1561a2614e38f2ffd47e99e3f8',
  pt: hex('4265617574792069732074727574682c20747275746820626561757479'),
  aad: hex('436f756e742d30'),
  ct: 'f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a',
}

describe('HPKE key schedule', () => {
  beforeAll(() => ready())

  it('matches RFC 9180 A.1.1 on both sides', () => {
    const sender = setupSender(vector.pkRm, vector.info, vector.skEm)!
    expect(Buffer.from(sender.enc).equals(vector.pkEm)).toBe(true)
    expect(sender.key.toString('hex')).toBe(vector.key)
    expect(sender.nonce.toString('hex')).toBe(vector.baseNonce)
    expect(sender.exporterSecret.toString('hex')).toBe(vector.exporterSecret)
    const cipher = createCipheriv('aes-128-gcm', sender.key, sender.nonce).setAAD(vector.aad)
    expect(Buffer.concat([cipher.update(vector.pt), cipher.final(), cipher.getAuthTag()]).toString('hex')).toBe(vector.ct)
    const recipient = setupRecipient(sender.enc, vector.skRm, vector.pkRm, vector.info)!
    expect(recipient.key.toString('hex')).toBe(vector.key)
    expect(recipient.exporterSecret.toString('hex')).toBe(vector.exporterSecret)
  })

  it('agrees with @hpke/core on sealing and exporting, and refuses low-order keys', async () => {
    const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() })
    const pair = await suite.kem.generateKeyPair()
    const secret = new Uint8Array(await suite.kem.serializePrivateKey(pair.privateKey))
    const publicKey = x25519PublicKey(secret)
    const info = Buffer.from('cloudbox test')
    const ours = setupSender(publicKey, info)!
    const cipher = createCipheriv('aes-128-gcm', ours.key, ours.nonce)
    const sealed = Buffer.concat([cipher.update('hello'), cipher.final(), cipher.getAuthTag()])
    const theirs = await suite.createRecipientContext({ recipientKey: pair, enc: new Uint8Array(ours.enc).buffer, info: new Uint8Array(info).buffer })
    expect(Buffer.from(await theirs.open(new Uint8Array(sealed).buffer)).toString()).toBe('hello')
    const label = Buffer.from('exported')
    expect(Buffer.from(await theirs.export(new Uint8Array(label).buffer, 24)).equals(exportSecret(ours, label, 24))).toBe(true)
    // And the other way: the library seals, we open.
    const sender = await suite.createSenderContext({ recipientPublicKey: pair.publicKey, info: new Uint8Array(info).buffer })
    const message = Buffer.from(await sender.seal(new Uint8Array(Buffer.from('world')).buffer))
    const opened = setupRecipient(new Uint8Array(sender.enc), secret, publicKey, info)!
    const decipher = createDecipheriv('aes-128-gcm', opened.key, opened.nonce)
    decipher.setAuthTag(message.subarray(message.length - 16))
    expect(Buffer.concat([decipher.update(message.subarray(0, message.length - 16)), decipher.final()]).toString()).toBe('world')
    // A point of small order gives an all-zero DH output: refused, as RFC 9180 §7.1.4 asks.
    expect(setupSender(new Uint8Array(32), info)).toBeUndefined()
    expect(setupRecipient(new Uint8Array(32), secret, publicKey, info)).toBeUndefined()
  })
})
