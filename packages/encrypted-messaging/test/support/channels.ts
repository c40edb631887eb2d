/** Helpers shared by the channel tests. */
import { createServer, connect, type Server, type Socket } from 'node:net'
import { isEncryptedMessagingError } from '../../src/errors.js'
import type { MessageChannel } from '../../src/interfaces/message-channel.js'

export type Cleanup = (() => Promise<void> | void)[]

/** 'ok', the error's code, or 'AbortError'; anything else is rethrown so the test fails loudly. */
export async function outcome(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'ok'
  } catch (error) {
    return codeOf(error)
  }
}

export function codeOf(error: unknown): string {
  if ((error as Error)?.name === 'AbortError') return 'AbortError'
  if (isEncryptedMessagingError(error)) return error.code
  throw error
}

export async function readAll(channel: MessageChannel): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const message of channel) out.push(message)
  return out
}

/** A connected TCP loopback pair on 127.0.0.1 port 0: [client socket, server socket]. */
export async function socketPair(cleanup: Cleanup): Promise<[Socket, Socket]> {
  let accepted!: (socket: Socket) => void
  const serverSide = new Promise<Socket>((resolve) => {
    accepted = resolve
  })
  const server: Server = createServer((socket) => {
    cleanup.push(() => void socket.destroy())
    accepted(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const port = (server.address() as { port: number }).port
  const client = connect(port, '127.0.0.1')
  cleanup.push(() => void client.destroy())
  await new Promise((resolve, reject) => client.once('connect', resolve).once('error', reject))
  return [client, await serverSide]
}
