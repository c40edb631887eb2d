/**
 * How long work shows itself: on a terminal, one progress bar redrawn in place with
 * rate and ETA; otherwise plain lines, at most one per second, so logs stay readable.
 * Writes to stderr, so `--json` output on stdout stays clean.
 */
export interface ProgressUpdate {
  label: string
  done: number
  total: number
  bytesPerSecond?: number
  etaSeconds?: number
}

export const formatBytes = (bytes: number): string => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`
}

export const formatDuration = (seconds: number): string => {
  if (!Number.isFinite(seconds)) return '?'
  const s = Math.round(seconds)
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`
}

export class ProgressLine {
  readonly #tty: boolean
  readonly #stream: NodeJS.WriteStream
  #lastPlain = 0
  #drawn = false

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.#stream = stream
    this.#tty = stream.isTTY === true
  }

  /** True when the bar is drawn in place (a terminal); elsewhere it prints plain lines. */
  get terminal(): boolean {
    return this.#tty
  }

  update(progress: ProgressUpdate): void {
    const ratio = progress.total > 0 ? Math.min(1, progress.done / progress.total) : 1
    const rate = progress.bytesPerSecond === undefined ? '' : ` ${formatBytes(progress.bytesPerSecond)}/s`
    const eta = progress.etaSeconds === undefined ? '' : ` ETA ${formatDuration(progress.etaSeconds)}`
    const figures = `${formatBytes(progress.done)}/${formatBytes(progress.total)}${rate}${eta}`
    if (this.#tty) {
      const width = Math.max(10, Math.min(30, (this.#stream.columns ?? 80) - figures.length - progress.label.length - 12))
      const filled = Math.round(ratio * width)
      const label = progress.label.length > 40 ? `…${progress.label.slice(-39)}` : progress.label
      this.#stream.write(`\r\x1b[2K[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${figures} ${label}`)
      this.#drawn = true
      return
    }
    const now = Date.now()
    if (now - this.#lastPlain < 1000 && ratio < 1) return
    this.#lastPlain = now
    this.#stream.write(`${progress.label}: ${(ratio * 100).toFixed(0)}% ${figures}\n`)
  }

  /** A line of its own (the bar is cleared first, then redrawn by the next update). */
  line(text: string): void {
    this.clear()
    this.#stream.write(`${text}\n`)
  }

  clear(): void {
    if (this.#drawn) this.#stream.write('\r\x1b[2K')
    this.#drawn = false
  }
}
