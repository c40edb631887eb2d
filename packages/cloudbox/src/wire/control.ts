/**
 * The control protocol: lane 0 of a session's secure channel (lane 1 carries sync).
 * Specified in PROTOCOL.md. Every message is validated before use.
 */
import * as v from 'valibot'
import { bytesSchema, defineMessageCodec, textSchema, uintSchema } from '@cloudbox/encrypted-messaging'
import { syncCodec } from '@cloudbox/cloudsync'

export const CONTROL_PROTOCOL_VERSION = 1
export const CONTROL_LANE = 0
export const SYNC_LANE = 1
export const SESSION_LANES = 2
/** Direct connections: `ws://host:port/v1/cloud/<cb1…>`. */
export const DIRECT_CLOUD_PATH = '/v1/cloud/'
/** Domain tag of the PIN proof: HMAC-SHA256(scrypt(PIN, salt), tag ‖ handshake hash). */
export const PIN_PROOF_TAG = 'cloudbox/pair/v1\0'
export const PIN_SALT_LENGTH = 16
export const PIN_PROOF_LENGTH = 32

const label = v.pipe(v.string(), v.maxLength(64))
const id = v.pipe(v.string(), v.maxLength(100))
const role = v.picklist(['owner', 'member'])

export const controlCodec = defineMessageCodec({
  protocol: 'cloudbox-control',
  version: CONTROL_PROTOCOL_VERSION,
  maxMessageSize: 256 * 1024,
  messages: {
    /** server → client, first: who answers and the salt PIN proofs use. */
    serverHello: { type: 1, schema: v.strictObject({ name: label, salt: bytesSchema({ length: PIN_SALT_LENGTH }) }) },
    /** client → server: its name, and a PIN proof when it asks to pair. */
    hello: { type: 2, schema: v.strictObject({ name: label, pair: v.optional(v.strictObject({ proof: bytesSchema({ length: PIN_PROOF_LENGTH }) })) }) },
    /** server → client: the session is open. */
    welcome: { type: 3, schema: v.strictObject({ role, paired: v.boolean(), name: label }) },
    /** server → client: refused (or, later, revoked/blocked); the server closes after it. */
    refused: { type: 4, schema: v.strictObject({ code: textSchema(64), message: textSchema(512), retryAfterMs: v.optional(uintSchema()) }) },
    ping: { type: 5, schema: v.strictObject({ t: uintSchema() }) },
    pong: { type: 6, schema: v.strictObject({ t: uintSchema() }) },
    /** client → server: an admin call (owner devices only). */
    request: { type: 7, schema: v.strictObject({ id: uintSchema(0xffff_ffff), op: textSchema(64), args: v.unknown() }) },
    response: {
      type: 8,
      schema: v.strictObject({
        id: uintSchema(0xffff_ffff),
        value: v.optional(v.unknown()),
        error: v.optional(v.strictObject({ code: textSchema(64), message: textSchema(512) })),
      }),
    },
  },
})

export type ControlMessage = ReturnType<typeof controlCodec.decode>

/** WebSocket close code of a connection a server turns away unread (too many sessions not yet welcomed). */
export const SESSION_LIMIT_CLOSE_CODE = 4503
/** WebSocket close code of a connection a server turns away while it starts or stops: retry, not an impostor. */
export const NOT_READY_CLOSE_CODE = 4502

/** Largest secure-channel message before the peer is welcomed: the hello exchange fits many times over. */
export const PRE_WELCOME_MAX_MESSAGE = 16 * 1024
/** Largest one after: a lane byte and the larger of a control or a sync message. */
export const SESSION_MAX_MESSAGE = 1 + Math.max(controlCodec.maxMessageSize, syncCodec.maxMessageSize)
/** Bytes a lane buffers unread (control, sync) before the session stops reading. */
export const LANE_HIGH_WATER_BYTES: readonly number[] = [1024 * 1024, 16 * 1024 * 1024]
export { label as labelSchema, id as idSchema, role as roleSchema }
