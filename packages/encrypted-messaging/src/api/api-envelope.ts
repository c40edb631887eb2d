/**
 * End-to-end encryption of REST API calls, in the shape of Oblivious HTTP (RFC 9458):
 * each request is sealed to the server's X25519 key with HPKE (RFC 9180, base mode,
 * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, by `@hpke/core`) and signed by
 * the caller's Ed25519 identity inside the encryption; the response is sealed under a key
 * exported from that request's HPKE context, so only the caller can read it. A proxy,
 * a hub or a logging middlebox sees the sizes and nothing else: method, path and body
 * travel inside. Specified in PROTOCOL.md, section 7.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, type webcrypto } from 'node:crypto'
import { closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs'
import { Aes128Gcm, AeadId, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256, KdfId, KemId } from '@hpke/core'
import * as v from 'valibot'
import { ED25519_PUBLIC_KEY_LENGTH, ed25519PublicKeyToX25519, ed25519Verify, ready } from '../crypto.js'
import { ApiRateLimitedError, ApiRequestExpiredError, ApiRequestInvalidError, ApiRequestReplayedError, ApiResponseInvalidError, InvalidPublicIdError, isEncryptedMessagingError, MessageTooLargeError } from '../errors.js'
import { x25519SecretOf, type Identity } from '../identity/identity.js'
import { encodePublicId, parsePublicId } from '../identity/public-id.js'
import type { Signer } from '../interfaces/key-agreement.js'
import { bytesSchema, defineMessageCodec, textSchema, uintSchema } from '../wire/message-codec.js'

export const API_ENVELOPE_VERSION = 1
/** The media types of sealed requests and responses on the wire. */
export const API_REQUEST_MEDIA_TYPE = 'application/vnd.cloudbox.api-request'
export const API_RESPONSE_MEDIA_TYPE = 'application/vnd.cloudbox.api-response'
/** Largest body one request or response carries (bigger files go in several calls). */
export const API_MAX_BODY = 16 * 1024 * 1024
const ENC_LENGTH = 32
const NONCE_LENGTH = 16
const SIGNATURE_LENGTH = 64
const RESPONSE_NONCE_LENGTH = 16 // max(Nn, Nk) for AES-128-GCM, as RFC 9458 §4.4
const TAG_LENGTH = 16

// version ‖ kem ‖ kdf ‖ aead, as RFC 9458's key configuration header.
const HEADER = Buffer.from([API_ENVELOPE_VERSION, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01])
const INFO_LABEL = Buffer.from('cloudbox/api/v1 request\0')
const SIGNATURE_LABEL = Buffer.from('cloudbox/api/v1 signature\0')
const RESPONSE_LABEL = Buffer.from('cloudbox/api/v1 response')

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() })
if (suite.kem.id !== KemId.DhkemX25519HkdfSha256 || suite.kdf.id !== KdfId.HkdfSha256 || suite.aead.id !== AeadId.Aes128Gcm) throw new Error('HPKE suite mismatch')

