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
import { defineMessageCodec, bytesSchema, uintSchema } from '../wire/message-codec.js'

export const HUB_PROTOCOL_VERSION = 1
/** WebSocket paths. A node's control connection; a client's route to a node; a node's side of a route. */
export const HUB_NODE_PATH = '/v1/node'
export const HUB_ROUTE_PATH = '/v1/route/'
export const HUB_ACCEPT_PATH = '/v1/accept/'
export const HUB_CHALLENGE_LENGTH = 32
export const HUB_ROUTE_TOKEN_LENGTH = 16
/** Largest relayed frame by default: a whole Noise message (65,535 bytes) fits. */
export const HUB_DEFAULT_MAX_FRAME = 65_536
const REGISTER_TAG = new TextEncoder().encode('cloudbox/hub/v1/register\0')

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
    /** hub → node: a client opened a route; accept it at `/v1/accept/<route>` with this token. */
    incoming: { type: 4, schema: v.strictObject({ route: uintSchema(0xffff_ffff), token: bytes(HUB_ROUTE_TOKEN_LENGTH) }) },
  },
})

function registrationMessage(nonce: Uint8Array): Uint8Array {
  const message = new Uint8Array(REGISTER_TAG.length + nonce.length)
  message.set(REGISTER_TAG)
  message.set(nonce, REGISTER_TAG.length)
  return message
}

/** The node's answer to a hub challenge. */
export function signRegistration(signer: Signer, nonce: Uint8Array): { publicKey: Uint8Array; signature: Uint8Array } {
  return { publicKey: signer.publicKey, signature: signer.sign(registrationMessage(nonce)) }
}

/** True when `signature` is `publicKey`'s signature over this challenge. */
export function verifyRegistration(publicKey: Uint8Array, nonce: Uint8Array, signature: Uint8Array): boolean {
  return ed25519Verify(publicKey, registrationMessage(nonce), signature)
}
