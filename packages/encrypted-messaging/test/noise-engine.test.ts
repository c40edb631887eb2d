import { describe, expect, it } from 'vitest'
import { chachaDecrypt, chachaEncrypt, x25519PublicKey } from '../src/crypto.js'
import { Identity } from '../src/identity/identity.js'
import { X25519KeyAgreement } from '../src/key-agreement.js'
import { CipherState, MAX_NONCE } from '../src/noise/cipher-state.js'
import { HandshakeState } from '../src/noise/handshake-state.js'
import { handshakePattern, parseProtocolName } from '../src/noise/patterns.js'

const key = new Uint8Array(32).fill(7)
const EMPTY = new Uint8Array(0)
const nonce = (n: bigint) => {
  const out = new Uint8Array(12)
  new DataView(out.buffer).setBigUint64(4, n, true)
  return out
}
const errorCode = (fn: () => unknown): string | undefined => {
  try {
    fn()
    return undefined
  } catch (error) {
    return (error as { code?: string }).code ?? (error as Error).name
  }
}

describe('CipherState', () => {
  it('uses 4 zero bytes ‖ the 64-bit counter little-endian as the ChaChaPoly nonce', () => {
    const cipher = new CipherState(key)
    cipher.setNonce(2n ** 32n + 5n)
    const ad = new Uint8Array([1, 2, 3])
    const ciphertext = cipher.encryptWithAd(ad, new Uint8Array([9, 9]))
    expect(ciphertext).toEqual(chachaEncrypt(key, nonce(2n ** 32n + 5n), new Uint8Array([9, 9]), ad))
    expect(cipher.nonce).toBe(2n ** 32n + 6n)
  })

  it('encrypts a plaintext given in parts exactly as the joined one; a tampered byte or tag opens to nothing', () => {
    const data = new Uint8Array(70_000).map((_, i) => (i * 31) % 251)
    const ad = new Uint8Array([4, 2])
    const joined = chachaEncrypt(key, nonce(9n), Buffer.concat([Uint8Array.of(1), data]), ad)
    expect(chachaEncrypt(key, nonce(9n), [Uint8Array.of(1), data], ad)).toEqual(joined)
    expect(chachaEncrypt(key, nonce(9n), [Uint8Array.of(1), data.subarray(0, 5), EMPTY, data.subarray(5)], ad)).toEqual(joined)
    const opened = chachaDecrypt(key, nonce(9n), joined, ad)
    expect(opened).toBeInstanceOf(Uint8Array)
    expect(Buffer.from(opened as Uint8Array).equals(Buffer.concat([Uint8Array.of(1), data]))).toBe(true)
    for (const at of [0, 1000, joined.length - 1]) {
      const tampered = joined.slice()
      tampered[at] = (tampered[at] as number) ^ 1
      expect(chachaDecrypt(key, nonce(9n), tampered, ad)).toBeUndefined()
    }
    expect(chachaDecrypt(key, nonce(10n), joined, ad)).toBeUndefined()
    const keyless = new CipherState()
    expect(keyless.encryptWithAd(EMPTY, [Uint8Array.of(1), data])).toEqual(new Uint8Array(Buffer.concat([Uint8Array.of(1), data])))
  })

  it('refuses the reserved nonce 2^64-1 with NonceExhaustedError, both ways', () => {
    const sender = new CipherState(key)
    const receiver = new CipherState(key)
    sender.setNonce(MAX_NONCE - 1n)
    receiver.setNonce(MAX_NONCE - 1n)
    const last = sender.encryptWithAd(EMPTY, new Uint8Array([1]))
    expect(receiver.decryptWithAd(EMPTY, last)).toEqual(new Uint8Array([1]))
    expect(errorCode(() => sender.encryptWithAd(EMPTY, new Uint8Array([2])))).toBe('ERR_NONCE_EXHAUSTED')
    expect(errorCode(() => receiver.decryptWithAd(EMPTY, last))).toBe('ERR_NONCE_EXHAUSTED')
    expect(() => sender.setNonce(MAX_NONCE + 1n)).toThrow(RangeError)
  })

  it('a failed decryption does not advance the nonce', () => {
    const sender = new CipherState(key)
    const receiver = new CipherState(key)
    const ciphertext = sender.encryptWithAd(EMPTY, new Uint8Array([1, 2]))
    const bad = ciphertext.slice()
    bad[0] = (bad[0] as number) ^ 1
    expect(receiver.decryptWithAd(EMPTY, bad)).toBeUndefined()
    expect(receiver.nonce).toBe(0n)
    expect(receiver.decryptWithAd(EMPTY, ciphertext)).toEqual(new Uint8Array([1, 2]))
  })

  it('Rekey(): k = ENCRYPT(k, 2^64-1, "", zeros(32))[0..32], nonce kept', () => {
    const cipher = new CipherState(key)
    cipher.encryptWithAd(EMPTY, new Uint8Array(3))
    cipher.rekey()
    expect(cipher.nonce).toBe(1n)
    const next = chachaEncrypt(key, nonce(MAX_NONCE), new Uint8Array(32), EMPTY).slice(0, 32)
    const ciphertext = cipher.encryptWithAd(EMPTY, new Uint8Array([5]))
    expect(chachaDecrypt(next, nonce(1n), ciphertext, EMPTY)).toEqual(new Uint8Array([5]))
    expect(chachaDecrypt(key, nonce(1n), ciphertext, EMPTY)).toBeUndefined()
  })

  it('without a key passes plaintext through; once destroyed it refuses to work', () => {
    const cipher = new CipherState()
    expect(cipher.encryptWithAd(EMPTY, new Uint8Array([1]))).toEqual(new Uint8Array([1]))
    const keyed = new CipherState(key)
    keyed.destroy()
    expect(() => keyed.encryptWithAd(EMPTY, new Uint8Array([1]))).toThrow()
  })
})

