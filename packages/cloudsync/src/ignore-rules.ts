import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import ignore, { type Ignore } from 'ignore'
import { STATE_DIR, TEMP_PREFIX } from './paths.js'

/** The ignore file at the folder's root, in gitignore syntax. */
export const IGNORE_FILE = '.cloudboxignore'

// Never synced whatever the ignore file says: the engine's state and temporary files,
// and the usual editor and system litter.
const BUILT_IN = [`/${STATE_DIR}/`, `${TEMP_PREFIX}*`, '*.sync-tmp', '~$*', '.~lock.*#', '*.swp', '*.swx', '.DS_Store', 'Thumbs.db', 'desktop.ini', '.Trash-*/']

export interface IgnoreRules {
  /** True when the relative path (with a trailing `/` for folders) is not synced. */
  ignores(path: string, isDirectory: boolean): boolean
}

/** Loads `.cloudboxignore` (if any) plus the built-in exclusions. */
export async function loadIgnoreRules(root: string): Promise<IgnoreRules> {
  const rules: Ignore = ignore().add(BUILT_IN)
  try {
    rules.add(await readFile(join(root, IGNORE_FILE), 'utf8'))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  return {
    ignores: (path, isDirectory) => rules.ignores(isDirectory ? `${path}/` : path),
  }
}
