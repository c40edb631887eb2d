/**
 * Ctrl-C and SIGTERM. A short command exits at once on Ctrl-C; a long-running one (a
 * server, a hub, a sync) waits in `untilStopped` and closes its sessions first.
 *
 * The SIGINT listener is installed once and never removed: removing a signal's last
 * listener stops Node's watcher for it, and a Ctrl-C already on its way is then lost. A
 * server that had just printed "Ctrl-C stops the server" ignored the Ctrl-C that followed
 * at once (7 times in 18 on a loaded machine).
 */
type StopSignal = 'SIGINT' | 'SIGTERM'

let waiting: ((signal: StopSignal) => void) | undefined
let longRunning = false
let pendingTerm = false

function stop(signal: StopSignal): boolean {
  const resolve = waiting
  waiting = undefined
  resolve?.(signal)
  return resolve !== undefined
}

/**
 * Installs the Ctrl-C and SIGTERM listeners for the program's whole life; `interrupt`
 * runs on Ctrl-C when no command is waiting. SIGTERM is listened to from the start too:
 * a service manager (or a test) may send it the moment a server says it is ready, and the
 * reader of that line can be scheduled before the server reaches `untilStopped` (seen 4
 * times in 4 on a loaded machine, each killed uncleanly).
 */
export function handleInterrupts(interrupt: () => void): void {
  process.on('SIGINT', () => {
    if (!stop('SIGINT')) interrupt()
  })
  process.on('SIGTERM', () => {
    if (stop('SIGTERM')) return
    // A long-running command stops as soon as it waits; any other ends as SIGTERM would.
    if (longRunning) pendingTerm = true
    else process.exit(143)
  })
}

/** Marks this run as a long-running command: a SIGTERM before it waits is kept for `untilStopped`. */
export function stopsOnSignal(): void {
  longRunning = true
}

/** Long-running commands stop cleanly on Ctrl-C (exit 130) or a service manager's SIGTERM (exit 0). */
export function untilStopped(): Promise<StopSignal> {
  if (pendingTerm) {
    pendingTerm = false
    return Promise.resolve('SIGTERM')
  }
  return new Promise((resolve) => {
    waiting = resolve
  })
}
