/**
 * The benchmarks' setup step: installs the programs they compare CloudBox with (rsync,
 * Syncthing, age, Redis) from Debian's packages when they are missing. Returns one line
 * per program it could not install, which the benchmark then skips.
 */
import { spawnSync } from 'node:child_process'

const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0

/** `commands` maps a command to its Debian package. */
export function installPeers(commands) {
  const missing = Object.entries(commands).filter(([command]) => !has(command))
  if (missing.length === 0) return []
  const packages = [...new Set(missing.map(([, pkg]) => pkg))]
  if (process.getuid?.() === 0 && has('apt-get')) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    const install = () => spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=300', ...packages], { env, stdio: 'ignore' }).status === 0
    console.log(`Installing ${packages.join(', ')} for the benchmarks…`)
    if (!install()) {
      spawnSync('apt-get', ['update', '-qq'], { env, stdio: 'ignore' })
      install()
    }
  }
  return missing.filter(([command]) => !has(command)).map(([command, pkg]) => `${command} is missing and could not be installed (apt-get install ${pkg}): the benchmarks that compare with it skip it.`)
}
