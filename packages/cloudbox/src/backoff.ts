/** Reconnection delays: exponential with full jitter (half to all of the step), capped. */
export interface BackoffOptions {
  /** First delay (default 250 ms). */
  initialDelayMs?: number
  /** Largest delay (default 30 s). */
  maxDelayMs?: number
}

export class Backoff {
  readonly #initial: number
  readonly #max: number
  attempt = 0

  constructor(options: BackoffOptions = {}) {
    this.#initial = options.initialDelayMs ?? 250
    this.#max = options.maxDelayMs ?? 30_000
  }

  next(): number {
    const step = Math.min(this.#max, this.#initial * 2 ** Math.min(this.attempt, 30))
    this.attempt++
    return Math.round(step / 2 + Math.random() * (step / 2))
  }

  reset(): void {
    this.attempt = 0
  }
}

/** Resolves after `ms`, or early (false) when the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false)
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve(true)
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      resolve(false)
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
