import { createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto'
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ApiRequestOpener, sealApiRequest } from '../src/api/api-envelope.js'
import { BufferPool } from '../src/api/buffer-pool.js'
import { ed25519Verify, ready } from '../src/crypto.js'
import { Identity, x25519SecretOf } from '../src/identity/identity.js'
import { defineMessageCodec } from '../src/wire/message-codec.js'
import { outcome } from './support/channels.js'

const server = Identity.generate().identity
const client = Identity.generate().identity
const text = (value: string) => new TextEncoder().encode(value)

describe('API envelope', () => {
  it('carries a request and its answer end to end, and names the verified caller', async () => {
    const opener = new ApiRequestOpener(server)
    const sealed = await sealApiRequest(client, server.publicId, { method: 'PUT', path: '/files?path=a%2Fb.txt&offset=0', body: text('hello') })
    // Nothing of the method, path or body shows on the wire.
    const wire = Buffer.from(sealed.message)
    for (const secret of ['PUT', '/files', 'a%2Fb', 'hello']) expect(wire.includes(secret)).toBe(false)
    const request = await opener.open(sealed.message)
    expect(request).toMatchObject({ method: 'PUT', path: '/files?path=a%2Fb.txt&offset=0', client: client.publicId })
    expect(Buffer.from(request.body).toString()).toBe('hello')
    const answer = await request.respond({ status: 201, body: text('stored') })
    expect(Buffer.from(answer).includes('stored')).toBe(false)
    const response = await sealed.openResponse(answer)
    expect(response.status).toBe(201)
    expect(Buffer.from(response.body).toString()).toBe('stored')
  })

  it('gives the same sealed bytes in pieces as in one buffer, both ways', async () => {
    const opener = new ApiRequestOpener(server)
    // Bodies around the CBOR header sizes and the 1 MiB slices the sealing works in.
    for (const size of [1, 23, 24, 255, 256, 65_535, 65_536, 1024 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024 + 7]) {
      const body = new Uint8Array(size).map((_, i) => i % 251)
      const sealed = await sealApiRequest(client, server.publicKey, { method: 'PUT', path: '/x', body })
      expect(sealed.parts.reduce((sum, part) => sum + part.length, 0)).toBe(sealed.length)
      expect(Buffer.concat(sealed.parts).equals(Buffer.from(sealed.message))).toBe(true)
      expect(sealed.message.length).toBe(sealed.length)
      const request = await opener.open(Buffer.concat(sealed.parts))
      expect(Buffer.from(request.body).equals(Buffer.from(body))).toBe(true)
      const parts = await request.respondInParts({ status: 200, body })
      const response = await sealed.openResponse(Buffer.concat(parts))
      expect(Buffer.from(response.body).equals(Buffer.from(body))).toBe(true)
      // The pieces were opened as the request: the same bytes again are a replay.
      expect(await outcome(opener.open(sealed.message))).toBe('ERR_API_REQUEST_REPLAYED')
    }
  })

  it('carries an empty body and a 16 MiB one', async () => {
    const opener = new ApiRequestOpener(server)
    for (const size of [0, 16 * 1024 * 1024]) {
      const sealed = await sealApiRequest(client, server.publicKey, { method: 'POST', path: '/x', body: new Uint8Array(size).fill(5) })
      const request = await opener.open(sealed.message)
      expect(request.body.length).toBe(size)
      const response = await sealed.openResponse(await request.respond({ status: 200, body: request.body }))
      expect(response.body.length).toBe(size)
    }
    expect(await outcome(sealApiRequest(client, server.publicKey, { method: 'POST', path: '/x', body: new Uint8Array(16 * 1024 * 1024 + 1) }))).toBe('ERR_MESSAGE_TOO_LARGE')
  })

  it('refuses a replayed request, and one whose time is outside the window', async () => {
    let now = 1_000_000_000_000
    const opener = new ApiRequestOpener(server, { windowMs: 60_000, now: () => now })
    const sealed = await sealApiRequest(client, server.publicId, { method: 'DELETE', path: '/files?path=x' }, { now })
    await opener.open(sealed.message)
    expect(await outcome(opener.open(sealed.message))).toBe('ERR_API_REQUEST_REPLAYED')
    // After the window, the same bytes are refused by their time (the nonce is forgotten).
    now += 61_000
    expect(await outcome(opener.open(sealed.message))).toBe('ERR_API_REQUEST_EXPIRED')
    const future = await sealApiRequest(client, server.publicId, { method: 'GET', path: '/' }, { now: now + 61_000 })
    expect(await outcome(opener.open(future.message))).toBe('ERR_API_REQUEST_EXPIRED')
  })

  it('keeps refusing replays when its memory is full, by raising the oldest time it accepts', async () => {
    const now = 1_000_000_000_000
    const opener = new ApiRequestOpener(server, { maxEntries: 3, now: () => now })
    const sealed = await Promise.all([0, 1, 2, 3, 4].map((i) => sealApiRequest(client, server.publicId, { method: 'GET', path: '/' }, { now: now - 10 + i })))
    for (const each of sealed) await opener.open(each.message)
    for (const each of sealed) expect(await outcome(opener.open(each.message))).toMatch(/ERR_API_REQUEST_(REPLAYED|EXPIRED)/)
  })

  it('refuses every altered byte of a request, and the server survives', async () => {
    const opener = new ApiRequestOpener(server)
    const sealed = await sealApiRequest(client, server.publicId, { method: 'POST', path: '/a', body: text('data') })
    const positions = [...Array(sealed.message.length).keys()]
    for (const at of positions) {
      const copy = Buffer.from(sealed.message)
      copy[at]! ^= 0x01
      expect(await outcome(opener.open(copy))).toBe('ERR_API_REQUEST_INVALID')
    }
    for (const length of [0, 1, 7, 39, sealed.message.length - 1]) {
      expect(await outcome(opener.open(sealed.message.subarray(0, length)))).toBe('ERR_API_REQUEST_INVALID')
    }
    await opener.open(sealed.message) // the genuine one still opens
  })

  it('refuses random bytes of any length', async () => {
    const opener = new ApiRequestOpener(server)
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        expect(await outcome(opener.open(bytes))).toBe('ERR_API_REQUEST_INVALID')
      }),
      { numRuns: 200 },
    )
  })

  it('refuses a request sealed for another server, and a caller who did not sign it', async () => {
    const other = Identity.generate().identity
    const forOther = await sealApiRequest(client, other.publicId, { method: 'GET', path: '/' })
    expect(await outcome(new ApiRequestOpener(server).open(forOther.message))).toBe('ERR_API_REQUEST_INVALID')
    // An impostor who claims the client's key but signs with its own: the signature fails.
    const impostor = Identity.generate().identity
    const claiming = { publicKey: client.publicKey, sign: (message: Uint8Array) => impostor.sign(message) }
    const forged = await sealApiRequest(claiming, server.publicId, { method: 'GET', path: '/' })
    expect(await outcome(new ApiRequestOpener(server).open(forged.message))).toBe('ERR_API_REQUEST_INVALID')
  })

  it('opens a response only with the request it answers, and refuses altered responses', async () => {
    const opener = new ApiRequestOpener(server)
    const first = await sealApiRequest(client, server.publicId, { method: 'GET', path: '/1' })
    const second = await sealApiRequest(client, server.publicId, { method: 'GET', path: '/2' })
    const answer = await (await opener.open(first.message)).respond({ status: 200, body: text('one') })
    await opener.open(second.message)
    expect(await outcome(second.openResponse(answer))).toBe('ERR_API_RESPONSE_INVALID')
    for (const at of [0, 15, 16, answer.length - 1]) {
      const copy = Buffer.from(answer)
      copy[at]! ^= 0x80
      expect(await outcome(first.openResponse(copy))).toBe('ERR_API_RESPONSE_INVALID')
    }
    expect(await outcome(first.openResponse(answer.subarray(0, 31)))).toBe('ERR_API_RESPONSE_INVALID')
    expect((await first.openResponse(answer)).status).toBe(200)
  })

  it('refuses a server key that is not a curve point', async () => {
    expect(await outcome(sealApiRequest(client, new Uint8Array(32).fill(0xff), { method: 'GET', path: '/' }))).toBe('ERR_INVALID_PUBLIC_ID')
  })

  it('is plain RFC 9180 HPKE as PROTOCOL.md section 7 writes it (checked with the library directly)', async () => {
    const sealed = await sealApiRequest(client, server.publicId, { method: 'POST', path: '/spec', body: text('some body') })
    const header = Buffer.from([2, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01])
    expect(Buffer.from(sealed.message.subarray(0, 7)).equals(header)).toBe(true)
    const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() })
    const copy = (bytes: Uint8Array) => new Uint8Array(bytes).buffer
    const recipientKey = {
      privateKey: await suite.kem.importKey('raw', copy(x25519SecretOf.get(server)!), false),
      publicKey: await suite.kem.deserializePublicKey(copy(server.x25519PublicKey)),
    }
    const enc = sealed.message.subarray(7, 39)
    const info = Buffer.concat([Buffer.from('cloudbox/api/v1 request\0'), header, server.publicKey])
    const context = await suite.createRecipientContext({ recipientKey, enc: copy(enc), info: copy(info) })
    const plain = new Uint8Array(await context.open(copy(sealed.message.subarray(39))))
    // The plaintext is a CBOR message [1, 1, {…}] of protocol cloudbox-api.
    const loose = defineMessageCodec({ protocol: 'cloudbox-api', version: 1, maxMessageSize: 1 << 20, messages: { request: { type: 1, schema: (await import('valibot')).any() } } })
    const request = loose.decode(plain).body as { method: string; path: string; time: number; nonce: Uint8Array; client: Uint8Array; body: Uint8Array; signature: Uint8Array }
    expect(request).toMatchObject({ method: 'POST', path: '/spec' })
    // Version 2's signature: over the encapsulation, the fields and the body's length.
    await ready()
    expect(ed25519Verify(client.publicKey, signedV(2, enc, request), request.signature)).toBe(true)
    // The response key: RFC 9458 §4.4 with our export label.
    const opened = await new ApiRequestOpener(server).open(sealed.message)
    const answer = await opened.respond({ status: 204, body: new Uint8Array(0) })
    const secret = new Uint8Array(await context.export(copy(Buffer.from('cloudbox/api/v1 response')), 16))
    const salt = Buffer.concat([enc, answer.subarray(0, 16)])
    const decipher = createDecipheriv('aes-128-gcm', Buffer.from(hkdfSync('sha256', secret, salt, 'key', 16)), Buffer.from(hkdfSync('sha256', secret, salt, 'nonce', 12)))
    decipher.setAuthTag(answer.subarray(answer.length - 16))
    expect(Buffer.concat([decipher.update(answer.subarray(16, answer.length - 16)), decipher.final()]).length).toBeGreaterThan(0)
  })

  it('opens a version 1 request (the body\'s SHA-256 signed) sealed by the HPKE library, and refuses one whose body does not match it', async () => {
    const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() })
    const copy = (bytes: Uint8Array) => new Uint8Array(bytes).buffer
    const header = Buffer.from([1, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01])
    const loose = defineMessageCodec({ protocol: 'cloudbox-api', version: 1, maxMessageSize: 1 << 20, messages: { request: { type: 1, schema: (await import('valibot')).any() } } })
    await ready()
    const sealV1 = async (body: Uint8Array, signedBody: Uint8Array) => {
      const sender = await suite.createSenderContext({
        recipientPublicKey: await suite.kem.deserializePublicKey(copy(server.x25519PublicKey)),
        info: copy(Buffer.concat([Buffer.from('cloudbox/api/v1 request\0'), header, server.publicKey])),
      })
      const enc = new Uint8Array(sender.enc)
      const fields = { method: 'PUT', path: '/old', time: Date.now(), nonce: randomBytes(16), client: client.publicKey }
      const signature = client.sign(signedV(1, enc, { ...fields, body: signedBody }))
      const plain = loose.encode('request', { ...fields, body, signature })
      return Buffer.concat([header, enc, new Uint8Array(await sender.seal(copy(plain)))])
    }
    const opener = new ApiRequestOpener(server)
    const body = text('from an older device')
    const opened = await opener.open(await sealV1(body, body))
    expect(opened).toMatchObject({ method: 'PUT', path: '/old', client: client.publicId })
    expect(Buffer.from(opened.body).toString()).toBe('from an older device')
    expect(await outcome(opener.open(await sealV1(body, text('something else'))))).toBe('ERR_API_REQUEST_INVALID')
  })

  it('refuses a version 2 request relabelled as version 1 or as an unknown version', async () => {
    const opener = new ApiRequestOpener(server)
    for (const version of [1, 3, 0]) {
      const sealed = Buffer.from((await sealApiRequest(client, server.publicId, { method: 'POST', path: '/x', body: text('body') })).message)
      sealed[0] = version
      expect(await outcome(opener.open(sealed))).toBe('ERR_API_REQUEST_INVALID')
    }
  })

  it('opens into pooled buffers and gives them back, also when a request or answer is refused', async () => {
    const pool = new BufferPool(4)
    const opener = new ApiRequestOpener(server)
    const body = randomBytes(3 * 1024 * 1024 + 11)
    const sealed = await sealApiRequest(client, server.publicId, { method: 'PUT', path: '/pooled', body }, { pool })
    expect(sealed.parts).toHaveLength(1)
    const sealedMemory = sealed.message.buffer
    const request = await opener.open(sealed.message, { pool })
    sealed.release()
    expect(Buffer.from(request.body).equals(body)).toBe(true)
    const plainMemory = request.body.buffer
    const [answer] = await request.respondInParts({ status: 200, body })
    request.release()
    const response = await sealed.openResponse(answer!, pool)
    expect(Buffer.from(response.body).equals(body)).toBe(true)
    response.release()
    pool.release(answer!)
    // The memory went back: the next calls use it again.
    const again = await sealApiRequest(client, server.publicId, { method: 'PUT', path: '/pooled', body }, { pool })
    expect([sealedMemory, plainMemory]).toContain(again.message.buffer)
    again.release()
    // A tampered request and a tampered answer take a buffer to decrypt into and give it back.
    const counting = new CountingPool()
    const tampered = Buffer.from((await sealApiRequest(client, server.publicId, { method: 'PUT', path: '/pooled', body })).message)
    tampered[tampered.length - 1]! ^= 1
    expect(await outcome(opener.open(tampered, { pool: counting }))).toBe('ERR_API_REQUEST_INVALID')
    const good = await sealApiRequest(client, server.publicId, { method: 'PUT', path: '/pooled', body })
    const [reply] = await (await opener.open(good.message)).respondInParts({ status: 200, body })
    reply![20]! ^= 1
    expect(await outcome(good.openResponse(reply!, counting))).toBe('ERR_API_RESPONSE_INVALID')
    expect(counting.taken).toBe(2)
    expect(counting.out).toBe(0)
  })
})

/** A pool that counts what it lends and gets back. */
class CountingPool extends BufferPool {
  taken = 0
  out = 0
  override acquire(length: number): Buffer {
    this.taken++
    this.out++
    return super.acquire(length)
  }
  override release(view: Uint8Array): void {
    this.out--
    super.release(view)
  }
}

/** The bytes a client signs, as PROTOCOL.md section 7 writes them for each version. */
function signedV(version: 1 | 2, enc: Uint8Array, request: { method: string; path: string; time: number; nonce: Uint8Array; client: Uint8Array; body: Uint8Array }): Uint8Array {
  const u64 = Buffer.alloc(8)
  u64.writeBigUInt64BE(BigInt(request.time))
  const u32 = (value: number) => Buffer.from([value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff])
  const length = Buffer.alloc(8)
  length.writeBigUInt64BE(BigInt(request.body.length))
  return Buffer.concat([
    Buffer.from(`cloudbox/api/v${version} signature\0`), Buffer.from([version, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01]), enc, server.publicKey, u64,
    request.nonce, request.client, u32(request.method.length), Buffer.from(request.method), u32(request.path.length), Buffer.from(request.path),
    version === 1 ? createHash('sha256').update(request.body).digest() : length,
  ])
}
