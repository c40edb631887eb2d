/**
 * Requests nobody logged in for, thrown at a running server's direct listener and at a
 * running hub and a server's API: malformed request lines, targets, percent-encodings, headers and bodies,
 * bytes that are not HTTP at all, and connections cut half-way. Each one gets a 4xx or a
 * closed socket; neither process throws, and both serve a normal client afterwards.
 */
import { connect } from 'node:net'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { RouterHub } from '@cloudbox/router-hub'
import { CloudServer } from '@cloudbox/cloudserver'
import { fileIs, scratch, waitFor } from '../integration/helpers.js'
import { recordOutcome } from './support/outcomes.js'

const PIN = '2468-1357'
let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

const UPGRADE = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'

/** Writes `bytes` to host:port (optionally cutting the connection half-way) and resolves with the first answer line, or '' when the socket just closed. */
function throwAt(port: number, bytes: Buffer, cut: boolean): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(answer.split('\r\n')[0] ?? '')
    }
    const timer = setTimeout(done, 400)
    socket.on('error', done)
    socket.on('close', done)
    socket.on('data', (data: Buffer) => {
      answer += data.toString('latin1')
      if (answer.includes('\r\n')) done()
    })
    socket.on('connect', () => {
      if (cut) {
        socket.write(bytes.subarray(0, bytes.length >> 1))
        // A reset, not a clean end: the listener's socket sees ECONNRESET.
        setTimeout(() => socket.resetAndDestroy(), 5)
      } else socket.end(bytes)
    })
  })
}

/** Sockets on these local ports that the peer closed but this process still holds open (TCP CLOSE_WAIT), from /proc. */
function halfClosed(ports: number[]): number {
  let count = 0
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/)
      if (local !== undefined && state === '08' && ports.includes(parseInt(local.split(':')[1] ?? '', 16))) count++
    }
  }
  return count
}

/** Request targets an attacker would try: the review's two, traversal, encodings, junk. */
const targets = (prefixes: string[]) =>
  fc.oneof(
    fc.constantFrom('//[', '/v1/route/%E0%A4%A', '/v1/cloud/%', '/v1/route/%ff%fe', '/v1/accept/%zz?token=%', 'http://[::1', '*', '/v1/accept/99999999999999999999?token=' + 'a'.repeat(32), '/n/%E0%A4%A/api/v1/api', '/status/%/'),
    fc.tuple(fc.constantFrom(...prefixes), fc.string({ unit: 'binary', maxLength: 80 })).map(([prefix, rest]) => prefix + encodeURI(rest).replace(/%2[0-9A-F]/g, '%')),
    fc.tuple(fc.constantFrom(...prefixes), fc.array(fc.constantFrom('%', '%E0', '%A4%A', '[', ']', '..', '//', '?', '#', '%00', '\u00ff', 'x'), { maxLength: 12 })).map(([prefix, parts]) => prefix + parts.join('')),
  )

