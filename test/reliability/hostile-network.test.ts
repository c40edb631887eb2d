/**
 * A malicious router hub (tampers with, truncates, replays, reorders, drops, injects and
 * inflates frames on one device's route) and PIN guessing by many strangers at once. Each
 * attack ends that one session with a typed error; the server and other sessions go on,
 * and no file arrives damaged.
 */
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Identity } from '@cloudbox/encrypted-messaging'
import { RouterHub } from '@cloudbox/router-hub'
import type { CloudBoxEvent } from '@cloudbox/cloudbox'
import { noise, scratch, waitFor } from '../integration/helpers.js'
import { recordOutcome } from './support/outcomes.js'
import { folderDigest, sha256 } from './support/nodes.js'

const PIN = '2468-1357'
let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

/** One attack: strikes the next large frame the hub carries to the node (reorder needs two). */
type Attack = (frame: Buffer) => { out: Buffer | readonly Buffer[] | null; done: boolean }
const once = (strike: (frame: Buffer) => Buffer | readonly Buffer[] | null): (() => Attack) => () => (frame) => ({ out: strike(frame), done: true })
const attacks: Record<string, () => Attack> = {
  tampered: once((frame) => {
    const copy = Buffer.from(frame)
    copy[copy.length - 20] = (copy[copy.length - 20] as number) ^ 1
    return copy
  }),
  truncated: once((frame) => frame.subarray(0, frame.length >> 1)),
  replayed: once((frame) => [frame, frame]),
  reordered: () => {
    let held: Buffer | undefined
    return (frame) => {
      if (held === undefined) {
        held = frame
        return { out: null, done: false }
      }
      return { out: [frame, held], done: true }
    }
  },
  dropped: once(() => null),
  injected: once((frame) => [randomBytes(frame.length), frame]),
  oversized: once(() => randomBytes(9 * 1024 * 1024)),
}

describe('a malicious hub', () => {
  it('each attack on one route drops that session only, with a typed error; files arrive intact, the other device never notices', { timeout: 120_000 }, async () => {
    // Only the victim goes through the hub (the bystander connects directly).
    let attack: Attack | undefined
    const hub = new RouterHub({}, {
      frameHook: (frame, direction) => {
        if (direction !== 'to-node' || frame.length < 1000 || attack === undefined) return frame
        const { out, done } = attack(frame)
        if (done) attack = undefined
        return out
      },
    })
    await hub.start()
    cleanups.push(() => hub.stop())
    const area = await scratch()
    cleanups.push(() => area.cleanup())
    const server = area.box({ role: 'server', hub: hub.url, listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN })
    await server.start()
    await waitFor(() => hub.hasNode(server.id), 'the server to register')
    const info = new URLSearchParams(server.pairingUri().slice('cloudbox://pair?'.length))
    const viaHub = new URLSearchParams(info)
    viaHub.delete('addr')
    const direct = new URLSearchParams(info)
    direct.delete('hub')
    const victim = area.box({ role: 'client', name: 'victim' })
    const bystander = area.box({ role: 'client', name: 'bystander' })
    await victim.start()
    await bystander.start()
    await victim.pair(`cloudbox://pair?${viaHub}`, PIN)
    await bystander.pair(`cloudbox://pair?${direct}`, PIN)
    await victim.waitConnected()
    await bystander.waitConnected()

    const drops = new Map<string, (string | undefined)[]>()
    server.status.on((event: CloudBoxEvent) => {
      if (event.type === 'connection' && event.state === 'disconnected') drops.set(event.peer, [...(drops.get(event.peer) ?? []), event.error?.code])
    })
    const expected = new Map<string, string>()
    const outcomes: Record<string, string | undefined> = {}
    for (const [name, make] of Object.entries(attacks)) {
      const before = drops.get(victim.id)?.length ?? 0
      attack = make()
      const file = `${name}.bin`
      const bytes = noise(2 * 1024 * 1024, name.length * 31)
      expected.set(file, sha256(bytes))
      writeFileSync(join(victim.init.folder, file), bytes)
      // Meanwhile the bystander keeps working.
      const side = `bystander-${name}.txt`
      writeFileSync(join(bystander.init.folder, side), `written during the ${name} attack`)
      expected.set(side, sha256(Buffer.from(`written during the ${name} attack`)))
      await waitFor(() => (drops.get(victim.id)?.length ?? 0) > before, `the ${name} attack to drop the victim's session`, 20_000)
      outcomes[name] = drops.get(victim.id)?.at(-1)
      await waitFor(() => folderDigest(server.init.folder).get(file) === expected.get(file), `${file} to arrive intact after the ${name} attack`, 30_000)
    }
    await waitFor(() => [...expected].every(([file, digest]) => folderDigest(server.init.folder).get(file) === digest), 'every file intact on the server', 30_000)
    for (const [name, code] of Object.entries(outcomes)) expect(code, name).toMatch(/^ERR_[A-Z_]+$/)
    expect(drops.get(bystander.id) ?? []).toEqual([])
    expect(server.state).toBe('running')
    recordOutcome({ group: 'hostile input', what: 'malicious hub: tampered, truncated, replayed, reordered, dropped, injected, oversized frames', injected: Object.keys(attacks).length, survived: Object.values(outcomes).filter(Boolean).length, dataLost: 0, note: Object.entries(outcomes).map(([name, code]) => `${name} → ${code}`).join(', ') })
  })
})

