/**
 * `cloudbox versions` and `cloudbox restore`: the copies the sync engine (and the server's
 * API) kept of replaced and deleted files, in `<folder>/.cloudbox/versions/`. Both work
 * while `sync` or `serve` runs on the folder, and without it.
 */
import { existsSync, statSync } from 'node:fs'
import { basename, dirname, join, relative, resolve, sep } from 'node:path'
import { checkVersionPolicy, STATE_DIR, VersionStore, type KeptVersion, type VersionPolicy } from '@cloudbox/cloudsync'
import type { Command } from 'commander'
import { CliError, outputExistsError, usageError } from '../errors.js'
import { globalOptions } from '../program.js'
import { formatBytes } from '../progress.js'

const notSynced = (path: string) =>
  new CliError('ERR_NOT_SYNCED', `${path} is not inside a synced or served folder (no ${STATE_DIR}/ folder above it); name a file or folder inside the folder you sync.`)
const nothingKept = (path: string) =>
  new CliError('ERR_VERSION_NOT_FOUND', `Nothing is kept for ${path}: no peer's change replaced or deleted it (changes made on this device are kept on the other devices). Run cloudbox versions on the folder to see what is kept.`)

/** The synced folder holding `path` (which may no longer exist) and the path inside it. */
export function locateInFolder(path: string): { folder: string; relativePath: string } {
  if (path.trim() === '') throw usageError('The path is empty (an unset variable?); name a file or folder inside a synced folder.')
  const absolute = resolve(path)
  for (let dir = absolute; ; dir = dirname(dir)) {
    if (existsSync(join(dir, STATE_DIR, 'index.sqlite')) || VersionStore.exists(dir)) {
      const relativePath = relative(dir, absolute).split(sep).join('/').normalize('NFC')
      if (relativePath.split('/').includes(STATE_DIR)) throw usageError(`${path} is in the engine's own ${STATE_DIR}/ folder; name a synced file or folder.`)
      return { folder: dir, relativePath }
    }
    if (dirname(dir) === dir) throw notSynced(path)
  }
}

/** `staggered[:DAYS]`, `trash[:DAYS]`, `simple[:COUNT]` or `off`. */
export function parseVersionPolicy(text: string): VersionPolicy {
  const match = /^(staggered|trash|simple|off)(?::(\d+(?:\.\d+)?))?$/.exec(text.trim())
  if (match === null) throw usageError(`--versions takes staggered[:DAYS], trash[:DAYS], simple[:COUNT] or off, not "${text}".`)
  const kind = match[1] as VersionPolicy['kind']
  const number = match[2] === undefined ? undefined : Number(match[2])
  try {
    switch (kind) {
      case 'off':
        if (number !== undefined) throw new RangeError('off takes no number')
        return { kind }
      case 'simple':
        return checkVersionPolicy({ kind, keep: number ?? 5 })
      default:
        return checkVersionPolicy({ kind, days: number ?? 30 })
    }
  } catch (error) {
    throw usageError(`--versions ${text}: ${(error as Error).message}.`)
  }
}

/** The `versions` options of a CloudBox from `--versions` and `--versions-disk` (undefined: the folder's remembered or default policy). */
export function versionOptions(options: { versions?: string; versionsDisk?: string }): { policy?: VersionPolicy; maxDiskShare?: number } | undefined {
  const policy = options.versions === undefined ? undefined : parseVersionPolicy(options.versions)
  let maxDiskShare: number | undefined
  if (options.versionsDisk !== undefined) {
    const percent = Number(options.versionsDisk.replace(/%$/, ''))
    if (!Number.isFinite(percent) || percent <= 0 || percent > 100) throw usageError(`--versions-disk takes a percentage of the disk (above 0, at most 100), not "${options.versionsDisk}".`)
    maxDiskShare = percent / 100
  }
  if (policy === undefined && maxDiskShare === undefined) return undefined
  return { ...(policy === undefined ? {} : { policy }), ...(maxDiskShare === undefined ? {} : { maxDiskShare }) }
}

/** The help text of `--versions` on `sync` and `serve`. */
export const VERSIONS_OPTION_HELP =
  'what to keep of files other devices replace or delete: staggered[:DAYS] (default, 30 days), trash[:DAYS], simple[:COUNT] or off; remembered for the folder'
export const VERSIONS_DISK_OPTION_HELP = 'the share of the disk kept versions may fill, oldest removed first (default 10%)'

const localTime = (ms: number) => {
  const date = new Date(ms)
  const pad = (value: number) => String(value).padStart(2, '0')
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
}
const shortId = (device: string) => (device.length > 16 ? `${device.slice(0, 15)}…` : device)

function asJson(version: KeptVersion) {
  return {
    id: version.id,
    path: version.path,
    time: new Date(version.keptAt).toISOString(),
    keptAt: version.keptAt,
    size: version.size,
    device: version.device,
    replacedBy: version.replacedBy,
    reason: version.reason,
    modified: new Date(version.mtimeMs).toISOString(),
  }
}

function table(versions: readonly KeptVersion[]): string {
  const rows = [['ID', 'KEPT', 'SIZE', 'FROM DEVICE', 'WHY', 'PATH'], ...versions.map((version) => [version.id, localTime(version.keptAt), formatBytes(version.size), shortId(version.device), version.reason, version.path])]
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n')
}

