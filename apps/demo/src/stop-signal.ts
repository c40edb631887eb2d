/** Long-running commands stop cleanly on Ctrl-C (exit 130) or a service manager's SIGTERM (exit 0). */
export function untilStopped(): Promise<'SIGINT' | 'SIGTERM'> {
  // The program's default SIGINT handler exits at once; a server closes its sessions first.
  process.removeAllListeners('SIGINT')
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'))
    process.once('SIGTERM', () => resolve('SIGTERM'))
  })
}
