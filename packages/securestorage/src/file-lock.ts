import { open, readFile, stat, unlink } from 'node:fs/promises'
import { isProcessAlive } from './durable-file.js'
import { VaultLockedError } from './errors.js'

/**
 * An exclusive lock file holding the owner's pid, created with O_EXCL. A lock whose
 * process is gone (a crash) is taken over. Returns the release function.
 * @throws {VaultLockedError} when a live process holds the lock.
 */
export async function acquireLock(path: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600)
      await handle.writeFile(`${process.pid}\n`)
      await handle.close()
      let released = false
      return async () => {
        if (released) return
        released = true
        await unlink(path).catch(() => {})
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10)
    if (Number.isInteger(owner) && owner > 0 && isProcessAlive(owner)) throw new VaultLockedError(`Another running process (pid ${owner}) has this vault open. Stop it first, or wait for it to finish.`)
    if (!Number.isInteger(owner)) {
      // No pid yet: another process may be between creating and writing it.
      const age = Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? 0)
      if (age < 5_000) throw new VaultLockedError()
    }
    // Stale (its process died) or long-abandoned empty lock: take it over.
    await unlink(path).catch(() => {})
  }
  throw new VaultLockedError()
}
