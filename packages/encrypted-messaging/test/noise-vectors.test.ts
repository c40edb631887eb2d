import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { X25519KeyAgreement } from '../src/key-agreement.js'
import { HandshakeState } from '../src/noise/handshake-state.js'
import { parseProtocolName } from '../src/noise/patterns.js'

// The shared vectors file sits beside the repository (read in place, never copied):
// <repo root>/../shared/vectors, the repo root being three levels above this test directory.
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
const vectorsPath = path.resolve(repoRoot, '../shared/vectors/noise-25519-chachapoly.json')

interface Vector {
  protocol_name: string
  init_prologue: string
  init_ephemeral: string
  init_static?: string
  init_remote_static?: string
  init_psks?: string[]
  resp_prologue?: string
  resp_ephemeral?: string
  resp_static?: string
  resp_remote_static?: string
  resp_psks?: string[]
  handshake_hash?: string
  messages: { payload: string; ciphertext: string }[]
}

const file = JSON.parse(readFileSync(vectorsPath, 'utf8')) as { vectors: Vector[] }
const bytes = (hex: string | undefined) => (hex === undefined ? undefined : new Uint8Array(Buffer.from(hex, 'hex')))
const hex = (value: Uint8Array) => Buffer.from(value).toString('hex')
const supported = file.vectors.filter((vector) => parseProtocolName(vector.protocol_name) !== undefined)
let ran = 0

describe('Noise test vectors (../shared/vectors/noise-25519-chachapoly.json)', () => {
  it('supports every vector in the file', () => {
    expect(file.vectors.length).toBe(36)
    expect(supported.map((vector) => vector.protocol_name)).toEqual(file.vectors.map((vector) => vector.protocol_name))
  })

  it.each(supported.map((vector) => [vector.protocol_name, vector] as const))('%s', (_name, vector) => {
    const side = (initiator: boolean) => {
      const prefix = initiator ? 'init' : 'resp'
      const staticSecret = bytes(vector[`${prefix}_static` as const])
      const remote = bytes(vector[`${prefix}_remote_static` as const])
      const psks = vector[`${prefix}_psks` as const]?.map((psk) => bytes(psk) as Uint8Array)
      return new HandshakeState({
        protocolName: vector.protocol_name,
        initiator,
        prologue: bytes(initiator ? vector.init_prologue : (vector.resp_prologue ?? vector.init_prologue)) as Uint8Array,
        ...(staticSecret ? { staticKey: new X25519KeyAgreement(staticSecret) } : {}),
        ...(remote ? { remoteStaticKey: remote } : {}),
        ...(psks ? { psks } : {}),
        ephemeralSecrets: [bytes(initiator ? vector.init_ephemeral : vector.resp_ephemeral) as Uint8Array],
      })
    }
    const initiator = side(true)
    const responder = side(false)
    let index = 0
    // Handshake messages alternate, starting with the initiator.
    while (!initiator.finished) {
      const message = vector.messages[index++] as { payload: string; ciphertext: string }
      const [writer, reader] = initiator.isMyTurn ? [initiator, responder] : [responder, initiator]
      const written = writer.writeMessage(bytes(message.payload) as Uint8Array)
      expect(hex(written)).toBe(message.ciphertext)
      expect(hex(reader.readMessage(written).payload)).toBe(message.payload)
    }
    expect(responder.finished).toBe(true)
    const i = initiator.result!
    const r = responder.result!
    expect(vector.handshake_hash).toMatch(/^[0-9a-f]+$/)
    expect(hex(i.handshakeHash)).toBe(vector.handshake_hash)
    expect(hex(r.handshakeHash)).toBe(vector.handshake_hash)
    // Transport messages keep alternating from where the handshake stopped.
    let initiatorTurn = index % 2 === 0
    for (; index < vector.messages.length; index++) {
      const message = vector.messages[index] as { payload: string; ciphertext: string }
      const [send, receive] = initiatorTurn ? [i.send, r.receive] : [r.send, i.receive]
      const ciphertext = send.encryptWithAd(new Uint8Array(0), bytes(message.payload) as Uint8Array)
      expect(hex(ciphertext)).toBe(message.ciphertext)
      expect(hex(receive.decryptWithAd(new Uint8Array(0), ciphertext) as Uint8Array)).toBe(message.payload)
      initiatorTurn = !initiatorTurn
    }
    ran++
  })

  // Runs after the vectors (tests in a file run in order): none was skipped or filtered out.
  it('ran every vector of the file that matches the supported set', () => {
    expect(ran).toBe(supported.length)
    expect(ran).toBe(36)
  })
})
