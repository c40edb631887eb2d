/**
 * HPKE (RFC 9180) in base mode for the one suite the API envelope uses:
 * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM. Only the key schedule lives
 * here (a few small HMACs and one X25519); the AEAD runs in node:crypto's streaming
 * AES-GCM, so a 16 MiB body is encrypted in place of being copied through WebCrypto's
 * whole-buffer calls (three copies a call with a library). Checked against RFC 9180's
 * test vectors (A.1) and against `@hpke/core` in the tests.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { x25519, x25519PublicKey } from '../crypto.js'

const VERSION = Buffer.from('HPKE-v1')
const KEM_SUITE = Buffer.from([0x4b, 0x45, 0x4d, 0x00, 0x20]) // "KEM" ‖ kem 0x0020
const HPKE_SUITE = Buffer.from([0x48, 0x50, 0x4b, 0x45, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01]) // "HPKE" ‖ kem ‖ kdf ‖ aead
const EMPTY = Buffer.alloc(0)
const HASH_LENGTH = 32
export const HPKE_KEY_LENGTH = 16
export const HPKE_NONCE_LENGTH = 12

/** The secrets of one HPKE context (sequence number 0 only: the envelope seals one message). */
export interface HpkeContext {
  /** The encapsulated key (the sender's ephemeral X25519 public key). */
  enc: Uint8Array
  key: Buffer
  /** The nonce of the first (and only) message. */
  nonce: Buffer
  exporterSecret: Buffer
}

const extract = (suite: Buffer, salt: Uint8Array, label: string, ikm: Uint8Array): Buffer =>
  createHmac('sha256', salt).update(VERSION).update(suite).update(label).update(ikm).digest()

function expand(suite: Buffer, prk: Uint8Array, label: string, info: Uint8Array, length: number): Buffer {
  const labeled = Buffer.concat([Buffer.from([length >> 8, length & 0xff]), VERSION, suite, Buffer.from(label), info])
  const out = Buffer.alloc(Math.ceil(length / HASH_LENGTH) * HASH_LENGTH)
  let previous = EMPTY
  for (let block = 0; block * HASH_LENGTH < length; block++) {
    previous = createHmac('sha256', prk).update(previous).update(labeled).update(Buffer.from([block + 1])).digest()
    previous.copy(out, block * HASH_LENGTH)
  }
  return out.subarray(0, length)
}

/** DHKEM's ExtractAndExpand, then the base-mode key schedule. */
function schedule(dh: Uint8Array, enc: Uint8Array, recipientPublicKey: Uint8Array, info: Uint8Array): HpkeContext {
  const kemContext = Buffer.concat([enc, recipientPublicKey])
  const sharedSecret = expand(KEM_SUITE, extract(KEM_SUITE, EMPTY, 'eae_prk', dh), 'shared_secret', kemContext, HASH_LENGTH)
  const context = Buffer.concat([Buffer.from([0x00]), extract(HPKE_SUITE, EMPTY, 'psk_id_hash', EMPTY), extract(HPKE_SUITE, EMPTY, 'info_hash', info)])
  const secret = extract(HPKE_SUITE, sharedSecret, 'secret', EMPTY)
  return {
    enc,
    key: expand(HPKE_SUITE, secret, 'key', context, HPKE_KEY_LENGTH),
    nonce: expand(HPKE_SUITE, secret, 'base_nonce', context, HPKE_NONCE_LENGTH),
    exporterSecret: expand(HPKE_SUITE, secret, 'exp', context, HASH_LENGTH),
  }
}

/**
 * SetupBaseS: a context for `recipientPublicKey` (X25519). `ephemeralSecret` is for test
 * vectors only. Undefined when the key is a low-order point (an all-zero shared secret).
 */
export function setupSender(recipientPublicKey: Uint8Array, info: Uint8Array, ephemeralSecret: Uint8Array = randomBytes(32)): HpkeContext | undefined {
  const enc = x25519PublicKey(ephemeralSecret)
  const dh = x25519(ephemeralSecret, recipientPublicKey)
  if (dh === undefined) return undefined
  return schedule(dh, enc, recipientPublicKey, info)
}

/** SetupBaseR: the recipient's side of a context. Undefined for a bad `enc`. */
export function setupRecipient(enc: Uint8Array, recipientSecret: Uint8Array, recipientPublicKey: Uint8Array, info: Uint8Array): HpkeContext | undefined {
  const dh = x25519(recipientSecret, enc)
  if (dh === undefined) return undefined
  return schedule(dh, enc, recipientPublicKey, info)
}

/** Context.Export(exporter_context, L). */
export function exportSecret(context: HpkeContext, exporterContext: Uint8Array, length: number): Buffer {
  return expand(HPKE_SUITE, context.exporterSecret, 'sec', exporterContext, length)
}
