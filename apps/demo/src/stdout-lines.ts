/**
 * Lines for standard output, written together: `serve --json` prints an event per file
 * received, and a pipe write each (a system call, synchronous on Linux) took a tenth of a
 * busy server's time with 20,000 small files. Lines wait at most for the next turn of the
 * event loop (or 64 KiB), and anything else written to standard output goes after them.
 */
const FLUSH_BYTES = 64 * 1024
let pending: string[] = []
let bytes = 0
let scheduled: NodeJS.Immediate | undefined

export function writeLine(line: string): void {
  pending.push(line, '\n')
  bytes += line.length + 1
  if (bytes >= FLUSH_BYTES) flushLines()
  else scheduled ??= setImmediate(flushLines)
}

/** Writes what waits now (before other output, and at exit). */
export function flushLines(): void {
  if (scheduled !== undefined) clearImmediate(scheduled)
  scheduled = undefined
  if (pending.length === 0) return
  const text = pending.join('')
  pending = []
  bytes = 0
  process.stdout.write(text)
}

/** Standard output after the lines that wait. */
export function writeOut(text: string): void {
  flushLines()
  process.stdout.write(text)
}

process.once('exit', flushLines)
