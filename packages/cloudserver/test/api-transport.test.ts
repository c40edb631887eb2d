/**
 * The API's HTTP transport from both ends: how the server reads a sealed request (a
 * declared length it holds the sender to, a limit), how the client reads an answer (a
 * hostile server cannot make it read more than any answer can be), and the pipelined
 * transfers (two calls in flight) on a real server.
 */
import { randomBytes } from 'node:crypto'
import { createServer, request, type Server } from 'node:http'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { truncateSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CloudBox } from '@cloudbox/cloudbox'
import { API_REQUEST_MEDIA_TYPE, Identity, sealApiRequest } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient } from '../src/index.js'
import { codeOf } from './outcomes.js'

const MiB = 1024 * 1024
let root: string
let box: CloudBox
let device: CloudBox
let server: CloudServer
let identity: Identity

/** A raw POST to the API: status and body text (what a proxy or an attacker would send). */
function rawPost(url: string, headers: Record<string, string | number>, write: (out: ReturnType<typeof request>) => void): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const out = request(`${url}/v1/api`, { method: 'POST', headers: { 'content-type': API_REQUEST_MEDIA_TYPE, ...headers } }, (response) => {
      let text = ''
      response.on('data', (piece) => (text += piece))
      response.on('end', () => resolve({ status: response.statusCode ?? 0, text }))
    })
    // The server may answer and close before everything was written.
    out.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' || error.code === 'EPIPE' ? resolve({ status: 0, text: '' }) : reject(error)))
    write(out)
  })
}

