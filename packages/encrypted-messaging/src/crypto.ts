/**
 * The one module that reaches cryptographic primitives (STYLE rule 7).
 *
 * Back ends were picked by measurement on Node 20 (see ARCHITECTURE.md):
 * - node:crypto (OpenSSL, native) for everything bulk: ChaCha20-Poly1305, SHA-256,
 *   BLAKE2b, HMAC, HKDF. ~1.6 GB/s for the AEAD against ~0.36 GB/s in WASM.
 * - libsodium (WASM) for curve operations: one X25519 costs ~134 µs there against
 *   ~690 µs through node:crypto, whose KeyObject import dominates; it also has the
 *   Ed25519→X25519 conversion node:crypto lacks.
 *
 * Nothing here is exported from the package: swap a back end behind these names.
 */
import nodeCrypto from 'node:crypto'
import sodiumModule from 'libsodium-wrappers-sumo'
import { CryptoNotReadyError } from './errors.js'

// The WASM module loads asynchronously. Loading starts at import, and `ready()` lets
// callers wait for it, so every curve operation stays synchronous without a top-level
// await (which would make `require()` of this package, and of every package above it,
// fail with ERR_REQUIRE_ASYNC_MODULE).
let loaded: typeof sodiumModule | undefined
const loading: Promise<void> = sodiumModule.ready.then(() => {
  loaded = sodiumModule
})
// A failed load is reported to whoever awaits ready(), not as an unhandled rejection.
loading.catch(() => undefined)

/** Resolves once the curve operations can run; cheap to call again. */
export function ready(): Promise<void> {
  return loaded === undefined ? loading : Promise.resolve()
}

/** True once {@link ready} has resolved. */
export function isReady(): boolean {
  return loaded !== undefined
}

function curves(): typeof sodiumModule {
  if (loaded === undefined) throw new CryptoNotReadyError()
  return loaded
}

export const X25519_KEY_LENGTH = 32
export const ED25519_PUBLIC_KEY_LENGTH = 32
export const ED25519_SECRET_KEY_LENGTH = 64
export const ED25519_SIGNATURE_LENGTH = 64
export const CHACHA_KEY_LENGTH = 32
export const CHACHA_NONCE_LENGTH = 12
export const AEAD_TAG_LENGTH = 16

/** A view of `bytes` as a Buffer without copying (node:crypto wants Buffers or views). */
function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** A plain Uint8Array over the same memory (public APIs never hand out Buffers). */
function plain(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
}

export function randomBytes(length: number): Uint8Array {
  return plain(nodeCrypto.randomBytes(length))
}

/**
 * ChaCha20-Poly1305 (RFC 8439) encryption; returns ciphertext followed by the 16-byte tag.
 * `plaintext` may be given in parts (their concatenation is encrypted): a frame's header
 * byte and its data need not be joined first.
 */
export function chachaEncrypt(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array | readonly Uint8Array[], associatedData?: Uint8Array): Uint8Array {
  const parts = plaintext instanceof Uint8Array ? [plaintext] : plaintext
  let length = 0
  for (const part of parts) length += part.length
  const cipher = nodeCrypto.createCipheriv('chacha20-poly1305', view(key), view(nonce), { authTagLength: AEAD_TAG_LENGTH })
  if (associatedData !== undefined && associatedData.length > 0) cipher.setAAD(view(associatedData), { plaintextLength: length })
  const output = new Uint8Array(length + AEAD_TAG_LENGTH)
  let offset = 0
  for (const part of parts) {
    const body = cipher.update(view(part))
    output.set(body, offset)
    offset += body.length
  }
  const rest = cipher.final()
  output.set(rest, offset)
  output.set(cipher.getAuthTag(), length)
  return output
}

/** ChaCha20-Poly1305 decryption; returns undefined when authentication fails. */
export function chachaDecrypt(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, associatedData?: Uint8Array): Uint8Array | undefined {
  if (ciphertext.length < AEAD_TAG_LENGTH) return undefined
  const bodyLength = ciphertext.length - AEAD_TAG_LENGTH
  const decipher = nodeCrypto.createDecipheriv('chacha20-poly1305', view(key), view(nonce), { authTagLength: AEAD_TAG_LENGTH })
  decipher.setAuthTag(view(ciphertext.subarray(bodyLength)))
  if (associatedData !== undefined && associatedData.length > 0) decipher.setAAD(view(associatedData), { plaintextLength: bodyLength })
  // The stream cipher gives every byte from update(): its output is the plaintext, with no
  // copy (this runs for every 64 KiB frame a session receives).
  const body = decipher.update(view(ciphertext.subarray(0, bodyLength)))
  let rest: Buffer
  try {
    rest = decipher.final()
  } catch {
    body.fill(0)
    return undefined
  }
  if (rest.length === 0) return plain(body)
  const output = new Uint8Array(bodyLength)
  output.set(body, 0)
  output.set(rest, body.length)
  return output
}

export type HashName = 'sha256' | 'sha512' | 'blake2b512'

export function hash(name: HashName, ...parts: Uint8Array[]): Uint8Array {
  const hasher = nodeCrypto.createHash(name)
  for (const part of parts) hasher.update(view(part))
  return plain(hasher.digest())
}

/** An incremental hash for streamed data. */
export function createHasher(name: HashName): { update(data: Uint8Array): void; digest(): Uint8Array } {
  const hasher = nodeCrypto.createHash(name)
  return {
    update(data) { hasher.update(view(data)) },
    digest() { return plain(hasher.digest()) },
  }
}

