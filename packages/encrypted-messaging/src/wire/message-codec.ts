/**
 * Versioned, strictly validated CBOR messages: the framing every CloudBox protocol
 * uses (handshake payloads here, sync messages in cloudsync). A protocol defines its
 * message types once, with a schema each; the codec refuses anything else.
 *
 * Encoding: a CBOR array `[version, type, body]` (see PROTOCOL.md, "Message framing").
 */
import { Decoder, Encoder } from 'cbor-x'
import * as v from 'valibot'
import { BadMessageError, MessageTooLargeError, UnsupportedVersionError } from '../errors.js'

/** One message type of a protocol: its number on the wire and the schema of its body. */
export interface MessageDefinition<Schema extends v.GenericSchema = v.GenericSchema> {
  /** Wire number; never reused for another meaning once released. */
  type: number
  schema: Schema
}

export type MessageDefinitions = Record<string, MessageDefinition>

/** A decoded message: the kind (its name in the definitions) and the validated body. */
export type DecodedMessage<Definitions extends MessageDefinitions> = {
  [Kind in keyof Definitions & string]: { kind: Kind; body: v.InferOutput<Definitions[Kind]['schema']> }
}[keyof Definitions & string]

export interface MessageCodec<Definitions extends MessageDefinitions> {
  readonly protocol: string
  readonly version: number
  readonly maxMessageSize: number
  /**
   * Encodes a message after validating its body against the schema.
   * @throws {TypeError} when the body does not match (a caller mistake).
   * @throws {MessageTooLargeError} when the encoding exceeds the maximum size.
   */
  encode<Kind extends keyof Definitions & string>(kind: Kind, body: v.InferInput<Definitions[Kind]['schema']>): Uint8Array
  /**
   * The same bytes as {@link encode}, as parts: byte strings of 1 KiB or more are not
   * copied but referenced (they must not change until the parts are sent). For bulk data
   * with a channel's `sendParts`.
   */
  encodeParts<Kind extends keyof Definitions & string>(kind: Kind, body: v.InferInput<Definitions[Kind]['schema']>): Uint8Array[]
  /**
   * Decodes and validates one message from the peer.
   * @throws {MessageTooLargeError} before decoding anything larger than the maximum.
   * @throws {UnsupportedVersionError} for another protocol version.
   * @throws {BadMessageError} for anything malformed, unknown or invalid.
   */
  decode(bytes: Uint8Array): DecodedMessage<Definitions>
}

export interface MessageCodecInit<Definitions extends MessageDefinitions> {
  /** Protocol name, for error messages. */
  protocol: string
  version: number
  maxMessageSize: number
  messages: Definitions
}

// Records and typed-array tags are cbor-x extensions another implementation would not
// speak; plain CBOR only.
const encoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true })
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true })

/**
 * Defines the messages of a protocol.
 * @throws {RangeError} when two messages share a type number.
 * @example
 * const codec = defineMessageCodec({
 *   protocol: 'example', version: 1, maxMessageSize: 1024,
 *   messages: { ping: { type: 1, schema: v.strictObject({ at: uintSchema() }) } },
 * })
 * const message = codec.decode(codec.encode('ping', { at: 5 }))
 */
