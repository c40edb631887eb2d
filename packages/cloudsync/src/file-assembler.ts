import { createHash } from 'node:crypto'
import { closeSync, constants, fchmodSync, fstatSync, fsync, ftruncateSync, futimesSync, lstatSync, mkdirSync, openSync, read, renameSync, write, writeSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { CHUNK_HASH_LENGTH } from './chunker.js'
import { ChunkUnavailableError, UnsafePathError } from './errors.js'
import { chunkHashAt, type FileRecord, type FolderIndex } from './folder-index.js'
import { conflictName, STATE_DIR } from './paths.js'
import type { WireRecord } from './protocol.js'
import type { VersionStore } from './version-store.js'
import { compareVersions, type VersionVector } from './version-vector.js'

/** What the assembler needs of its engine. */
export interface AssemblyContext {
  readonly folder: string
  readonly index: FolderIndex
  /** Permission bits never given to a file written for a peer. */
  readonly umask: number
  /** Where replaced and deleted files are kept (absent: they are not). */
  readonly versions?: VersionStore
  /** Told of what was just written to the folder (a file installed, a path removed), so the watcher's report of it is not scanned again. */
  readonly wrote?: (path: string, what: OwnWrite) => void
}

/** A write of the engine's own: the file as it left it, or `gone`. */
export type OwnWrite = { readonly kind: 'file'; readonly ino: number; readonly mtimeMs: number; readonly size: number } | { readonly kind: 'gone' }

/** A chunk to fetch from the peer into a partial file. */
export interface ChunkNeed {
  readonly file: PartialFile
  /** The chunk's place in the file (the same in the peer's file: the record is the same). */
  readonly offset: number
  readonly length: number
  readonly hash: Uint8Array
}

/** A run of local data to copy into the partial file: from a local file (or the partial file itself) at `from`, to `to`. */
interface CopyRange {
  readonly source: string
  readonly from: number
  readonly to: number
  readonly length: number
  /** Per chunk, to check where the source is not known to be as indexed. */
  readonly chunks: readonly { readonly from: number; readonly length: number; readonly hash: Uint8Array; readonly to: number }[]
  readonly trusted: boolean
}

const COPY_READ = 4 * 1024 * 1024
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest()
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0
const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')

// Metadata calls (open, stat, mkdir, rename, chmod, utimes) are blocking: each takes
// microseconds on a local file system and ten to twenty times that as a promise (a
// thread-pool hop each, a dozen per file). Reads, fsyncs and large writes, which wait on
// the disk or copy much, stay asynchronous. A small write only copies into the page cache:
// made here, it spares the hop (7% of a receiver's CPU time with 20,000 tiny files).
const SYNC_WRITE_MAX = 64 * 1024
const writeAt = (fd: number, bytes: Uint8Array, offset: number, length: number, position: number): Promise<void> => {
  if (length <= SYNC_WRITE_MAX) {
    try {
      for (let done = 0; done < length; ) done += writeSync(fd, bytes, offset + done, length - done, position + done)
      return Promise.resolve()
    } catch (error) {
      return Promise.reject(error)
    }
  }
  return new Promise<void>((resolve, reject) => {
    const more = (done: number) => {
      if (done === length) return resolve()
      write(fd, bytes, offset + done, length - done, position + done, (error, written) => (error === null ? more(done + written) : reject(error)))
    }
    more(0)
  })
}
const readAt = (fd: number, buffer: Uint8Array, length: number, position: number) =>
  new Promise<number>((resolve, reject) => read(fd, buffer, 0, length, position, (error, bytesRead) => (error === null ? resolve(bytesRead) : reject(error))))
const fsyncFd = (fd: number) => new Promise<void>((resolve, reject) => fsync(fd, (error) => (error === null ? resolve() : reject(error))))

/** The partial files' folder, inside the state folder (so on the same file system as the targets). */
export function partialFolder(folder: string): string {
  return join(folder, STATE_DIR, 'partial')
}

/**
 * One file being put together from its chunks beside its target, in
 * `.cloudbox/partial/<SHA-256(path ‖ chunk hashes)[0..16]>`: deterministic, so a download
 * cut by a crash or a disconnection resumes in the same file. Chunks come, in this order,
 * from the partial file of an earlier attempt (each checked against its hash), from any
 * local file that holds them (read in long runs; checked unless the file is as indexed),
 * from earlier in the same file, and what is left from the peer (`needs`).
 */
export class PartialFile {
  readonly path: string
  readonly target: string
  readonly remote: WireRecord
  /** Chunks to fetch from the peer. */
  readonly needs: ChunkNeed[] = []
  /** Bytes that came from local data (partial, other files, repeats). */
  reused = 0
  /** Bytes written from the peer. */
  received = 0
  readonly #fd: number
  #open = true
  readonly #context: AssemblyContext
  readonly #copies: CopyRange[]
  /** Repeats of a fetched chunk elsewhere in this file, copied once it is written. */
  readonly #repeats = new Map<string, { to: number; length: number }[]>()
  readonly #writes = new Set<Promise<void>>()
  #failure: unknown

  /** Bytes the file held when it was opened (an earlier attempt's). */
  readonly #existing: number

  private constructor(context: AssemblyContext, target: string, path: string, fd: number, existing: number, remote: WireRecord, copies: CopyRange[]) {
    this.#context = context
    this.target = target
    this.path = path
    this.#fd = fd
    this.#existing = existing
    this.remote = remote
    this.#copies = copies
  }

  /** Opens (or resumes) the partial file of `remote` for `target` and plans where each chunk comes from. */
  static async open(context: AssemblyContext, target: string, remote: WireRecord): Promise<PartialFile> {
    const dir = partialFolder(context.folder)
    const path = join(dir, createHash('sha256').update(target).update(remote.chunkHashes).digest('hex').slice(0, 32))
    let fd: number
    let existing = 0
    try {
      // Usually new: then there is nothing to resume and no need to look at its size.
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT') {
        // The state folder (or its partial folder) is not there yet, or was removed.
        mkdirSync(dir, { recursive: true })
        fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
      } else if (code === 'EEXIST') {
        fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW)
        try {
          existing = fstatSync(fd).size
        } catch (statError) {
          closeSync(fd)
          throw statError
        }
      } else throw error
    }
    const copies: CopyRange[] = []
    const file = new PartialFile(context, target, path, fd, existing, remote, copies)
    const placed = new Map<string, number>()
    const locals: CopyRange['chunks'][number][] = []
    const localSources = new Map<string, { chunks: { from: number; length: number; hash: Uint8Array; to: number }[]; trusted: boolean }>()
    let offset = 0
    for (let i = 0; i < remote.chunkLengths.length; i++) {
      const length = remote.chunkLengths[i] as number
      const hash = remote.chunkHashes.subarray(i * CHUNK_HASH_LENGTH, (i + 1) * CHUNK_HASH_LENGTH)
      const at = offset
      offset += length
      const key = hex(hash)
      // Already in the partial file from an earlier attempt?
      if (at + length <= existing) {
        const buffer = Buffer.allocUnsafe(length)
        const bytesRead = await readAt(fd, buffer, length, at)
        if (bytesRead === length && sameBytes(sha256(buffer), hash)) {
          file.reused += length
          placed.set(key, at)
          continue
        }
      }
      // The same chunk earlier in this file (repeated or zero-filled data): copied once it is there.
      const earlier = placed.get(key)
      if (earlier !== undefined) {
        const repeats = file.#repeats.get(key) ?? []
        repeats.push({ to: at, length })
        file.#repeats.set(key, repeats)
        continue
      }
      placed.set(key, at)
      const local = context.index.locateChunk(hash)
      if (local !== undefined && local.length === length) {
        let source = localSources.get(local.path)
        if (source === undefined) {
          source = { chunks: [], trusted: await asIndexed(context, local.path) }
          localSources.set(local.path, source)
        }
        source.chunks.push({ from: local.offset, length, hash, to: at })
        locals.push(source.chunks[source.chunks.length - 1] as CopyRange['chunks'][number])
        continue
      }
      file.needs.push({ file, offset: at, length, hash })
    }
    // Local chunks in long runs: consecutive in the source and in the target, read at once.
    for (const [source, { chunks, trusted }] of localSources) {
      chunks.sort((a, b) => a.from - b.from)
      let run: CopyRange['chunks'][number][] = []
      const flush = () => {
        if (run.length === 0) return
        const first = run[0] as CopyRange['chunks'][number]
        copies.push({ source, from: first.from, to: first.to, length: run.reduce((sum, chunk) => sum + chunk.length, 0), chunks: run, trusted })
        run = []
      }
      for (const chunk of chunks) {
        const last = run[run.length - 1]
        const contiguous = last !== undefined && last.from + last.length === chunk.from && last.to + last.length === chunk.to
        const length = run.reduce((sum, each) => sum + each.length, 0)
        if (!contiguous || length + chunk.length > COPY_READ) flush()
        run.push(chunk)
      }
      flush()
    }
    return file
  }

  /** Copies the local runs (a source that turns out not to hold a chunk makes it a need). */
  async copyLocal(): Promise<ChunkNeed[]> {
    const more: ChunkNeed[] = []
    const buffer = Buffer.allocUnsafe(Math.min(COPY_READ, Math.max(0, ...this.#copies.map((copy) => copy.length))))
    for (const copy of this.#copies) {
      let bytes: Buffer | undefined
      try {
        const source = openSync(join(this.#context.folder, copy.source), constants.O_RDONLY | constants.O_NOFOLLOW)
        try {
          const bytesRead = await readAt(source, buffer, copy.length, copy.from)
          bytes = bytesRead === copy.length ? buffer.subarray(0, copy.length) : undefined
        } finally {
          closeSync(source)
        }
      } catch {
        bytes = undefined
      }
      for (const chunk of copy.chunks) {
        const piece = bytes?.subarray(chunk.from - copy.from, chunk.from - copy.from + chunk.length)
        if (piece !== undefined && (copy.trusted || sameBytes(sha256(piece), chunk.hash))) continue
        // Not there any more: from the peer instead, and the index learns.
        if (piece !== undefined) this.#context.index.forgetChunk(chunk.hash)
        more.push({ file: this, offset: chunk.to, length: chunk.length, hash: chunk.hash })
      }
      if (bytes === undefined) continue
      if (more.length === 0 || more.every((need) => need.offset < copy.to || need.offset >= copy.to + copy.length)) {
        await writeAt(this.#fd, bytes, 0, copy.length, copy.to)
      } else {
        // Write the chunks that were good, one by one.
        for (const chunk of copy.chunks) {
          if (more.some((need) => need.offset === chunk.to)) continue
          await writeAt(this.#fd, bytes, chunk.from - copy.from, chunk.length, chunk.to)
        }
      }
      this.reused += copy.chunks.filter((chunk) => !more.some((need) => need.offset === chunk.to)).reduce((sum, chunk) => sum + chunk.length, 0)
      for (const chunk of copy.chunks) if (!more.some((need) => need.offset === chunk.to)) await this.#copyRepeats(chunk.hash, chunk.to, chunk.length)
    }
    this.#copies.length = 0
    return more
  }

  /** Writes a fetched chunk (its hash already checked) at its place, then its repeats. */
  write(need: ChunkNeed, bytes: Uint8Array): Promise<void> {
    const done = (async () => {
      await writeAt(this.#fd, bytes, 0, need.length, need.offset)
      this.received += need.length
      await this.#copyRepeats(need.hash, need.offset, need.length)
    })().catch((error: unknown) => {
      this.#failure ??= error
    })
    this.#writes.add(done)
    void done.finally(() => this.#writes.delete(done))
    return done
  }

  async #copyRepeats(hash: Uint8Array, from: number, length: number): Promise<void> {
    const repeats = this.#repeats.get(hex(hash))
    if (repeats === undefined) return
    this.#repeats.delete(hex(hash))
    const buffer = Buffer.allocUnsafe(length)
    await readAt(this.#fd, buffer, length, from)
    for (const repeat of repeats) {
      await writeAt(this.#fd, buffer, 0, length, repeat.to)
      this.reused += length
    }
  }

  /**
   * Waits for every write, cuts the file to size, gives it the peer's mode (less the umask)
   * and time, and makes it durable. Returns what the disk then says of it: an edit made to
   * the file after it lands must show as a change to the next scan.
   */
  async complete(): Promise<{ mtimeMs: number; ino: number }> {
    while (this.#writes.size > 0) await Promise.all([...this.#writes])
    if (this.#failure !== undefined) throw this.#failure
    if (this.#repeats.size > 0) throw new ChunkUnavailableError(`Parts of ${this.remote.path} did not arrive; it will resume on the next pass.`, { path: this.remote.path })
    const fd = this.#fd
    try {
      // A new file ends where its last chunk was written; only an earlier attempt's can be longer.
      if (this.#existing > this.remote.size) ftruncateSync(fd, this.remote.size)
      fchmodSync(fd, this.remote.mode & 0o777 & ~this.#context.umask)
      const mtime = new Date(this.remote.mtimeMs)
      futimesSync(fd, mtime, mtime)
      await fsyncFd(fd)
      const info = fstatSync(fd)
      return { mtimeMs: info.mtimeMs, ino: info.ino }
    } finally {
      this.#close()
    }
  }

  /** Closes without completing: what was written stays to resume from. */
  async abandon(): Promise<void> {
    while (this.#writes.size > 0) await Promise.all([...this.#writes])
    this.#close()
  }

  #close(): void {
    if (!this.#open) return
    this.#open = false
    closeSync(this.#fd)
  }
}

/** True when the file at `path` is as its live record says (size, time, inode): its chunks can be trusted as indexed. */
async function asIndexed(context: AssemblyContext, path: string): Promise<boolean> {
  const record = context.index.get(path)
  const info = lstatSync(join(context.folder, path), { throwIfNoEntry: false })
  return record !== undefined && !record.deleted && info !== undefined && info.isFile() && info.size === record.size && info.mtimeMs === record.mtimeMs && (record.inode === undefined || record.inode === info.ino)
}

/** Refuses a target whose parent folders are symbolic links or files (they could lead outside); creates missing ones. */
export function prepareParents(folder: string, path: string): void {
  let current = folder
  for (const segment of path.split('/').slice(0, -1)) {
    current = join(current, segment)
    let info = lstatSync(current, { throwIfNoEntry: false })
    if (info === undefined) {
      try {
        mkdirSync(current)
        continue
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      }
      info = lstatSync(current)
    }
    if (info.isSymbolicLink() || !info.isDirectory()) throw new UnsafePathError(`The path ${path} goes through a symbolic link or a file; it was refused.`, { path })
  }
}

/**
 * Makes renames in `dir` durable. Installs that land in the same folder while an fsync of
 * it is waiting to start share it (one fsync for a folder of small files, not one each).
 */
const folderSyncs = new Map<string, Promise<void>>()
function syncFolder(dir: string): Promise<void> {
  const waiting = folderSyncs.get(dir)
  if (waiting !== undefined) return waiting
  const next = new Promise<void>((resolve) => {
    setImmediate(() => {
      // From here on, a rename needs a new fsync: this one may have started before it.
      folderSyncs.delete(dir)
      let fd: number | undefined
      try {
        fd = openSync(dir, constants.O_RDONLY)
      } catch {
        // Not every platform can open a folder; the rename is atomic regardless.
        return resolve()
      }
      const opened = fd
      fsync(opened, () => {
        closeSync(opened)
        resolve()
      })
    })
  })
  folderSyncs.set(dir, next)
  return next
}

/** What installing a downloaded file did. */
export interface Installed {
  readonly record: FileRecord
  /** A local edit the download met, kept under this name. */
  readonly keptLocalAs?: string
}

/**
 * Puts a completed partial file in place of its target, atomically: a local edit the index
 * has not seen (or one it saw after this download was decided) is first kept as a conflict
 * copy; the rename and the folder are made durable; then the index records it. Call with
 * the path's lock held.
 */
export async function installFile(context: AssemblyContext, partial: PartialFile, landed: { mtimeMs: number; ino: number }, version: VersionVector, origin: string | undefined, device: string): Promise<Installed> {
  const { folder, index } = context
  const remote = partial.remote
  const path = partial.target
  const target = join(folder, path)
  prepareParents(folder, path)
  const current = index.get(path)
  const onDisk = lstatSync(target, { throwIfNoEntry: false })
  if (onDisk !== undefined && !onDisk.isFile()) throw new UnsafePathError(`${path} is not a regular file here; it was left alone.`, { path })
  // A scan may have recorded a local edit while the download ran: the version decided on
  // then no longer covers what is here, so that edit is kept too.
  const overtaken = current !== undefined && !current.deleted && !['newer', 'equal'].includes(compareVersions(version, current.version))
  let keptLocalAs: string | undefined
  if (onDisk !== undefined && (overtaken || current === undefined || current.deleted || onDisk.size !== current.size || onDisk.mtimeMs !== current.mtimeMs)) {
    // Changed here since the last scan (or never scanned): keep it as a conflict copy.
    keptLocalAs = conflictName(path, device, new Date(onDisk.mtimeMs))
    renameSync(target, join(folder, keptLocalAs))
  } else if (onDisk !== undefined) {
    // The indexed file this download replaces: its content stays among the versions.
    context.versions?.keep(path, { move: false, reason: 'replaced', device: current?.origin ?? device, replacedBy: origin ?? device })
  }
  renameSync(partial.path, target)
  context.wrote?.(path, { kind: 'file', ino: landed.ino, mtimeMs: landed.mtimeMs, size: remote.size })
  await syncFolder(dirname(target))
  const record = index.put({
    path,
    size: remote.size,
    mtimeMs: landed.mtimeMs,
    mode: remote.mode,
    chunkHashes: remote.chunkHashes,
    chunkLengths: [...remote.chunkLengths],
    chunkSize: remote.chunkSize,
    version,
    deleted: false,
    inode: landed.ino,
    ...(origin === undefined ? {} : { origin }),
  })
  return { record, ...(keptLocalAs === undefined ? {} : { keptLocalAs }) }
}

export { chunkHashAt }