describe('API transport', () => {
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cloudserver-transport-'))
    await mkdir(join(root, 'cloud'))
    await mkdir(join(root, 'device'))
    box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357', watch: false }, { identity: Identity.generate().identity })
    await box.start()
    server = new CloudServer({ host: '127.0.0.1', port: 0 }, { box })
    await server.start()
    identity = Identity.generate().identity
    device = new CloudBox({ role: 'client', folder: join(root, 'device'), sync: false }, { identity })
    await device.start()
    await device.pair(box.pairingUri(), '2468-1357')
  })

  afterAll(async () => {
    await server.stop()
    await device.destroy()
    await box.destroy()
    await rm(root, { recursive: true, force: true })
  })

  it('holds a sealed request to its declared length and to the limit, and goes on serving', async () => {
    const sealed = await sealApiRequest(identity, box.id, { method: 'GET', path: '/v1/files' })
    const bytes = Buffer.from(sealed.message)
    // More bytes than declared: refused, never read past the declaration.
    const longer = await rawPost(server.url, { 'content-length': bytes.length - 10 }, (out) => out.end(bytes))
    expect([0, 400]).toContain(longer.status)
    // Fewer bytes than declared, then the sender gives up: nothing is served.
    const shorter = await rawPost(server.url, { 'content-length': bytes.length + 10 }, (out) => {
      out.write(bytes)
      setTimeout(() => out.destroy(), 50)
    })
    expect(shorter.status).toBe(0)
    // A declaration over the limit is refused before a byte is read.
    const huge = await rawPost(server.url, { 'content-length': 64 * MiB }, (out) => out.end())
    expect(huge.status).toBe(413)
    // Chunked (no length): read up to the limit, then refused.
    const endless = await rawPost(server.url, { 'transfer-encoding': 'chunked' }, (out) => {
      const piece = Buffer.alloc(MiB)
      let sent = 0
      const more = () => {
        while (sent < 20 && out.write(piece)) sent++
        if (sent < 20) out.once('drain', more)
        else out.end()
      }
      more()
    })
    expect([0, 413]).toContain(endless.status)
    // A malformed length header.
    const malformed = await rawPost(server.url, { 'content-length': '12abc' }, (out) => out.end(bytes))
    expect([0, 400]).toContain(malformed.status)
    // The same sealed request, sent properly, is still answered (the refused ones left no trace).
    const client = new CloudServerClient({ url: server.url, server: box.id, identity })
    expect(Array.isArray(await client.list())).toBe(true)
    const answered = await rawPost(server.url, { 'content-length': bytes.length }, (out) => out.end(bytes))
    expect(answered.status).toBe(200)
  })

  it('does not read an answer longer than any the API sends, nor one that breaks its declared length', async () => {
    const hostile: Server = createServer((incoming, response) => {
      incoming.resume()
      incoming.on('end', () => {
        if (incoming.url?.includes('huge')) {
          response.writeHead(200, { 'content-type': 'application/vnd.cloudbox.api-response', 'content-length': 1024 * MiB })
          response.write(Buffer.alloc(MiB))
        } else {
          // Declares 10 bytes and sends 1 MiB.
          response.writeHead(200, { 'content-type': 'application/vnd.cloudbox.api-response', 'content-length': 10 })
          response.socket?.write(Buffer.alloc(MiB))
          response.socket?.end()
        }
      })
    })
    await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve))
    const { port } = hostile.address() as { port: number }
    try {
      for (const path of ['huge', 'liar']) {
        const client = new CloudServerClient({ url: `http://127.0.0.1:${port}/${path}`, server: box.id, identity })
        const before = process.memoryUsage().rss
        expect(await codeOf(client.list())).toMatch(/^ERR_API_(UNREACHABLE|RESPONSE_INVALID)$/)
        expect(process.memoryUsage().rss - before).toBeLessThan(200 * MiB)
      }
    } finally {
      hostile.closeAllConnections()
      await new Promise((resolve) => hostile.close(resolve))
    }
  })

  it('uploads and downloads with two calls in flight, on the direct listener too, byte for byte', async () => {
    const content = randomBytes(7 * MiB + 12345)
    await writeFile(join(root, 'big.bin'), content)
    for (const url of [server.url, box.directUrl!.replace(/^ws/, 'http')]) {
      const client = new CloudServerClient({ url, server: box.id, identity, chunkSize: MiB })
      const progress: number[] = []
      await client.upload(join(root, 'big.bin'), 'big.bin', { overwrite: true, onProgress: ({ bytes }) => progress.push(bytes) })
      expect(progress.at(-1)).toBe(content.length)
      expect(progress).toEqual([...progress].sort((a, b) => a - b))
      expect((await readFile(join(root, 'cloud', 'big.bin'))).equals(content)).toBe(true)
      await client.download('big.bin', join(root, 'back.bin'))
      expect((await readFile(join(root, 'back.bin'))).equals(content)).toBe(true)
    }
    // An empty file is one empty chunk.
    await writeFile(join(root, 'empty.bin'), '')
    const client = new CloudServerClient({ url: server.url, server: box.id, identity, chunkSize: MiB })
    expect((await client.upload(join(root, 'empty.bin'), 'empty.bin')).size).toBe(0)
    await client.download('empty.bin', join(root, 'empty-back.bin'))
    expect((await readFile(join(root, 'empty-back.bin'))).length).toBe(0)
  })

  it('stops a download whose file changes size on the server meanwhile, and leaves the partial file to resume', async () => {
    await writeFile(join(root, 'cloud', 'changing.bin'), randomBytes(4 * MiB))
    const client = new CloudServerClient({ url: server.url, server: box.id, identity, chunkSize: MiB })
    let cut = false
    const outcome = client.download('changing.bin', join(root, 'changing.bin'), {
      onProgress: () => {
        // The next chunk is asked for after this returns: it meets the shorter file.
        if (!cut) truncateSync(join(root, 'cloud', 'changing.bin'), MiB + 100)
        cut = true
      },
    })
    expect(await codeOf(outcome)).toBe('ERR_BAD_REQUEST')
    await expect(readFile(join(root, 'changing.bin'))).rejects.toThrow()
    expect((await readFile(join(root, 'changing.bin.part'))).length).toBeGreaterThanOrEqual(MiB)
  })
})
