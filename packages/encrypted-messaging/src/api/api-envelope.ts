/**
 * End-to-end encryption of REST API calls, in the shape of Oblivious HTTP (RFC 9458):
 * each request is sealed to the server's X25519 key with HPKE (RFC 9180, base mode,
 * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM; see hpke.ts) and signed by
 * the caller's Ed25519 identity inside the encryption (over the encapsulation, so the AEAD
 * binds the body to it); the response is sealed under a key
 * exported from that request's HPKE context, so only the caller can read it. A proxy,
 * a hub or a logging middlebox sees the sizes and nothing else: method, path and body
 * travel inside. Specified in PROTOCOL.md, section 7.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto'
import { closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs'
import * as v from 'valibot'
import { ED25519_PUBLIC_KEY_LENGTH, ed25519PublicKeyToX25519, ed25519Verify, ready } from '../crypto.js'
import { ApiRateLimitedError, ApiRequestExpiredError, ApiRequestInvalidError, ApiRequestReplayedError, ApiResponseInvalidError, InvalidPublicIdError, isEncryptedMessagingError, MessageTooLargeError } from '../errors.js'
import { x25519SecretOf, type Identity } from '../identity/identity.js'
import { encodePublicId, parsePublicId } from '../identity/public-id.js'
import type { Signer } from '../interfaces/key-agreement.js'
import { bytesSchema, defineMessageCodec, textSchema, uintSchema } from '../wire/message-codec.js'
import type { BufferPool } from './buffer-pool.js'
import { exportSecret, setupRecipient, setupSender, type HpkeContext } from './hpke.js'

/**
 * The version requests are sealed in. Version 1 signed a SHA-256 of the body, a second pass
 * over every byte on each side; version 2 signs its length, the AEAD under the signed
 * encapsulation binding the bytes. The opener accepts both.
 */
export const API_ENVELOPE_VERSION = 2
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
const headerOf = (version: number) => Buffer.from([version, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01])
const HEADERS: ReadonlyMap<number, Buffer> = new Map([1, 2].map((version) => [version, headerOf(version)]))
const HEADER = HEADERS.get(API_ENVELOPE_VERSION)!
const HEADER_LENGTH = HEADER.length
const INFO_LABEL = Buffer.from('cloudbox/api/v1 request\0')
const SIGNATURE_LABELS: ReadonlyMap<number, Buffer> = new Map([1, 2].map((version) => [version, Buffer.from(`cloudbox/api/v${version} signature\0`)]))
const RESPONSE_LABEL = Buffer.from('cloudbox/api/v1 response')

