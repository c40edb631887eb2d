/**
 * One sealed call over HTTP(S): the request written as it is (no copy through a web
 * stream, as `fetch` makes two of a 16 MiB body) on Node's keep-alive agent, and the
 * answer read into one buffer of its declared length.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { API_MAX_BODY, type BufferPool } from '@cloudbox/encrypted-messaging'

/** More than any sealed answer or JSON refusal can be: a longer body is not read. */
const MAX_ANSWER = API_MAX_BODY + 64 * 1024

export interface HttpAnswer {
  status: number
  contentType: string | undefined
  /** From `pool` when one was given: release it once it is read. */
  body: Buffer
  /** Settles once the request's bytes are all written, or its connection is gone: then they may be reused. */
  sent: Promise<void>
}

/**
 * POSTs `parts` (one body, in pieces written one after another) to `url`. Rejects with the
 * network's error (or an AbortError on `signal`), or with a RangeError for an answer
 * longer than any the API sends.
 */
export async function postBytes(url: string, contentType: string, parts: readonly Uint8Array[], options: { signal?: AbortSignal; pool?: BufferPool } = {}): Promise<HttpAnswer> {
  try {
    return await postOnce(url, contentType, parts, options)
  } catch (error) {
    // A kept-alive connection the server had just closed: the call never reached it, so
    // the same bytes go once more on a new one (had it arrived, the copy would be refused
    // as a replay, never run twice).
    if (!(error as { reusedSocket?: boolean }).reusedSocket || (error as NodeJS.ErrnoException).code !== 'ECONNRESET') throw error
    return await postOnce(url, contentType, parts, options)
  }
}

function postOnce(url: string, contentType: string, parts: readonly Uint8Array[], options: { signal?: AbortSignal; pool?: BufferPool }): Promise<HttpAnswer> {
  const { signal, pool } = options
  const target = new URL(url)
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest
  return new Promise<HttpAnswer>((resolve, reject) => {
    const request = send(target, {
      method: 'POST',
      headers: { 'content-type': contentType, 'content-length': parts.reduce((sum, part) => sum + part.length, 0) },
      ...(signal === undefined ? {} : { signal }),
    })
    let answered = false
    const sent = new Promise<void>((done) => {
      request.once('finish', done)
      request.once('close', done)
    })
    request.once('error', (error) => reject(Object.assign(error, { reusedSocket: request.reusedSocket && !answered })))
    request.once('response', (response: IncomingMessage) => {
      answered = true
      readAnswer(response, pool).then((answer) => resolve({ ...answer, sent }), (error: Error) => {
        request.destroy()
        reject(error)
      })
    })
    request.cork()
    for (const part of parts) request.write(part)
    request.uncork()
    request.end()
  })
}

function readAnswer(response: IncomingMessage, pool: BufferPool | undefined): Promise<Omit<HttpAnswer, 'sent'>> {
  return new Promise<Omit<HttpAnswer, 'sent'>>((resolve, reject) => {
    const declared = Number(response.headers['content-length'])
    const known = Number.isSafeInteger(declared) && declared >= 0
    if (known && declared > MAX_ANSWER) return reject(new RangeError(`The answer of ${declared} bytes is larger than any the API sends.`))
    // With a declared length, one buffer is filled in place; otherwise the pieces are joined.
    const whole = !known ? undefined : pool !== undefined ? pool.acquire(declared) : Buffer.allocUnsafe(declared)
    const pieces: Buffer[] = []
    let length = 0
    response.on('data', (piece: Buffer) => {
      if (length + piece.length > (known ? declared : MAX_ANSWER)) {
        response.destroy()
        return reject(new RangeError('The answer is longer than it declared or than any the API sends.'))
      }
      if (whole !== undefined) piece.copy(whole, length)
      else pieces.push(piece)
      length += piece.length
    })
    response.once('error', reject)
    response.once('end', () => {
      if (whole !== undefined && length !== declared) return reject(new Error('The answer ended before its declared length.'))
      resolve({ status: response.statusCode ?? 0, contentType: response.headers['content-type'], body: whole ?? Buffer.concat(pieces, length) })
    })
  })
}