export function defineMessageCodec<const Definitions extends MessageDefinitions>(init: MessageCodecInit<Definitions>): MessageCodec<Definitions> {
  const byType = new Map<number, [string, MessageDefinition]>()
  for (const [kind, definition] of Object.entries(init.messages)) {
    if (!Number.isInteger(definition.type) || definition.type < 0) throw new RangeError(`Message type of ${kind} must be a non-negative integer`)
    if (byType.has(definition.type)) throw new RangeError(`Message types ${kind} and ${byType.get(definition.type)![0]} share number ${definition.type}`)
    byType.set(definition.type, [kind, definition])
  }
  const { protocol, version, maxMessageSize } = init
  const checkedDefinition = (kind: string, body: unknown): MessageDefinition => {
    const definition = init.messages[kind]
    if (definition === undefined) throw new TypeError(`${protocol} has no message ${kind}`)
    const checked = v.safeParse(definition.schema, body)
    if (!checked.success) throw new TypeError(`Invalid ${protocol} ${kind} message: ${describeIssues(checked.issues)}`)
    return definition
  }

  return {
    protocol,
    version,
    maxMessageSize,
    encode(kind, body) {
      const definition = checkedDefinition(kind, body)
      const bytes = encoder.encode([version, definition.type, body])
      if (bytes.length > maxMessageSize) {
        throw new MessageTooLargeError(`A ${protocol} ${kind} message of ${bytes.length} bytes exceeds the maximum of ${maxMessageSize}.`)
      }
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    },
    encodeParts(kind, body) {
      const definition = checkedDefinition(kind, body)
      const writer = new PartsWriter()
      // Only what this writer knows (arrays, plain objects, strings, whole numbers, bytes) as
      // parts; anything else the usual way, joined.
      if (!writer.write([version, definition.type, body])) return [this.encode(kind, body)]
      const parts = writer.finish()
      const length = parts.reduce((sum, part) => sum + part.length, 0)
      if (length > maxMessageSize) {
        throw new MessageTooLargeError(`A ${protocol} ${kind} message of ${length} bytes exceeds the maximum of ${maxMessageSize}.`)
      }
      return parts
    },
    decode(bytes) {
      if (!(bytes instanceof Uint8Array)) throw new TypeError('A message must be a Uint8Array')
      if (bytes.length > maxMessageSize) {
        throw new MessageTooLargeError(`A ${protocol} message of ${bytes.length} bytes exceeds the maximum of ${maxMessageSize}; the session was closed.`)
      }
      let decoded: unknown
      try {
        decoded = decoder.decode(bytes)
      } catch (error) {
        // Garbage, trailing bytes, or nesting deep enough to exhaust the stack.
        throw new BadMessageError(`A ${protocol} message is not valid CBOR; the session was closed.`, { cause: error })
      }
      if (!Array.isArray(decoded) || decoded.length !== 3 || typeof decoded[0] !== 'number' || typeof decoded[1] !== 'number') {
        throw new BadMessageError(`A ${protocol} message has no valid envelope; the session was closed.`)
      }
      const [messageVersion, type, body] = decoded as [number, number, unknown]
      if (messageVersion !== version) {
        throw new UnsupportedVersionError(`The peer speaks ${protocol} version ${messageVersion}; this side speaks version ${version}. Update both sides to the same release.`)
      }
      const entry = byType.get(type)
      if (entry === undefined) throw new BadMessageError(`Unknown ${protocol} message type ${type}; the session was closed.`)
      const [kind, definition] = entry
      const checked = v.safeParse(definition.schema, body)
      if (!checked.success) {
        throw new BadMessageError(`Invalid ${protocol} ${kind} message (${describeIssues(checked.issues)}); the session was closed.`)
      }
      return { kind, body: checked.output } as DecodedMessage<Definitions>
    },
  }
}

/** Byte strings at least this long are referenced, not copied, by encodeParts. */
const REFERENCED_BYTES = 1024

/**
 * Plain CBOR (RFC 8949) as cbor-x writes it here, in parts: heads and small values in a
 * growing buffer, large byte strings as references to their own memory.
 */
class PartsWriter {
  readonly #parts: Uint8Array[] = []
  #buffer = Buffer.allocUnsafe(256)
  #start = 0
  #end = 0