const codec = defineMessageCodec({
  protocol: 'cloudbox-api',
  // The plaintext's shape is the same in both envelope versions.
  version: 1,
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

/** An answer opened into a pooled buffer: `release` gives the body's memory back (the body is unusable afterwards). */
export interface PooledApiResponse extends ApiResponse {
  release(): void
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
  /**
   * The same as `respond`, in pieces for a transport that writes a list. Opened with a pool,
   * the one piece is the pool's: give it back with `pool.release` once it is written.
   */
  respondInParts(response: ApiResponse): Promise<Uint8Array[]>
  /** Gives the body's memory back to the pool it was opened with (nothing without one); the body is unusable afterwards. */
  release(): void
}

/** A sealed request, and how to open its answer. */
export interface SealedApiRequest {
  /** The sealed request, as one buffer (sealed into it: the body is copied once, by the cipher). */
  readonly message: Uint8Array
  /** The same bytes as a list for a transport that writes one (today the one buffer `message`). */
  readonly parts: readonly Uint8Array[]
  /** Its length in bytes. */
  readonly length: number
  openResponse(message: Uint8Array): Promise<ApiResponse>
  /** Opens the answer into a buffer of `pool` (for a caller that writes the body somewhere and is done with it). */
  openResponse(message: Uint8Array, pool: BufferPool): Promise<PooledApiResponse>
  /** Gives the sealed bytes back to the pool they were sealed into (nothing without one), once they are sent. */
  release(): void
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

/** Hashing (version 1) goes in slices of this size with a turn of the event loop between them. */
const SLICE = 1024 * 1024
const breathe = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * Encryption goes in steps this small, with a turn of the event loop after each: node:crypto's
 * output dies young (it is copied out at once), and the socket carrying one call is served
 * while another is sealed, so the two overlap (breathing every 64 KiB instead of every MiB:
 * uploads 224 -> 288 MB/s, downloads 154 -> 190, medians of four runs).
 */
const STEP = 64 * 1024

async function sha256(bytes: Uint8Array): Promise<Buffer> {
  const hash = createHash('sha256')
  for (let start = 0; start < bytes.length || start === 0; start += SLICE) {
    if (start > 0) await breathe()
    hash.update(bytes.subarray(start, start + SLICE))
  }
  return hash.digest()
}

/**
 * What the client signs: the encapsulation, the server, and every field of the request;
 * of the body, version 1 its SHA-256 and version 2 its length (only the client and the
 * server know the key of that encapsulation, so only they could have sealed the bytes).
 */
async function signedBytes(version: number, enc: Uint8Array, serverKey: Uint8Array, request: { method: string; path: string; time: number; nonce: Uint8Array; client: Uint8Array; body: Uint8Array }): Promise<Buffer> {
  const method = Buffer.from(request.method)
  const path = Buffer.from(request.path)
  return Buffer.concat([
    SIGNATURE_LABELS.get(version)!, HEADERS.get(version)!, enc, serverKey, u64(request.time), request.nonce, request.client,
    u32(method.length), method, u32(path.length), path, version === 1 ? await sha256(request.body) : u64(request.body.length),
  ])
}

const requestInfo = (header: Uint8Array, serverKey: Uint8Array) => Buffer.concat([INFO_LABEL, header, serverKey])

/** The response key and nonce (RFC 9458 §4.4, with our label). */
function responseKey(secret: Uint8Array, enc: Uint8Array, responseNonce: Uint8Array): { key: Buffer; nonce: Buffer } {
  const salt = Buffer.concat([enc, responseNonce])
  return {
    key: Buffer.from(hkdfSync('sha256', secret, salt, 'key', 16)),
    nonce: Buffer.from(hkdfSync('sha256', secret, salt, 'nonce', 12)),
  }
}

const EMPTY = new Uint8Array(0)

/** A CBOR byte-string header (major type 2, shortest form) for `length` bytes. */
function bytesHeader(length: number): Buffer {
  if (length < 24) return Buffer.from([0x40 | length])
  if (length < 0x100) return Buffer.from([0x58, length])
  const out = Buffer.alloc(length < 0x10000 ? 3 : 5)
  out[0] = length < 0x10000 ? 0x59 : 0x5a
  if (length < 0x10000) out.writeUInt16BE(length, 1)
  else out.writeUInt32BE(length, 1)
  return out
}

/**
 * A message whose `body` field is `body`, as pieces that reference it rather than copy it:
 * the codec encodes (and checks) the message with an empty body, which is cut where that
 * empty byte string sits (`at` bytes before the end) for the real one's header and bytes.
 */
function withBody(skeleton: Uint8Array, at: number, body: Uint8Array): Uint8Array[] {
  const cut = skeleton.length - at - 1
  if (skeleton[cut] !== 0x40) throw new Error('The API envelope\'s CBOR layout changed; the body cannot be placed.')
  return [skeleton.subarray(0, cut), bytesHeader(body.length), body, skeleton.subarray(cut + 1)]
}

// The request's last field is its signature: a 10-byte key ("signature") and a 66-byte value.
const SIGNATURE_FIELD_LENGTH = 10 + 2 + SIGNATURE_LENGTH

const lengthOf = (pieces: readonly Uint8Array[]) => pieces.reduce((sum, piece) => sum + piece.length, 0)

/**
 * `prefix`, then `pieces` encrypted with AES-128-GCM, then the tag, in one buffer of
 * `pool` (or a new one): node:crypto's output is copied in as it comes, in small steps.
 */
async function encrypt(key: Uint8Array, nonce: Uint8Array, prefix: readonly Uint8Array[], pieces: readonly Uint8Array[], pool: BufferPool | undefined): Promise<Buffer> {
  const out = pool?.acquire(lengthOf(prefix) + lengthOf(pieces) + TAG_LENGTH) ?? Buffer.allocUnsafe(lengthOf(prefix) + lengthOf(pieces) + TAG_LENGTH)
  let at = 0
  for (const piece of prefix) {
    out.set(piece, at)
    at += piece.length
  }
  const cipher = createCipheriv('aes-128-gcm', key, nonce)
  let sinceBreath = 0
  for (const piece of pieces) {
    for (let start = 0; start < piece.length; start += STEP) {
      if (sinceBreath >= STEP) {
        sinceBreath = 0
        await breathe()
      }
      const sealed = cipher.update(piece.subarray(start, start + STEP))
      out.set(sealed, at)
      at += sealed.length
      sinceBreath += Math.min(STEP, piece.length - start)
    }
  }
  const last = cipher.final()
  out.set(last, at)
  out.set(cipher.getAuthTag(), at + last.length)
  return out
}

/**
 * The plaintext of `ciphertext ‖ tag` in a buffer of `pool` (or a new one), or undefined
 * when it was altered (the buffer is then given back: nothing of it is seen).
 */
async function decrypt(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, pool: BufferPool | undefined): Promise<Buffer | undefined> {
  if (sealed.length < TAG_LENGTH) return undefined
  const length = sealed.length - TAG_LENGTH
  const out = pool?.acquire(length) ?? Buffer.allocUnsafe(length)
  try {
    const decipher = createDecipheriv('aes-128-gcm', key, nonce)
    decipher.setAuthTag(sealed.subarray(length))
    for (let start = 0; start < length; start += STEP) {
      if (start > 0) await breathe()
      out.set(decipher.update(sealed.subarray(start, Math.min(start + STEP, length))), start)
    }
    decipher.final()
    return out
  } catch {
    pool?.release(out)
    return undefined
  }
}

/**
 * Seals a request for the server `server` (its `cb1…` ID or Ed25519 key), signed by `caller`.
 * With `pool`, the sealed bytes are one of its buffers (`release` gives it back).
 * @throws ERR_INVALID_PUBLIC_ID, ERR_MESSAGE_TOO_LARGE (a body over API_MAX_BODY)
 */
export async function sealApiRequest(caller: Signer, server: string | Uint8Array, request: ApiRequest, options: { now?: number; pool?: BufferPool } = {}): Promise<SealedApiRequest> {
  await ready()
  if ((request.body?.length ?? 0) > API_MAX_BODY) throw new MessageTooLargeError('An API request body is at most 16 MiB; send larger data in several requests.')
  const serverKey = typeof server === 'string' ? parsePublicId(server) : server
  const x25519 = serverKey.length === ED25519_PUBLIC_KEY_LENGTH ? ed25519PublicKeyToX25519(serverKey) : undefined
  if (x25519 === undefined) throw new InvalidPublicIdError('The server key is not a valid Ed25519 public key; use the ID from its pairing URI.')
  const context = setupSender(x25519, requestInfo(HEADER, serverKey))
  if (context === undefined) throw new InvalidPublicIdError('The server key is not a valid Ed25519 public key; use the ID from its pairing URI.')
  const enc = context.enc
  const body = request.body ?? EMPTY
  const fields = {
    method: request.method,
    path: request.path,
    time: options.now ?? Date.now(),
    nonce: randomBytes(NONCE_LENGTH),
    client: caller.publicKey,
  }
  const signature = caller.sign(await signedBytes(API_ENVELOPE_VERSION, enc, serverKey, { ...fields, body }))
  const plaintext = withBody(codec.encode('request', { ...fields, body: EMPTY, signature }), SIGNATURE_FIELD_LENGTH, body)
  const message = await encrypt(context.key, context.nonce, [HEADER, enc], plaintext, options.pool)
  const secret = exportSecret(context, RESPONSE_LABEL, 16)
  async function openResponse(answer: Uint8Array): Promise<ApiResponse>
  async function openResponse(answer: Uint8Array, pool: BufferPool): Promise<PooledApiResponse>
  async function openResponse(answer: Uint8Array, pool?: BufferPool): Promise<ApiResponse | PooledApiResponse> {
    if (answer.length < RESPONSE_NONCE_LENGTH + TAG_LENGTH) throw new ApiResponseInvalidError()
    const { key, nonce } = responseKey(secret, enc, answer.subarray(0, RESPONSE_NONCE_LENGTH))
    const plain = await decrypt(key, nonce, answer.subarray(RESPONSE_NONCE_LENGTH), pool)
    if (plain === undefined) throw new ApiResponseInvalidError()
    let decoded: ReturnType<typeof codec.decode>
    try {
      decoded = codec.decode(plain)
    } catch (error) {
      pool?.release(plain)
      throw new ApiResponseInvalidError(undefined, { cause: error })
    }
    if (decoded.kind !== 'response') {
      pool?.release(plain)
      throw new ApiResponseInvalidError()
    }
    const response = { status: decoded.body.status, body: decoded.body.body }
    return pool === undefined ? response : { ...response, release: () => pool.release(plain) }
  }
  return {
    message,
    parts: [message],
    length: message.length,
    openResponse,
    release: () => options.pool?.release(message),
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
   * Opens a sealed request (envelope version 1 or 2). With `pool`, its plaintext is one of
   * the pool's buffers until `release`, and so is the sealed answer of `respondInParts`.
   * @throws ERR_API_REQUEST_INVALID, ERR_API_REQUEST_EXPIRED, ERR_API_REQUEST_REPLAYED
   */
  async open(message: Uint8Array, options: { pool?: BufferPool } = {}): Promise<OpenedApiRequest> {
    await ready()
    const pool = options.pool
    const header = HEADERS.get(message[0] ?? 0)
    if (header === undefined || message.length < HEADER_LENGTH + ENC_LENGTH + TAG_LENGTH || !Buffer.from(message.subarray(0, HEADER_LENGTH)).equals(header)) {
      throw new ApiRequestInvalidError()
    }
    const version = message[0]!
    const enc = new Uint8Array(message.subarray(HEADER_LENGTH, HEADER_LENGTH + ENC_LENGTH))
    const serverKey = this.#identity.publicKey
    const context = this.#context(header, enc)
    const plaintext = context === undefined ? undefined : await decrypt(context.key, context.nonce, message.subarray(HEADER_LENGTH + ENC_LENGTH), pool)
    if (context === undefined || plaintext === undefined) throw new ApiRequestInvalidError()
    const release = () => pool?.release(plaintext)
    let request: Extract<ReturnType<typeof codec.decode>, { kind: 'request' }>['body']
    let admitted: boolean
    let client: string
    try {
      let decoded: ReturnType<typeof codec.decode>
      try {
        decoded = codec.decode(plaintext)
      } catch (error) {
        throw new ApiRequestInvalidError(undefined, { cause: isEncryptedMessagingError(error) ? error : undefined })
      }
      if (decoded.kind !== 'request') throw new ApiRequestInvalidError()
      request = decoded.body
      if (!ed25519Verify(request.client, await signedBytes(version, enc, serverKey, request), request.signature)) throw new ApiRequestInvalidError()
      client = encodePublicId(request.client)
      this.#checkTime(request.time)
      admitted = this.#admit === undefined ? true : await this.#admit(client)
      // Checked and remembered with no await between: two copies arriving together cannot both pass.
      this.#load()
      if (admitted) this.#remember(request.client, request.nonce, request.time)
    } catch (error) {
      release()
      throw error
    }
    const secret = exportSecret(context, RESPONSE_LABEL, 16)
    const seal = async (response: ApiResponse, into: BufferPool | undefined): Promise<Buffer> => {
      if (response.body.length > API_MAX_BODY) throw new MessageTooLargeError('An API response body is at most 16 MiB; answer in several responses.')
      // The body is the response's last field: its empty stand-in is the skeleton's last byte.
      const plain = withBody(codec.encode('response', { status: response.status, body: EMPTY }), 0, response.body)
      const responseNonce = randomBytes(RESPONSE_NONCE_LENGTH)
      const { key, nonce } = responseKey(secret, enc, responseNonce)
      return await encrypt(key, nonce, [responseNonce], plain, into)
    }
    return {
      admitted,
      method: request.method,
      path: request.path,
      body: request.body,
      client,
      clientKey: request.client,
      time: request.time,
      // A buffer of its own, not the pool's: the caller may keep it.
      respond: (response: ApiResponse) => seal(response, undefined),
      respondInParts: async (response: ApiResponse) => [await seal(response, pool)],
      release,
    }
  }

  #context(header: Uint8Array, enc: Uint8Array): HpkeContext | undefined {
    const secret = x25519SecretOf.get(this.#identity)
    if (secret === undefined) throw new ApiRequestInvalidError('This server identity cannot open API requests.')
    return setupRecipient(enc, secret, this.#identity.x25519PublicKey, requestInfo(header, this.#identity.publicKey))
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
