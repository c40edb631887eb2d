import { closeSync, constants, fstatSync, openSync, read, readSync } from 'node:fs'
import { join } from 'node:path'
import { SyncProtocolError } from './errors.js'
import type { FileRecord, FolderIndex } from './folder-index.js'

/** One chunk a peer asked for. */
export interface ChunkRequest {
  readonly id: number
  readonly path: string
  readonly offset: number
  readonly length: number
}

/** What the server answers with: chunk bytes by request id, or the ids it cannot serve. */
export interface ChunkReplies {
  data(chunks: [number, Uint8Array][]): Promise<void>
  missing(ids: number[]): Promise<void>
}

/** Requests a peer may have waiting at once (several fetch messages' worth; its byte window is far smaller). */
export const MAX_QUEUED_REQUESTS = 32_768
/** Bytes read at once from one file (consecutive chunks), and packed into one data message. */
const READ_SIZE = 4 * 1024 * 1024
const PACK_SIZE = 1024 * 1024
/**
 * Reads up to this size block the thread (microseconds from the page cache). As thread-pool
 * reads, each small file cost a turn of the event loop, and a sender busy scanning served a
 * folder of tiny files a turn at a time while its peer waited.
 */
const BLOCKING_READ_MAX = 64 * 1024
/** Files kept open between requests. */
const OPEN_FILES = 32

interface OpenFile {
  readonly fd: number
  readonly sequence: number
  /** The index's sequence when it was last checked against the record: unchanged since, the record is too. */
  checkedAt: number
  /** Start offset of each chunk of the record it was opened for. */
  readonly offsets: Float64Array
  readonly lengths: readonly number[]
}

/**
 * The sending side of chunk transfers: answers a peer's fetch requests from the folder,
 * in order, reading consecutive chunks of a file in one large read from a cached file
 * handle and packing small chunks several to a message. Only chunks of live index records,
 * at the record's own boundaries, are served, and only while the file on disk is the one
 * the record describes (else: missing); so no request reaches an ignored, unindexed or
 * state file, and the peer checks every hash anyway.
 */
export class ChunkServer {
  readonly #folder: string
  readonly #index: FolderIndex
  readonly #replies: ChunkReplies
  readonly #queue: ChunkRequest[] = []
  readonly #files = new Map<string, OpenFile>()
  #running: Promise<void> | undefined
  #closed = false
  #buffer = Buffer.allocUnsafeSlow(READ_SIZE)
  /** Bytes of the buffer holding chunks read and not yet sent. */
  #used = 0
  #packed: [number, Uint8Array][] = []
  #packedBytes = 0

  constructor(folder: string, index: FolderIndex, replies: ChunkReplies) {
    this.#folder = folder
    this.#index = index
    this.#replies = replies
  }

