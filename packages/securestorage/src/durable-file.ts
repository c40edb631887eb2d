/**
 * Durable file replacement, shared by every CloudBox package that must never leave a
 * half-written file: write a temporary file beside the target, fsync it, rename it over
 * the target, fsync the folder. Exported as `@cloudbox/securestorage/durable-file` so
 * importing it loads nothing else (no keyring binding).
 */
import { randomBytes } from 'node:crypto'
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/** fsync a folder so a rename in it survives a crash; a no-op where folders cannot be synced. */
export async function fsyncDirectory(path: string): Promise<void> {
  let handle: FileHandle | undefined
  try {
    handle = await open(path, 'r')
    await handle.sync()
  } catch {
    // Not every platform can open or fsync a folder; the rename is atomic regardless.
  } finally {
    await handle?.close()
  }
}

/** A temporary path beside `path`: `.<name>.<random>.tmp`. */
export function temporaryPathFor(path: string): string {
  return join(dirname(path), `.${basename(path).slice(0, 100)}.${randomBytes(6).toString('hex')}.tmp`)
}

/**
 * Replaces `path` with `data` atomically and durably. On any failure the temporary file
 * is removed and `path` is untouched.
 */
export async function writeFileAtomically(path: string, data: Uint8Array | readonly Uint8Array[] | string, options: { mode?: number } = {}): Promise<void> {
  const temporary = temporaryPathFor(path)
  let handle: FileHandle | undefined
  try {
    handle = await open(temporary, 'wx', options.mode ?? 0o600)
    if (typeof data === 'string' || data instanceof Uint8Array) await handle.writeFile(data)
    else await handle.writev([...data])
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

/**
 * Whether a process with this pid exists on this machine: for lock and status files left
 * behind by a process that crashed. EPERM means it exists under another user.
 */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
