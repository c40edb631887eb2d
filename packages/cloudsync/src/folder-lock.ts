import { closeSync, constants, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { isProcessAlive } from '@cloudbox/securestorage/durable-file'
import { FolderInUseError } from './errors.js'

const LOCK_FILE = 'lock'

/** Folders locked by this process (two engines of one process are refused too). */
const held = new Set<string>()

/**
 * Takes the folder for this engine: `<state dir>/lock` holds `pid host`, created
 * exclusively. A lock left by a process that is gone (a crash, kill -9) is taken over; one
 * held by a live process, here or on another host sharing the disk, is refused.
 * Returns the release function.
 * @throws {FolderInUseError}
 */
export function lockFolder(folder: string, stateDir: string): () => void {
  mkdirSync(stateDir, { recursive: true })
  const path = join(stateDir, LOCK_FILE)
  const me = `${process.pid} ${hostname()}\n`
  if (held.has(path)) throw new FolderInUseError(`${folder} is already synced by this process (PID ${process.pid}); stop that engine first.`, { pid: process.pid })
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)
      writeSync(fd, me)
      closeSync(fd)
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error
      let owner = ''
      try {
        owner = readFileSync(path, 'utf8')
      } catch {
        // Released meanwhile: try again.
      }
      const [pidText, host] = owner.trim().split(' ')
      const pid = Number(pidText)
      const stale = !Number.isSafeInteger(pid) || pid <= 0 || (host === hostname() && !isProcessAlive(pid))
      if (!stale) {
        const where = host === hostname() ? '' : ` on ${host}`
        throw new FolderInUseError(`${folder} is already synced by another process (PID ${pid}${where}); stop it first, or sync another folder.`, { pid })
      }
      rmSync(path, { force: true })
    }
  }
  held.add(path)
  return () => {
    if (!held.delete(path)) return
    try {
      if (readFileSync(path, 'utf8') === me) rmSync(path, { force: true })
    } catch {
      // Gone already (the folder was removed): nothing to release.
    }
  }
}