describe('pattern table', () => {
  it('applies psk modifiers at the right place', () => {
    expect(handshakePattern('NNpsk0')?.messages).toEqual([['psk', 'e'], ['e', 'ee']])
    expect(handshakePattern('NNpsk2')?.messages).toEqual([['e'], ['e', 'ee', 'psk']])
    expect(handshakePattern('XXpsk3')?.messages).toEqual([['e'], ['e', 'ee', 's', 'es'], ['s', 'se', 'psk']])
    expect(handshakePattern('KKpsk0+psk2')?.messages).toEqual([['psk', 'e', 'es', 'ss'], ['e', 'ee', 'se', 'psk']])
    expect(handshakePattern('IK')?.psk).toBe(false)
    expect(handshakePattern('IKpsk1')?.psk).toBe(true)
  })

  it('refuses unknown patterns, suites and psk positions', () => {
    for (const name of ['Noise_XY_25519_ChaChaPoly_BLAKE2b', 'Noise_XX_448_ChaChaPoly_BLAKE2b', 'Noise_XX_25519_AESGCM_SHA256', 'Noise_NNpsk3_25519_ChaChaPoly_SHA256', 'Noise_XX_25519_ChaChaPoly_BLAKE2s', 'Noise_XX1psk_25519_ChaChaPoly_SHA256']) {
      expect(parseProtocolName(name), name).toBeUndefined()
    }
    expect(() => new HandshakeState({ protocolName: 'Noise_XY_25519_ChaChaPoly_SHA256', initiator: true })).toThrow(RangeError)
  })
})

describe('HandshakeState', () => {
  it('runs IK with Identity objects as static keys (DH through KeyAgreement)', () => {
    const alice = Identity.generate().identity
    const bob = Identity.generate().identity
    for (const hash of ['BLAKE2b', 'SHA256']) {
      const protocolName = `Noise_IK_25519_ChaChaPoly_${hash}`
      const initiator = new HandshakeState({ protocolName, initiator: true, staticKey: alice, remoteStaticKey: bob.x25519PublicKey })
      const responder = new HandshakeState({ protocolName, initiator: false, staticKey: bob })
      expect(responder.readMessage(initiator.writeMessage(new Uint8Array([1]))).payload).toEqual(new Uint8Array([1]))
      expect(responder.remoteStaticKey).toEqual(alice.x25519PublicKey)
      expect(initiator.readMessage(responder.writeMessage()).payload).toEqual(EMPTY)
      const i = initiator.result!
      const r = responder.result!
      expect(i.handshakeHash).toEqual(r.handshakeHash)
      expect(r.receive.decryptWithAd(EMPTY, i.send.encryptWithAd(EMPTY, new Uint8Array([42])))).toEqual(new Uint8Array([42]))
    }
  })

  it('a low-order (all-zero DH) ephemeral key, a truncated or tampered message fail with HandshakeFailedError', () => {
    const bob = new X25519KeyAgreement(new Uint8Array(32).fill(3))
    const protocolName = 'Noise_NK_25519_ChaChaPoly_BLAKE2b'
    const responder = () => new HandshakeState({ protocolName, initiator: false, staticKey: bob })
    const initiator = new HandshakeState({ protocolName, initiator: true, remoteStaticKey: x25519PublicKey(new Uint8Array(32).fill(3)) })
    const message = initiator.writeMessage(new Uint8Array([1, 2, 3]))
    const zeroPoint = new Uint8Array(message)
    zeroPoint.fill(0, 0, 32)
    expect(errorCode(() => responder().readMessage(zeroPoint))).toBe('ERR_HANDSHAKE_FAILED')
    expect(errorCode(() => responder().readMessage(message.subarray(0, 20)))).toBe('ERR_HANDSHAKE_FAILED')
    for (let i = 0; i < message.length; i++) {
      const tampered = new Uint8Array(message)
      tampered[i] = (tampered[i] as number) ^ 0x80
      expect(errorCode(() => responder().readMessage(tampered)), `byte ${i}`).toBe('ERR_HANDSHAKE_FAILED')
    }
    expect(responder().readMessage(message).payload).toEqual(new Uint8Array([1, 2, 3]))
  })

  it('refuses to write or read out of turn', () => {
    const hs = new HandshakeState({ protocolName: 'Noise_NN_25519_ChaChaPoly_SHA256', initiator: false })
    expect(() => hs.writeMessage()).toThrow()
  })
})
