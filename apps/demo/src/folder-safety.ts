/**
 * The folder checks of `sync` and `serve`: a folder that holds a CloudBox home, another
 * synced or served folder, or sits inside one, would copy vaults and identities to every
 * device, or sync a tree into itself. They are refused before anything starts.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs'
import { dirname, join, resolve, sep } from 'node:path'
import { CliError, usageError } from './errors.js'
import { METADATA_FILE } from './home.js'

const STATE_DIR = '.cloudbox'
const INDEX = join(STATE_DIR, 'index.sqlite')

const nested = (message: string) => new CliError('ERR_NESTED_FOLDER', message)

/** True when `path` is `parent` or below it. */
function within(path: string, parent: string): boolean {
  return path === parent || path.startsWith(parent.endsWith(sep) ? parent : parent + sep)
}

function real(path: string): string {
  try {
    return realpathSync(path)
  } catch {
    return resolve(path)
  }
}

/** A CloudBox home: an identity.json of ours (a public ID `cb1…`). */
function isHome(dir: string): boolean {
  const path = join(dir, METADATA_FILE)
  if (!existsSync(path)) return false
  try {
    const metadata = JSON.parse(readFileSync(path, 'utf8')) as { publicId?: unknown }
    return typeof metadata.publicId === 'string' && metadata.publicId.startsWith('cb1')
  } catch {
    return false
  }
}

/** The first home or synced folder below `root` (not `root` itself), without following links. */
function findNestedBelow(root: string): { path: string; kind: 'home' | 'synced' } | undefined {
  const pending = [root]
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    let entries
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch {
      continue // unreadable: the scan reports it
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) continue
      const path = join(dir, entry.name)
      if (entry.name === STATE_DIR) {
        if (dir !== root && existsSync(join(path, 'index.sqlite'))) return { path: dir, kind: 'synced' }
        continue
      }
      if (isHome(path)) return { path, kind: 'home' }
      pending.push(path)
    }
  }
  return undefined
}

/**
 * Resolves DIR for `sync` or `serve` and refuses what must not be synced: an empty name
 * (an unset variable would mean the current folder), a file, this home or any CloudBox
 * home inside it or around it, and a folder inside another synced one or holding one.
 * The walk below DIR runs on its first use only (no index yet); later, the engine never
 * syncs a `.cloudbox` folder at any depth.
 * @throws {CliError} ERR_USAGE, ERR_NOT_A_FOLDER or ERR_NESTED_FOLDER.
 */
export function checkedFolder(dir: string, home: string, command: 'sync' | 'serve'): string {
  if (dir.trim() === '') throw usageError(`The folder to ${command} is empty (an unset variable?); name it, e.g. cloudbox ${command} ~/Cloud.`)
  const folder = resolve(dir)
  if (existsSync(folder) && !statSync(folder).isDirectory()) throw new CliError('ERR_NOT_A_FOLDER', `${folder} is a file, not a folder; name a folder to ${command} (it is created if missing).`)
  const realFolder = real(folder)
  const realHome = real(home)
  if (within(realHome, realFolder)) throw nested(`${folder} holds the CloudBox home ${home} (its vault and identity would go to every device); choose a folder that does not contain it, or another --home.`)
  if (within(realFolder, realHome)) throw nested(`${folder} is inside the CloudBox home ${home}; choose a folder outside it.`)
  for (let parent = dirname(realFolder); ; parent = dirname(parent)) {
    if (existsSync(join(parent, INDEX))) throw nested(`${folder} is inside ${parent}, which is synced or served already; sync that folder, or choose one outside it.`)
    if (isHome(parent)) throw nested(`${folder} is inside the CloudBox home ${parent}; choose a folder outside it.`)
    if (dirname(parent) === parent) break
  }
  if (existsSync(realFolder) && !existsSync(join(realFolder, INDEX))) {
    const found = findNestedBelow(realFolder)
    if (found?.kind === 'home') throw nested(`${folder} holds the CloudBox home ${found.path} (its vault and identity would go to every device); choose a folder that does not contain it.`)
    if (found?.kind === 'synced') throw nested(`${folder} holds ${found.path}, which is synced or served already; choose a folder that does not contain it.`)
  }
  return folder
}

/**
 * Refuses a new home inside a synced or served folder: its vault and identity would go to
 * every device (a folder's check sees homes below it on its first use only).
 * @throws {CliError} ERR_NESTED_FOLDER.
 */
export function checkHomePlace(home: string): void {
  for (let parent = real(home); ; parent = dirname(parent)) {
    if (existsSync(join(parent, INDEX))) throw nested(`${home} is inside ${parent}, which is synced or served: a home there would copy its vault and identity to every device. Choose a --home outside it.`)
    if (dirname(parent) === parent) return
  }
}

/** Creates the folder to sync or serve (and missing parents), with a plain error where it cannot be made. */
export function makeFolder(folder: string, command: 'sync' | 'serve'): boolean {
  if (existsSync(folder)) return false
  try {
    mkdirSync(folder, { recursive: true })
    return true
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw new CliError('ERR_FOLDER_NOT_WRITABLE', `${folder} cannot be created: ${code === 'EROFS' ? 'the file system is read-only' : 'this user may not write in its parent folder'}. Choose a folder you can write to, or create it first (with sudo, then chown it).`, { cause: error })
    if (code === 'ENOTDIR' || code === 'EEXIST') throw new CliError('ERR_NOT_A_FOLDER', `${folder} cannot be created: a file stands where one of its parent folders should be. Choose another path.`, { cause: error })
    if (code === 'ENAMETOOLONG') throw new CliError('ERR_NAME_TOO_LONG', `${folder}: a name in this path is too long for the file system. Choose a shorter path.`, { cause: error })
    throw error
  }
}
