import { createHash } from 'node:crypto'
import { mkdir, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { Decoder, Encoder } from 'cbor-x'
import { writeFileAtomically } from '@cloudbox/securestorage/durable-file'
import { CHUNK_HASH_LENGTH } from './chunker.js'
import { IndexCorruptedError } from './errors.js'
import type { VersionVector } from './version-vector.js'

/** What the index knows of one file. Paths are relative, `/`-separated, NFC. */
export interface FileRecord {
  readonly path: string
  readonly size: number
  readonly mtimeMs: number
  /** Permission bits (0o777 part of the mode). */
  readonly mode: number
  /** Concatenated SHA-256 hashes of the chunks, in order. */
  readonly chunkHashes: Uint8Array
  readonly chunkLengths: readonly number[]
  /** The average chunk size the file was cut with (0 for tombstones); kept across edits. */
  readonly chunkSize: number
  readonly version: VersionVector
  readonly deleted: boolean
  /** Local sequence number of the last change to this record. */
  readonly sequence: number
  /** Local only: the inode, to tell an unchanged file from a replaced one. */
  readonly inode?: number
}

export type NewRecord = Omit<FileRecord, 'sequence'>

/** Where a chunk's bytes can be read locally. */
export interface ChunkLocation {
  readonly path: string
  readonly offset: number
  readonly length: number
}

const INDEX_FILE = 'index.cbor'
const FORMAT_VERSION = 1
const encoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true })
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true })

export function chunkHashAt(record: Pick<FileRecord, 'chunkHashes'>, index: number): Uint8Array {
  return record.chunkHashes.subarray(index * CHUNK_HASH_LENGTH, (index + 1) * CHUNK_HASH_LENGTH)
}

/** The digest of a record's synced content and history (not its local mtime, inode or sequence). */
export function recordDigest(record: FileRecord): Uint8Array {
  const version = Object.entries(record.version).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const chunks = createHash('sha256').update(record.chunkHashes).digest()
  return new Uint8Array(createHash('sha256').update(encoder.encode([record.path, record.size, record.mode, chunks, record.deleted, version])).digest())
}

/** A binary Merkle tree over the records' digests in path order; empty: SHA-256(""). */
export function merkleRoot(records: readonly FileRecord[]): Uint8Array {
  const sorted = [...records].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  return merkleOfLeaves(sorted.map(recordDigest))
}

function merkleOfLeaves(leaves: Uint8Array[]): Uint8Array {
  let level = leaves
  if (level.length === 0) return new Uint8Array(createHash('sha256').digest())
  while (level.length > 1) {
    const next: Uint8Array[] = []
    for (let i = 0; i < level.length; i += 2) {
      const left = level[i] as Uint8Array
      const right = level[i + 1]
      next.push(right === undefined ? left : new Uint8Array(createHash('sha256').update(left).update(right).digest()))
    }
    level = next
  }
  return level[0] as Uint8Array
}

interface Persisted {
  format: number
  sequence: number
  peers: Record<string, number>
  records: unknown[]
}

function encodeRecord(record: FileRecord): unknown[] {
  return [record.path, record.size, record.mtimeMs, record.mode, record.chunkHashes, record.chunkLengths, record.version, record.deleted, record.sequence, record.inode ?? 0, record.chunkSize]
}

function decodeRecord(raw: unknown): FileRecord {
  if (!Array.isArray(raw) || raw.length !== 11) throw new Error('record shape')
  const [path, size, mtimeMs, mode, chunkHashes, chunkLengths, version, deleted, sequence, inode, chunkSize] = raw as [unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown]
  if (typeof chunkSize !== 'number') throw new Error('record chunk size')
  if (typeof path !== 'string' || typeof size !== 'number' || typeof mtimeMs !== 'number' || typeof mode !== 'number') throw new Error('record fields')
  if (!(chunkHashes instanceof Uint8Array) || !Array.isArray(chunkLengths) || chunkHashes.length !== chunkLengths.length * CHUNK_HASH_LENGTH) throw new Error('record chunks')
  if (typeof version !== 'object' || version === null || typeof deleted !== 'boolean' || typeof sequence !== 'number' || typeof inode !== 'number') throw new Error('record meta')
  return { path, size, mtimeMs, mode, chunkHashes: new Uint8Array(chunkHashes), chunkLengths: chunkLengths as number[], chunkSize, version: version as VersionVector, deleted, sequence, ...(inode === 0 ? {} : { inode }) }
}

/**
 * The folder's index: one record per path (tombstones included), a local sequence
 * number per change, what each peer has been sent, and a Merkle root. Persisted in
 * `.cloudbox/index.cbor` by atomic replacement.
 */
export class FolderIndex {
  readonly #stateDir: string
  readonly #records = new Map<string, FileRecord>()
  readonly #peers = new Map<string, number>()
  #sequence = 0
  #root: Uint8Array | undefined
  /** Each record's digest, computed once per change (the root is recomputed often). */
  readonly #digests = new Map<string, Uint8Array>()
  #dirty = false
  #chunks: Map<string, ChunkLocation> | undefined
  /** Case-folded path → live paths with that folding (to find case clashes fast). */
  readonly #byCase = new Map<string, Set<string>>()

  private constructor(stateDir: string) {
    this.#stateDir = stateDir
  }

