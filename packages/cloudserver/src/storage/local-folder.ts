/**
 * The default back end: the server's synced folder on the local disk. Files written
 * here are picked up by the sync engine like any other change. Uploads are staged in
 * the folder's state directory (never synced) and moved into place atomically.
 */
import { createHash } from 'node:crypto'
import { constants } from 'node:fs'
import { copyFile, lstat, mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { namesStateFolder, STATE_DIR, type VersionStore } from '@cloudbox/cloudsync'
import { errors } from '../errors.js'
import { fsyncDirectory, writeFileAtomically } from '@cloudbox/securestorage/durable-file'
import * as v from 'valibot'
import type { ChangeOptions, EntryInfo, ShareInfo, StorageBackend, StorageUsage } from './storage-backend.js'
import { cloudPath, SHARE_ID } from './paths.js'

const UPLOADS = join(STATE_DIR, 'uploads')
/** Sealed shares: `<id>.age` and its record `<id>.json`, never synced. */
const DROPBOX = join(STATE_DIR, 'dropbox')
const shareSchema = v.strictObject({
  id: v.pipe(v.string(), v.regex(SHARE_ID)),
  from: v.string(),
  to: v.array(v.string()),
  name: v.string(),
  size: v.number(),
  created: v.number(),
  signature: v.optional(v.string()),
})

export interface LocalFolderOptions {
  /**
   * Where files the API replaces or deletes are kept (the folder's sync engine's store);
   * undefined, or a store with versions off, keeps nothing.
   */
  readonly versions?: () => VersionStore | undefined
}

export class LocalFolderStorage implements StorageBackend {
  readonly root: string
  readonly #versions: (() => VersionStore | undefined) | undefined

  constructor(root: string, options: LocalFolderOptions = {}) {
    this.root = root
    this.#versions = options.versions
  }

  /**
   * Keeps the regular file at `absolute` among the versions before a change replaces
   * (`move` false: a hard link stays) or deletes it (`move`: renamed there). True when kept.
   */
  #keep(absolute: string, move: boolean, by: string | undefined): boolean {
    const store = this.#versions?.()
    if (store === undefined || absolute === this.root) return false
    const kept = store.keep(this.#relative(absolute), { move, reason: move ? 'deleted' : 'replaced', ...(by === undefined ? {} : { replacedBy: by }) })
    return kept !== undefined
  }

  /** Keeps every regular file below the folder `absolute` (the files of a folder being deleted). */
  async #keepAll(absolute: string, by: string | undefined): Promise<void> {
    for (const entry of await readdir(absolute, { withFileTypes: true })) {
      if (namesStateFolder(entry.name)) continue
      const path = join(absolute, entry.name)
      if (entry.isDirectory()) await this.#keepAll(path, by)
      else if (entry.isFile()) this.#keep(path, true, by)
    }
  }

  /** The absolute path for a relative one, refusing anything that leaves the folder. */
  async #resolve(path: string): Promise<string> {
    const safe = cloudPath(path)
    if (safe === '') return this.root
    // No component may be a symbolic link: a link could point outside the folder.
    let current = this.root
    for (const segment of safe.split('/')) {
      current = join(current, segment)
      const info = await lstat(current).catch(() => undefined)
      if (info === undefined) break
      if (info.isSymbolicLink()) throw errors.unsafePath(path, 'it goes through a symbolic link')
    }
    return join(this.root, safe)
  }

  #relative(absolute: string): string {
    return absolute === this.root ? '' : absolute.slice(this.root.length + 1).split('\\').join('/')
  }

  async #info(absolute: string): Promise<EntryInfo> {
    const info = await stat(absolute).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') throw errors.notFound(this.#relative(absolute))
      throw error
    })
    return {
      path: this.#relative(absolute),
      name: absolute === this.root ? '' : basename(absolute),
      type: info.isDirectory() ? 'folder' : 'file',
      size: info.isDirectory() ? 0 : info.size,
      modified: Math.round(info.mtimeMs),
    }
  }

  async stat(path: string): Promise<EntryInfo> {
    return this.#info(await this.#resolve(path))
  }

  async list(path: string): Promise<EntryInfo[]> {
    const absolute = await this.#resolve(path)
    const self = await this.#info(absolute)
    if (self.type !== 'folder') throw errors.notAFolder(path)
    const entries: EntryInfo[] = []
    for (const entry of await readdir(absolute, { withFileTypes: true })) {
      if (namesStateFolder(entry.name)) continue
      if (!entry.isFile() && !entry.isDirectory()) continue // links and devices are not served
      entries.push(await this.#info(join(absolute, entry.name)).catch(() => undefined) as EntryInfo)
    }
    return entries.filter(Boolean).sort((a, b) => (a.type === b.type ? a.name.localeCompare(b.name) : a.type === 'folder' ? -1 : 1))
  }

  async read(path: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const absolute = await this.#resolve(path)
    if ((await this.#info(absolute)).type !== 'file') throw errors.notAFile(path)
    return readRange(await open(absolute, constants.O_RDONLY | constants.O_NOFOLLOW), offset, length, into)
  }

  #uploadPath(upload: string): string {
    return join(this.root, UPLOADS, createHash('sha256').update(upload).digest('hex').slice(0, 40))
  }

  async uploadSize(upload: string): Promise<number | undefined> {
    return (await stat(this.#uploadPath(upload)).catch(() => undefined))?.size
  }

  async uploadAppend(upload: string, offset: number, bytes: Uint8Array): Promise<number> {
    const path = this.#uploadPath(upload)
    await mkdir(join(this.root, UPLOADS), { recursive: true, mode: 0o700 })
    // Offset 0 starts an upload; it never silently restarts one that has data (abort first).
    const size = await this.uploadSize(upload)
    if (size === undefined && offset !== 0) throw errors.unknownUpload()
    if (size !== undefined && size !== offset) throw errors.uploadOffset(size, offset)
    const handle: FileHandle = await open(path, size === undefined ? 'wx' : 'r+', 0o600).catch(async (error: NodeJS.ErrnoException) => {
      // Two first chunks at once: the second learns where the upload stands.
      if (error.code === 'EEXIST') throw errors.uploadOffset((await this.uploadSize(upload)) ?? 0, offset)
      throw error
    })
    try {
      // Not synced chunk by chunk (that cost 9–30 ms of every 8 MiB here): the commit syncs
      // the whole, and after a crash the upload resumes from the size the disk kept.
      await handle.write(bytes, 0, bytes.length, offset)
    } finally {
      await handle.close()
    }
    return offset + bytes.length
  }

  async uploadCommit(upload: string, path: string, options: ChangeOptions): Promise<EntryInfo> {
    const staged = this.#uploadPath(upload)
    if ((await this.uploadSize(upload)) === undefined) throw errors.unknownUpload()
    const target = await this.#resolve(path)
    if (target === this.root) throw errors.unsafePath(path, 'the root is a folder')
    await this.#prepareTarget(target, path, options.overwrite)
    this.#keep(target, false, options.by)
    // On disk before it takes the name, and the name on disk before the answer.
    const handle = await open(staged, constants.O_RDONLY | constants.O_NOFOLLOW)
    try {
      await handle.datasync()
    } finally {
      await handle.close()
    }
    await rename(staged, target)
    await fsyncDirectory(join(target, '..'))
    return this.#info(target)
  }

  async uploadAbort(upload: string): Promise<void> {
    await rm(this.#uploadPath(upload), { force: true })
  }

  async dropStaleUploads(idleMs: number): Promise<number> {
    const dir = join(this.root, UPLOADS)
    let dropped = 0
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const info = await stat(join(dir, name)).catch(() => undefined)
      if (info === undefined || Date.now() - info.mtimeMs < idleMs) continue
      await rm(join(dir, name), { force: true })
      dropped++
    }
    return dropped
  }

  async #stagedBytes(): Promise<number> {
    const dir = join(this.root, UPLOADS)
    let bytes = 0
    for (const name of await readdir(dir).catch(() => [] as string[])) bytes += (await stat(join(dir, name)).catch(() => undefined))?.size ?? 0
    return bytes
  }

  /** Creates the target's parent folders and refuses to replace what should stay. */
  async #prepareTarget(target: string, path: string, overwrite: boolean): Promise<void> {
    const existing = await stat(target).catch(() => undefined)
    if (existing !== undefined) {
      if (existing.isDirectory()) throw errors.notAFile(path)
      if (!overwrite) throw errors.exists(path)
    }
    const parent = join(target, '..')
    const parentInfo = await stat(parent).catch(() => undefined)
    if (parentInfo !== undefined && !parentInfo.isDirectory()) throw errors.notAFolder(this.#relative(parent))
    await mkdir(parent, { recursive: true })
  }

  async remove(path: string, options: { by?: string } = {}): Promise<void> {
    const absolute = await this.#resolve(path)
    if (absolute === this.root) throw errors.unsafePath(path, 'the root cannot be deleted')
    const info = await this.#info(absolute)
    // What the versions keep is moved out first; what is left (folders, links) goes.
    if (info.type === 'file') this.#keep(absolute, true, options.by)
    else await this.#keepAll(absolute, options.by)
    await rm(absolute, { recursive: true, force: true })
  }

  async move(from: string, to: string, options: ChangeOptions): Promise<EntryInfo> {
    const source = await this.#resolve(from)
    const target = await this.#resolve(to)
    if (source === this.root || target === this.root) throw errors.unsafePath(source === this.root ? from : to, 'the root cannot move')
    const info = await this.#info(source)
    if (info.type === 'folder' && (target + '/').startsWith(source + '/')) throw errors.badRequest('a folder cannot move into itself')
    if (info.type === 'folder' && (await stat(target).catch(() => undefined)) !== undefined) throw errors.exists(to)
    if (info.type === 'file') {
      await this.#prepareTarget(target, to, options.overwrite)
      if (target !== source) this.#keep(target, false, options.by)
    } else await mkdir(join(target, '..'), { recursive: true })
    await rename(source, target)
    return this.#info(target)
  }

  async copy(from: string, to: string, options: ChangeOptions): Promise<EntryInfo> {
    const source = await this.#resolve(from)
    const target = await this.#resolve(to)
    const info = await this.#info(source)
    if (info.type !== 'file') throw errors.notAFile(from)
    await this.#prepareTarget(target, to, options.overwrite)
    if (target !== source) this.#keep(target, false, options.by)
    // Copy beside the target, then rename: readers never see half a file.
    const temporary = join(target, '..', `.cloudbox-tmp-copy-${process.pid}-${Date.now()}`)
    try {
      await copyFile(source, temporary, constants.COPYFILE_FICLONE)
      await rename(temporary, target)
    } catch (error) {
      await rm(temporary, { force: true })
      throw error
    }
    return this.#info(target)
  }

  async mkdir(path: string): Promise<EntryInfo> {
    const absolute = await this.#resolve(path)
    await mkdir(absolute, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST' || error.code === 'ENOTDIR') throw errors.notAFolder(path)
      throw error
    })
    const info = await this.#info(absolute)
    if (info.type !== 'folder') throw errors.notAFolder(path)
    return info
  }

  async search(query: string, limit: number): Promise<EntryInfo[]> {
    const needle = query.normalize('NFC').toLowerCase()
    const found: EntryInfo[] = []
    const walk = async (absolute: string): Promise<void> => {
      for (const entry of await readdir(absolute, { withFileTypes: true }).catch(() => [])) {
        if (found.length >= limit) return
        if (namesStateFolder(entry.name)) continue
        if (!entry.isFile() && !entry.isDirectory()) continue
        const child = join(absolute, entry.name)
        if (entry.name.normalize('NFC').toLowerCase().includes(needle)) found.push(await this.#info(child))
        if (entry.isDirectory()) await walk(child)
      }
    }
    await walk(this.root)
    return found.slice(0, limit)
  }

  async usage(): Promise<StorageUsage> {
    let usedBytes = 0
    let files = 0
    const walk = async (absolute: string): Promise<void> => {
      for (const entry of await readdir(absolute, { withFileTypes: true }).catch(() => [])) {
        if (namesStateFolder(entry.name)) continue
        const child = join(absolute, entry.name)
        if (entry.isDirectory()) await walk(child)
        else if (entry.isFile()) {
          usedBytes += (await lstat(child).catch(() => undefined))?.size ?? 0
          files++
        }
      }
    }
    await walk(this.root)
    let sharedBytes = 0
    for (const share of await this.listShares()) sharedBytes += share.size
    return { usedBytes, files, sharedBytes, stagedBytes: await this.#stagedBytes() }
  }

  #sharePath(id: string, extension: 'age' | 'json'): string {
    if (!SHARE_ID.test(id)) throw errors.notFound(`share ${id.slice(0, 80)}`)
    return join(this.root, DROPBOX, `${id}.${extension}`)
  }

  async shareCommit(upload: string, share: Omit<ShareInfo, 'size'>): Promise<ShareInfo> {
    const size = await this.uploadSize(upload)
    if (size === undefined) throw errors.unknownUpload()
    await mkdir(join(this.root, DROPBOX), { recursive: true, mode: 0o700 })
    const record: ShareInfo = { ...share, size }
    await rename(this.#uploadPath(upload), this.#sharePath(share.id, 'age'))
    await writeFileAtomically(this.#sharePath(share.id, 'json'), JSON.stringify(record))
    return record
  }

  async listShares(): Promise<ShareInfo[]> {
    const names = await readdir(join(this.root, DROPBOX)).catch(() => [] as string[])
    const shares: ShareInfo[] = []
    for (const name of names) {
      if (!name.endsWith('.json')) continue
      const share = await this.getShare(name.slice(0, -5)).catch(() => undefined)
      if (share !== undefined) shares.push(share)
    }
    return shares.sort((a, b) => b.created - a.created)
  }

  async getShare(id: string): Promise<ShareInfo> {
    const text = await readFile(this.#sharePath(id, 'json'), 'utf8').catch(() => undefined)
    const parsed = text === undefined ? undefined : v.safeParse(shareSchema, JSON.parse(text))
    if (parsed === undefined || !parsed.success) throw errors.notFound(`share ${id}`)
    return parsed.output
  }

  async readShare(id: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const handle = await open(this.#sharePath(id, 'age'), constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => {
      throw errors.notFound(`share ${id}`)
    })
    return readRange(handle, offset, length, into)
  }

  async updateShare(share: ShareInfo): Promise<void> {
    await writeFileAtomically(this.#sharePath(share.id, 'json'), JSON.stringify(share))
  }

  async removeShare(id: string): Promise<void> {
    // The record goes first: a share without one is never listed.
    await rm(this.#sharePath(id, 'json'), { force: true })
    await rm(this.#sharePath(id, 'age'), { force: true })
  }
}

/** Up to `length` bytes from `offset` (fewer at the end), then closes the handle. */
async function readRange(handle: FileHandle, offset: number, length: number, into: Uint8Array | undefined): Promise<Uint8Array> {
  try {
    const buffer = into !== undefined && into.length >= length ? into : Buffer.allocUnsafe(length)
    const { bytesRead } = await handle.read(buffer, 0, length, offset)
    return buffer.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}
