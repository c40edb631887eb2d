import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { tai64nNow, tai64nToMillis } from '../src/channel/replay-guard.js'
import { codeOf, outcome, readAll, socketPair } from './support/channels.js'
import {
  acceptSecureChannel,
  channelFromStream,
  createMemoryChannelPair,
  Identity,
  initiateSecureChannel,
  ReplayGuard,
  type MessageChannel,
  type SecureChannel,
} from '../src/index.js'

const alice = Identity.generate().identity
const bob = Identity.generate().identity
const mallory = Identity.generate().identity

const cleanup: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step()
})

/** The channel, or the error code it failed with. */
async function settle(promise: Promise<SecureChannel>): Promise<SecureChannel | string> {
  try {
    return await promise
  } catch (error) {
    return codeOf(error)
  }
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff
  return out
}

const same = (a: Uint8Array | undefined, b: Uint8Array) => a !== undefined && Buffer.from(a).equals(Buffer.from(b))

type RawPair = () => Promise<[MessageChannel, MessageChannel]>

const memoryPair: RawPair = async () => createMemoryChannelPair()

/** Two message channels over a real TCP loopback connection (length-prefixed). */
const tcpPair: RawPair = async () => {
  const [client, server] = await socketPair(cleanup)
  return [channelFromStream(client), channelFromStream(server)]
}

type Direction = 'toResponder' | 'toInitiator'
type Mutate = (direction: Direction, index: number, message: Uint8Array) => Uint8Array[] | undefined

