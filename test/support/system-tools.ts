/**
 * Test setup helper: makes sure the outside programs a test suite runs against
 * (the real `age`, `minisign`, `gnome-keyring-daemon`, …) are installed, using
 * Debian's packages. CI runs on a clean machine as root, so this installs them;
 * elsewhere it says exactly what to install.
 */
import { installMissingCommands } from '../../scripts/debian-packages.mjs'

/**
 * `commands` maps a command name to the Debian package that provides it. `recommends:
 * false` leaves out recommended packages (Chromium's pull in hundreds of MB).
 */
export function ensureCommands(commands: Record<string, string>, options: { recommends?: boolean } = {}): void {
  const { stillMissing, tried, failure } = installMissingCommands(commands, options)
  if (stillMissing.length === 0) return
  const names = stillMissing.map(([command]) => command).join(', ')
  const packages = [...new Set(stillMissing.map(([, pkg]) => pkg))].join(' ')
  if (!tried) throw new Error(`Tests need ${names}: install the Debian packages ${packages} (apt-get install ${packages}).`)
  if (failure !== undefined) throw new Error(`apt-get install ${packages} failed: ${failure}`)
  throw new Error(`${names} is still missing after installing ${packages}`)
}