  /**
   * Loads the index, or starts an empty one. A damaged index is set aside (renamed) and
   * reported through `onCorrupted`; the folder is then rescanned from scratch.
   */
  static async load(stateDir: string, onCorrupted?: (error: IndexCorruptedError) => void): Promise<FolderIndex> {
    await mkdir(stateDir, { recursive: true })
    const index = new FolderIndex(stateDir)
    let bytes: Buffer
    try {
      bytes = await readFile(join(stateDir, INDEX_FILE))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return index
      throw error
    }
    try {
      const data = decoder.decode(bytes) as Persisted
      if (data.format !== FORMAT_VERSION || typeof data.sequence !== 'number' || !Array.isArray(data.records)) throw new Error('header')
      index.#sequence = data.sequence
      for (const [peer, sequence] of Object.entries(data.peers ?? {})) if (typeof sequence === 'number') index.#peers.set(peer, sequence)
      for (const raw of data.records) {
        const record = decodeRecord(raw)
        index.#records.set(record.path, record)
        index.#trackCase(record)
      }
    } catch (cause) {
      const aside = join(stateDir, `${INDEX_FILE}.corrupt-${Date.now()}`)
      await rename(join(stateDir, INDEX_FILE), aside).catch(() => {})
      onCorrupted?.(new IndexCorruptedError(`The sync index was damaged; it was moved to ${aside} and the folder is rescanned.`, { cause }))
      return new FolderIndex(stateDir)
    }
    return index
  }

  get sequence(): number {
    return this.#sequence
  }

  get(path: string): FileRecord | undefined {
    return this.#records.get(path)
  }

  records(): FileRecord[] {
    return [...this.#records.values()]
  }

  /** Live (not deleted) records. */
  files(): FileRecord[] {
    return this.records().filter((record) => !record.deleted)
  }

  /** Stores a changed record under the next sequence number. */
  put(record: NewRecord): FileRecord {
    const previous = this.#records.get(record.path)
    const stored: FileRecord = { ...record, sequence: ++this.#sequence }
    this.#records.set(record.path, stored)
    this.#digests.delete(record.path)
    this.#trackCase(stored)
    this.#root = undefined
    this.#dirty = true
    // A replaced or deleted file makes its old chunk locations wrong: rebuild lazily.
    if (previous !== undefined && !previous.deleted) this.#chunks = undefined
    else if (this.#chunks !== undefined && !stored.deleted) this.#addChunks(this.#chunks, stored)
    return stored
  }

  #addChunks(map: Map<string, ChunkLocation>, record: FileRecord): void {
    let offset = 0
    record.chunkLengths.forEach((length, i) => {
      const key = Buffer.from(chunkHashAt(record, i)).toString('hex')
      if (!map.has(key)) map.set(key, { path: record.path, offset, length })
      offset += length
    })
  }

  /**
   * Where a chunk may be read locally. Kept up to date as records change; an entry can go
   * stale when a file changes on disk, so readers verify the hash and call
   * {@link forgetChunkLocations} when it does not match.
   */
  locateChunk(hash: Uint8Array): ChunkLocation | undefined {
    if (this.#chunks === undefined) {
      const map = new Map<string, ChunkLocation>()
      for (const record of this.#records.values()) if (!record.deleted) this.#addChunks(map, record)
      this.#chunks = map
    }
    return this.#chunks.get(Buffer.from(hash).toString('hex'))
  }

  forgetChunkLocations(): void {
    this.#chunks = undefined
  }

  /** Updates local-only fields (mtime, inode) without a new sequence number. */
  touch(path: string, fields: { mtimeMs: number; inode?: number }): void {
    const record = this.#records.get(path)
    if (record === undefined) return
    this.#records.set(path, { ...record, ...fields })
    this.#dirty = true
  }

  #trackCase(record: FileRecord): void {
    const key = record.path.toLowerCase()
    let paths = this.#byCase.get(key)
    if (record.deleted) {
      paths?.delete(record.path)
      if (paths?.size === 0) this.#byCase.delete(key)
      return
    }
    if (paths === undefined) this.#byCase.set(key, (paths = new Set()))
    paths.add(record.path)
  }

  /** A live path other than `path` that differs from it only by letter case, if any. */
  caseClash(path: string): string | undefined {
    for (const other of this.#byCase.get(path.toLowerCase()) ?? []) if (other !== path) return other
    return undefined
  }

  /** Records changed after `sequence`, in sequence order. */
  changedSince(sequence: number): FileRecord[] {
    return this.records()
      .filter((record) => record.sequence > sequence)
      .sort((a, b) => a.sequence - b.sequence)
  }

  peerSequence(peer: string): number {
    return this.#peers.get(peer) ?? 0
  }

  setPeerSequence(peer: string, sequence: number): void {
    this.#peers.set(peer, sequence)
    this.#dirty = true
  }

  root(): Uint8Array {
    if (this.#root === undefined) {
      const paths = [...this.#records.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      this.#root = merkleOfLeaves(
        paths.map((path) => {
          let digest = this.#digests.get(path)
          if (digest === undefined) {
            digest = recordDigest(this.#records.get(path) as FileRecord)
            this.#digests.set(path, digest)
          }
          return digest
        }),
      )
    }
    return this.#root
  }

  async save(): Promise<void> {
    if (!this.#dirty) return
    this.#dirty = false
    const data: Persisted = {
      format: FORMAT_VERSION,
      sequence: this.#sequence,
      peers: Object.fromEntries(this.#peers),
      records: this.records().map(encodeRecord),
    }
    try {
      await writeFileAtomically(join(this.#stateDir, INDEX_FILE), encoder.encode(data))
    } catch (error) {
      this.#dirty = true
      throw error
    }
  }
}