  /** False when the value holds something this writer does not encode. */
  write(value: unknown): boolean {
    if (typeof value === 'number') {
      // Whole numbers 0 to 2^32 - 1, as cbor-x writes them (larger ones it may write as floats).
      if (!Number.isInteger(value) || value < 0 || value >= 0x1_0000_0000) return false
      this.#head(0, value)
      return true
    }
    if (typeof value === 'string') {
      const length = Buffer.byteLength(value)
      this.#head(3, length)
      this.#room(length)
      this.#end += this.#buffer.write(value, this.#end, 'utf8')
      return true
    }
    if (value instanceof Uint8Array) {
      this.#head(2, value.length)
      if (value.length >= REFERENCED_BYTES) {
        this.#cut()
        this.#parts.push(value)
      } else {
        this.#room(value.length)
        this.#buffer.set(value, this.#end)
        this.#end += value.length
      }
      return true
    }
    if (Array.isArray(value)) {
      this.#head(4, value.length)
      return value.every((item) => this.write(item))
    }
    if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      const entries = Object.entries(value)
      this.#head(5, entries.length)
      return entries.every(([key, item]) => this.write(key) && this.write(item))
    }
    return false
  }

  finish(): Uint8Array[] {
    this.#cut()
    return this.#parts
  }

  #head(major: number, argument: number): void {
    this.#room(9)
    const buffer = this.#buffer
    const type = major << 5
    if (argument < 24) buffer[this.#end++] = type | argument
    else if (argument < 0x100) {
      buffer[this.#end++] = type | 24
      buffer[this.#end++] = argument
    } else if (argument < 0x10000) {
      buffer[this.#end++] = type | 25
      this.#end = buffer.writeUInt16BE(argument, this.#end)
    } else if (argument < 0x1_0000_0000) {
      buffer[this.#end++] = type | 26
      this.#end = buffer.writeUInt32BE(argument, this.#end)
    } else {
      // Lengths only (whole numbers stop at 32 bits): 8 bytes of length, for a byte string past 4 GiB.
      buffer[this.#end++] = type | 27
      this.#end = buffer.writeBigUInt64BE(BigInt(argument), this.#end)
    }
  }

  /** Makes room for `bytes` more after #end. */
  #room(bytes: number): void {
    if (this.#end + bytes <= this.#buffer.length) return
    this.#cut()
    this.#buffer = Buffer.allocUnsafe(Math.max(bytes, 2 * this.#buffer.length))
    this.#start = 0
    this.#end = 0
  }

  /** Ends the current buffered part. */
  #cut(): void {
    if (this.#end > this.#start) this.#parts.push(this.#buffer.subarray(this.#start, this.#end))
    this.#start = this.#end
  }
}

// Paths and expectations only, never the received values (they may be secrets or huge).
function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues
    .slice(0, 3)
    .map((issue) => {
      const path = issue.path?.map((item) => String(item.key)).join('.') ?? ''
      return `${path === '' ? 'body' : path}: expected ${issue.expected ?? 'a valid value'}`
    })
    .join('; ')
}

/** A byte string schema (decoded as a plain Uint8Array view, never a Node Buffer). */
export function bytesSchema(limits: { length?: number; minLength?: number; maxLength?: number } = {}) {
  return v.pipe(
    // Any Uint8Array (views of shared or non-shared buffers alike).
    v.custom<Uint8Array>((value) => value instanceof Uint8Array, 'bytes'),
    v.check((bytes) => {
      if (limits.length !== undefined && bytes.length !== limits.length) return false
      if (limits.minLength !== undefined && bytes.length < limits.minLength) return false
      if (limits.maxLength !== undefined && bytes.length > limits.maxLength) return false
      return true
    }, `bytes${limits.length !== undefined ? ` of length ${limits.length}` : ''}${limits.maxLength !== undefined ? ` of at most ${limits.maxLength}` : ''}`),
    v.transform((bytes) => (Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))),
  )
}

/** A non-negative safe integer schema, optionally bounded. */
export function uintSchema(max: number = Number.MAX_SAFE_INTEGER) {
  return v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(max))
}

/** A text schema of bounded length without NUL characters. */
export function textSchema(maxLength: number) {
  return v.pipe(v.string(), v.maxLength(maxLength), v.check((text) => !text.includes('\0'), 'text without NUL'))
}
