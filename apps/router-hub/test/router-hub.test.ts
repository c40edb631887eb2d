import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { Identity, encodePublicId } from '@cloudbox/encrypted-messaging'
import { HubCloseCodes, hubCodec, signRegistration } from '@cloudbox/encrypted-messaging/hub'
import { RouterHub } from '../src/index.js'

let hubs: RouterHub[] = []
const sockets: WebSocket[] = []
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.terminate()
  for (const hub of hubs.splice(0)) await hub.stop()
})

async function startHub(options: ConstructorParameters<typeof RouterHub>[0] = {}) {
  const hub = new RouterHub(options)
  await hub.start()
  hubs.push(hub)
  return hub
}

function open(url: string): Promise<{ socket: WebSocket; messages: Buffer[]; closed: Promise<{ code: number; reason: string }> }> {
  const socket = new WebSocket(url)
  sockets.push(socket)
  const messages: Buffer[] = []
  socket.on('message', (data: Buffer) => messages.push(data))
  socket.on('error', () => {})
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve({ socket, messages, closed }))
    socket.once('unexpected-response', (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)))
  })
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  if (!check()) throw new Error('condition not met')
}

/** Registers `identity` as a node; returns its control socket and the announced routes. */
async function register(hub: RouterHub, identity: Identity) {
  const node = await open(`${hub.url}/v1/node`)
  await until(() => node.messages.length >= 1)
  const challenge = hubCodec.decode(node.messages[0] as Buffer)
  if (challenge.kind !== 'challenge') throw new Error('expected a challenge')
  node.socket.send(hubCodec.encode('register', signRegistration(identity, challenge.body.nonce, hub.url)))
  await until(() => node.messages.length >= 2)
  expect(hubCodec.decode(node.messages[1] as Buffer)).toEqual({ kind: 'registered', body: { id: identity.publicId } })
  return node
}

/** The node's side of the route announced in its `index`-th control message. */
async function acceptRoute(hub: RouterHub, node: Awaited<ReturnType<typeof open>>, index: number) {
  await until(() => node.messages.length > index)
  const incoming = hubCodec.decode(node.messages[index] as Buffer)
  if (incoming.kind !== 'incoming') throw new Error('expected incoming')
  return open(`${hub.url}/v1/accept/${incoming.body.route}?token=${Buffer.from(incoming.body.token).toString('hex')}`)
}