const requests = (prefixes: string[]) =>
  fc.oneof(
    // An upgrade with a hostile target.
    fc.tuple(fc.constantFrom('GET', 'POST', 'OPTIONS'), targets(prefixes)).map(([method, target]) => Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: x\r\n${UPGRADE}\r\n`, 'latin1')),
    // Hostile headers on a valid-looking upgrade.
    fc.tuple(targets(prefixes), fc.constantFrom('Sec-WebSocket-Key: ' + 'A'.repeat(10000), 'Sec-WebSocket-Version: 99', 'Upgrade: \u00ff\u00fe', 'Connection: Upgrade, Upgrade, Upgrade', 'Host: [', 'Content-Length: -1', 'Transfer-Encoding: chunked, chunked')).map(
      ([target, header]) => Buffer.from(`GET ${target} HTTP/1.1\r\n${header}\r\n${UPGRADE}\r\n`, 'latin1'),
    ),
    // Plain HTTP with a body to the hub's API relay and anything else.
    fc.tuple(targets(prefixes), fc.uint8Array({ maxLength: 2048 })).map(([target, body]) => Buffer.concat([Buffer.from(`POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1'), Buffer.from(body)])),
    // Not HTTP at all.
    fc.uint8Array({ minLength: 1, maxLength: 512 }).map((bytes) => Buffer.from(bytes)),
  )

describe('requests from nobody, at the edges', () => {
  it('a running listener, hub and API answer every malformed request with 4xx or a closed socket, and serve a normal client afterwards', { timeout: 120_000 }, async () => {
    const hub = new RouterHub()
    await hub.start()
    cleanups.push(() => hub.stop())
    const area = await scratch()
    cleanups.push(() => area.cleanup())
    const server = area.box({ role: 'server', hub: hub.url, listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN })
    await server.start()
    await waitFor(() => hub.hasNode(server.id), 'the server to register')
    const api = new CloudServer({ statusPage: true }, { box: server })
    await api.start()
    cleanups.push(() => api.stop())
    const ports = [Number(new URL(server.directUrl as string).port), hub.address.port, Number(new URL(api.url).port)]
    const prefixes = ['/v1/cloud/', `/v1/cloud/${server.id}`, '/v1/route/', `/v1/route/${server.id}`, '/v1/accept/', '/v1/node', '/n/', `/n/${server.id}/api/`, '/health', '/', '/v1/api', new URL(api.statusUrl as string).pathname, '/status/']

    const answers = new Map<string, number>()
    let thrown = 0
    await fc.assert(
      fc.asyncProperty(requests(prefixes), fc.constantFrom(...ports), fc.boolean(), async (bytes, port, cut) => {
        const first = await throwAt(port, bytes, cut)
        thrown++
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(first)?.[1]
        const kind = status === undefined ? 'closed' : status
        answers.set(kind, (answers.get(kind) ?? 0) + 1)
        // A bad request is the caller's fault (4xx), never the server's (5xx), and never breaks a process.
        expect(status === undefined || !status.startsWith('5'), `${first} for ${JSON.stringify(bytes.toString('latin1').slice(0, 120))}`).toBe(true)
      }),
      { numRuns: 600 },
    )

    // Nothing a stranger closed stays open here (each would hold a file descriptor for good).
    await waitFor(() => halfClosed(ports) === 0, `the sockets the fuzzing closed to be released (${halfClosed(ports)} still half-closed)`, 15_000)

    // Both still serve: a device pairs directly, another through the hub, and files sync.
    const direct = area.box({ role: 'client', name: 'direct' })
    const viaHub = area.box({ role: 'client', name: 'via-hub' })
    await direct.start()
    await viaHub.start()
    const uri = new URLSearchParams(server.pairingUri().slice('cloudbox://pair?'.length))
    const hubOnly = new URLSearchParams(uri)
    hubOnly.delete('addr')
    await direct.pair(server.pairingUri(), PIN)
    await viaHub.pair(`cloudbox://pair?${hubOnly}`, PIN)
    writeFileSync(join(direct.init.folder, 'after-direct.txt'), 'still served directly')
    writeFileSync(join(viaHub.init.folder, 'after-hub.txt'), 'still served through the hub')
    await waitFor(async () => (await fileIs(join(server.init.folder, 'after-direct.txt'), 'still served directly')) && (await fileIs(join(server.init.folder, 'after-hub.txt'), 'still served through the hub')), 'both devices to sync after the fuzzing')
    expect(server.state).toBe('running')
    // The API and its status page still answer.
    expect((await fetch(api.statusUrl as string)).status).toBe(200)
    recordOutcome({
      group: 'hostile input',
      what: 'malformed unauthenticated requests at a listener, a hub and an API (request lines, targets, encodings, headers, bodies, cut connections)',
      injected: thrown,
      survived: thrown,
      dataLost: 0,
      note: [...answers].sort().map(([kind, count]) => `${count} ${kind}`).join(', '),
    })
  })
})