  /** Queues requests; they are answered in order. @throws {SyncProtocolError} past the queue's limit. */
  enqueue(requests: readonly ChunkRequest[]): void {
    if (this.#queue.length + requests.length > MAX_QUEUED_REQUESTS) {
      throw new SyncProtocolError(`The peer asked for over ${MAX_QUEUED_REQUESTS} chunks without reading the answers; the session was closed.`)
    }
    for (const request of requests) this.#queue.push(request)
    this.#running ??= this.#serve().finally(() => {
      this.#running = undefined
      if (this.#queue.length > 0 && !this.#closed) this.enqueue([])
    })
  }

  async #serve(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        // A group: consecutive chunks of one file, read at once.
        const first = this.#queue.shift() as ChunkRequest
        const group = [first]
        let end = first.offset + first.length
        while (this.#queue.length > 0) {
          const next = this.#queue[0] as ChunkRequest
          if (next.path !== first.path || next.offset !== end || end + next.length - first.offset > READ_SIZE) break
          group.push(this.#queue.shift() as ChunkRequest)
          end += next.length
        }
        await this.#answer(group, first.offset, end - first.offset)
        // Nothing more asked for now: send what is packed.
        if (this.#queue.length === 0) await this.#flush()
      }
      await this.#flush()
    } catch {
      // The session is closing (sends fail): its loop reports why.
    }
  }

  /** Sends the packed chunks, straight from the buffer (see the session's data path): it is free again once this settles. */
  async #flush(): Promise<void> {
    if (this.#packed.length === 0) return
    const packed = this.#packed
    this.#packed = []
    this.#packedBytes = 0
    await this.#replies.data(packed)
  }

  async #answer(group: ChunkRequest[], offset: number, length: number): Promise<void> {
    const file = this.#open(group[0]?.path as string)
    const servable = file === undefined ? [] : group.filter((request) => this.#isChunk(file, request))
    if (file === undefined || servable.length !== group.length) {
      // Part of a group that is not a chunk of the record (or no record): refuse those.
      const missing = file === undefined ? group : group.filter((request) => !servable.includes(request))
      await this.#replies.missing(missing.map((request) => request.id))
      for (const request of servable) await this.#answer([request], request.offset, request.length)
      return
    }
    // Chunks of several files share a message: each read goes after the last in the buffer,
    // which is sent and reused when full.
    if (this.#used + length > this.#buffer.length) {
      await this.#flush()
      this.#used = 0
      if (length > this.#buffer.length) this.#buffer = Buffer.allocUnsafeSlow(length)
    }
    const at = this.#used
    const bytesRead = length <= BLOCKING_READ_MAX ? readSync(file.fd, this.#buffer, at, length, offset) : await readAt(file.fd, this.#buffer, at, length, offset)
    if (bytesRead !== length) {
      // Shorter than its record: changed since the scan.
      this.#forget(group[0]?.path as string)
      await this.#replies.missing(group.map((request) => request.id))
      return
    }
    this.#used += length
    for (const request of group) {
      const from = at + request.offset - offset
      this.#packed.push([request.id, this.#buffer.subarray(from, from + request.length)])
      this.#packedBytes += request.length
      if (this.#packedBytes >= PACK_SIZE) await this.#flush()
    }
  }

  #isChunk(file: OpenFile, request: ChunkRequest): boolean {
    // Binary search for the chunk that starts at the offset.
    let low = 0
    let high = file.offsets.length - 1
    while (low <= high) {
      const middle = (low + high) >>> 1
      const start = file.offsets[middle] as number
      if (start === request.offset) return file.lengths[middle] === request.length
      if (start < request.offset) low = middle + 1
      else high = middle - 1
    }
    return false
  }

  /** The file at `path` opened for its current live record, or undefined when it has none or the disk no longer matches it. */
  #open(path: string): OpenFile | undefined {
    const cached = this.#files.get(path)
    // Every change to a record takes a new sequence number: while the index's stays, the
    // record is the one the file was opened for, and reading it again (a tenth of a
    // sender's time with files of a few hundred KiB, asked for in many groups) can wait.
    if (cached !== undefined && cached.checkedAt === this.#index.sequence) return this.#touch(path, cached)
    const record = this.#index.get(path)
    if (record === undefined || record.deleted) {
      this.#forget(path)
      return undefined
    }
    if (cached !== undefined && cached.sequence === record.sequence) {
      cached.checkedAt = this.#index.sequence
      return this.#touch(path, cached)
    }
    this.#forget(path)
    // Opening and checking are blocking calls (microseconds here, a thread-pool hop each as
    // promises); the reads, which can wait on a disk, are not.
    let fd: number
    try {
      fd = openSync(join(this.#folder, path), constants.O_RDONLY | constants.O_NOFOLLOW)
    } catch {
      return undefined
    }
    let info
    try {
      info = fstatSync(fd)
    } catch {
      info = undefined
    }
    if (info === undefined || !info.isFile() || info.size !== record.size || info.mtimeMs !== record.mtimeMs || (record.inode !== undefined && record.inode !== info.ino)) {
      closeSync(fd)
      return undefined
    }
    const file = { fd, sequence: record.sequence, checkedAt: this.#index.sequence, offsets: offsetsOf(record), lengths: record.chunkLengths }
    this.#files.set(path, file)
    if (this.#files.size > OPEN_FILES) this.#forget(this.#files.keys().next().value as string)
    return file
  }

  /** The most recently used last (the first is closed when too many are open). */
  #touch(path: string, file: OpenFile): OpenFile {
    this.#files.delete(path)
    this.#files.set(path, file)
    return file
  }

  #forget(path: string): void {
    const file = this.#files.get(path)
    if (file === undefined) return
    this.#files.delete(path)
    // Never during a read: the serving loop reads one group at a time and forgets between reads.
    closeSync(file.fd)
  }

  /** Drops what is queued and closes the open files. */
  async close(): Promise<void> {
    this.#closed = true
    this.#queue.length = 0
    await this.#running?.catch(() => {})
    for (const path of [...this.#files.keys()]) this.#forget(path)
  }
}

function readAt(fd: number, buffer: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buffer, at, length, position, (error, bytesRead) => (error === null ? resolve(bytesRead) : reject(error))))
}

function offsetsOf(record: FileRecord): Float64Array {
  const offsets = new Float64Array(record.chunkLengths.length)
  let offset = 0
  record.chunkLengths.forEach((length, i) => {
    offsets[i] = offset
    offset += length
  })
  return offsets
}
