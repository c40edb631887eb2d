/**
 * The log of long-running commands (serve, hub, sync): pino on standard error, JSON lines
 * for a journal or a collector, short coloured lines on a terminal. Standard output keeps
 * the results (and the events of --json). Secrets never reach a log: the fields that could
 * carry them are censored, and no message interpolates them.
 */
import { pino, type Level, type LevelWithSilent, type Logger, type LoggerOptions } from 'pino'
import { CliError } from './errors.js'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export const LOG_LEVEL_VARIABLE = 'CLOUDBOX_LOG_LEVEL'
export type { Logger }

// Field names, at the top level and one level down, whose values are never logged.
const SECRET_FIELDS = ['pin', 'masterPin', 'token', 'statusToken', 'passphrase', 'secret', 'secretKey', 'privateKey', 'recoveryPhrase', 'mnemonic', 'authorization', 'cookie', 'statusPage', 'statusUrl']
export const REDACTED = '[redacted]'

/** --log-level, else CLOUDBOX_LOG_LEVEL, else info. */
export function logLevelFrom(option: string | undefined): LevelWithSilent {
  const chosen = option ?? (process.env[LOG_LEVEL_VARIABLE] || undefined) ?? 'info'
  const level = chosen.toLowerCase()
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    const source = option === undefined ? LOG_LEVEL_VARIABLE : '--log-level'
    throw new CliError('ERR_USAGE', `${source} takes one of ${LOG_LEVELS.join(', ')}, not "${chosen}".`, { exitCode: 2 })
  }
  return level as LevelWithSilent
}

const COLOURS: Record<Level, string> = { fatal: '35', error: '31', warn: '33', info: '32', debug: '36', trace: '90' }
const LEVEL_NAMES: Record<number, Level> = { 60: 'fatal', 50: 'error', 40: 'warn', 30: 'info', 20: 'debug', 10: 'trace' }
const HIDDEN = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'name'])

/** One pino JSON line as a terminal line: time, level, message, then the other fields. */
export function prettyLine(json: string, colour: boolean): string {
  const record = JSON.parse(json) as Record<string, unknown>
  const level = LEVEL_NAMES[record['level'] as number] ?? 'info'
  const time = new Date(record['time'] as number).toTimeString().slice(0, 8)
  const tag = level.toUpperCase().padEnd(5)
  const fields = Object.entries(record)
    .filter(([key]) => !HIDDEN.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(' ')
  const message = `${record['msg'] ?? ''}${fields === '' ? '' : `  ${fields}`}`
  return colour ? `\x1b[90m${time}\x1b[0m \x1b[${COLOURS[level]}m${tag}\x1b[0m ${message}` : `${time} ${tag} ${message}`
}

/** The pino options every command's logger uses (exported for the redaction tests). */
export function loggerOptions(name: string, level: LevelWithSilent): LoggerOptions {
  return { name, level, base: { pid: process.pid }, redact: { paths: SECRET_FIELDS.flatMap((field) => [field, `*.${field}`]), censor: REDACTED } }
}

/**
 * A logger for one command. On a terminal each entry is handed to `writeLine` (so a
 * progress bar can step aside), elsewhere it is written to standard error as JSON.
 */
export function createLogger(name: string, level: LevelWithSilent, writeLine: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Logger {
  const options = loggerOptions(name, level)
  if (process.stderr.isTTY !== true) return pino(options, pino.destination({ fd: 2, sync: true }))
  const colour = process.env['NO_COLOR'] === undefined
  return pino(options, { write: (chunk: string) => writeLine(prettyLine(chunk, colour)) })
}

export const LOG_LEVEL_HELP = `what to log on standard error: ${LOG_LEVELS.join(', ')} (default: $${LOG_LEVEL_VARIABLE}, else info); JSON lines unless on a terminal`
