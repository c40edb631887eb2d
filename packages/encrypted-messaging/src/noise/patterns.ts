/**
 * Noise handshake patterns (spec §7 and §18), in token notation, with the psk modifier
 * (spec §9). Only what CloudBox and the test vectors use; adding one is a table entry.
 */
export type Token = 'e' | 's' | 'ee' | 'es' | 'se' | 'ss' | 'psk'

export interface HandshakePattern {
  readonly name: string
  /** Static keys known in advance: the initiator's (-> s) and the responder's (<- s). */
  readonly initiatorPreMessage: boolean
  readonly responderPreMessage: boolean
  /** Messages alternate, starting with the initiator. */
  readonly messages: readonly (readonly Token[])[]
  readonly psk: boolean
}

const BASE: Record<string, Omit<HandshakePattern, 'name' | 'psk'>> = {
  NN: { initiatorPreMessage: false, responderPreMessage: false, messages: [['e'], ['e', 'ee']] },
  NK: { initiatorPreMessage: false, responderPreMessage: true, messages: [['e', 'es'], ['e', 'ee']] },
  KK: { initiatorPreMessage: true, responderPreMessage: true, messages: [['e', 'es', 'ss'], ['e', 'ee', 'se']] },
  IK: { initiatorPreMessage: false, responderPreMessage: true, messages: [['e', 'es', 's', 'ss'], ['e', 'ee', 'se']] },
  XX: { initiatorPreMessage: false, responderPreMessage: false, messages: [['e'], ['e', 'ee', 's', 'es'], ['s', 'se']] },
  // Deferred patterns (§18.1).
  NK1: { initiatorPreMessage: false, responderPreMessage: true, messages: [['e'], ['e', 'ee', 'es']] },
  KK1: { initiatorPreMessage: true, responderPreMessage: true, messages: [['e'], ['e', 'ee', 'se', 'es']] },
  IK1: { initiatorPreMessage: false, responderPreMessage: true, messages: [['e', 's'], ['e', 'ee', 'se', 'es']] },
  XX1: { initiatorPreMessage: false, responderPreMessage: false, messages: [['e'], ['e', 'ee', 's'], ['es', 's', 'se']] },
}

/** Parses a pattern name such as `IK`, `NNpsk0` or `XXpsk0+psk3`. */
export function handshakePattern(name: string): HandshakePattern | undefined {
  const match = /^([A-Z]+1?)((?:psk\d+\+?)*)$/.exec(name)
  if (match === null) return undefined
  const base = BASE[match[1] as string]
  if (base === undefined) return undefined
  const modifiers = (match[2] as string).split('+').filter((m) => m !== '')
  const messages = base.messages.map((message) => [...message])
  for (const modifier of modifiers) {
    const position = Number((modifier as string).slice(3))
    if (position === 0) (messages[0] as Token[]).unshift('psk')
    else if (position <= messages.length) (messages[position - 1] as Token[]).push('psk')
    else return undefined
  }
  return { ...base, name, messages, psk: modifiers.length > 0 }
}

export interface ProtocolName {
  readonly pattern: HandshakePattern
  readonly hash: 'BLAKE2b' | 'SHA256'
}

/** Parses `Noise_<pattern>_25519_ChaChaPoly_<BLAKE2b|SHA256>`: the only suite we implement. */
export function parseProtocolName(protocolName: string): ProtocolName | undefined {
  const match = /^Noise_([A-Za-z0-9+]+)_25519_ChaChaPoly_(BLAKE2b|SHA256)$/.exec(protocolName)
  if (match === null) return undefined
  const pattern = handshakePattern(match[1] as string)
  return pattern === undefined ? undefined : { pattern, hash: match[2] as 'BLAKE2b' | 'SHA256' }
}
