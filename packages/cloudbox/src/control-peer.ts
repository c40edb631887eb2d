/**
 * One side of an open session's control lane: keep-alive pings (with latency), admin
 * calls and their answers, and the server's "you are refused" notice. Nothing heard
 * for three keep-alive periods closes the session, so a dead path is noticed even when
 * the transport does not say so.
 */
import type { MessageChannel } from '@cloudbox/encrypted-messaging'
import type { AdminOperation } from './interfaces/cloud-admin.js'
import { CloudBoxError, errors, refusalError } from './errors.js'
import { controlCodec, type ControlMessage } from './wire/control.js'

export interface ControlHandlers {
  /** Runs an admin call from the peer (server side); throw a CloudBoxError to refuse it. */
  onRequest?: (op: string, args: unknown) => Promise<unknown>
  onLatency?: (milliseconds: number) => void
}

type Pending = { resolve(value: unknown): void; reject(error: Error): void }

export class ControlPeer {
  readonly #lane: MessageChannel
  readonly #reader: AsyncIterator<Uint8Array>
  readonly #handlers: ControlHandlers
  readonly #keepAliveMs: number
  readonly #pending = new Map<number, Pending>()
  #nextId = 1
  #heardAt = Date.now()
  #closedWith: Error | undefined

  constructor(lane: MessageChannel, reader: AsyncIterator<Uint8Array>, handlers: ControlHandlers, keepAliveMs: number) {
    this.#lane = lane
    this.#reader = reader
    this.#handlers = handlers
    this.#keepAliveMs = keepAliveMs
  }

  send<Kind extends Parameters<typeof controlCodec.encode>[0]>(kind: Kind, body: Parameters<typeof controlCodec.encode<Kind>>[1]): Promise<void> {
    return this.#lane.send(controlCodec.encode(kind, body))
  }

  /** An admin call to the peer. */
  call(op: AdminOperation, args: unknown[], timeoutMs = 60_000): Promise<unknown> {
    if (this.#closedWith !== undefined) return Promise.reject(this.#closedWith)
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(errors.timeout(`The admin call ${op}`))
      }, timeoutMs)
      this.#pending.set(id, {
        resolve: (value) => (clearTimeout(timer), resolve(value)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      })
      this.send('request', { id, op, args }).catch((error: Error) => this.#pending.get(id)?.reject(error))
    })
  }

  /** Reads the lane until the session ends; resolves with the reason (undefined: clean). */
  async run(): Promise<Error | undefined> {
    const timer = setInterval(() => {
      if (Date.now() - this.#heardAt > 3 * this.#keepAliveMs) {
        void this.#lane.close(errors.timeout('The session (no answer to keep-alives)'))
        return
      }
      this.send('ping', { t: Date.now() }).catch(() => {})
    }, this.#keepAliveMs)
    let failure: Error | undefined
    try {
      for (;;) {
        const next = await this.#reader.next()
        if (next.done === true) break
        this.#heardAt = Date.now()
        let message: ControlMessage
        try {
          message = controlCodec.decode(next.value)
        } catch (error) {
          throw errors.protocol('malformed control message', error)
        }
        await this.#handle(message)
      }
    } catch (error) {
      failure = error as Error
      await this.#lane.close(failure).catch(() => {})
    } finally {
      clearInterval(timer)
      const reason = failure ?? (await this.#lane.closed)
      this.#closedWith = reason ?? errors.unreachable('the session closed')
      for (const pending of this.#pending.values()) pending.reject(this.#closedWith)
      this.#pending.clear()
    }
    return failure ?? (await this.#lane.closed)
  }

  async #handle(message: ControlMessage): Promise<void> {
    switch (message.kind) {
      case 'ping':
        await this.send('pong', { t: message.body.t })
        return
      case 'pong':
        this.#handlers.onLatency?.(Math.max(0, Date.now() - message.body.t))
        return
      case 'refused':
        throw refusalError(message.body.code, message.body.message, message.body.retryAfterMs)
      case 'response': {
        const pending = this.#pending.get(message.body.id)
        if (pending === undefined) return
        this.#pending.delete(message.body.id)
        const { error } = message.body
        if (error !== undefined) pending.reject(refusalError(error.code, error.message))
        else pending.resolve(message.body.value)
        return
      }
      case 'request': {
        const { id, op, args } = message.body
        const handler = this.#handlers.onRequest
        if (handler === undefined) throw errors.protocol('admin calls go from client to server only')
        // Calls run concurrently with keep-alives; answers go back by id.
        handler(op, args).then(
          (value) => this.send('response', { id, ...(value === undefined ? {} : { value }) }),
          (error: unknown) => {
            const known = error instanceof CloudBoxError
            const code = known ? error.code : 'ERR_CONTROL_PROTOCOL'
            const text = known ? error.message : `The server could not do ${op}: invalid arguments or an internal error.`
            return this.send('response', { id, error: { code, message: text.slice(0, 512) } })
          },
        ).catch(() => {})
        return
      }
      default:
        throw errors.protocol(`unexpected ${message.kind} during a session`)
    }
  }
}
