import { createServer, connect, type Server, type Socket } from 'node:net'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import {
  acceptSecureChannel,
  channelFromStream,
  createMemoryChannelPair,
  Identity,
  initiateSecureChannel,
  isEncryptedMessagingError,
  ReplayGuard,
  type MessageChannel,
  type SecureChannel,
} from '../src/index.js'

const alice = Identity.generate().identity
const bob = Identity.generate().identity
const mallory = Identity.generate().identity

function codeOf(error: unknown): string {
  if (isEncryptedMessagingError(error)) return error.code
  if ((error as Error)?.name === 'AbortError') return 'AbortError'
  throw error
}

async function outcome(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'ok'
  } catch (error) {
    return codeOf(error)
  }
}

/** The channel, or the error code it failed with. */
async function settle(promise: Promise<SecureChannel>): Promise<SecureChannel | string> {
  try {
    return await promise
  } catch (error) {
    return codeOf(error)
  }
}

async function readAll(channel: MessageChannel): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const message of channel) out.push(message)
  return out
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff
  return out
}

type Mutate = (direction: 'toResponder' | 'toInitiator', index: number, message: Uint8Array) => Uint8Array[] | undefined

/** A man in the middle between two memory pairs; `mutate` may change, drop, add or reorder messages. */
function relay(mutate?: Mutate): { initiatorSide: MessageChannel; responderSide: MessageChannel; log: { toResponder: Uint8Array[]; toInitiator: Uint8Array[] } } {
  const [initiatorSide, fromInitiator] = createMemoryChannelPair()
  const [toResponder, responderSide] = createMemoryChannelPair()
  const log = { toResponder: [] as Uint8Array[], toInitiator: [] as Uint8Array[] }
  const pump = async (from: MessageChannel, to: MessageChannel, direction: 'toResponder' | 'toInitiator') => {
    let index = 0
    try {
      for await (const message of from) {
        log[direction].push(message)
        for (const out of mutate?.(direction, index++, message) ?? [message]) await to.send(out)
      }
      await to.close()
    } catch (error) {
      await to.close(error as Error)
    }
  }
  void pump(fromInitiator, toResponder, 'toResponder')
  void pump(toResponder, fromInitiator, 'toInitiator')
  return { initiatorSide, responderSide, log }
}

async function connectPair(
  initiatorOptions: Partial<Parameters<typeof initiateSecureChannel>[1]> = {},
  responderOptions: Partial<Parameters<typeof acceptSecureChannel>[1]> = {},
  channels: [MessageChannel, MessageChannel] = createMemoryChannelPair(),
): Promise<[SecureChannel, SecureChannel]> {
  const [a, b] = channels
  return Promise.all([
    initiateSecureChannel(a, { identity: alice, remotePublicKey: bob.publicId, ...initiatorOptions }),
    acceptSecureChannel(b, { identity: bob, ...responderOptions }),
  ])
}

