import { bytesSchema, defineMessageCodec, textSchema, uintSchema } from '@cloudbox/encrypted-messaging'
import * as v from 'valibot'
import { CHUNK_HASH_LENGTH } from './chunker.js'

/** Largest chunk (8 × the largest average, 1 MiB) plus room for the envelope. */
export const MAX_CHUNK_SIZE = 8 * 1024 * 1024
export const MAX_RECORDS_PER_MESSAGE = 256
const MAX_CHUNKS_PER_FILE = 1 << 20

const versionSchema = v.pipe(
  v.record(textSchema(64), uintSchema()),
  v.check((version) => Object.keys(version).length <= 1024, 'a version vector of at most 1024 devices'),
)

export const recordSchema = v.strictObject({
  // Any string: unsafe names (NUL, "..", …) are refused per record by validateRelativePath,
  // with an event, while the rest of the session goes on.
  path: v.pipe(v.string(), v.maxLength(4096)),
  size: uintSchema(),
  mtimeMs: uintSchema(),
  mode: uintSchema(0o777),
  chunkHashes: bytesSchema({ maxLength: MAX_CHUNKS_PER_FILE * CHUNK_HASH_LENGTH }),
  chunkLengths: v.pipe(v.array(uintSchema(MAX_CHUNK_SIZE)), v.maxLength(MAX_CHUNKS_PER_FILE)),
  chunkSize: uintSchema(MAX_CHUNK_SIZE),
  version: versionSchema,
  deleted: v.boolean(),
  sequence: uintSchema(),
})

export type WireRecord = v.InferOutput<typeof recordSchema>

/**
 * The sync protocol, CBOR messages `[version, type, body]` (see PROTOCOL.md). Every
 * message is validated before use; anything else closes the session.
 */
export const syncCodec = defineMessageCodec({
  protocol: 'cloudsync',
  version: 1,
  maxMessageSize: MAX_CHUNK_SIZE + 64 * 1024,
  messages: {
    /** First message each way: who I am, which folder, where my index stands. */
    hello: { type: 1, schema: v.strictObject({ folder: textSchema(128), device: textSchema(64), root: bytesSchema({ length: 32 }), sequence: uintSchema() }) },
    /** Send me your records changed after `since` (your sequence numbers). */
    want: { type: 2, schema: v.strictObject({ since: uintSchema() }) },
    /** Index records, in sequence order. */
    index: { type: 3, schema: v.strictObject({ records: v.pipe(v.array(recordSchema), v.maxLength(MAX_RECORDS_PER_MESSAGE)) }) },
    /** All records up to `sequence` were sent. */
    indexEnd: { type: 4, schema: v.strictObject({ sequence: uintSchema(), root: bytesSchema({ length: 32 }) }) },
    /** Send me the chunk with this hash. */
    request: { type: 5, schema: v.strictObject({ id: uintSchema(), hash: bytesSchema({ length: CHUNK_HASH_LENGTH }) }) },
    data: { type: 6, schema: v.strictObject({ id: uintSchema(), bytes: bytesSchema({ maxLength: MAX_CHUNK_SIZE }) }) },
    /** I no longer have that chunk (the file changed). */
    missing: { type: 7, schema: v.strictObject({ id: uintSchema() }) },
    /** I applied your index up to `sequence`; my root is now `root`. */
    ack: { type: 8, schema: v.strictObject({ sequence: uintSchema(), root: bytesSchema({ length: 32 }) }) },
    ping: { type: 9, schema: v.strictObject({ t: uintSchema() }) },
    pong: { type: 10, schema: v.strictObject({ t: uintSchema() }) },
    /** One of your records was refused here (unsafe name, case clash, quota, full disk). */
    error: { type: 11, schema: v.strictObject({ code: textSchema(64), message: textSchema(1000), path: v.optional(textSchema(4096)) }) },
    /** Where applying your changes stands here. */
    status: { type: 12, schema: v.strictObject({ state: v.picklist(['syncing', 'idle']), pendingFiles: uintSchema(), pendingBytes: uintSchema() }) },
  },
})

export type SyncMessage = ReturnType<typeof syncCodec.decode>
