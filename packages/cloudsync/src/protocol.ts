import { bytesSchema, defineMessageCodec, textSchema, uintSchema } from '@cloudbox/encrypted-messaging'
import * as v from 'valibot'
import { CHUNK_HASH_LENGTH, MAX_AVERAGE, MIN_AVERAGE } from './chunker.js'

/** The sync protocol version; a peer that speaks another gets ERR_SYNC_VERSION. */
export const SYNC_PROTOCOL_VERSION = 2
/** The largest chunk (4 × the largest average: 16 MiB). */
export const MAX_CHUNK_SIZE = 4 * MAX_AVERAGE
/** Largest message: a whole largest chunk, or an index batch, plus room for the envelope. */
export const MAX_SYNC_MESSAGE = MAX_CHUNK_SIZE + 64 * 1024
/** Records per index message at most (and fewer when they are large). */
export const MAX_RECORDS_PER_MESSAGE = 1024
/** Chunks a record may have: a 512 GiB file at the largest average. */
export const MAX_CHUNKS_PER_FILE = 1 << 17
/** Chunk requests per fetch message at most. */
export const MAX_REQUESTS_PER_MESSAGE = 4096

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
  /** Absent for a regular file. */
  kind: v.optional(v.picklist(['dir', 'symlink'])),
  /** A symbolic link's target text (never followed by the receiver). */
  target: v.optional(v.pipe(v.string(), v.maxLength(4096))),
})

export type WireRecord = v.InferOutput<typeof recordSchema>

const requestSchema = v.strictObject({ id: uintSchema(0xffff_ffff), path: v.pipe(v.string(), v.maxLength(4096)), offset: uintSchema(), length: v.pipe(uintSchema(MAX_CHUNK_SIZE), v.minValue(1)) })

/**
 * The sync protocol, CBOR messages `[2, type, body]` (see PROTOCOL.md). Every message is
 * validated before use; anything else closes the session.
 */
export const syncCodec = defineMessageCodec({
  protocol: 'cloudsync',
  version: SYNC_PROTOCOL_VERSION,
  maxMessageSize: MAX_SYNC_MESSAGE,
  messages: {
    /** First message each way: who I am, which folder, where my index stands. */
    hello: { type: 1, schema: v.strictObject({ folder: textSchema(128), device: textSchema(64), root: bytesSchema({ length: 32 }), sequence: uintSchema() }) },
    /** Send me your records changed after `since` (your sequence numbers); I take `credit` of them now. */
    want: { type: 2, schema: v.strictObject({ since: uintSchema(), credit: uintSchema() }) },
    /** Index records, in sequence order, within the credit given. */
    index: { type: 3, schema: v.strictObject({ records: v.pipe(v.array(recordSchema), v.maxLength(MAX_RECORDS_PER_MESSAGE)) }) },
    /** All records up to `sequence` were sent: the sender is caught up (more follow as it changes). */
    indexEnd: { type: 4, schema: v.strictObject({ sequence: uintSchema(), root: bytesSchema({ length: 32 }) }) },
    /** Send me these chunks: each by path and place, as your record names them. */
    fetch: { type: 5, schema: v.strictObject({ requests: v.pipe(v.array(requestSchema), v.minLength(1), v.maxLength(MAX_REQUESTS_PER_MESSAGE)) }) },
    /** Chunks asked for, several to a message: `[id, bytes]` each (the receiver checks every hash). */
    data: { type: 6, schema: v.strictObject({ chunks: v.pipe(v.array(v.tuple([uintSchema(0xffff_ffff), bytesSchema({ maxLength: MAX_CHUNK_SIZE })])), v.minLength(1), v.maxLength(MAX_REQUESTS_PER_MESSAGE)) }) },
    /** I no longer have those chunks (the file changed or went). */
    missing: { type: 7, schema: v.strictObject({ ids: v.pipe(v.array(uintSchema(0xffff_ffff)), v.minLength(1), v.maxLength(MAX_REQUESTS_PER_MESSAGE)) }) },
    /** I applied your index up to `sequence`; my root is now `root`. */
    ack: { type: 8, schema: v.strictObject({ sequence: uintSchema(), root: bytesSchema({ length: 32 }) }) },
    ping: { type: 9, schema: v.strictObject({ t: uintSchema() }) },
    pong: { type: 10, schema: v.strictObject({ t: uintSchema() }) },
    /** One of your records was refused here (unsafe name, case clash, quota, full disk). */
    error: { type: 11, schema: v.strictObject({ code: textSchema(64), message: textSchema(1000), path: v.optional(textSchema(4096)) }) },
    /** Where applying your changes stands here. */
    status: { type: 12, schema: v.strictObject({ state: v.picklist(['syncing', 'idle']), pendingFiles: uintSchema(), pendingBytes: uintSchema() }) },
    /** I take `records` more of your index records. */
    credit: { type: 13, schema: v.strictObject({ records: v.pipe(uintSchema(), v.minValue(1)) }) },
  },
})

export type SyncMessage = ReturnType<typeof syncCodec.decode>

/**
 * Why a peer's record cannot describe a file the chunker could have cut, or undefined when
 * it can: a tombstone is empty; otherwise the average chunk size is one the chunker uses,
 * every chunk holds at least one byte, every chunk but the last at least the minimum for
 * that average and none more than the maximum, and the lengths add up to the size. So a
 * record's chunk list is bounded by its size: no empty file with 250,000 empty chunks.
 */
export function recordProblem(record: WireRecord): string | undefined {
  const count = record.chunkLengths.length
  if (record.kind !== undefined || record.target !== undefined) {
    if (record.size !== 0 || count !== 0 || record.chunkHashes.length !== 0 || record.chunkSize !== 0) return `a ${record.kind ?? 'link target on a file'} with content`
    if (record.kind === 'dir' && record.target !== undefined) return 'a folder with a link target'
    if (record.kind === 'symlink' && !record.deleted && (record.target === undefined || record.target === '' || record.target.includes('\0'))) return 'a symbolic link without a usable target'
    if (record.kind === undefined) return 'a link target on a file'
    return undefined
  }
  if (record.chunkHashes.length !== count * CHUNK_HASH_LENGTH) return 'its chunk hashes and lengths differ in number'
  if (record.deleted) return record.size === 0 && count === 0 ? undefined : 'a deleted file with content'
  const average = record.chunkSize
  if (average < MIN_AVERAGE || average > MAX_AVERAGE || (average & (average - 1)) !== 0) return `an average chunk size of ${average} bytes, which the chunker never uses`
  if (record.size === 0) return count === 0 ? undefined : 'an empty file with chunks'
  let total = 0
  for (let i = 0; i < count; i++) {
    const length = record.chunkLengths[i] as number
    if (length < 1 || length > average * 4 || (i < count - 1 && length < average / 2)) return `a chunk of ${length} bytes, outside the chunker's limits`
    total += length
  }
  return total === record.size ? undefined : 'chunk lengths that do not add up to its size'
}