describe('secure channel over a memory pair', () => {
  it('IK: both sides prove their keys, messages of any size cross both ways', async () => {
    const [client, server] = await connectPair()
    expect(client.remotePublicId).toBe(bob.publicId)
    expect(server.remotePublicId).toBe(alice.publicId)
    expect(client.handshakeHash).toEqual(server.handshakeHash)
    const big = pattern(5 * 1024 * 1024 + 3, 1)
    const received = readAll(server)
    await client.send(new Uint8Array(0))
    await client.send(new TextEncoder().encode('hello'))
    await client.send(big)
    await client.close()
    const messages = await received
    expect(messages.map((m) => m.length)).toEqual([0, 5, big.length])
    expect(Buffer.from(messages[2] as Uint8Array).equals(Buffer.from(big))).toBe(true)
    expect(await server.closed).toBeUndefined()
    expect(await client.closed).toBeUndefined()
  })

  it('XX: the initiator learns the responder key; SHA256 suite works too', async () => {
    for (const hash of ['BLAKE2b', 'SHA256'] as const) {
      const [client, server] = await connectPair({ remotePublicKey: undefined, hash } as never, {})
      expect(client.remotePublicKey).toEqual(bob.publicKey)
      expect(server.remotePublicKey).toEqual(alice.publicKey)
      const echo = (async () => {
        for await (const message of server) await server.send(message)
      })()
      const replies = client[Symbol.asyncIterator]()
      await client.send(pattern(70_000, 2))
      expect(((await replies.next()).value as Uint8Array).length).toBe(70_000)
      await client.close()
      await echo
    }
  })

  it('rekeys every interval on both sides (a mismatch breaks the session)', async () => {
    const [client, server] = await connectPair({ rekeyInterval: 4 }, { rekeyInterval: 4 })
    const received = readAll(server)
    for (let i = 0; i < 50; i++) await client.send(pattern(100, i))
    await client.close()
    expect((await received).length).toBe(50)
    const [c2, s2] = await connectPair({ rekeyInterval: 4 }, { rekeyInterval: 8 })
    const failed = outcome(readAll(s2))
    for (let i = 0; i < 6; i++) await c2.send(pattern(10, i)).catch(() => {})
    expect(await failed).toBe('ERR_BAD_FRAME')
  })

  it('an impostor holding another key cannot answer an IK handshake', async () => {
    const [a, b] = createMemoryChannelPair()
    const [client, impostor] = await Promise.all([
      outcome(initiateSecureChannel(a, { identity: alice, remotePublicKey: bob.publicKey, timeoutMs: 2000 })),
      outcome(acceptSecureChannel(b, { identity: mallory, timeoutMs: 2000 })),
    ])
    expect(client).toBe('ERR_HANDSHAKE_FAILED')
    expect(impostor).toBe('ERR_HANDSHAKE_FAILED')
  })

  it('XX to an unexpected key is visible: the initiator sees who answered', async () => {
    const [a, b] = createMemoryChannelPair()
    const [client] = await Promise.all([initiateSecureChannel(a, { identity: alice }), acceptSecureChannel(b, { identity: mallory })])
    expect(client.remotePublicId).toBe(mallory.publicId)
    await client.close()
  })

  it.each([
    ['IK', 'toResponder', 0],
    ['IK', 'toInitiator', 0],
    ['XX', 'toResponder', 0],
    ['XX', 'toInitiator', 0],
    ['XX', 'toResponder', 1],
  ] as const)('%s: a flipped bit in handshake message (%s #%i) fails the handshake', async (kind, direction, index) => {
    for (const position of [0, 1, 40, -1]) {
      const { initiatorSide, responderSide } = relay((d, i, message) => {
        if (d !== direction || i !== index) return undefined
        const copy = message.slice()
        const at = position < 0 ? copy.length + position : Math.min(position, copy.length - 1)
        copy[at] = (copy[at] ?? 0) ^ 0x01
        return [copy]
      })
      const results = await Promise.all([
        settle(initiateSecureChannel(initiatorSide, { identity: alice, timeoutMs: 1500, ...(kind === 'IK' ? { remotePublicKey: bob.publicKey } : {}) })),
        settle(acceptSecureChannel(responderSide, { identity: bob, timeoutMs: 1500 })),
      ])
      // The side that reads the tampered message fails. The other side may already have
      // finished its part (IK responder after message 2, XX initiator after message 3):
      // then its session ends at once with an error and never delivers a message.
      const reader = direction === 'toResponder' ? 1 : 0
      expect(results[reader], `${kind} ${direction} #${index} byte ${position}`).toMatch(/^ERR_HANDSHAKE_(FAILED|TIMEOUT)$/)
      const other = results[1 - reader] as string | SecureChannel
      if (typeof other !== 'string') {
        expect(await outcome(readAll(other))).not.toBe('ok')
        expect(await other.closed).toBeInstanceOf(Error)
      } else {
        expect(other).toMatch(/^ERR_HANDSHAKE_(FAILED|TIMEOUT)$/)
      }
    }
  })

  it('a downgrade (IK first message relabelled as XX) fails', async () => {
    const { initiatorSide, responderSide } = relay((d, i, message) => {
      if (d !== 'toResponder' || i !== 0) return undefined
      const copy = message.slice()
      copy[0] = 2
      return [copy]
    })
    const results = await Promise.all([
      outcome(initiateSecureChannel(initiatorSide, { identity: alice, remotePublicKey: bob.publicKey, timeoutMs: 1500 })),
      outcome(acceptSecureChannel(responderSide, { identity: bob, timeoutMs: 1500 })),
    ])
    expect(results).not.toContain('ok')
  })

  it('a replayed IK first message is refused by the replay guard', async () => {
    const guard = new ReplayGuard()
    const { initiatorSide, responderSide, log } = relay()
    const [client, server] = await connectPair({}, { replayGuard: guard }, [initiatorSide, responderSide])
    await client.close()
    await readAll(server)
    const captured = log.toResponder[0] as Uint8Array
    const [attacker, victim] = createMemoryChannelPair()
    const accepted = outcome(acceptSecureChannel(victim, { identity: bob, replayGuard: guard, timeoutMs: 1000 }))
    await attacker.send(captured)
    expect(await accepted).toBe('ERR_REPLAYED_HANDSHAKE')
    // A fresh handshake from the same key is still welcome.
    const [c2, s2] = await connectPair({}, { replayGuard: guard })
    await c2.close()
    await readAll(s2)
    expect(guard.size).toBe(1)
  })

  it('refuses an unauthorized initiator on both sides with ERR_PEER_REJECTED', async () => {
    const [a, b] = createMemoryChannelPair()
    const seen: string[] = []
    const [client, server] = await Promise.all([
      initiateSecureChannel(a, { identity: alice, remotePublicKey: bob.publicKey }),
      outcome(acceptSecureChannel(b, { identity: bob, authorize: (_key, id) => (seen.push(id), false) })),
    ])
    expect(server).toBe('ERR_PEER_REJECTED')
    expect(seen).toEqual([alice.publicId])
    expect(await outcome(readAll(client))).toBe('ERR_PEER_REJECTED')
  })

  it.each([
    ['flipped', (message: Uint8Array) => { const c = message.slice(); c[5] = (c[5] ?? 0) ^ 1; return [c] }],
    ['replayed', (message: Uint8Array) => [message, message]],
    ['dropped', () => []],
    ['truncated', (message: Uint8Array) => [message.subarray(0, message.length - 1)]],
  ] as const)('a %s transport frame closes that session with ERR_BAD_FRAME; another session goes on', async (_name, attack) => {
    let attacked = false
    const { initiatorSide, responderSide } = relay((direction, index, message) => {
      // Handshake: one message each way (IK). Attack the second transport frame.
      if (direction === 'toResponder' && index === 2 && !attacked) {
        attacked = true
        return attack(message)
      }
      return undefined
    })
    const [client, server] = await connectPair({}, {}, [initiatorSide, responderSide])
    const [other, otherServer] = await connectPair()
    const received = outcome(readAll(server))
    const otherReceived = readAll(otherServer)
    await client.send(pattern(10, 1))
    await client.send(pattern(10, 2)).catch(() => {})
    await client.send(pattern(10, 3)).catch(() => {})
    expect(await received).toBe('ERR_BAD_FRAME')
    expect(await server.closed).toMatchObject({ code: 'ERR_BAD_FRAME' })
    await other.send(pattern(10, 9))
    await other.close()
    expect((await otherReceived).length).toBe(1)
  })

  it('reordered frames fail', async () => {
    let held: Uint8Array | undefined
    const { initiatorSide, responderSide } = relay((direction, index, message) => {
      if (direction !== 'toResponder' || index < 1) return undefined
      if (index === 1) {
        held = message
        return []
      }
      if (index === 2) return [message, held as Uint8Array]
      return undefined
    })
    const [client, server] = await connectPair({}, {}, [initiatorSide, responderSide])
    const received = outcome(readAll(server))
    await client.send(pattern(10, 1))
    await client.send(pattern(10, 2))
    expect(await received).toBe('ERR_BAD_FRAME')
  })

  it('refuses oversized frames and messages', async () => {
    // A raw frame over the Noise maximum.
    const { initiatorSide, responderSide } = relay((direction, index, message) => (direction === 'toResponder' && index === 1 ? [new Uint8Array(70_000)] : undefined))
    const [client, server] = await connectPair({}, {}, [initiatorSide, responderSide])
    const received = outcome(readAll(server))
    await client.send(pattern(10, 1))
    expect(await received).toBe('ERR_FRAME_TOO_LARGE')
    // A message over the receiver's limit, from a peer that allows more.
    const [big, small] = await connectPair({ maxMessageSize: 1024 * 1024 }, { maxMessageSize: 100_000 })
    const smallReceived = outcome(readAll(small))
    await big.send(pattern(200_000, 3)).catch(() => {})
    expect(await smallReceived).toBe('ERR_MESSAGE_TOO_LARGE')
    // Sending over one's own limit is refused locally and the session stays usable.
    const [c, s] = await connectPair({ maxMessageSize: 1000 })
    expect(await outcome(c.send(new Uint8Array(1001)))).toBe('ERR_MESSAGE_TOO_LARGE')
    const got = readAll(s)
    await c.send(new Uint8Array(1000))
    await c.close()
    expect((await got).length).toBe(1)
  })

  it('times out a silent peer and honours an abort signal', async () => {
    const [a] = createMemoryChannelPair()
    expect(await outcome(initiateSecureChannel(a, { identity: alice, remotePublicKey: bob.publicKey, timeoutMs: 100 }))).toBe('ERR_HANDSHAKE_TIMEOUT')
    const [, b] = createMemoryChannelPair()
    expect(await outcome(acceptSecureChannel(b, { identity: bob, timeoutMs: 100 }))).toBe('ERR_HANDSHAKE_TIMEOUT')
    const controller = new AbortController()
    const [c] = createMemoryChannelPair()
    const pending = outcome(initiateSecureChannel(c, { identity: alice, remotePublicKey: bob.publicKey, signal: controller.signal }))
    controller.abort()
    expect(await pending).toBe('AbortError')
  })

  it('never fails with anything but a typed error on random first messages or frames (fuzz)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        const [a, b] = createMemoryChannelPair()
        const accepted = outcome(acceptSecureChannel(b, { identity: bob, timeoutMs: 500 }))
        await a.send(bytes)
        await a.close()
        expect(await accepted).toMatch(/^ERR_(HANDSHAKE_FAILED|HANDSHAKE_TIMEOUT)$/)
      }),
      { numRuns: 100 },
    )
    // Random frames injected on the raw channel under an established session.
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 3 }), async (frames) => {
        const [a, b] = createMemoryChannelPair()
        const [, server] = await connectPair({}, {}, [a, b])
        const received = outcome(readAll(server))
        for (const frame of frames) await a.send(frame).catch(() => {})
        expect(await received).toMatch(/^ERR_(BAD_FRAME|FRAME_TOO_LARGE)$/)
      }),
      { numRuns: 50 },
    )
  })
})

