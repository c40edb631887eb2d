import type { SyncEvent } from '@cloudbox/cloudsync'

export type InstanceState = 'stopped' | 'starting' | 'running' | 'stopping' | 'destroyed'
export type TransportKind = 'direct' | 'hub'

/** What an error looks like in an event: its stable code and message. */
export interface EventError {
  code: string
  message: string
}

/** One typed stream per instance: lifecycle, connections, pairing, admin and sync. */
export type CloudBoxEvent =
  | { type: 'state'; state: InstanceState }
  | { type: 'connection'; state: 'connecting' | 'connected' | 'disconnected'; peer: string; transport?: TransportKind; url?: string; error?: EventError }
  | { type: 'retry'; target: 'server' | 'hub'; attempt: number; delayMs: number; error?: EventError }
  | { type: 'latency'; peer: string; milliseconds: number }
  | { type: 'hub'; state: 'registered' | 'disconnected'; url: string; error?: EventError }
  | { type: 'pairing'; outcome: 'paired' | 'refused'; device: string; label?: string; error?: EventError }
  | { type: 'device'; device: string; change: 'blocked' | 'unblocked' | 'revoked' }
  /** The server refused this client (blocked, revoked, not paired): it stops or slows retrying. */
  | { type: 'refused'; error: EventError }
  | { type: 'session-error'; peer?: string; error: EventError }
  | { type: 'sync'; event: SyncEvent }

export function eventError(error: unknown): EventError {
  const code = typeof (error as { code?: unknown })?.code === 'string' ? (error as { code: string }).code : 'ERR_UNKNOWN'
  return { code, message: error instanceof Error ? error.message : String(error) }
}
