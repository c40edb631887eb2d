import { randomBytes, wipe, X25519_KEY_LENGTH } from '../crypto.js'
import { HandshakeFailedError } from '../errors.js'
import type { KeyAgreement } from '../interfaces/key-agreement.js'
import { X25519KeyAgreement } from '../key-agreement.js'
import type { CipherState } from './cipher-state.js'
import { parseProtocolName, type HandshakePattern, type Token } from './patterns.js'
import { SymmetricState } from './symmetric-state.js'

export interface HandshakeOptions {
  readonly protocolName: string
  readonly initiator: boolean
  readonly prologue?: Uint8Array
  /** This side's static key (anything that agrees keys: an Identity, a raw key wrapper). */
  readonly staticKey?: KeyAgreement
  /** The peer's static X25519 public key, when the pattern has it in advance. */
  readonly remoteStaticKey?: Uint8Array
  /** Pre-shared keys, consumed in order by the `psk` tokens. */
  readonly psks?: readonly Uint8Array[]
  /** Test vectors only: fixed ephemeral secrets, used in order. */
  readonly ephemeralSecrets?: readonly Uint8Array[]
}

/** A payload, or a function that makes it from the handshake hash at that point (for signatures). */
export type PayloadSource = Uint8Array | ((handshakeHash: Uint8Array) => Uint8Array)

export interface HandshakeResult {
  /** CipherState for messages this side sends, and for those it receives. */
  readonly send: CipherState
  readonly receive: CipherState
  readonly handshakeHash: Uint8Array
  readonly remoteStaticKey: Uint8Array | undefined
}

const EMPTY = new Uint8Array(0)
/** A real copy (Buffer#slice would be a view). */
const copy = (bytes: Uint8Array | undefined) => (bytes === undefined ? undefined : new Uint8Array(bytes))

/**
 * A Noise HandshakeState (spec §5.3) for `Noise_*_25519_ChaChaPoly_{BLAKE2b,SHA256}`,
 * driven one message at a time. Every failure is a HandshakeFailedError: deliberately
 * opaque, it never says which check failed.
 */
export class HandshakeState {
  readonly #pattern: HandshakePattern
  readonly #symmetric: SymmetricState
  readonly #initiator: boolean
  readonly #static: KeyAgreement | undefined
  #remoteStatic: Uint8Array | undefined
  #ephemeral: X25519KeyAgreement | undefined
  #remoteEphemeral: Uint8Array | undefined
  readonly #psks: Uint8Array[]
  readonly #ephemeralSecrets: Uint8Array[]
  #index = 0
  #result: HandshakeResult | undefined