describe('PIN guessing', () => {
  it('many strangers guessing at once get at most one guess per lockout, and none pairs; a paired device keeps syncing', { timeout: 60_000 }, async () => {
    const area = await scratch()
    cleanups.push(() => area.cleanup())
    let now = Date.UTC(2026, 10, 23)
    const server = area.box({ role: 'server', listen: { host: '127.0.0.1', port: 0 }, masterPin: PIN }, Identity.generate().identity, () => now)
    await server.start()
    const owner = area.box({ role: 'client', name: 'owner' })
    await owner.start()
    await owner.pair(server.pairingUri(), PIN)
    await owner.waitConnected()
    const attackers = Array.from({ length: 20 }, () => area.box({ role: 'client', sync: false }))
    for (const attacker of attackers) await attacker.start()
    const uri = server.pairingUri()
    const codes: string[] = []
    const rounds = 8
    for (let round = 0; round < rounds; round++) {
      const guesses = await Promise.all(attackers.map((attacker) => attacker.pair(uri, String(10_000_000 + Math.floor(Math.random() * 89_999_999))).then(() => 'paired', (error: { code?: string }) => error.code ?? 'untyped')))
      codes.push(...guesses)
      writeFileSync(join(owner.init.folder, `during-round-${round}.txt`), `round ${round}`)
      // Time passes: each lock ends, and the strangers try again.
      now += 24 * 60 * 60 * 1000
    }
    expect(codes).not.toContain('paired')
    expect(codes).not.toContain('untyped')
    const checked = codes.filter((code) => code === 'ERR_WRONG_PIN').length
    // More than 16 at once from one address are not even let in (ERR_SESSION_LIMIT).
    const turnedAway = codes.filter((code) => code === 'ERR_SESSION_LIMIT').length
    // Five wrong guesses lock; after that, each expired lock lets one guess through.
    expect(checked).toBeLessThanOrEqual(5 + rounds)
    expect(codes.filter((code) => code === 'ERR_PIN_LOCKED').length).toBe(codes.length - checked - turnedAway)
    await waitFor(() => Array.from({ length: rounds }, (_, round) => folderDigest(server.init.folder).has(`during-round-${round}.txt`)).every(Boolean), 'the owner\'s files during the attack')
    recordOutcome({ group: 'hostile input', what: 'PIN guessing: 20 strangers × 8 rounds, a day apart', injected: codes.length, survived: codes.length, dataLost: 0, note: `${checked} answered "wrong PIN", ${codes.length - checked - turnedAway} "locked" (including each guess that set a lock), ${turnedAway} turned away before the handshake (16 at once per address), 0 paired` })
  })
})
