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
  const rules: Ignore = ignore().add(BUILT_IN)
  for (const file of [IGNORE_FILE, LOCAL_IGNORE_FILE]) {
    const text = await readRules(join(root, file))
    if (text !== undefined) rules.add(text)
  }
  return {
    ignores: (path, isDirectory) => {
      if (path.split('/').some(namesStateFolder)) return true
      return rules.ignores(isDirectory ? `${path}/` : path)
    },
  }
}
