import { AgeHeaderInvalidError } from '../errors.js'

/**
 * age's ASCII armor: the binary file as padded standard base64 in lines of 64 columns
 * between `-----BEGIN AGE ENCRYPTED FILE-----` and `-----END AGE ENCRYPTED FILE-----`.
 * Both directions stream. The decoder is strict (as age's is): every line but the last
 * is exactly 64 columns, padding only at the very end, nothing but white space around.
 */

export const ARMOR_BEGIN = '-----BEGIN AGE ENCRYPTED FILE-----'
export const ARMOR_END = '-----END AGE ENCRYPTED FILE-----'
const COLUMNS = 64
const BYTES_PER_LINE = 48
const MAX_LINE = 1024
const encoder = new TextEncoder()

/** True when `head` (the first bytes of a file) starts, after white space, with the armor line. */
export function looksArmored(head: Uint8Array): boolean {
  let i = 0
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x09 || head[i] === 0x0a || head[i] === 0x0d)) i++
  const prefix = Buffer.from(head.buffer, head.byteOffset + i, Math.min(head.length - i, 10)).toString('latin1')
  return prefix.length > 0 && '-----BEGIN'.startsWith(prefix) && prefix.length === 10
}

export class ArmorEncoder {
  #pending: Uint8Array = new Uint8Array(0)
  #started = false

  push(bytes: Uint8Array): Uint8Array {
    let text = this.#started ? '' : `${ARMOR_BEGIN}\n`
    this.#started = true
    const data = this.#pending.length === 0 ? bytes : Buffer.concat([this.#pending, bytes])
    const whole = data.length - (data.length % BYTES_PER_LINE)
    const encoded = Buffer.from(data.buffer, data.byteOffset, whole).toString('base64')
    for (let offset = 0; offset < encoded.length; offset += COLUMNS) text += `${encoded.slice(offset, offset + COLUMNS)}\n`
    this.#pending = Uint8Array.from(data.subarray(whole))
    return encoder.encode(text)
  }

  finish(): Uint8Array {
    let text = this.#started ? '' : `${ARMOR_BEGIN}\n`
    if (this.#pending.length > 0) text += `${Buffer.from(this.#pending).toString('base64')}\n`
    return encoder.encode(`${text}${ARMOR_END}\n`)
  }
}

export class ArmorDecoder {
  #state: 'begin' | 'body' | 'short' | 'end' = 'begin'
  #carry = ''

  #invalid(why: string): AgeHeaderInvalidError {
    return new AgeHeaderInvalidError(`This armored age file is malformed: ${why}.`)
  }

  push(bytes: Uint8Array): Buffer[] {
    const text = this.#carry + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
    const lines = text.split('\n')
    this.#carry = lines.pop() as string
    if (this.#carry.length > MAX_LINE) throw this.#invalid('a line is too long')
    const out: Buffer[] = []
    for (const line of lines) {
      const decoded = this.#line(line.endsWith('\r') ? line.slice(0, -1) : line)
      if (decoded !== undefined) out.push(decoded)
    }
    return out
  }

  finish(): Buffer[] {
    const out: Buffer[] = []
    if (this.#carry !== '') {
      const decoded = this.#line(this.#carry.endsWith('\r') ? this.#carry.slice(0, -1) : this.#carry)
      if (decoded !== undefined) out.push(decoded)
      this.#carry = ''
    }
    if (this.#state !== 'end') throw this.#invalid('it ends before its END line')
    return out
  }

  #line(line: string): Buffer | undefined {
    switch (this.#state) {
      case 'begin':
        if (line.trim() === '') return undefined
        if (line.trim() !== ARMOR_BEGIN) throw this.#invalid('it does not start with the BEGIN line')
        this.#state = 'body'
        return undefined
      case 'end':
        if (line.trim() !== '') throw this.#invalid('data follows the END line')
        return undefined
      case 'body':
      case 'short': {
        if (line === ARMOR_END) {
          this.#state = 'end'
          return undefined
        }
        if (this.#state === 'short') throw this.#invalid('a line follows a short line')
        if (line.length === 0 || line.length > COLUMNS || line.length % 4 !== 0) throw this.#invalid('a base64 line has the wrong length')
        const padded = /^[A-Za-z0-9+/]*={0,2}$/.test(line)
        if (!padded) throw this.#invalid('a line is not base64')
        const decoded = Buffer.from(line, 'base64')
        if (decoded.toString('base64') !== line) throw this.#invalid('a line is not canonical base64')
        if (line.length < COLUMNS || line.endsWith('=')) this.#state = 'short'
        return decoded
      }
    }
  }
}