function withStore<T>(folder: string, work: (store: VersionStore) => T): T {
  const store = VersionStore.open(folder)
  try {
    return work(store)
  } finally {
    store.close()
  }
}

export function registerVersionCommands(program: Command): void {
  program
    .command('versions')
    .argument('<path>', 'a file or folder inside a synced folder (a deleted file too)')
    .description("List the versions kept of a file, or of every file in a folder: what other devices' changes replaced or deleted here.")
    .addHelpText(
      'after',
      '\nExamples:\n  cloudbox versions ~/Cloud/report.pdf\n  cloudbox versions ~/Cloud --json\n\n' +
        'Each line: the version ID (for cloudbox restore --version), when it was replaced or deleted, its size, the\n' +
        'device its content came from, and why it was kept. Policies: see --versions on cloudbox sync and serve.',
    )
    .action((path: string, _options: unknown, command: Command) => {
      const { output } = globalOptions(command)
      const { folder, relativePath } = locateInFolder(path)
      const versions = VersionStore.exists(folder) ? withStore(folder, (store) => store.list(relativePath)) : []
      const what = relativePath === '' ? folder : relativePath
      output.result(versions.length === 0 ? `No versions kept of ${what}.` : table(versions), { folder, path: relativePath, versions: versions.map(asJson) })
    })

  program
    .command('restore')
    .argument('<path>', 'a file (deleted or not) or a folder inside a synced folder')
    .option('--version <id>', 'the version to bring back (default: the newest kept one of each file)')
    .option('-o, --output <path>', 'write it here instead of back into the synced folder (a folder, for a folder)')
    .option('--force', 'with -o: overwrite files that exist there')
    .description('Bring back a kept version: into the synced folder, as a new change that reaches every device, or to another place with -o.')
    .addHelpText(
      'after',
      '\nExamples:\n  cloudbox restore ~/Cloud/report.pdf\n  cloudbox restore ~/Cloud/report.pdf --version 20261201-144347-ab12 -o old.pdf\n  cloudbox restore ~/Cloud/photos       # every file of the folder, as before its last change\n\n' +
        'What a restore replaces in the folder is kept as a version too, so a restore can be undone the same way.',
    )
    .action(async (path: string, options: { version?: string; output?: string; force?: boolean }, command: Command) => {
      const { output } = globalOptions(command)
      const { folder, relativePath } = locateInFolder(path)
      if (!VersionStore.exists(folder)) throw nothingKept(relativePath === '' ? folder : relativePath)
      const store = VersionStore.open(folder)
      try {
        const chosen = choose(store, relativePath, options.version)
        const target = (version: KeptVersion): string | undefined => {
          if (options.output === undefined) return undefined
          const out = resolve(options.output)
          // One file into an existing folder keeps its name; a folder's files keep their places under -o.
          if (chosen.length === 1 && version.path === relativePath) return existsSync(out) && statSync(out).isDirectory() ? join(out, basename(version.path)) : out
          const below = relativePath === '' ? version.path : version.path.slice(relativePath.length + 1)
          return join(out, ...below.split('/'))
        }
        const restored: { version: KeptVersion; path: string; changed: boolean }[] = []
        for (const version of chosen) {
          const to = target(version)
          if (to !== undefined && existsSync(to) && options.force !== true) throw outputExistsError(to)
          restored.push(await store.restore(version.id, to === undefined ? {} : { to }))
        }
        const changed = restored.filter((each) => each.changed).length
        if (restored.length <= 20) {
          for (const each of restored) output.note(`${each.changed ? 'restored' : 'unchanged (already this content)'}: ${each.version.path} (version ${each.version.id}, kept ${localTime(each.version.keptAt)}, ${formatBytes(each.version.size)})${options.output === undefined ? '' : ` → ${each.path}`}`)
        }
        const they = restored.length === 1 ? 'it reaches' : 'they reach'
        const where = options.output === undefined ? `into the folder; ${they} the other devices with the next sync (at once if cloudbox sync or serve runs)` : `to ${resolve(options.output)}`
        output.result(`Restored ${changed} of ${restored.length} file${restored.length === 1 ? '' : 's'} ${where}.`, {
          folder,
          path: relativePath,
          restored: restored.map((each) => ({ ...asJson(each.version), to: each.path, changed: each.changed })),
        })
      } finally {
        store.close()
      }
    })
}

/** The versions a restore of `path` brings back: the one named, the newest of the file, or the newest of each file below the folder. */
function choose(store: VersionStore, path: string, id: string | undefined): KeptVersion[] {
  if (id !== undefined) {
    const version = store.get(id)
    if (version === undefined) throw new CliError('ERR_VERSION_NOT_FOUND', `No kept version has the ID ${id}; run cloudbox versions ${path === '' ? '.' : path} to list them.`)
    if (path !== '' && version.path !== path && !version.path.startsWith(`${path}/`)) throw new CliError('ERR_VERSION_NOT_FOUND', `Version ${id} is of ${version.path}, not of ${path}; run cloudbox versions ${path} to list its versions.`)
    return [version]
  }
  const own = store.newest(path)
  if (own !== undefined && path !== '') return [own]
  const paths = [...new Set(store.list(path).map((version) => version.path))]
  const chosen = paths.map((each) => store.newest(each)).filter((version): version is KeptVersion => version !== undefined)
  if (chosen.length === 0) throw nothingKept(path === '' ? 'this folder' : path)
  return chosen
}
