import { AgeHeaderInvalidError, AgeUnsupportedError } from '../errors.js'

/**
 * The age v1 header (https://age-encryption.org/v1), parsed and written strictly:
 *
 *     age-encryption.org/v1
 *     -> TYPE ARG…
 *     BODY (base64 without padding, lines of 64 columns, the last one shorter, maybe empty)
 *     --- MAC (base64 of 32 bytes)
 *
 * Non-canonical base64, empty arguments, CR characters, a stanza body line longer than
 * 64 columns or a missing final short line are refused, as age refuses them.
 */

export const AGE_VERSION_LINE = 'age-encryption.org/v1'
export const AGE_HEADER_MAC_LENGTH = 32
/** Limits that keep a hostile header from costing memory or time. */
export const MAX_HEADER_LENGTH = 1024 * 1024
export const MAX_STANZAS = 1024
const COLUMNS = 64
const encoder = new TextEncoder()

export interface Stanza {
  readonly type: string
  readonly args: readonly string[]
  readonly body: Uint8Array
}

export interface ParsedHeader {
  readonly stanzas: readonly Stanza[]
  readonly mac: Uint8Array
  /** The header bytes the MAC covers: everything up to and including `---`. */
  readonly macInput: Uint8Array
  /** Length of the whole header in bytes, including the MAC line's newline. */
  readonly length: number
}

const BASE64_CHARS = /^[A-Za-z0-9+/]*$/

/** Unpadded standard base64; refuses padding, stray characters and non-zero spare bits. */
export function decodeBase64Strict(text: string): Uint8Array | undefined {
  if (!BASE64_CHARS.test(text) || text.length % 4 === 1) return undefined
  const bytes = Buffer.from(text, 'base64')
  if (encodeBase64Unpadded(bytes) !== text) return undefined
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

export function encodeBase64Unpadded(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '')
}

/** An argument is a non-empty string of visible ASCII (33–126). */
function isValidArgument(argument: string): boolean {
  if (argument.length === 0) return false
  for (let i = 0; i < argument.length; i++) {
    const code = argument.charCodeAt(i)
    if (code < 33 || code > 126) return false
  }
  return true
}

/** The text of a header up to and including `---` (what the MAC covers). */
export function formatHeaderWithoutMac(stanzas: readonly Stanza[]): string {
  let text = `${AGE_VERSION_LINE}\n`
  for (const stanza of stanzas) {
    for (const argument of [stanza.type, ...stanza.args]) {
      if (!isValidArgument(argument)) throw new RangeError(`Invalid age stanza argument: ${JSON.stringify(argument)}`)
    }
    text += `-> ${[stanza.type, ...stanza.args].join(' ')}\n`
    const body = encodeBase64Unpadded(stanza.body)
    // Full lines of 64 columns, then always a final shorter (possibly empty) line.
    let offset = 0
    while (body.length - offset >= COLUMNS) {
      text += `${body.slice(offset, offset + COLUMNS)}\n`
      offset += COLUMNS
    }
    text += `${body.slice(offset)}\n`
  }
  return `${text}---`
}

export function formatHeader(stanzas: readonly Stanza[], mac: Uint8Array): Uint8Array {
  return encoder.encode(`${formatHeaderWithoutMac(stanzas)} ${encodeBase64Unpadded(mac)}\n`)
}

/**
 * Where the header in `bytes` ends (the index just past the MAC line's newline),
 * or undefined when more bytes are needed.
 * @throws {AgeHeaderInvalidError} when no header end is found within the size limit.
 */
export function findHeaderEnd(bytes: Uint8Array): number | undefined {
  // The MAC line is the only line that starts with "---": stanza lines start with
  // "-> " and body lines are base64.
  const limit = Math.min(bytes.length, MAX_HEADER_LENGTH)
  for (let i = 0; i + 3 < limit; i++) {
    if (bytes[i] === 0x0a && bytes[i + 1] === 0x2d && bytes[i + 2] === 0x2d && bytes[i + 3] === 0x2d) {
      for (let j = i + 4; j < limit; j++) if (bytes[j] === 0x0a) return j + 1
      break
    }
  }
  if (bytes.length >= MAX_HEADER_LENGTH) throw new AgeHeaderInvalidError('This age header is larger than 1 MiB; it is not a file this tool sealed or can trust.')
  return undefined
}

/**
 * Parses a complete header (as delimited by {@link findHeaderEnd}).
 * @throws {AgeHeaderInvalidError} on any deviation from the format.
 * @throws {AgeUnsupportedError} on another age version.
 */
export function parseHeader(bytes: Uint8Array): ParsedHeader {
  const invalid = (why: string) => new AgeHeaderInvalidError(`This is not a valid age-encrypted file: ${why}.`)
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw invalid('its header is not text')
  }
  if (!text.endsWith('\n')) throw invalid('its header is incomplete')
  const lines = text.slice(0, -1).split('\n')
  const first = lines[0] ?? ''
  if (first !== AGE_VERSION_LINE) {
    if (/^age-encryption\.org\/v[0-9]+$/.test(first)) throw new AgeUnsupportedError(`This file uses age format "${first}"; only ${AGE_VERSION_LINE} is supported. Update CloudBox or open it with the age tool.`)
    throw invalid('it does not start with the age v1 line')
  }
  const stanzas: Stanza[] = []
  let index = 1
  for (;;) {
    const line = lines[index]
    if (line === undefined) throw invalid('its header ends without a MAC')
    if (line.startsWith('---')) break
    if (!line.startsWith('-> ')) throw invalid(`line ${index + 1} of its header is neither a stanza nor the MAC`)
    const parts = line.slice(3).split(' ')
    if (!parts.every(isValidArgument)) throw invalid(`stanza on line ${index + 1} has an empty or non-ASCII argument`)
    if (stanzas.length >= MAX_STANZAS) throw invalid(`it has more than ${MAX_STANZAS} recipient stanzas`)
    index++
    let body = ''
    for (;;) {
      const bodyLine = lines[index]
      if (bodyLine === undefined) throw invalid('a stanza body is cut off')
      if (bodyLine.length > COLUMNS || !BASE64_CHARS.test(bodyLine)) throw invalid(`line ${index + 1} is not a stanza body line`)
      body += bodyLine
      index++
      if (bodyLine.length < COLUMNS) break
    }
    const decoded = decodeBase64Strict(body)
    if (decoded === undefined) throw invalid('a stanza body is not canonical base64')
    const [type, ...args] = parts as [string, ...string[]]
    stanzas.push({ type, args, body: decoded })
  }
  if (stanzas.length === 0) throw invalid('it has no recipients')
  const macLine = lines[index] as string
  if (index !== lines.length - 1) throw invalid('its header has lines after the MAC')
  if (!macLine.startsWith('--- ')) throw invalid('its MAC line is malformed')
  const mac = decodeBase64Strict(macLine.slice(4))
  if (mac === undefined || mac.length !== AGE_HEADER_MAC_LENGTH) throw invalid('its MAC is malformed')
  const macInputLength = bytes.length - (macLine.length - 3) - 1
  return { stanzas, mac, macInput: bytes.subarray(0, macInputLength), length: bytes.length }
}
