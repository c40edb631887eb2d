/** What a running server or client prints about its CloudBox events. */
import type { CloudBoxEvent } from '@cloudbox/cloudbox'
import type { LevelWithSilent } from 'pino'
import { createLogger, type Logger } from './log.js'
import type { Output } from './output.js'
import { formatBytes, ProgressLine } from './progress.js'
import { writeLine } from './stdout-lines.js'

const short = (id: string) => (id.length > 16 ? `${id.slice(0, 10)}…${id.slice(-4)}` : id)

/** A human line for the events worth a line (progress goes to the bar instead). */
export function describeEvent(event: CloudBoxEvent): string | undefined {
  switch (event.type) {
    case 'connection':
      if (event.state === 'connected') return `connected to ${short(event.peer)}${event.transport ? ` (${event.transport}${event.url ? ` ${event.url}` : ''})` : ''}`
      if (event.state === 'disconnected') return `disconnected from ${short(event.peer)}${event.error ? `: ${event.error.message}` : ''}`
      return undefined
    case 'retry':
      return `retrying the ${event.target} in ${(event.delayMs / 1000).toFixed(1)} s (attempt ${event.attempt})${event.error ? `: ${event.error.message}` : ''}`
    case 'hub':
      return event.state === 'registered' ? `registered at hub ${event.url}` : `lost hub ${event.url}${event.error ? `: ${event.error.message}` : ''}`
    case 'pairing':
      return event.outcome === 'paired' ? `paired device ${short(event.device)}${event.label ? ` (${event.label})` : ''}` : `refused a pairing from ${short(event.device)}: ${event.error?.message ?? 'wrong PIN'}`
    case 'device':
      return `device ${short(event.device)} ${event.change}`
    case 'refused':
      return `the server refused this device: ${event.error.message}`
    case 'session-error':
      return `session error${event.peer ? ` with ${short(event.peer)}` : ''}: ${event.error.message} (${event.error.code})`
    case 'sync': {
      const sync = event.event
      if (sync.type === 'file' && sync.action === 'downloaded') return `↓ ${sync.path} (${formatBytes(sync.bytesFromPeer)} from peer, ${formatBytes(sync.bytesReused)} reused)`
      if (sync.type === 'file' && sync.action === 'deleted') return `✗ ${sync.path} deleted`
      if (sync.type === 'conflict') return `conflict on ${sync.path}: kept the ${sync.kept} version, the other is ${sync.copy}`
      if (sync.type === 'error') return `sync error${sync.path ? ` on ${sync.path}` : ''}: ${sync.error.message} (${sync.error.code})`
      if (sync.type === 'peer-error') return `device ${short(sync.device)} reported: ${sync.message} (${sync.code})`
      if (sync.type === 'delete-guard') return `held back deleting ${sync.paths.length} files (more than the guard allows): run sync with --confirm-deletes to delete them everywhere, or --restore-deleted to bring them back (the status page has both buttons)`
      if (sync.type === 'peer' && sync.state === 'in-sync') return `in sync with ${short(sync.device)}`
      return undefined
    }
    default:
      return undefined
  }
}

/** How much an event matters in the log. */
function levelOf(event: CloudBoxEvent): 'info' | 'warn' | 'error' {
  switch (event.type) {
    case 'refused':
      return 'error'
    case 'retry':
    case 'session-error':
      return 'warn'
    case 'connection':
      return event.state === 'disconnected' && event.error !== undefined ? 'warn' : 'info'
    case 'hub':
      return event.state === 'registered' ? 'info' : 'warn'
    case 'pairing':
      return event.outcome === 'paired' ? 'info' : 'warn'
    case 'sync':
      if (event.event.type === 'error') return 'error'
      return event.event.type === 'peer-error' || event.event.type === 'delete-guard' ? 'warn' : 'info'
    default:
      return 'info'
  }
}

/** The error code an event carries, for filtering logs. */
function codeOf(event: CloudBoxEvent): string | undefined {
  const error = 'error' in event ? event.error : event.type === 'sync' && 'error' in event.event ? event.event.error : undefined
  return typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : undefined
}

/** A long-running command's log and its progress bar, which log lines step around on a terminal. */
export interface CommandLog {
  readonly log: Logger
  readonly bar: ProgressLine
}

export function createCommandLog(name: string, level: LevelWithSilent): CommandLog {
  const bar = new ProgressLine()
  return { bar, log: createLogger(name, level, (line) => bar.line(line)) }
}

/**
 * Prints a box's events: JSON lines on stdout with --json (results for scripts), else log
 * entries on stderr, and on a terminal a progress bar (elsewhere progress is a debug entry
 * at most once a second, so a journal is not flooded).
 */
export function printEvents(output: Output, subscribe: (listener: (event: CloudBoxEvent) => void) => () => void, { log, bar }: CommandLog): () => void {
  let lastProgress = 0
  const unsubscribe = subscribe((event) => {
    if (output.json) {
      writeLine(JSON.stringify({ event: event.type, ...event }, jsonReplacer))
      return
    }
    if (event.type === 'sync' && event.event.type === 'progress') {
      const progress = event.event
      if (bar.terminal) {
        bar.update({ label: progress.path, done: progress.doneBytes, total: progress.totalBytes, bytesPerSecond: progress.bytesPerSecond, ...(progress.etaSeconds === undefined ? {} : { etaSeconds: progress.etaSeconds }) })
      } else if (Date.now() - lastProgress >= 1000 || progress.doneBytes >= progress.totalBytes) {
        lastProgress = Date.now()
        log.debug({ event: 'progress', path: progress.path, doneBytes: progress.doneBytes, totalBytes: progress.totalBytes, bytesPerSecond: Math.round(progress.bytesPerSecond) }, 'progress')
      }
      return
    }
    const line = describeEvent(event)
    if (line === undefined) return
    const code = codeOf(event)
    log[levelOf(event)]({ event: event.type, ...(code === undefined ? {} : { code }) }, line)
  })
  return () => {
    unsubscribe()
    bar.clear()
  }
}

/** Events carry Errors and byte arrays; JSON gets their code/message and hex. */
function jsonReplacer(_key: string, item: unknown): unknown {
  if (item instanceof Error) return { code: (item as { code?: unknown }).code ?? 'ERR_UNKNOWN', message: item.message }
  if (item instanceof Uint8Array) return Buffer.from(item.buffer, item.byteOffset, item.byteLength).toString('hex')
  return item
}