const codec = defineMessageCodec({
  protocol: 'cloudbox-api',
  version: API_ENVELOPE_VERSION,
  maxMessageSize: API_MAX_BODY + 16 * 1024,
  messages: {
    request: {
      type: 1,
      schema: v.strictObject({
        method: v.picklist(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']),
        /** Path and query, e.g. `/files?path=a%2Fb`. */
        path: v.pipe(textSchema(4096), v.startsWith('/')),
        /** Milliseconds since the epoch, by the client's clock. */
        time: uintSchema(),
        nonce: bytesSchema({ length: NONCE_LENGTH }),
        client: bytesSchema({ length: ED25519_PUBLIC_KEY_LENGTH }),
        body: bytesSchema({ maxLength: API_MAX_BODY }),
        signature: bytesSchema({ length: SIGNATURE_LENGTH }),
      }),
    },
    response: {
      type: 2,
      schema: v.strictObject({ status: v.pipe(uintSchema(599), v.minValue(100)), body: bytesSchema({ maxLength: API_MAX_BODY }) }),
    },
  },
})

export type ApiMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

export interface ApiRequest {
  method: ApiMethod
  /** Path and query string, starting with `/`. */
  path: string
  body?: Uint8Array
}

export interface ApiResponse {
  status: number
  body: Uint8Array
}

/** A request the server opened: who sent it (verified), what it asks, and how to answer. */
export interface OpenedApiRequest {
  method: ApiMethod
  path: string
  body: Uint8Array
  /** The caller's public ID (`cb1…`); its signature was verified. */
  client: string
  clientKey: Uint8Array
  time: number
  /**
   * False when the opener's `admit` refused the caller (not paired here): its nonce was not
   * remembered, so strangers cannot fill the replay memory. Answer it with a refusal only.
   */
  admitted: boolean
  /** Seals the answer so that only this request's sender can open it. */
  respond(response: ApiResponse): Promise<Uint8Array>
}

/** A sealed request, and how to open its answer. */
export interface SealedApiRequest {
  message: Uint8Array
  openResponse(message: Uint8Array): Promise<ApiResponse>
}

const u64 = (value: number) => {
  const out = Buffer.alloc(8)
  out.writeBigUInt64BE(BigInt(value))
  return out
}
const u32 = (value: number) => {
  const out = Buffer.alloc(4)
  out.writeUInt32BE(value)
  return out
}

/** What the client signs: the encapsulation, the server, and every field of the request. */
function signedBytes(enc: Uint8Array, serverKey: Uint8Array, request: { method: string; path: string; time: number; nonce: Uint8Array; client: Uint8Array; body: Uint8Array }): Buffer {
  const method = Buffer.from(request.method)
  const path = Buffer.from(request.path)
  return Buffer.concat([
    SIGNATURE_LABEL, HEADER, enc, serverKey, u64(request.time), request.nonce, request.client,
    u32(method.length), method, u32(path.length), path, createHash('sha256').update(request.body).digest(),
  ])
}

const requestInfo = (serverKey: Uint8Array) => Buffer.concat([INFO_LABEL, HEADER, serverKey])

/** The response key and nonce (RFC 9458 §4.4, with our label). */
function responseKey(secret: Uint8Array, enc: Uint8Array, responseNonce: Uint8Array): { key: Buffer; nonce: Buffer } {
  const salt = Buffer.concat([enc, responseNonce])
  return {
    key: Buffer.from(hkdfSync('sha256', secret, salt, 'key', 16)),
    nonce: Buffer.from(hkdfSync('sha256', secret, salt, 'nonce', 12)),
  }
}

async function exportSecret(context: { export(label: ArrayBuffer, length: number): Promise<ArrayBuffer> }): Promise<Uint8Array> {
  return new Uint8Array(await context.export(new Uint8Array(RESPONSE_LABEL).buffer, 16))
}

// A copy that owns its whole buffer (Buffer#slice would be a view of a larger one).
const toArrayBuffer = (bytes: Uint8Array): ArrayBuffer => new Uint8Array(bytes).buffer as ArrayBuffer

/**
 * Seals a request for the server `server` (its `cb1…` ID or Ed25519 key), signed by `caller`.
 * @throws ERR_INVALID_PUBLIC_ID, ERR_MESSAGE_TOO_LARGE (a body over API_MAX_BODY)
 */
export async function sealApiRequest(caller: Signer, server: string | Uint8Array, request: ApiRequest, options: { now?: number } = {}): Promise<SealedApiRequest> {
  await ready()
  if ((request.body?.length ?? 0) > API_MAX_BODY) throw new MessageTooLargeError('An API request body is at most 16 MiB; send larger data in several requests.')
  const serverKey = typeof server === 'string' ? parsePublicId(server) : server
  const x25519 = serverKey.length === ED25519_PUBLIC_KEY_LENGTH ? ed25519PublicKeyToX25519(serverKey) : undefined
  if (x25519 === undefined) throw new InvalidPublicIdError('The server key is not a valid Ed25519 public key; use the ID from its pairing URI.')
  const recipientPublicKey = await suite.kem.deserializePublicKey(toArrayBuffer(x25519))
  const context = await suite.createSenderContext({ recipientPublicKey, info: toArrayBuffer(requestInfo(serverKey)) })
  const enc = new Uint8Array(context.enc)
  const fields = {
    method: request.method,
    path: request.path,
    time: options.now ?? Date.now(),
    nonce: randomBytes(NONCE_LENGTH),
    client: caller.publicKey,
    body: request.body ?? new Uint8Array(0),
  }
  const signature = caller.sign(signedBytes(enc, serverKey, fields))
  const plaintext = codec.encode('request', { ...fields, signature })
  const ciphertext = new Uint8Array(await context.seal(plaintext))
  const secret = await exportSecret(context)
  return {
    message: Buffer.concat([HEADER, enc, ciphertext]),
    async openResponse(message: Uint8Array): Promise<ApiResponse> {
      if (message.length < RESPONSE_NONCE_LENGTH + TAG_LENGTH) throw new ApiResponseInvalidError()
      const responseNonce = message.subarray(0, RESPONSE_NONCE_LENGTH)
      const { key, nonce } = responseKey(secret, enc, responseNonce)
      let plain: Buffer
      try {
        const decipher = createDecipheriv('aes-128-gcm', key, nonce)
        decipher.setAuthTag(message.subarray(message.length - TAG_LENGTH))
        plain = Buffer.concat([decipher.update(message.subarray(RESPONSE_NONCE_LENGTH, message.length - TAG_LENGTH)), decipher.final()])
      } catch (error) {
        throw new ApiResponseInvalidError(undefined, { cause: error })
      }
      let decoded: ReturnType<typeof codec.decode>
      try {
        decoded = codec.decode(plain)
      } catch (error) {
        throw new ApiResponseInvalidError(undefined, { cause: error })
      }
      if (decoded.kind !== 'response') throw new ApiResponseInvalidError()
      return { status: decoded.body.status, body: decoded.body.body }
    },
  }
}

export interface ApiRequestOpenerOptions {
  /** How far a request's time may be from the server's clock (default 60 s). */
  readonly windowMs?: number
  /** Nonces remembered at most; beyond it, the oldest go and their time window shrinks (default 1,000,000). */
  readonly maxEntries?: number
  /** Nonces remembered per caller (default 100,000, over 800 requests a second); more is ERR_API_RATE_LIMITED, so one caller cannot push others' out. */
  readonly maxEntriesPerClient?: number
  /** The server's clock (tests move it). */
  readonly now?: () => number
  /**
   * A file that keeps the nonces seen, so a restart does not forget them and a request
   * cannot be replayed once just after one (default: memory only). Appended to as requests
   * arrive, rewritten when mostly stale.
   */
  readonly journal?: string
  /** Whose nonces are remembered (say: the paired devices); others' requests are opened with `admitted: false`. Default: everyone's. */
  readonly admit?: (client: string) => boolean | Promise<boolean>
}

/**
 * The server side: opens requests sealed to `identity`, verifies the caller's signature,
 * and refuses replays (a nonce seen within the time window, or a time outside it).
 * Authorization (is this caller paired?) is the application's: the caller is in `client`.
 */
export class ApiRequestOpener {
  readonly #identity: Identity
  readonly #windowMs: number
  readonly #maxEntries: number
  readonly #maxEntriesPerClient: number
  /** Nonces remembered per caller (hex of its key). */
  readonly #perClient = new Map<string, number>()
  readonly #now: () => number
  readonly #admit: ApiRequestOpenerOptions['admit']
  #recipientKey: Promise<webcrypto.CryptoKeyPair> | undefined
  /** Nonces seen (hex of client ‖ nonce) → the request's time and when it arrived; in order of arrival. */
  readonly #seen = new Map<string, { time: number; arrived: number }>()
  /** Requests older than this are refused because their nonces may have been forgotten. */
  #floor = 0
  readonly #journal: NonceJournal | undefined

  constructor(identity: Identity, options: ApiRequestOpenerOptions = {}) {
    this.#identity = identity
    this.#windowMs = options.windowMs ?? 60_000
    this.#maxEntries = options.maxEntries ?? 1_000_000
    this.#maxEntriesPerClient = options.maxEntriesPerClient ?? 100_000
    this.#now = options.now ?? Date.now
    this.#admit = options.admit
    if (options.journal !== undefined) this.#journal = new NonceJournal(options.journal)
  }

  /** The journal's nonces, read at the first request (its folder may not exist before). */
  #loaded = false
  #load(): void {
    if (this.#loaded) return
    this.#loaded = true
    for (const entry of this.#journal?.load(this.#now() - 2 * this.#windowMs) ?? []) {
      this.#seen.set(entry.key, { time: entry.time, arrived: entry.arrived })
      this.#count(entry.key, 1)
    }
  }

  /** Closes the journal file (the opener keeps working from memory). */
  close(): void {
    this.#journal?.close()
  }

  /**
   * @throws ERR_API_REQUEST_INVALID, ERR_API_REQUEST_EXPIRED, ERR_API_REQUEST_REPLAYED
   */
  async open(message: Uint8Array): Promise<OpenedApiRequest> {
    await ready()
    if (message.length < HEADER.length + ENC_LENGTH + TAG_LENGTH || !Buffer.from(message.subarray(0, HEADER.length)).equals(HEADER)) {
      throw new ApiRequestInvalidError()
    }
    const enc = new Uint8Array(message.subarray(HEADER.length, HEADER.length + ENC_LENGTH))
    const serverKey = this.#identity.publicKey
    let plaintext: Uint8Array
    let secret: Uint8Array
    try {
      const context = await suite.createRecipientContext({ recipientKey: await this.#key(), enc: toArrayBuffer(enc), info: toArrayBuffer(requestInfo(serverKey)) })
      plaintext = new Uint8Array(await context.open(message.subarray(HEADER.length + ENC_LENGTH)))
      secret = await exportSecret(context)
    } catch (error) {
      throw new ApiRequestInvalidError(undefined, { cause: error })
    }
    let decoded: ReturnType<typeof codec.decode>
    try {
      decoded = codec.decode(plaintext)
    } catch (error) {
      throw new ApiRequestInvalidError(undefined, { cause: isEncryptedMessagingError(error) ? error : undefined })
    }
    if (decoded.kind !== 'request') throw new ApiRequestInvalidError()
    const request = decoded.body
    if (!ed25519Verify(request.client, signedBytes(enc, serverKey, request), request.signature)) throw new ApiRequestInvalidError()
    const client = encodePublicId(request.client)
    this.#checkTime(request.time)
    const admitted = this.#admit === undefined ? true : await this.#admit(client)
    // Checked and remembered with no await between: two copies arriving together cannot both pass.
    this.#load()
    if (admitted) this.#remember(request.client, request.nonce, request.time)
    return {
      admitted,
      method: request.method,
      path: request.path,
      body: request.body,
      client,
      clientKey: request.client,
      time: request.time,
      async respond(response: ApiResponse): Promise<Uint8Array> {
        if (response.body.length > API_MAX_BODY) throw new MessageTooLargeError('An API response body is at most 16 MiB; answer in several responses.')
        const plain = codec.encode('response', { status: response.status, body: response.body })
        const responseNonce = randomBytes(RESPONSE_NONCE_LENGTH)
        const { key, nonce } = responseKey(secret, enc, responseNonce)
        const cipher = createCipheriv('aes-128-gcm', key, nonce)
        return Buffer.concat([responseNonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()])
      },
    }
  }

  #key(): Promise<webcrypto.CryptoKeyPair> {
    const secret = x25519SecretOf.get(this.#identity)
    if (secret === undefined) throw new ApiRequestInvalidError('This server identity cannot open API requests.')
    // Imported once; the pair, because the KEM context needs the public half too.
    this.#recipientKey ??= (async () => ({
      privateKey: await suite.kem.importKey('raw', toArrayBuffer(secret), false),
      publicKey: await suite.kem.deserializePublicKey(toArrayBuffer(this.#identity.x25519PublicKey)),
    }))()
    return this.#recipientKey
  }

  #checkTime(time: number): void {
    const now = this.#now()
    if (Math.abs(now - time) > this.#windowMs) throw new ApiRequestExpiredError()
    if (time < this.#floor) throw new ApiRequestExpiredError()
  }

  #remember(client: Uint8Array, nonce: Uint8Array, time: number): void {
    const now = this.#now()
    // A nonce that arrived two windows ago belongs to a request whose time is now outside
    // the window, whatever it said: forgotten safely, in order of arrival (a request dated
    // in the future cannot hold back the forgetting of the ones after it).
    for (const [key, entry] of this.#seen) {
      if (entry.arrived >= now - 2 * this.#windowMs) break
      this.#forget(key)
    }
    const key = Buffer.concat([client, nonce]).toString('hex')
    if (this.#seen.has(key)) throw new ApiRequestReplayedError()
    // One caller's flood is refused before it could push anyone else's nonces out.
    if ((this.#perClient.get(key.slice(0, 64)) ?? 0) >= this.#maxEntriesPerClient) throw new ApiRateLimitedError()
    this.#seen.set(key, { time, arrived: now })
    this.#count(key, 1)
    this.#journal?.append(key, time, now, this.#seen)
    if (this.#seen.size > this.#maxEntries) {
      const [oldest, entry] = this.#seen.entries().next().value as [string, { time: number }]
      this.#forget(oldest)
      this.#floor = Math.max(this.#floor, entry.time + 1)
    }
  }

  #forget(key: string): void {
    if (this.#seen.delete(key)) this.#count(key, -1)
  }

  #count(key: string, change: number): void {
    const client = key.slice(0, 64)
    const count = (this.#perClient.get(client) ?? 0) + change
    if (count <= 0) this.#perClient.delete(client)
    else this.#perClient.set(client, count)
  }
}

const JOURNAL_RECORD = 48 + 16
const JOURNAL_MAGIC = Buffer.from('cloudbox-api-nonces v1\n')

/**
 * The opener's nonces on disk: a header, then 64-byte records `client ‖ nonce (48) ‖
 * time (u64) ‖ arrived (u64)`, appended as requests arrive (a crash loses at most what the
 * kernel had not written; a power cut what it had not flushed) and rewritten atomically
 * once most of it is stale. A damaged tail is ignored.
 */
class NonceJournal {
  readonly #path: string
  #fd: number | undefined
  #records = 0

  constructor(path: string) {
    this.#path = path
  }

  load(since: number): { key: string; time: number; arrived: number }[] {
    let bytes: Buffer
    try {
      bytes = readFileSync(this.#path)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      bytes = Buffer.alloc(0)
    }
    const entries: { key: string; time: number; arrived: number }[] = []
    if (bytes.subarray(0, JOURNAL_MAGIC.length).equals(JOURNAL_MAGIC)) {
      for (let at = JOURNAL_MAGIC.length; at + JOURNAL_RECORD <= bytes.length; at += JOURNAL_RECORD) {
        const arrived = Number(bytes.readBigUInt64BE(at + 56))
        if (arrived >= since) entries.push({ key: bytes.toString('hex', at, at + 48), time: Number(bytes.readBigUInt64BE(at + 48)), arrived })
      }
    }
    entries.sort((a, b) => a.arrived - b.arrived)
    this.#rewrite(entries)
    return entries
  }

  append(key: string, time: number, arrived: number, live: ReadonlyMap<string, { time: number; arrived: number }>): void {
    const record = Buffer.alloc(JOURNAL_RECORD)
    record.write(key, 0, 'hex')
    record.writeBigUInt64BE(BigInt(time), 48)
    record.writeBigUInt64BE(BigInt(arrived), 56)
    if (this.#fd === undefined) this.#fd = openSync(this.#path, 'a', 0o600)
    writeSync(this.#fd, record)
    // Mostly forgotten entries: start a fresh file with the live ones.
    if (++this.#records > 1024 && this.#records > 4 * live.size) this.#rewrite([...live].map(([each, entry]) => ({ key: each, ...entry })))
  }

  #rewrite(entries: readonly { key: string; time: number; arrived: number }[]): void {
    this.close()
    const out = Buffer.alloc(JOURNAL_MAGIC.length + entries.length * JOURNAL_RECORD)
    JOURNAL_MAGIC.copy(out)
    entries.forEach((entry, i) => {
      const at = JOURNAL_MAGIC.length + i * JOURNAL_RECORD
      out.write(entry.key, at, 'hex')
      out.writeBigUInt64BE(BigInt(entry.time), at + 48)
      out.writeBigUInt64BE(BigInt(entry.arrived), at + 56)
    })
    const temporary = `${this.#path}.tmp-${process.pid}`
    writeFileSync(temporary, out, { mode: 0o600 })
    renameSync(temporary, this.#path)
    this.#records = entries.length
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd)
    this.#fd = undefined
  }
}
