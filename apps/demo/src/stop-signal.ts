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

function stop(signal: StopSignal): boolean {
  const resolve = waiting
  waiting = undefined
  resolve?.(signal)
  return resolve !== undefined
}

/** Installs the Ctrl-C listener for the program's whole life; `interrupt` runs when no command is waiting. */
export function handleInterrupts(interrupt: () => void): void {
  process.on('SIGINT', () => {
    if (!stop('SIGINT')) interrupt()
  })
}

/** Long-running commands stop cleanly on Ctrl-C (exit 130) or a service manager's SIGTERM (exit 0). */
export function untilStopped(): Promise<StopSignal> {
  return new Promise((resolve) => {
    waiting = resolve
    process.once('SIGTERM', () => stop('SIGTERM'))
  })
}
