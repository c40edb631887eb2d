/**
 * The router hub's wire format, shared by the hub (apps/router-hub) and the nodes that
 * use it (@cloudbox/cloudbox). Specified in PROTOCOL.md, "Router hub".
 *
 * The hub never sees plaintext: routes carry secure-channel frames it relays unread.
 * What it does check is who holds a registration: a node proves its key by signing a
 * fresh challenge, so nobody can claim another node's ID.
 */
import * as v from 'valibot'
import { ED25519_PUBLIC_KEY_LENGTH, ED25519_SIGNATURE_LENGTH, ed25519Verify } from '../crypto.js'
import type { Signer } from '../interfaces/key-agreement.js'
import { BadMessageError } from '../errors.js'
import { defineMessageCodec, bytesSchema, uintSchema } from '../wire/message-codec.js'

/** 2: the registration signature covers the hub's URL; `incoming` may carry the client's address tag. */
export const HUB_PROTOCOL_VERSION = 2
/** WebSocket paths. A node's control connection; a client's route to a node; a node's side of a route. */
export const HUB_NODE_PATH = '/v1/node'
export const HUB_ROUTE_PATH = '/v1/route/'
export const HUB_ACCEPT_PATH = '/v1/accept/'
export const HUB_CHALLENGE_LENGTH = 32
export const HUB_ROUTE_TOKEN_LENGTH = 16
/** Largest relayed frame by default: a whole Noise message (65,535 bytes) fits. */
export const HUB_DEFAULT_MAX_FRAME = 65_536
const REGISTER_TAG = new TextEncoder().encode('cloudbox/hub/v2/register\0')
/** Bytes of `incoming.peer`: an opaque tag of the client's network address, keyed by the hub. */
export const HUB_PEER_TAG_LENGTH = 16

/** WebSocket close codes the hub uses (application range 4000–4999). */
export const HubCloseCodes = {
  /** A malformed control message, a text frame, or a frame too large. */
  BAD_MESSAGE: 4400,
  /** The registration signature did not verify. */
  REGISTRATION_FAILED: 4401,
  /** No node with that ID is connected to this hub (retry later). */
  NODE_OFFLINE: 4404,
  /** Registration, route set-up or idle timeout. */
  TIMEOUT: 4408,
  /** The same node registered again from a newer connection. */
  REPLACED: 4409,
  /** The other end of the route went away. */
  PEER_GONE: 4410,
  /** A hub limit (connections per address, routes per node, nodes) was reached. */
  LIMIT: 4429,
} as const

const bytes = (length: number) => bytesSchema({ length })

/** Control messages on a node's connection (`/v1/node`). */
export const hubCodec = defineMessageCodec({
  protocol: 'cloudbox-hub',
  version: HUB_PROTOCOL_VERSION,
  maxMessageSize: 1024,
  messages: {
    /** hub → node, first message: sign this. */
    challenge: { type: 1, schema: v.strictObject({ nonce: bytes(HUB_CHALLENGE_LENGTH) }) },
    /** node → hub: the node's Ed25519 key and its signature over the challenge. */
    register: { type: 2, schema: v.strictObject({ publicKey: bytes(ED25519_PUBLIC_KEY_LENGTH), signature: bytes(ED25519_SIGNATURE_LENGTH) }) },
    /** hub → node: registration accepted under this ID. */
    registered: { type: 3, schema: v.strictObject({ id: v.pipe(v.string(), v.maxLength(100)) }) },
    /**
     * hub → node: a client opened a route; accept it at `/v1/accept/<route>` with this
     * token. `kind` 1 (HUB_ROUTE_API): the route carries one API call (see encodeApiReply).
     * `hub`: in a cluster, the client is on another hub of it; accept there instead.
     */
    incoming: {
      type: 4,
      schema: v.strictObject({
        route: uintSchema(0xffff_ffff),
        token: bytes(HUB_ROUTE_TOKEN_LENGTH),
        kind: v.optional(uintSchema(255)),
        hub: v.optional(v.pipe(v.string(), v.maxLength(2048), v.regex(/^wss?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/))),
        /** Where the client connects from, as a tag only this hub can compute (for the node's per-address limits). */
        peer: v.optional(bytes(HUB_PEER_TAG_LENGTH)),
      }),
    },
  },
})

/**
 * A hub's URL as nodes name it, for comparing: scheme and host in lower case, no trailing
 * slash. `wss://Hub.Example.org/` and `wss://hub.example.org` are the same hub.
 */
