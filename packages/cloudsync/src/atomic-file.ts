import { randomBytes } from 'node:crypto'
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { TEMP_PREFIX } from './paths.js'

/** A temporary path beside `path` that the scanner never picks up. */
export function temporaryPathFor(path: string): string {
  return join(dirname(path), `${TEMP_PREFIX}${basename(path).slice(0, 100)}.${randomBytes(6).toString('hex')}`)
}

export async function fsyncDirectory(path: string): Promise<void> {
  let handle: FileHandle | undefined
  try {
    handle = await open(path, 'r')
    await handle.sync()
  } catch {
    // Not every platform can fsync a directory; the rename stays atomic.
  } finally {
    await handle?.close()
  }
}

/** Writes `data` to `path` atomically: temporary file, fsync, rename, directory fsync. */
export async function writeFileAtomically(path: string, data: Uint8Array, mode = 0o600): Promise<void> {
  const temporary = temporaryPathFor(path)
  let handle: FileHandle | undefined
  try {
    handle = await open(temporary, 'wx', mode)
    await handle.writeFile(data)
    await handle.sync()
    await handle.close()
    handle = undefined
    await rename(temporary, path)
  } catch (error) {
    await handle?.close().catch(() => {})
    await unlink(temporary).catch(() => {})
    throw error
  }
  await fsyncDirectory(dirname(path))
}