  constructor(options: HandshakeOptions) {
    const parsed = parseProtocolName(options.protocolName)
    if (parsed === undefined) throw new RangeError(`Unsupported Noise protocol: ${options.protocolName}`)
    this.#pattern = parsed.pattern
    this.#symmetric = new SymmetricState(options.protocolName, parsed.hash)
    this.#initiator = options.initiator
    this.#static = options.staticKey
    this.#remoteStatic = copy(options.remoteStaticKey)
    this.#psks = (options.psks ?? []).map((psk) => new Uint8Array(psk))
    this.#ephemeralSecrets = (options.ephemeralSecrets ?? []).map((secret) => new Uint8Array(secret))
    this.#symmetric.mixHash(options.prologue ?? EMPTY)
    // Pre-messages: the initiator's static key first, then the responder's (§7.1).
    const initiatorStatic = this.#initiator ? this.#static?.x25519PublicKey : this.#remoteStatic
    const responderStatic = this.#initiator ? this.#remoteStatic : this.#static?.x25519PublicKey
    if (this.#pattern.initiatorPreMessage) this.#mixPreMessage(initiatorStatic)
    if (this.#pattern.responderPreMessage) this.#mixPreMessage(responderStatic)
  }

  #mixPreMessage(key: Uint8Array | undefined): void {
    if (key === undefined) throw new RangeError(`${this.#pattern.name} needs a static key known in advance`)
    this.#symmetric.mixHash(key)
  }

  get finished(): boolean {
    return this.#result !== undefined
  }

  /** True when the next message is this side's to write. */
  get isMyTurn(): boolean {
    return (this.#index % 2 === 0) === this.#initiator
  }

  get remoteStaticKey(): Uint8Array | undefined {
    return copy(this.#remoteStatic)
  }

  get handshakeHash(): Uint8Array {
    return this.#symmetric.handshakeHash
  }

  get result(): HandshakeResult | undefined {
    return this.#result
  }

  #tokens(): readonly Token[] {
    const tokens = this.#pattern.messages[this.#index]
    if (tokens === undefined || this.#result !== undefined) throw new Error('The handshake is already finished')
    return tokens
  }

  #dh(mine: KeyAgreement | undefined, theirs: Uint8Array | undefined): void {
    if (mine === undefined || theirs === undefined) throw new HandshakeFailedError()
    const shared = mine.agree(theirs)
    // An all-zero result means a low-order point from the peer: refuse it.
    if (shared === undefined) throw new HandshakeFailedError()
    this.#symmetric.mixKey(shared)
    wipe(shared)
  }

  #token(token: Token): void {
    const initiator = this.#initiator
    switch (token) {
      case 'ee':
        return this.#dh(this.#ephemeral, this.#remoteEphemeral)
      case 'es':
        return initiator ? this.#dh(this.#ephemeral, this.#remoteStatic) : this.#dh(this.#static, this.#remoteEphemeral)
      case 'se':
        return initiator ? this.#dh(this.#static, this.#remoteEphemeral) : this.#dh(this.#ephemeral, this.#remoteStatic)
      case 'ss':
        return this.#dh(this.#static, this.#remoteStatic)
      case 'psk': {
        const psk = this.#psks.shift()
        if (psk === undefined || psk.length !== 32) throw new RangeError('This pattern needs a 32-byte pre-shared key')
        this.#symmetric.mixKeyAndHash(psk)
        return wipe(psk)
      }
      default:
        throw new Error(`unexpected token ${token}`)
    }
  }

  /** Writes the next handshake message around `payload`. */
  writeMessage(payload: PayloadSource = EMPTY): Uint8Array {
    if (!this.isMyTurn) throw new Error('Not this side\'s turn to write a handshake message')
    const parts: Uint8Array[] = []
    for (const token of this.#tokens()) {
      if (token === 'e') {
        const secret = this.#ephemeralSecrets.shift() ?? randomBytes(X25519_KEY_LENGTH)
        this.#ephemeral = new X25519KeyAgreement(secret)
        wipe(secret)
        const publicKey = this.#ephemeral.x25519PublicKey
        parts.push(publicKey)
        this.#symmetric.mixHash(publicKey)
        if (this.#pattern.psk) this.#symmetric.mixKey(publicKey)
      } else if (token === 's') {
        if (this.#static === undefined) throw new RangeError(`${this.#pattern.name} needs this side's static key`)
        parts.push(this.#symmetric.encryptAndHash(this.#static.x25519PublicKey))
      } else {
        this.#token(token)
      }
    }
    const payloadBytes = typeof payload === 'function' ? payload(this.#symmetric.handshakeHash) : payload
    parts.push(this.#symmetric.encryptAndHash(payloadBytes))
    this.#advance()
    return new Uint8Array(Buffer.concat(parts))
  }

  /**
   * Reads the peer's next handshake message; returns its payload and the handshake hash
   * just before the payload (what a signature in the payload covers).
   * @throws {HandshakeFailedError} on any malformed or unauthentic message.
   */
  readMessage(message: Uint8Array): { payload: Uint8Array; handshakeHashBeforePayload: Uint8Array } {
    if (this.isMyTurn) throw new Error('Not this side\'s turn to read a handshake message')
    let offset = 0
    const take = (length: number): Uint8Array => {
      if (offset + length > message.length) throw new HandshakeFailedError()
      const part = message.subarray(offset, offset + length)
      offset += length
      return part
    }
    for (const token of this.#tokens()) {
      if (token === 'e') {
        this.#remoteEphemeral = new Uint8Array(take(X25519_KEY_LENGTH))
        this.#symmetric.mixHash(this.#remoteEphemeral)
        if (this.#pattern.psk) this.#symmetric.mixKey(this.#remoteEphemeral)
      } else if (token === 's') {
        const encrypted = take(this.#symmetric.cipher.hasKey() ? X25519_KEY_LENGTH + 16 : X25519_KEY_LENGTH)
        const key = this.#symmetric.decryptAndHash(encrypted)
        if (key === undefined) throw new HandshakeFailedError()
        this.#remoteStatic = new Uint8Array(key)
      } else {
        this.#token(token)
      }
    }
    const handshakeHashBeforePayload = this.#symmetric.handshakeHash
    const payload = this.#symmetric.decryptAndHash(message.subarray(offset))
    if (payload === undefined) throw new HandshakeFailedError()
    this.#advance()
    return { payload, handshakeHashBeforePayload }
  }

  #advance(): void {
    this.#index++
    if (this.#index < this.#pattern.messages.length) return
    const handshakeHash = this.#symmetric.handshakeHash
    const [first, second] = this.#symmetric.split()
    this.#ephemeral?.destroy()
    this.#result = {
      send: this.#initiator ? first : second,
      receive: this.#initiator ? second : first,
      handshakeHash,
      remoteStaticKey: copy(this.#remoteStatic),
    }
  }

  /** Wipes ephemeral secrets (after a failure or when abandoning the handshake). */
  destroy(): void {
    this.#ephemeral?.destroy()
    for (const psk of this.#psks) wipe(psk)
  }
}