describe('RouterHub', () => {
  it('registers a node that signs the challenge and relays a route both ways, unread', async () => {
    const hub = await startHub()
    const identity = Identity.generate().identity
    const node = await register(hub, identity)
    expect(hub.hasNode(identity.publicId)).toBe(true)
    const client = await open(`${hub.url}/v1/route/${identity.publicId}`)
    client.socket.send(Buffer.from('before accept'))
    const accept = await acceptRoute(hub, node, 2)
    await until(() => accept.messages.length >= 1)
    expect(accept.messages[0]?.toString()).toBe('before accept')
    accept.socket.send(Buffer.from('answer'))
    await until(() => client.messages.length >= 1)
    expect(client.messages[0]?.toString()).toBe('answer')
    expect(hub.metrics.routesOpen).toBe(1)
    accept.socket.close(1000)
    expect((await client.closed).code).toBe(1000)
    const metrics = await (await fetch(`http://127.0.0.1:${hub.address.port}/metrics`)).text()
    expect(metrics).toMatch(/cloudbox_hub_relayed_bytes_total 19/)
    expect(await (await fetch(`http://127.0.0.1:${hub.address.port}/health`)).json()).toMatchObject({ status: 'ok', nodes: 1 })
  })

  it('passes pings, pongs and close codes end to end', async () => {
    const hub = await startHub()
    const identity = Identity.generate().identity
    const node = await register(hub, identity)
    const client = await open(`${hub.url}/v1/route/${identity.publicId}`)
    const accept = await acceptRoute(hub, node, 2)
    // The node's WebSocket answers the client's ping; the pong comes back through the hub.
    const pong = new Promise<Buffer>((resolve) => client.socket.once('pong', resolve))
    client.socket.ping(Buffer.from('are you there'))
    expect((await pong).toString()).toBe('are you there')
    const big = Buffer.alloc(200_000, 3)
    client.socket.send(big.subarray(0, 65_536))
    await until(() => accept.messages.length >= 1)
    expect(accept.messages[0]?.equals(big.subarray(0, 65_536))).toBe(true)
    client.socket.close(4321, 'bye')
    expect(await accept.closed).toEqual({ code: 4321, reason: 'bye' })
    expect((await client.closed).code).toBe(4321)
    await until(() => hub.metrics.routesOpen === 0 && hub.metrics.connections === 1)
  })

  it('carries API calls to a registered node, and answers for it when it is offline, silent or broken', async () => {
    const hub = await startHub({ setupTimeoutMs: 300 })
    const http = `http://127.0.0.1:${hub.address.port}`
    const call = (id: string, body: Buffer) => fetch(`${http}/n/${id}/api/v1/api`, { method: 'POST', headers: { 'content-type': 'application/vnd.cloudbox.api-request' }, body })
    const offline = await call(Identity.generate().identity.publicId, Buffer.from('x'))
    expect([offline.status, ((await offline.json()) as { code: string }).code]).toEqual([404, 'ERR_NODE_OFFLINE'])

    const identity = Identity.generate().identity
    const node = await register(hub, identity)
    // A node that never accepts: the caller gets a timeout, not a hang.
    const silent = await call(identity.publicId, Buffer.from('ignored'))
    expect([silent.status, ((await silent.json()) as { code: string }).code]).toEqual([504, 'ERR_TIMEOUT'])

    // A node that accepts, reads the sealed bytes as they were sent, and answers.
    const answering = call(identity.publicId, Buffer.from('sealed request'))
    await until(() => node.messages.length >= 4)
    const announced = hubCodec.decode(node.messages[3] as Buffer)
    if (announced.kind !== 'incoming') throw new Error('expected incoming')
    expect(announced.body.kind).toBe(1)
    const accept = await acceptRoute(hub, node, 3)
    await until(() => accept.messages.length >= 1)
    expect(accept.messages[0]?.toString()).toBe('sealed request')
    accept.socket.send(Buffer.concat([Buffer.from([0, 200, 0]), Buffer.from('sealed answer')]))
    const answered = await answering
    expect(answered.status).toBe(200)
    expect(answered.headers.get('content-type')).toBe('application/vnd.cloudbox.api-response')
    expect(await answered.text()).toBe('sealed answer')

    // A node that answers garbage: 502, and the hub goes on.
    const broken = call(identity.publicId, Buffer.from('again'))
    const badAccept = await acceptRoute(hub, node, 4)
    await until(() => badAccept.messages.length >= 1)
    badAccept.socket.send(Buffer.from([9]))
    expect((await broken).status).toBe(502)
    expect(hub.hasNode(identity.publicId)).toBe(true)
  })

  it('refuses a registration for a key the node does not hold', async () => {
    const hub = await startHub()
    const victim = Identity.generate().identity
    const attacker = Identity.generate().identity
    const node = await open(`${hub.url}/v1/node`)
    await until(() => node.messages.length >= 1)
    const challenge = hubCodec.decode(node.messages[0] as Buffer)
    if (challenge.kind !== 'challenge') throw new Error('expected a challenge')
    const forged = { publicKey: victim.publicKey, signature: signRegistration(attacker, challenge.body.nonce, hub.url).signature }
    node.socket.send(hubCodec.encode('register', forged))
    expect((await node.closed).code).toBe(HubCloseCodes.REGISTRATION_FAILED)
    expect(hub.hasNode(victim.publicId)).toBe(false)
    // A signature over an old challenge does not work on a new one either.
    const again = await open(`${hub.url}/v1/node`)
    await until(() => again.messages.length >= 1)
    again.socket.send(hubCodec.encode('register', signRegistration(victim, challenge.body.nonce, hub.url)))
    expect((await again.closed).code).toBe(HubCloseCodes.REGISTRATION_FAILED)
    expect(hub.metrics.registrationsFailed).toBe(2)
  })

  it('closes malformed control messages, text frames, wrong tokens and offline targets', async () => {
    const hub = await startHub({ maxFrameSize: 1024 })
    const garbage = await open(`${hub.url}/v1/node`)
    garbage.socket.send(Buffer.from([0xff, 0x00, 0x13]))
    expect((await garbage.closed).code).toBe(HubCloseCodes.BAD_MESSAGE)
    const offline = await open(`${hub.url}/v1/route/${Identity.generate().identity.publicId}`)
    expect((await offline.closed).code).toBe(HubCloseCodes.NODE_OFFLINE)
    const notAnId = await open(`${hub.url}/v1/route/hello`)
    expect((await notAnId.closed).code).toBe(HubCloseCodes.BAD_MESSAGE)
    const badToken = await open(`${hub.url}/v1/accept/1?token=${'00'.repeat(16)}`)
    expect((await badToken.closed).code).toBe(HubCloseCodes.BAD_MESSAGE)
    await expect(open(`${hub.url}/elsewhere`)).rejects.toThrow('HTTP 404')

    const identity = Identity.generate().identity
    const node = await register(hub, identity)
    const client = await open(`${hub.url}/v1/route/${identity.publicId}`)
    const accept = await acceptRoute(hub, node, 2)
    // Text frames are refused on routes; oversized frames close the sender.
    client.socket.send('text')
    expect((await accept.closed).code).toBe(HubCloseCodes.BAD_MESSAGE)
    const client2 = await open(`${hub.url}/v1/route/${identity.publicId}`)
    const accept2 = await acceptRoute(hub, node, 3)
    client2.socket.send(Buffer.alloc(2048))
    expect((await client2.closed).code).toBe(HubCloseCodes.BAD_MESSAGE)
    expect((await accept2.closed).code).toBe(HubCloseCodes.BAD_MESSAGE)
    // The node's registration is untouched by its routes' failures.
    expect(hub.hasNode(identity.publicId)).toBe(true)
  })

  it('enforces per-address, per-node and set-up limits', async () => {
    const hub = await startHub({ maxConnectionsPerAddress: 3, maxRoutesPerNode: 1, setupTimeoutMs: 200 })
    const identity = Identity.generate().identity
    await register(hub, identity)
    const first = await open(`${hub.url}/v1/route/${identity.publicId}`)
    const second = await open(`${hub.url}/v1/route/${identity.publicId}`)
    expect((await second.closed).code).toBe(HubCloseCodes.LIMIT)
    // The node never accepts the first route: it times out.
    expect((await first.closed).code).toBe(HubCloseCodes.TIMEOUT)
    const a = await open(`${hub.url}/v1/node`)
    const b = await open(`${hub.url}/v1/node`)
    await expect(open(`${hub.url}/v1/node`)).rejects.toThrow('HTTP 429')
    expect((await a.closed).code).toBe(HubCloseCodes.TIMEOUT)
    await b.closed
    expect(encodePublicId(identity.publicKey)).toBe(identity.publicId)
  })

  it('a newer registration of the same node replaces the older one', async () => {
    const hub = await startHub()
    const identity = Identity.generate().identity
    const old = await register(hub, identity)
    await register(hub, identity)
    expect((await old.closed).code).toBe(HubCloseCodes.REPLACED)
    expect(hub.hasNode(identity.publicId)).toBe(true)
  })
})