/** A man in the middle between two raw pairs; `mutate` may change, drop, add or reorder messages. */
async function relay(rawPair: RawPair, mutate?: Mutate): Promise<{ initiatorSide: MessageChannel; responderSide: MessageChannel; log: Record<Direction, Uint8Array[]> }> {
  const [initiatorSide, fromInitiator] = await rawPair()
  const [toResponder, responderSide] = await rawPair()
  const log = { toResponder: [] as Uint8Array[], toInitiator: [] as Uint8Array[] }
  const pump = async (from: MessageChannel, to: MessageChannel, direction: Direction) => {
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

type InitiateOptions = Parameters<typeof initiateSecureChannel>[1]
type AcceptOptions = Parameters<typeof acceptSecureChannel>[1]

async function connectPair(
  channels: [MessageChannel, MessageChannel],
  initiatorOptions: Partial<InitiateOptions> = {},
  responderOptions: Partial<AcceptOptions> = {},
): Promise<[SecureChannel, SecureChannel]> {
  const [a, b] = channels
  return Promise.all([
    initiateSecureChannel(a, { identity: alice, remotePublicKey: bob.publicId, ...initiatorOptions }),
    acceptSecureChannel(b, { identity: bob, ...responderOptions }),
  ])
}

const flipAt = (message: Uint8Array, at: number) => {
  const copy = new Uint8Array(message)
  copy[at] = (copy[at] as number) ^ 0x01
  return copy
}

describe.each([
  ['memory pair', memoryPair, true],
  ['TCP loopback', tcpPair, false],
] as const)('secure channel over %s', (_name, rawPair, exhaustive) => {
  it('IK with Identity objects: both sides proven, messages of any size (5 MiB fragmented) both ways, clean close', async () => {
    const [client, server] = await connectPair(await rawPair())
    expect(client.remotePublicId).toBe(bob.publicId)
    expect(server.remotePublicId).toBe(alice.publicId)
    expect(client.remotePublicKey).toEqual(bob.publicKey)
    expect(client.handshakeHash).toEqual(server.handshakeHash)
    const big = pattern(5 * 1024 * 1024 + 3, 1)
    const received = readAll(server)
    await client.send(new Uint8Array(0))
    await client.send(new TextEncoder().encode('hello'))
    await client.send(big)
    await client.close()
    const messages = await received
    expect(messages.map((m) => m.length)).toEqual([0, 5, big.length])
    expect(same(messages[2], big)).toBe(true)
    expect(await server.closed).toBeUndefined()
    expect(await client.closed).toBeUndefined()
    expect(await outcome(client.send(new Uint8Array(1)))).toBe('ERR_CHANNEL_CLOSED')
  })

  it('sends parts as one message, frames cut across them, as the bytes joined would be', async () => {
    const [client, server] = await connectPair(await rawPair())
    const big = pattern(200_000, 3)
    // Parts that end inside frames, empty parts, one part longer than a frame, and a message of empty parts.
    const messages = [
      [big.subarray(0, 10), new Uint8Array(0), big.subarray(10, 70_000), big.subarray(70_000)],
      [new Uint8Array(0), new Uint8Array(0)],
      [Uint8Array.of(1), big.subarray(0, 65_517), Uint8Array.of(2)],
    ]
    const received = readAll(server)
    for (const parts of messages) await client.sendParts(parts)
    await client.close()
    expect((await received).map((message) => Buffer.from(message).toString('hex'))).toEqual(messages.map((parts) => Buffer.concat(parts).toString('hex')))
    expect(await outcome(client.sendParts([new Uint8Array(1)]))).toBe('ERR_CHANNEL_CLOSED')
  })

  it('IK from a recovery phrase identity, the peer given as raw Ed25519 key; echo both ways', async () => {
    const restored = Identity.fromRecoveryPhrase(Identity.generate().recoveryPhrase)
    const [a, b] = await rawPair()
    const [client, server] = await Promise.all([
      initiateSecureChannel(a, { identity: restored, remotePublicKey: bob.publicKey }),
      acceptSecureChannel(b, { identity: bob }),
    ])
    expect(server.remotePublicId).toBe(restored.publicId)
    const echo = (async () => {
      for await (const message of server) await server.send(message)
    })()
    const replies = client[Symbol.asyncIterator]()
    for (const size of [1, 65_518, 65_519, 1024 * 1024]) {
      const message = pattern(size, size)
      await client.send(message)
      expect(same((await replies.next()).value as Uint8Array, message)).toBe(true)
    }
    await client.close()
    await echo
  })

  it('XX: neither knows the other; each learns the proven key (BLAKE2b and SHA256)', async () => {
    for (const hash of ['BLAKE2b', 'SHA256'] as const) {
      const [client, server] = await connectPair(await rawPair(), { remotePublicKey: undefined, hash } as never)
      expect(client.remotePublicKey).toEqual(bob.publicKey)
      expect(server.remotePublicKey).toEqual(alice.publicKey)
      expect(client.handshakeHash).toEqual(server.handshakeHash)
      const echo = (async () => {
        for await (const message of server) await server.send(message)
      })()
      const replies = client[Symbol.asyncIterator]()
      await client.send(pattern(200_000, 2))
      expect(same((await replies.next()).value as Uint8Array, pattern(200_000, 2))).toBe(true)
      await client.close()
      await echo
    }
  })

  it('many small messages cross the rekey boundary many times, both ways (interval 4)', async () => {
    const [client, server] = await connectPair(await rawPair(), { rekeyInterval: 4 }, { rekeyInterval: 4 })
    const echo = (async () => {
      for await (const message of server) await server.send(message)
    })()
    const replies = client[Symbol.asyncIterator]()
    for (let i = 0; i < 50; i++) {
      await client.send(pattern(100, i))
      expect(same((await replies.next()).value as Uint8Array, pattern(100, i))).toBe(true)
    }
    // Multi-fragment messages advance the frame count by several at once.
    await client.send(pattern(300_000, 7))
    expect(same((await replies.next()).value as Uint8Array, pattern(300_000, 7))).toBe(true)
    await client.close()
    await echo
    // A side that rekeys at another point cannot read past it.
    const [c2, s2] = await connectPair(await rawPair(), { rekeyInterval: 4 }, { rekeyInterval: 8 })
    const failed = outcome(readAll(s2))
    for (let i = 0; i < 6; i++) await c2.send(pattern(10, i)).catch(() => {})
    expect(await failed).toBe('ERR_BAD_FRAME')
  })

  it('an impostor holding another key cannot answer an IK handshake', async () => {
    const [a, b] = await rawPair()
    const [client, impostor] = await Promise.all([
      outcome(initiateSecureChannel(a, { identity: alice, remotePublicKey: bob.publicKey, timeoutMs: 2000 })),
      outcome(acceptSecureChannel(b, { identity: mallory, timeoutMs: 2000 })),
    ])
    expect(client).toBe('ERR_HANDSHAKE_FAILED')
    expect(impostor).toBe('ERR_HANDSHAKE_FAILED')
  })

  it('XX to an unexpected key is visible: the initiator sees who answered', async () => {
    const [a, b] = await rawPair()
    const [client, server] = await Promise.all([initiateSecureChannel(a, { identity: alice }), acceptSecureChannel(b, { identity: mallory })])
    expect(client.remotePublicId).toBe(mallory.publicId)
    await client.close()
    await readAll(server)
  })

  it.each([
    ['IK', 'toResponder', 0],
    ['IK', 'toInitiator', 0],
    ['XX', 'toResponder', 0],
    ['XX', 'toInitiator', 0],
    ['XX', 'toResponder', 1],
  ] as const)('%s: a tampered byte anywhere in handshake message (%s #%i) fails the handshake', async (kind, direction, index) => {
    // The length of the message under attack, from one clean run.
    const probe = await relay(rawPair)
    const clean = await connectPair([probe.initiatorSide, probe.responderSide], kind === 'IK' ? {} : ({ remotePublicKey: undefined } as never))
    const length = (probe.log[direction][index] as Uint8Array).length
    await clean[0].close()
    await readAll(clean[1])
    const positions = exhaustive ? Array.from({ length }, (_, i) => i) : [...new Set([0, 1, 33, length - 17, length - 1])].filter((i) => i >= 0 && i < length)
    for (const position of positions) {
      const { initiatorSide, responderSide } = await relay(rawPair, (d, i, message) => (d === direction && i === index ? [flipAt(message, position)] : undefined))
      const results = await Promise.all([
        settle(initiateSecureChannel(initiatorSide, { identity: alice, timeoutMs: 2000, ...(kind === 'IK' ? { remotePublicKey: bob.publicKey } : {}) })),
        settle(acceptSecureChannel(responderSide, { identity: bob, timeoutMs: 2000 })),
      ])
      // The side that reads the tampered message fails. The other side may already have
      // finished its part (IK responder after message 2, XX initiator after message 3):
      // then its session fails at once and never delivers a message.
      const reader = direction === 'toResponder' ? 1 : 0
      expect(results[reader], `${kind} ${direction} #${index} byte ${position}`).toBe('ERR_HANDSHAKE_FAILED')
      const other = results[1 - reader] as string | SecureChannel
      if (typeof other !== 'string') {
        expect(await outcome(readAll(other))).not.toBe('ok')
        expect(await other.closed).toBeInstanceOf(Error)
      } else {
        expect(other).toBe('ERR_HANDSHAKE_FAILED')
      }
    }
  })

  it.each([
    [1, 2, 'IK relabelled XX'],
    [1, 3, 'IK BLAKE2b relabelled SHA256'],
    [2, 1, 'XX relabelled IK'],
    [2, 4, 'XX BLAKE2b relabelled SHA256'],
    [1, 0, 'unknown type 0'],
    [1, 255, 'unknown type 255'],
  ] as const)('a downgrade or relabelling of the type byte fails (%i → %i, %s)', async (from, to, _what) => {
    const { initiatorSide, responderSide } = await relay(rawPair, (d, i, message) => {
      if (d !== 'toResponder' || i !== 0) return undefined
      expect(message[0]).toBe(from)
      const copy = new Uint8Array(message)
      copy[0] = to
      return [copy]
    })
    const results = await Promise.all([
      outcome(initiateSecureChannel(initiatorSide, { identity: alice, timeoutMs: 2000, ...(from === 1 ? { remotePublicKey: bob.publicKey } : {}) })),
      outcome(acceptSecureChannel(responderSide, { identity: bob, timeoutMs: 2000 })),
    ])
    expect(results).toEqual(['ERR_HANDSHAKE_FAILED', 'ERR_HANDSHAKE_FAILED'])
  })

  it('a replayed IK first message is refused by the replay guard', async () => {
    const guard = new ReplayGuard()
    const { initiatorSide, responderSide, log } = await relay(rawPair)
    const [client, server] = await connectPair([initiatorSide, responderSide], {}, { replayGuard: guard })
    await client.close()
    await readAll(server)
    const captured = log.toResponder[0] as Uint8Array
    const [attacker, victim] = await rawPair()
    const accepted = outcome(acceptSecureChannel(victim, { identity: bob, replayGuard: guard, timeoutMs: 1000 }))
    await attacker.send(captured)
    expect(await accepted).toBe('ERR_REPLAYED_HANDSHAKE')
    // A fresh handshake from the same key is still welcome.
    const [c2, s2] = await connectPair(await rawPair(), {}, { replayGuard: guard })
    await c2.close()
    await readAll(s2)
    expect(guard.size).toBe(1)
  })

  it('authorize=false: ERR_PEER_REJECTED on the responder, and the initiator sees it too', async () => {
    const [a, b] = await rawPair()
    const seen: string[] = []
    const [client, server] = await Promise.all([
      initiateSecureChannel(a, { identity: alice, remotePublicKey: bob.publicKey }),
      outcome(acceptSecureChannel(b, { identity: bob, authorize: async (_key, id) => (seen.push(id), false) })),
    ])
    expect(server).toBe('ERR_PEER_REJECTED')
    expect(seen).toEqual([alice.publicId])
    expect(await outcome(readAll(client))).toBe('ERR_PEER_REJECTED')
    expect(await client.closed).toMatchObject({ code: 'ERR_PEER_REJECTED' })
    // XX: the initiator finished message 3 before the verdict; same result.
    const [c, d] = await rawPair()
    const [xxClient, xxServer] = await Promise.all([initiateSecureChannel(c, { identity: alice }), outcome(acceptSecureChannel(d, { identity: bob, authorize: () => false }))])
    expect(xxServer).toBe('ERR_PEER_REJECTED')
    expect(await outcome(readAll(xxClient))).toBe('ERR_PEER_REJECTED')
  })

  it.each([
    ['flipped', (message: Uint8Array) => [flipAt(message, 5)]],
    ['replayed', (message: Uint8Array) => [message, message]],
    ['dropped', () => []],
    ['truncated', (message: Uint8Array) => [message.subarray(0, message.length - 1)]],
    ['reordered', 'reorder'],
  ] as const)('a %s transport frame closes only that session with ERR_BAD_FRAME; a concurrent session goes on', async (_name, attack) => {
    let held: Uint8Array | undefined
    const { initiatorSide, responderSide } = await relay(rawPair, (direction, index, message) => {
      // Handshake: one message each way (IK). Attack the second transport frame.
      if (direction !== 'toResponder') return undefined
      if (attack === 'reorder') {
        if (index === 1) return ((held = message), [])
        if (index === 2) return [message, held as Uint8Array]
        return undefined
      }
      return index === 2 ? attack(message) : undefined
    })
    const [client, server] = await connectPair([initiatorSide, responderSide])
    const [other, otherServer] = await connectPair(await rawPair())
    const received: Uint8Array[] = []
    const failed = outcome((async () => {
      for await (const message of server) received.push(message)
    })())
    const otherReceived = readAll(otherServer)
    await client.send(pattern(10, 1))
    await client.send(pattern(10, 2)).catch(() => {})
    await client.send(pattern(10, 3)).catch(() => {})
    expect(await failed).toBe('ERR_BAD_FRAME')
    expect(await server.closed).toMatchObject({ code: 'ERR_BAD_FRAME' })
    // Nothing after the attack was delivered (a replayed frame is a copy of one that was).
    expect(received.length).toBeLessThanOrEqual(2)
    for (const [i, message] of received.entries()) expect(same(message, pattern(10, i + 1))).toBe(true)
    // The attacked session is over on the initiator's side too.
    expect(await client.closed).toBeInstanceOf(Error)
    await other.send(pattern(10, 9))
    await other.send(pattern(70_000, 9))
    await other.close()
    expect((await otherReceived).map((m) => m.length)).toEqual([10, 70_000])
  })

  it('refuses oversized frames and messages', async () => {
    // A raw frame over the Noise maximum.
    const { initiatorSide, responderSide } = await relay(rawPair, (direction, index) => (direction === 'toResponder' && index === 1 ? [new Uint8Array(70_000)] : undefined))
    const [client, server] = await connectPair([initiatorSide, responderSide])
    const received = outcome(readAll(server))
    await client.send(pattern(10, 1))
    expect(await received).toBe('ERR_FRAME_TOO_LARGE')
    // A message over the receiver's limit, from a peer that allows more.
    const [big, small] = await connectPair(await rawPair(), { maxMessageSize: 1024 * 1024 }, { maxMessageSize: 100_000 })
    const smallReceived = outcome(readAll(small))
    await big.send(pattern(200_000, 3)).catch(() => {})
    expect(await smallReceived).toBe('ERR_MESSAGE_TOO_LARGE')
    expect(await small.closed).toMatchObject({ code: 'ERR_MESSAGE_TOO_LARGE' })
    // Sending over one's own limit is refused locally and the session stays usable.
    const [c, s] = await connectPair(await rawPair(), { maxMessageSize: 1000 })
    expect(await outcome(c.send(new Uint8Array(1001)))).toBe('ERR_MESSAGE_TOO_LARGE')
    const got = readAll(s)
    await c.send(new Uint8Array(1000))
    await c.close()
    expect((await got).length).toBe(1)
  })

  it('times out a peer that never answers, and honours an abort signal', async () => {
    const [a, silent] = await rawPair()
    expect(await outcome(initiateSecureChannel(a, { identity: alice, remotePublicKey: bob.publicKey, timeoutMs: 100 }))).toBe('ERR_HANDSHAKE_TIMEOUT')
    await silent.closed
    const [, b] = await rawPair()
    expect(await outcome(acceptSecureChannel(b, { identity: bob, timeoutMs: 100 }))).toBe('ERR_HANDSHAKE_TIMEOUT')
    // XX responder waiting for message 3 that never comes.
    const [x, y] = await rawPair()
    const xx = outcome(acceptSecureChannel(y, { identity: bob, timeoutMs: 150 }))
    const iterator = x[Symbol.asyncIterator]()
    await x.send(new Uint8Array([2, ...new Uint8Array(32).fill(9)]))
    await iterator.next()
    expect(await xx).toBe('ERR_HANDSHAKE_TIMEOUT')
    const controller = new AbortController()
    const [c] = await rawPair()
    const pending = outcome(initiateSecureChannel(c, { identity: alice, remotePublicKey: bob.publicKey, signal: controller.signal }))
    controller.abort()
    expect(await pending).toBe('AbortError')
    expect(await outcome(acceptSecureChannel((await rawPair())[1], { identity: bob, signal: AbortSignal.abort() }))).toBe('AbortError')
  })
})

describe('secure channel limits and properties (memory pair)', () => {
  it('never fails with anything but a typed error on random first messages or frames (fuzz)', async () => {
    const typeByte = fc.oneof(fc.constant(new Uint8Array(0)), fc.constantFrom(1, 2, 3, 4).map((t) => new Uint8Array([t])))
    await fc.assert(
      fc.asyncProperty(typeByte, fc.uint8Array({ maxLength: 300 }), async (prefix, bytes) => {
        const [a, b] = createMemoryChannelPair()
        const accepted = outcome(acceptSecureChannel(b, { identity: bob, timeoutMs: 500 }))
        await a.send(new Uint8Array([...prefix, ...bytes]))
        await a.close()
        expect(await accepted).toMatch(/^ERR_(HANDSHAKE_FAILED|HANDSHAKE_TIMEOUT)$/)
      }),
      { numRuns: 150 },
    )
    // Random frames injected on the raw channel under an established session.
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 3 }), async (frames) => {
        const [a, b] = createMemoryChannelPair()
        const [, server] = await connectPair([a, b])
        const received = outcome(readAll(server))
        for (const frame of frames) await a.send(frame).catch(() => {})
        expect(await received).toMatch(/^ERR_(BAD_FRAME|FRAME_TOO_LARGE)$/)
      }),
      { numRuns: 50 },
    )
  })

  it('a malformed handshake message closes the raw channel (the peer sees it closed with an error)', async () => {
    for (const garbage of [new Uint8Array([1, 2, 3]), new Uint8Array([2]), new Uint8Array(2000).fill(1)]) {
      const [a, b] = createMemoryChannelPair()
      const accepted = outcome(acceptSecureChannel(b, { identity: bob, timeoutMs: 1000 }))
      await a.send(garbage)
      expect(await accepted).toBe('ERR_HANDSHAKE_FAILED')
      expect(await b.closed).toMatchObject({ code: 'ERR_HANDSHAKE_FAILED' })
      expect(await a.closed).toBeInstanceOf(Error)
      expect(await outcome(a.send(new Uint8Array(1)))).toBe('ERR_CHANNEL_CLOSED')
    }
  })

  it('rekeys after exactly 2^16 frames by default (a side rekeying later fails at frame 2^16 + 1)', async () => {
    const total = 2 ** 16 + 10
    const [client, server] = await connectPair(createMemoryChannelPair({ highWaterMark: 256 }))
    const received = readAll(server)
    const message = new Uint8Array(8)
    for (let i = 0; i < total; i++) await client.send(message)
    await client.close()
    expect((await received).length).toBe(total)
    // The receiver rekeys at 2^17 instead: frames up to 2^16 pass, the next fails.
    const [c2, s2] = await connectPair(createMemoryChannelPair({ highWaterMark: 256 }), {}, { rekeyInterval: 2 ** 17 })
    let count = 0
    const failed = outcome((async () => {
      for await (const _ of s2) count++
    })())
    for (let i = 0; i < 2 ** 16 + 2; i++) if ((await outcome(c2.send(message))) !== 'ok') break
    expect(await failed).toBe('ERR_BAD_FRAME')
    expect(count).toBe(2 ** 16)
  }, 20_000)

  it('measures transport throughput with 16 MiB messages', async () => {
    const [client, server] = await connectPair(createMemoryChannelPair())
    const message = pattern(16 * 1024 * 1024, 5)
    const rounds = 6
    const received = (async () => {
      let bytes = 0
      for await (const m of server) bytes += m.length
      return bytes
    })()
    const start = performance.now()
    for (let i = 0; i < rounds; i++) await client.send(message)
    await client.close()
    expect(await received).toBe(rounds * message.length)
    const seconds = (performance.now() - start) / 1000
    console.log(`secure channel throughput (memory pair, 16 MiB messages): ${((rounds * 16) / seconds).toFixed(0)} MiB/s`)
  })

  it('checks its inputs', async () => {
    const [a] = createMemoryChannelPair()
    await expect(initiateSecureChannel(a, { identity: alice, remotePublicKey: new Uint8Array(31) })).rejects.toThrow(RangeError)
    await expect(initiateSecureChannel(a, { identity: alice, remotePublicKey: 'cb1notanid' })).rejects.toMatchObject({ code: 'ERR_INVALID_PUBLIC_ID' })
  })
})