export function hmac(name: HashName, key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const mac = nodeCrypto.createHmac(name, view(key))
  for (const part of parts) mac.update(view(part))
  return plain(mac.digest())
}

/** HKDF (RFC 5869) extract-and-expand. */
export function hkdf(name: HashName, inputKey: Uint8Array, salt: Uint8Array, info: Uint8Array | string, length: number): Uint8Array {
  const infoBytes = typeof info === 'string' ? Buffer.from(info, 'utf8') : view(info)
  return new Uint8Array(nodeCrypto.hkdfSync(name, view(inputKey), view(salt), infoBytes, length))
}

/** PBKDF2 (RFC 8018) with HMAC-SHA-512, natively: 2048 rounds (a BIP39 seed) take 2 ms here against 60–100 ms in JavaScript. */
export function pbkdf2Sha512(password: string, salt: string, iterations: number, length: number): Uint8Array {
  return plain(nodeCrypto.pbkdf2Sync(Buffer.from(password, 'utf8'), Buffer.from(salt, 'utf8'), iterations, length, 'sha512'))
}

/** Constant-time comparison of equal-length byte strings; false when lengths differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && nodeCrypto.timingSafeEqual(view(a), view(b))
}

// Until the WASM library has loaded, the operations node:crypto (OpenSSL) has natively
// run there instead, with identical results, so creating keys, signing and key agreement
// work from the first line of a program. Verification and the public-key conversion
// need libsodium's strict point checks and wait for ready().
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')
/** Both curves' SPKI encodings end with the 32-byte raw public key. */
const SPKI_KEY_OFFSET = 12

function nodePrivateKey(prefix: Buffer, raw: Uint8Array): nodeCrypto.KeyObject {
  return nodeCrypto.createPrivateKey({ key: Buffer.concat([prefix, raw]), format: 'der', type: 'pkcs8' })
}

function nodeRawPublicKey(privateKey: nodeCrypto.KeyObject): Uint8Array {
  return plain(nodeCrypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(SPKI_KEY_OFFSET))
}

/** X25519 public key of a 32-byte secret scalar. */
export function x25519PublicKey(secretKey: Uint8Array): Uint8Array {
  if (loaded !== undefined) return loaded.crypto_scalarmult_base(secretKey)
  return nodeRawPublicKey(nodePrivateKey(X25519_PKCS8_PREFIX, secretKey))
}

/**
 * X25519 shared secret. Returns undefined for an all-zero result (a low-order peer
 * point), which every protocol here must refuse.
 */
export function x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array | undefined {
  try {
    if (loaded !== undefined) return loaded.crypto_scalarmult(secretKey, publicKey)
    const shared = plain(
      nodeCrypto.diffieHellman({
        privateKey: nodePrivateKey(X25519_PKCS8_PREFIX, secretKey),
        publicKey: nodeCrypto.createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' }),
      }),
    )
    return shared.every((byte) => byte === 0) ? undefined : shared
  } catch {
    // Both back ends refuse an all-zero output themselves.
    return undefined
  }
}

/** Ed25519 key pair from a 32-byte seed; the secret key is libsodium's 64-byte form (seed ‖ public). */
export function ed25519KeyPairFromSeed(seed: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array } {
  if (loaded !== undefined) {
    const pair = loaded.crypto_sign_seed_keypair(seed)
    return { publicKey: pair.publicKey, secretKey: pair.privateKey }
  }
  const publicKey = nodeRawPublicKey(nodePrivateKey(ED25519_PKCS8_PREFIX, seed))
  const secretKey = new Uint8Array(ED25519_SECRET_KEY_LENGTH)
  secretKey.set(seed, 0)
  secretKey.set(publicKey, 32)
  return { publicKey, secretKey }
}

export function ed25519Sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  if (loaded !== undefined) return loaded.crypto_sign_detached(message, secretKey)
  return plain(nodeCrypto.sign(null, view(message), nodePrivateKey(ED25519_PKCS8_PREFIX, secretKey.subarray(0, 32))))
}

/** Strict verification (libsodium refuses non-canonical and small-order encodings). */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== ED25519_PUBLIC_KEY_LENGTH || signature.length !== ED25519_SIGNATURE_LENGTH) return false
  const lib = curves()
  try {
    return lib.crypto_sign_verify_detached(signature, message, publicKey)
  } catch {
    return false
  }
}

/** The standard birational map Ed25519 → X25519 for public keys; undefined for invalid points. */
export function ed25519PublicKeyToX25519(publicKey: Uint8Array): Uint8Array | undefined {
  const lib = curves()
  try {
    return lib.crypto_sign_ed25519_pk_to_curve25519(publicKey)
  } catch {
    return undefined
  }
}

/** X25519 secret scalar of a 64-byte Ed25519 secret key: the clamped first half of SHA-512(seed). */
export function ed25519SecretKeyToX25519(secretKey: Uint8Array): Uint8Array {
  if (loaded !== undefined) return loaded.crypto_sign_ed25519_sk_to_curve25519(secretKey)
  const digest = nodeCrypto.createHash('sha512').update(view(secretKey.subarray(0, 32))).digest()
  const scalar = new Uint8Array(digest.subarray(0, 32))
  digest.fill(0)
  scalar[0]! &= 248
  scalar[31]! &= 127
  scalar[31]! |= 64
  return scalar
}

/** Overwrites secret bytes. JS engines may still hold copies; see the README's security notes. */
export function wipe(bytes: Uint8Array | undefined): void {
  bytes?.fill(0)
}
