import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import ignore, { type Ignore } from 'ignore'
import { LOCAL_IGNORE_FILE, namesStateFolder, TEMP_PREFIX } from './paths.js'

/** The ignore file at the folder's root, in gitignore syntax. It syncs like any file, so every device shares its rules. */
export const IGNORE_FILE = '.cloudboxignore'
export { LOCAL_IGNORE_FILE }

// Never synced whatever the ignore files say: the engine's temporary files, the local-only
// ignore file, and the usual editor and system litter. (State folders, at any depth and in
// any spelling a file system may treat as `.cloudbox`, are refused by name below.)
const BUILT_IN = [`/${LOCAL_IGNORE_FILE}`, `${TEMP_PREFIX}*`, '*.sync-tmp', '~$*', '.~lock.*#', '*.swp', '*.swx', '.DS_Store', 'Thumbs.db', 'desktop.ini', '.Trash-*/']

export interface IgnoreRules {
  /** True when the relative path (with a trailing `/` for folders) is not synced. */
  ignores(path: string, isDirectory: boolean): boolean
}

async function readRules(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

/**
 * Loads the rules: the built-in exclusions, `.cloudboxignore` (synced: the rules every
 * device shares, so a peer can change them) and `.cloudboxignore.local` (this device's
 * own, never synced, so no peer can change them).
 */
export async function loadIgnoreRules(root: string): Promise<IgnoreRules> {
  let own: Ignore | undefined
  for (const file of [IGNORE_FILE, LOCAL_IGNORE_FILE]) {
    const text = await readRules(join(root, file))
    if (text !== undefined) own = (own ?? ignore()).add(text)
  }
  return {
    ignores: (path, isDirectory) => builtInIgnores(path, isDirectory) || (own !== undefined && own.ignores(isDirectory ? `${path}/` : path)),
  }
}

// BUILT_IN as two expressions on one name (case-insensitive, as `ignore` matches): the
// gitignore matcher tested each of the eleven rules on every path, 4.5 µs a file, a
// quarter of a rescan of an unchanged folder.
const BUILT_IN_NAME = new RegExp(`^(?:${escape(TEMP_PREFIX)}.*|.*\\.sync-tmp|~\\$.*|\\.~lock\\..*#|.*\\.swp|.*\\.swx|\\.ds_store|thumbs\\.db|desktop\\.ini)$`, 'is')
const BUILT_IN_FOLDER = /^\.trash-.*$/is

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/**
 * The built-in rules and the state folder, on each name of the path (a name matched by a
 * rule hides everything below it, as in gitignore).
 */
function builtInIgnores(path: string, isDirectory: boolean): boolean {
  const names = path.split('/')
  const last = names.length - 1
  if (names[0]?.toLowerCase() === LOCAL_IGNORE_FILE) return true
  for (let i = 0; i <= last; i++) {
    const name = names[i] as string
    if (namesStateFolder(name) || BUILT_IN_NAME.test(name)) return true
    if ((i < last || isDirectory) && BUILT_IN_FOLDER.test(name)) return true
  }
  return false
}

/** The built-in rules as gitignore text, for tests that hold `builtInIgnores` against the `ignore` matcher. */
export const BUILT_IN_RULES: readonly string[] = BUILT_IN
