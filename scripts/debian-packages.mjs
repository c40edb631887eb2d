/**
 * Installs the outside programs that tests and benchmarks run against (age, rsync,
 * Syncthing, Redis, Chromium, …) from Debian's packages when they are missing: as root
 * with apt-get, which CI has. Plain JavaScript, so the benchmark runner can use it before
 * anything is built; test/support/system-tools.ts wraps it for the tests.
 */
import { spawnSync } from 'node:child_process'

export function hasCommand(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

/**
 * `commands` maps a command to the Debian package that provides it. `recommends: false`
 * leaves out recommended packages (Chromium's pull in hundreds of MB). Returns the commands
 * still missing afterwards, whether an install was tried, and apt-get's last words if it failed.
 */
export function installMissingCommands(commands, options = {}) {
  const missing = Object.entries(commands).filter(([command]) => !hasCommand(command))
  if (missing.length === 0) return { stillMissing: [], tried: false }
  const packages = [...new Set(missing.map(([, pkg]) => pkg))]
  if (process.getuid?.() !== 0 || !hasCommand('apt-get')) return { stillMissing: missing, tried: false }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const lock = ['-o', 'DPkg::Lock::Timeout=300']
  const install = () => spawnSync('apt-get', ['install', '-y', '-qq', ...lock, ...(options.recommends === false ? ['--no-install-recommends'] : []), ...packages], { env, stdio: 'pipe' })
  let result = install()
  if (result.status !== 0) {
    // A fresh machine has no package lists yet.
    spawnSync('apt-get', ['update', '-qq', ...lock], { env, stdio: 'pipe' })
    result = install()
  }
  return {
    stillMissing: missing.filter(([command]) => !hasCommand(command)),
    tried: true,
    ...(result.status === 0 ? {} : { failure: String(result.stderr).slice(-2000) }),
  }
}