describe('ReplayGuard', () => {
  it('keeps the greatest timestamp per key and refuses one not greater', () => {
    const guard = new ReplayGuard()
    const first = tai64nNow()
    const second = tai64nNow()
    expect(Buffer.compare(Buffer.from(second), Buffer.from(first))).toBe(1)
    expect(Math.abs(tai64nToMillis(first) - Date.now())).toBeLessThan(5000)
    guard.accept(alice.publicKey, second)
    expect(() => guard.accept(alice.publicKey, second)).toThrow(expect.objectContaining({ code: 'ERR_REPLAYED_HANDSHAKE' }))
    expect(() => guard.accept(alice.publicKey, first)).toThrow(expect.objectContaining({ code: 'ERR_REPLAYED_HANDSHAKE' }))
    guard.accept(bob.publicKey, first)
    guard.accept(alice.publicKey, tai64nNow())
    expect(() => guard.accept(alice.publicKey, new Uint8Array(11))).toThrow(expect.objectContaining({ code: 'ERR_REPLAYED_HANDSHAKE' }))
  })

  it('bounds its memory: the least recently seen key is forgotten beyond maxEntries', () => {
    const guard = new ReplayGuard({ maxEntries: 2 })
    const stamp = tai64nNow()
    guard.accept(alice.publicKey, stamp)
    guard.accept(bob.publicKey, stamp)
    guard.accept(alice.publicKey, tai64nNow()) // alice is now the most recent
    guard.accept(mallory.publicKey, stamp) // bob is forgotten
    expect(guard.size).toBe(2)
    expect(() => guard.accept(mallory.publicKey, stamp)).toThrow(expect.objectContaining({ code: 'ERR_REPLAYED_HANDSHAKE' }))
    guard.accept(bob.publicKey, stamp) // forgotten, so accepted again; alice is evicted
    guard.accept(alice.publicKey, stamp)
    expect(guard.size).toBe(2)
  })

  it('optionally refuses timestamps outside a clock-skew window', () => {
    const guard = new ReplayGuard({ maxClockSkewMs: 60_000 })
    const old = Buffer.from(tai64nNow())
    old.writeBigUInt64BE(old.readBigUInt64BE(0) - 3600n, 0)
    expect(() => guard.accept(alice.publicKey, old)).toThrow(expect.objectContaining({ code: 'ERR_REPLAYED_HANDSHAKE' }))
    const future = Buffer.from(tai64nNow())
    future.writeBigUInt64BE(future.readBigUInt64BE(0) + 3600n, 0)
    expect(() => guard.accept(alice.publicKey, future)).toThrow(expect.objectContaining({ code: 'ERR_REPLAYED_HANDSHAKE' }))
    guard.accept(alice.publicKey, tai64nNow())
  })
})
