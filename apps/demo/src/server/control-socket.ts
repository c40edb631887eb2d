/**
 * The local control socket of a running `cloudbox serve`: admin commands run with the
 * same `--home` reach the live server through it and act at once (a revoked device is
 * dropped mid-session). A Unix socket in a folder only the user can open (0700), the
 * socket itself 0600. One JSON request per line, one JSON answer per line.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { dirname, join } from 'node:path'
import { CliError } from '../errors.js'

export const controlSocketPath = (home: string): string => join(home, 'run', 'control.sock')

const MAX_LINE = 1024 * 1024

export interface ControlRequest {
  op: string
  args: unknown[]
}

export type ControlHandler = (request: ControlRequest) => Promise<unknown>

export const notRunningError = (home: string) =>
  new CliError('ERR_SERVER_NOT_RUNNING', `No server runs with home ${home}; start it with \`cloudbox serve DIR --home ${home}\`, then run this command again.`)

const alreadyRunning = (home: string) => new CliError('ERR_ALREADY_RUNNING', `A server already runs with home ${home}; stop it first, or use another --home.`)

/** Refuses early (before anything starts) when a server already answers on the home's control socket. */
export async function assertNotServing(home: string): Promise<void> {
  if (await answers(controlSocketPath(home))) throw alreadyRunning(home)
}

/** Listens on the home's control socket; refuses to start when another server holds it. */
export async function serveControl(home: string, handler: ControlHandler): Promise<{ close(): Promise<void> }> {
  const path = controlSocketPath(home)
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  chmodSync(dirname(path), 0o700)
  if (await answers(path)) throw alreadyRunning(home)
  rmSync(path, { force: true }) // left by a server that did not stop cleanly
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buffered = ''
    socket.setEncoding('utf8')
    socket.on('data', (text: string) => {
      buffered += text
      if (buffered.length > MAX_LINE) return socket.destroy()
      let newline: number
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        void respond(line).then((answer) => {
          if (!socket.destroyed) socket.write(`${serialize(answer)}\n`)
        })
      }
    })
  })
  const respond = async (line: string): Promise<unknown> => {
    let request: ControlRequest
    try {
      const parsed = JSON.parse(line) as { op?: unknown; args?: unknown }
      if (typeof parsed.op !== 'string' || !Array.isArray(parsed.args)) throw new Error('malformed')
      request = { op: parsed.op, args: parsed.args }
    } catch {
      return { error: { code: 'ERR_BAD_REQUEST', message: 'The control socket takes one JSON {op, args} per line.' } }
    }
    try {
      return { result: (await handler(request)) ?? null }
    } catch (error) {
      const code = (error as { code?: unknown } | undefined)?.code
      return { error: { code: typeof code === 'string' ? code : 'ERR_INTERNAL', message: error instanceof Error ? error.message : String(error) } }
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => resolve())
  })
  chmodSync(path, 0o600)
  return {
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      rmSync(path, { force: true })
    },
  }
}

/** An answer as one JSON line; one that cannot be written as JSON becomes an error answer, never an exception. */
function serialize(answer: unknown): string {
  try {
    return JSON.stringify(answer)
  } catch {
    return JSON.stringify({ error: { code: 'ERR_INTERNAL', message: 'The server could not write its answer; see its log.' } })
  }
}

async function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path)
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Sends one request to the server running with `home`. */
export async function callControl(home: string, op: string, args: unknown[] = []): Promise<unknown> {
  const path = controlSocketPath(home)
  return new Promise((resolve, reject) => {
    const socket = createConnection(path)
    let buffered = ''
    socket.setEncoding('utf8')
    socket.once('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT' || error.code === 'ECONNREFUSED' ? notRunningError(home) : error)
    })
    socket.once('connect', () => socket.write(`${JSON.stringify({ op, args })}\n`))
    socket.on('data', (text: string) => {
      buffered += text
      const newline = buffered.indexOf('\n')
      if (newline < 0) return
      socket.destroy()
      const answer = JSON.parse(buffered.slice(0, newline)) as { result?: unknown; error?: { code: string; message: string } }
      if (answer.error !== undefined) reject(new CliError(answer.error.code, answer.error.message))
      else resolve(answer.result)
    })
    socket.once('end', () => reject(new CliError('ERR_SERVER_NOT_RUNNING', 'The server closed the control socket without answering; it may be stopping.')))
  })
}
