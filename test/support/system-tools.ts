/**
 * Test setup helper: makes sure the outside programs a test suite runs against
 * (the real `age`, `minisign`, `gnome-keyring-daemon`, …) are installed, using
 * Debian's packages. CI runs on a clean machine as root, so this installs them;
 * elsewhere it says exactly what to install.
 */
import { execFileSync, spawnSync } from 'node:child_process'

function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

/**
 * `commands` maps a command name to the Debian package that provides it. `recommends:
 * false` leaves out recommended packages (Chromium's pull in hundreds of MB).
 */
export function ensureCommands(commands: Record<string, string>, options: { recommends?: boolean } = {}): void {
  const missing = Object.entries(commands).filter(([command]) => !hasCommand(command))
  if (missing.length === 0) return
  const packages = [...new Set(missing.map(([, pkg]) => pkg))]
  const canInstall = process.getuid?.() === 0 && hasCommand('apt-get')
  if (!canInstall) {
    throw new Error(`Tests need ${missing.map(([c]) => c).join(', ')}: install the Debian packages ${packages.join(' ')} (apt-get install ${packages.join(' ')}).`)
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = () => spawnSync('apt-get', ['install', '-y', '-qq', '-o', 'DPkg::Lock::Timeout=300', ...(options.recommends === false ? ['--no-install-recommends'] : []), ...packages], { env, stdio: 'pipe' })
  let result = install()
  if (result.status !== 0) {
    // A fresh machine has no package lists yet.
    execFileSync('apt-get', ['update', '-qq', '-o', 'DPkg::Lock::Timeout=300'], { env, stdio: 'pipe' })
    result = install()
  }
  if (result.status !== 0) {
    throw new Error(`apt-get install ${packages.join(' ')} failed: ${result.stderr.toString().slice(-2000)}`)
  }
  for (const [command] of missing) {
    if (!hasCommand(command)) throw new Error(`${command} is still missing after installing ${packages.join(' ')}`)
  }
}