describe('secure channel over TCP loopback', () => {
  const cleanup: (() => Promise<void> | void)[] = []
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step()
  })

  async function listen(onSocket: (socket: Socket) => void): Promise<number> {
    const server: Server = createServer(onSocket)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
    return (server.address() as { port: number }).port
  }

  async function dial(port: number): Promise<Socket> {
    const socket = connect(port, '127.0.0.1')
    cleanup.push(() => void socket.destroy())
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
    return socket
  }

  it('carries an echo of large messages with backpressure, and closes cleanly', async () => {
    const served = new Promise<void>((resolve, reject) => {
      void listen(async (socket) => {
        cleanup.push(() => void socket.destroy())
        try {
          const channel = await acceptSecureChannel(channelFromStream(socket), { identity: bob })
          for await (const message of channel) await channel.send(message)
          resolve()
        } catch (error) {
          reject(error)
        }
      }).then((port) => portReady(port))
    })
    let portReady!: (port: number) => void
    const port = await new Promise<number>((resolve) => {
      portReady = resolve
    })
    const client = await initiateSecureChannel(channelFromStream(await dial(port)), { identity: alice, remotePublicKey: bob.publicId })
    const replies = client[Symbol.asyncIterator]()
    for (const size of [1, 65_518, 65_519, 3 * 1024 * 1024]) {
      const message = pattern(size, size)
      await client.send(message)
      const reply = (await replies.next()).value as Uint8Array
      expect(Buffer.from(reply).equals(Buffer.from(message))).toBe(true)
    }
    await client.close()
    await served
  })

  it('a length prefix over the limit closes the connection with ERR_FRAME_TOO_LARGE', async () => {
    let serverChannel: MessageChannel | undefined
    const port = await listen((socket) => {
      cleanup.push(() => void socket.destroy())
      serverChannel = channelFromStream(socket, { maxMessageSize: 1024 })
    })
    const socket = await dial(port)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(5000)
    socket.write(header)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await serverChannel?.closed).toMatchObject({ code: 'ERR_FRAME_TOO_LARGE' })
  })
})