export function normalizeHubUrl(url: string): string {
  const match = /^(wss?):\/\/([^/?#]+)(\/[^?#]*)?$/i.exec(url.trim())
  if (match === null) return url.trim().replace(/\/+$/, '')
  return `${(match[1] as string).toLowerCase()}://${(match[2] as string).toLowerCase()}${(match[3] ?? '').replace(/\/+$/, '')}`
}

function registrationMessage(nonce: Uint8Array, hubUrl: string): Uint8Array {
  const url = new TextEncoder().encode(normalizeHubUrl(hubUrl))
  const message = new Uint8Array(REGISTER_TAG.length + nonce.length + url.length)
  message.set(REGISTER_TAG)
  message.set(nonce, REGISTER_TAG.length)
  message.set(url, REGISTER_TAG.length + nonce.length)
  return message
}

/**
 * The node's answer to a hub challenge: its signature over the challenge and the URL of
 * the hub it dialed, so a hub cannot pass another hub's challenge on to register the
 * node there (that hub checks the URL against its own).
 */
export function signRegistration(signer: Signer, nonce: Uint8Array, hubUrl: string): { publicKey: Uint8Array; signature: Uint8Array } {
  return { publicKey: signer.publicKey, signature: signer.sign(registrationMessage(nonce, hubUrl)) }
}

/** True when `signature` is `publicKey`'s signature over this challenge, made for a hub at one of `hubUrls` (this hub's own addresses). */
export function verifyRegistration(publicKey: Uint8Array, nonce: Uint8Array, signature: Uint8Array, hubUrls: readonly string[]): boolean {
  return hubUrls.some((url) => ed25519Verify(publicKey, registrationMessage(nonce, url), signature))
}

/** `incoming.kind` of a route that carries one REST API call instead of a session. */
export const HUB_ROUTE_API = 1
/** Where a hub exposes a node's API: `/n/<cb1…>/api/…` (the rest of the path is the API's own). */
export const HUB_API_PREFIX = '/n/'
/** Largest API message relayed either way (a sealed request or response with a 16 MiB body). */
export const HUB_API_MAX_MESSAGE = 16 * 1024 * 1024 + 64 * 1024

/**
 * The node's answer on an API route: `u16 status ‖ u8 type ‖ body`, where type 0 is a
 * sealed response (served as HTTP 200, application/vnd.cloudbox.api-response) and type 1
 * a JSON error `{ code, message }` for a request that could not be opened.
 */
export interface HubApiReply {
  status: number
  /** The sealed response, in one buffer or in pieces (joined once, into the reply). */
  sealed?: Uint8Array | readonly Uint8Array[]
  error?: { code: string; message: string }
  /** Called once `sealed` was copied into the reply: its memory may be reused then. */
  release?: () => void
}

export function encodeApiReply(reply: HubApiReply): Uint8Array {
  const sealed = reply.sealed === undefined ? undefined : reply.sealed instanceof Uint8Array ? [reply.sealed] : reply.sealed
  const body = sealed ?? [new TextEncoder().encode(JSON.stringify(reply.error ?? { code: 'ERR_INTERNAL', message: 'No answer.' }))]
  const out = new Uint8Array(body.reduce((sum, part) => sum + part.length, 3))
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint16(0, sealed === undefined ? reply.status : 200)
  out[2] = sealed === undefined ? 1 : 0
  let at = 3
  for (const part of body) {
    out.set(part, at)
    at += part.length
  }
  return out
}

/** @throws {BadMessageError} for anything that is not a well-formed reply. */
export function decodeApiReply(bytes: Uint8Array): HubApiReply {
  if (bytes.length < 3 || bytes.length > HUB_API_MAX_MESSAGE) throw new BadMessageError('A malformed API reply came through the hub.')
  const status = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(0)
  const type = bytes[2]
  const body = bytes.subarray(3)
  if (status < 100 || status > 599) throw new BadMessageError('A malformed API reply came through the hub.')
  if (type === 0) return { status, sealed: body }
  if (type !== 1) throw new BadMessageError('A malformed API reply came through the hub.')
  const parsed = v.safeParse(v.object({ code: v.pipe(v.string(), v.maxLength(64)), message: v.pipe(v.string(), v.maxLength(1024)) }), safeJson(body))
  if (!parsed.success) throw new BadMessageError('A malformed API reply came through the hub.')
  return { status, error: { code: parsed.output.code, message: parsed.output.message } }
}

function safeJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    return undefined
  }
}

/** One client for limits: an IPv4 address (also when IPv4-mapped), or an IPv6 /64 (one subscriber's usual share). */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped !== null) return mapped[1] as string
  if (!address.includes(':')) return address
  const [head = '', tail = ''] = address.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  const groups = address.includes('::') ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left
  return `${groups.slice(0, 4).map((group) => group.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`
}
