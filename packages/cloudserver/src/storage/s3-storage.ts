/**
 * A back end on any S3-compatible object store, for clouds that outgrow one disk. The
 * store is not trusted: everything is encrypted on the server before it leaves (see
 * s3-objects.ts for the formats), so the store, its operator or a leaked bucket sees
 * opaque, padded objects under keyed-hash names and an index signed by the server.
 *
 * One server writes one prefix. The index is loaded once and kept in memory; each change
 * writes a new generation of it after the chunks it names are stored, so a crash leaves
 * either the old or the new state (plus unreferenced chunks, which `sweep()` removes).
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3'
import type { Identity } from '@cloudbox/encrypted-messaging'
import { writeFileAtomically } from '@cloudbox/securestorage/durable-file'
import { errors, isCloudServerError } from '../errors.js'
import { cloudPath, nameOf, parentOf, SHARE_ID } from './paths.js'
import { chunkName, deriveStorageKeys, indexDigest, openChunk, openIndex, sealChunk, sealIndex, storageKeyOf, type StorageKeys } from './s3-objects.js'
import type { EntryInfo, ShareInfo, StorageBackend, StorageUsage } from './storage-backend.js'

export interface S3StorageOptions {
  bucket: string
  /** Key prefix of this cloud's objects (default none); clouds can share a bucket under distinct prefixes. */
  prefix?: string
  /**
   * An S3 client, or the configuration to make one (region, endpoint, credentials,
   * forcePathStyle…). A configuration defaults to checksums only where required: the
   * objects carry their own authentication.
   */
  s3: S3Client | S3ClientConfig
  /** Signs the index and, unless `key` is given, derives the storage key (same phrase, same key). */
  identity: Identity
  /** A 32-byte storage key to use instead of the one derived from the identity. */
  key?: Uint8Array
  /**
   * A local file that remembers the generation of the last index written or read, so a
   * bucket rolled back to an older (validly signed) index is refused. Default: one per
   * bucket, prefix and identity under `$XDG_STATE_HOME/cloudbox/s3/` (`~/.local/state/…`);
   * `false` turns the check off (a rollback then goes unnoticed).
   */
  stateFile?: string | false
  /** Largest plaintext per chunk object (default 4 MiB). */
  chunkSize?: number
  /** Decrypted chunks kept in memory for sequential reads (default 8). */
  cachedChunks?: number
}

/** [object name, plaintext length] */
type ChunkRef = [string, number]
interface FileRecord {
  size: number
  modified: number
  chunks: ChunkRef[]
}
interface UploadRecord {
  size: number
  chunks: ChunkRef[]
  /** Last append (ms since the epoch); absent in indexes written before it was kept. */
  touched?: number
}
interface IndexDocument {
  changed: number
  files: Record<string, FileRecord>
  folders: Record<string, number>
  uploads: Record<string, UploadRecord>
  shares: Record<string, ShareInfo>
}
interface State {
  generation: number
  changed: number
  files: Map<string, FileRecord>
  /** Every folder, with its creation time; parents of files are always present. */
  folders: Map<string, number>
  uploads: Map<string, UploadRecord>
  shares: Map<string, ShareInfo>
}

const MiB = 1024 * 1024
/** The SDK is loaded on first use: importing it costs about 0.2 s, which servers without S3 never pay. */
type Sdk = typeof import('@aws-sdk/client-s3')
let sdk: Promise<Sdk> | undefined
const loadSdk = (): Promise<Sdk> => (sdk ??= import('@aws-sdk/client-s3'))
const PUT_CONCURRENCY = 4

export class S3Storage implements StorageBackend {
  readonly bucket: string
  readonly prefix: string
  readonly #s3: S3Client | S3ClientConfig
  #client: Promise<{ client: S3Client; sdk: Sdk }> | undefined
  readonly #identity: Identity
  readonly #keys: StorageKeys
  readonly #stateFile: string | undefined
  readonly #chunkSize: number
  readonly #cacheSize: number
  #state: Promise<State> | undefined
  /** Mutations run one at a time. */
  #tail: Promise<unknown> = Promise.resolve()
  /** How many index records (files, uploads) name each chunk. */
  readonly #refs = new Map<string, number>()
  /** Chunks being stored for a mutation that has not committed yet: never collected. */
  readonly #pinned = new Map<string, number>()
  readonly #cache = new Map<string, Buffer>()
  readonly #fetching = new Map<string, Promise<Buffer>>()
  /** Chunk deletions in flight: storing the same chunk waits for them. */
  readonly #deleting = new Map<string, Promise<void>>()

  constructor(options: S3StorageOptions) {
    this.bucket = options.bucket
    this.prefix = options.prefix ?? ''
    this.#s3 = options.s3
    this.#identity = options.identity
    if (options.key !== undefined && options.key.length !== 32) throw new TypeError('An S3 storage key has 32 bytes.')
    this.#keys = deriveStorageKeys(options.key ?? storageKeyOf(options.identity), options.identity.publicKey)
    this.#stateFile = options.stateFile === false ? undefined : (options.stateFile ?? defaultStateFile(options.bucket, options.prefix ?? '', options.identity.publicId, options.s3))
    this.#chunkSize = options.chunkSize ?? 4 * MiB
    this.#cacheSize = options.cachedChunks ?? 8
  }

  /** Loads and checks the index (done by the first call otherwise); refuses a tampered or rolled-back store. */
  async open(): Promise<void> {
    await this.#load()
  }

  /** Closes the S3 client when this back end made it. */
  async close(): Promise<void> {
    await this.#tail.catch(() => {})
    const made = this.#client
    this.#client = undefined
    if (made !== undefined && !isClient(this.#s3)) (await made).client.destroy()
  }

  // ---- object store access -------------------------------------------------------

  #connect(): Promise<{ client: S3Client; sdk: Sdk }> {
    const given = this.#s3
    this.#client ??= loadSdk().then((sdk) => ({
      sdk,
      client: isClient(given) ? given : new sdk.S3Client({ requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED', ...given }),
    }))
    return this.#client
  }

  async #get(key: string, range?: string): Promise<Buffer | undefined> {
    const { client, sdk } = await this.#connect()
    try {
      const response = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, ...(range === undefined ? {} : { Range: range }) }))
      return Buffer.from((await response.Body?.transformToByteArray()) ?? new Uint8Array())
    } catch (error) {
      const name = (error as { name?: string }).name
      if (name === 'NoSuchKey' || name === 'NotFound' || (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined
      throw errors.storageUnavailable(`reading ${key.slice(0, 24)}`, error)
    }
  }

  async #put(key: string, body: Buffer | Readable, length: number): Promise<void> {
    const { client, sdk } = await this.#connect()
    try {
      await client.send(new sdk.PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: body, ContentLength: length, ContentType: 'application/octet-stream' }))
    } catch (error) {
      if (isCloudServerError(error)) throw error
      throw errors.storageUnavailable(`writing ${key.slice(0, 24)}`, error)
    }
  }

  /** Deletes objects. Unless `strict`, a failure is ignored: what is left behind is unreferenced, and sweep() removes it. */
  async #delete(keys: string[], strict = false): Promise<void> {
    const { client, sdk } = await this.#connect()
    for (let start = 0; start < keys.length; start += 1000) {
      const batch = keys.slice(start, start + 1000)
      try {
        const answer = await client.send(new sdk.DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((key) => ({ Key: this.prefix + key })), Quiet: true } }))
        if (strict && (answer.Errors?.length ?? 0) > 0) throw new Error(answer.Errors![0]!.Message ?? 'refused')
      } catch (error) {
        if (strict) throw errors.storageUnavailable('deleting objects', error)
      }
    }
  }

  // ---- index -----------------------------------------------------------------------

  #load(): Promise<State> {
    this.#state ??= this.#readIndex().catch((error: unknown) => {
      this.#state = undefined
      throw error
    })
    return this.#state
  }

  async #readIndex(): Promise<State> {
    const remembered = await this.#remembered()
    const sealed = await this.#get('index')
    this.#refs.clear()
    this.#cache.clear()
    if (sealed === undefined) {
      if (remembered !== undefined && remembered.generation > 0) throw errors.storageIntegrity('the index is missing')
      return { generation: 0, changed: Date.now(), files: new Map(), folders: new Map(), uploads: new Map(), shares: new Map() }
    }
    const { generation, document } = openIndex(this.#keys, sealed)
    if (remembered !== undefined) {
      if (generation < remembered.generation) throw errors.storageRollback(generation, remembered.generation)
      if (generation === remembered.generation && indexDigest(sealed) !== remembered.digest) throw errors.storageIntegrity('two different indexes carry the same generation')
    }
    await this.#remember(generation, sealed)
    const doc = document as IndexDocument
    const state: State = {
      generation,
      changed: doc.changed,
      files: new Map(Object.entries(doc.files)),
      folders: new Map(Object.entries(doc.folders)),
      uploads: new Map(Object.entries(doc.uploads)),
      shares: new Map(Object.entries(doc.shares)),
    }
    for (const record of [...state.files.values(), ...state.uploads.values()]) this.#retain(record.chunks)
    return state
  }

  async #remembered(): Promise<{ generation: number; digest: string } | undefined> {
    if (this.#stateFile === undefined) return undefined
    const text = await readFile(this.#stateFile, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined
      throw error
    })
    if (text === undefined) return undefined
    const parsed = JSON.parse(text) as { generation?: unknown; digest?: unknown }
    if (typeof parsed.generation !== 'number' || typeof parsed.digest !== 'string') throw errors.storageIntegrity(`the state file ${this.#stateFile} is malformed`)
    return { generation: parsed.generation, digest: parsed.digest }
  }

  async #remember(generation: number, sealed: Uint8Array): Promise<void> {
    if (this.#stateFile !== undefined) await mkdir(dirname(this.#stateFile), { recursive: true, mode: 0o700 })
    if (this.#stateFile !== undefined) await writeFileAtomically(this.#stateFile, JSON.stringify({ bucket: this.bucket, prefix: this.prefix, generation, digest: indexDigest(sealed) }))
  }

  /**
   * Runs a mutation alone, then writes the next generation of the index. If writing
   * fails, the in-memory state is dropped and reloaded from the store on the next call.
   */
  #mutate<T>(change: (state: State) => T | Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const state = await this.#load()
      const released: string[] = []
      this.#releasedSink = released
      let result: T
      let changed: boolean
      try {
        const before = this.#dirty
        result = await change(state)
        changed = this.#dirty !== before
      } catch (error) {
        this.#releasedSink = undefined
        if (this.#dirty !== this.#persisted) this.#state = undefined // a half-made change: reload
        throw error
      }
      this.#releasedSink = undefined
      if (!changed) return result
      try {
        state.changed = Date.now()
        const document: IndexDocument = {
          changed: state.changed,
          files: Object.fromEntries(state.files),
          folders: Object.fromEntries(state.folders),
          uploads: Object.fromEntries(state.uploads),
          shares: Object.fromEntries(state.shares),
        }
        const sealed = sealIndex(this.#keys, this.#identity, state.generation + 1, document)
        await this.#put('index', sealed, sealed.length)
        state.generation++
        this.#persisted = this.#dirty
        await this.#remember(state.generation, sealed)
      } catch (error) {
        this.#state = undefined
        throw error
      }
      await this.#collect(released)
      return result
    }
    const result = this.#tail.then(run, run)
    this.#tail = result.catch(() => {})
    return result
  }

  /** Bumped by every change to the state; compared to tell whether the index must be written. */
  #dirty = 0
  #persisted = 0
  #releasedSink: string[] | undefined

  #touch(): void {
    this.#dirty++
  }

  #retain(chunks: ChunkRef[]): void {
    for (const [name] of chunks) this.#refs.set(name, (this.#refs.get(name) ?? 0) + 1)
  }

  #release(chunks: ChunkRef[]): void {
    for (const [name] of chunks) {
      const count = (this.#refs.get(name) ?? 0) - 1
      if (count > 0) this.#refs.set(name, count)
      else {
        this.#refs.delete(name)
        this.#releasedSink?.push(name)
      }
    }
  }

  /** Deletes chunks no record names any more (after the index that dropped them is stored). */
  async #collect(names: Iterable<string>): Promise<void> {
    const garbage = [...new Set(names)].filter((name) => !this.#refs.has(name) && !this.#pinned.has(name) && !this.#deleting.has(name))
    if (garbage.length === 0) return
    const deletion = this.#delete(garbage.map((name) => `c/${name}`))
    for (const name of garbage) {
      this.#cache.delete(name)
      this.#deleting.set(name, deletion)
    }
    try {
      await deletion
    } finally {
      for (const name of garbage) if (this.#deleting.get(name) === deletion) this.#deleting.delete(name)
    }
  }

  /** Removes chunk objects that no index record names (left by a crash between storing chunks and the index). */
  async sweep(): Promise<{ removed: number }> {
    const { client, sdk } = await this.#connect()
    return this.#mutate(async () => {
      const orphans: string[] = []
      let token: string | undefined
      do {
        const page = await client
          .send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.prefix}c/`, ContinuationToken: token }))
          .catch((error: unknown) => {
            throw errors.storageUnavailable('listing chunks', error)
          })
        for (const object of page.Contents ?? []) {
          const name = (object.Key ?? '').slice(this.prefix.length + 2)
          if (!this.#refs.has(name) && !this.#pinned.has(name)) orphans.push(name)
        }
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined
      } while (token !== undefined)
      await this.#delete(orphans.map((name) => `c/${name}`), true)
      return { removed: orphans.length }
    })
  }

  // ---- chunks ----------------------------------------------------------------------

  /** Stores `bytes` as chunk objects (skipping ones already stored); the returned names stay pinned until `unpin`. */
  async #storeChunks(bytes: Uint8Array): Promise<ChunkRef[]> {
    const refs: ChunkRef[] = []
    for (let start = 0; start < bytes.length; start += this.#chunkSize) {
      const piece = bytes.subarray(start, Math.min(bytes.length, start + this.#chunkSize))
      refs.push([chunkName(this.#keys, piece), piece.length])
    }
    for (const [name] of refs) this.#pinned.set(name, (this.#pinned.get(name) ?? 0) + 1)
    try {
      // A chunk being deleted right now is stored again only after the deletion lands.
      await Promise.all(refs.map(([name]) => this.#deleting.get(name)))
      const missing = refs.map((ref, index) => ({ ref, index })).filter(({ ref }) => !this.#refs.has(ref[0]))
      let next = 0
      const worker = async () => {
        while (next < missing.length) {
          const { ref, index } = missing[next++]!
          const start = index * this.#chunkSize
          const sealed = sealChunk(this.#keys, ref[0], bytes.subarray(start, start + ref[1]))
          await this.#put(`c/${ref[0]}`, sealed, sealed.length)
        }
      }
      await Promise.all(Array.from({ length: Math.min(PUT_CONCURRENCY, missing.length) }, worker))
    } catch (error) {
      this.#unpin(refs)
      throw error
    }
    return refs
  }

  #unpin(refs: ChunkRef[]): void {
    for (const [name] of refs) {
      const count = (this.#pinned.get(name) ?? 0) - 1
      if (count > 0) this.#pinned.set(name, count)
      else this.#pinned.delete(name)
    }
  }

  async #chunk(name: string, length: number): Promise<Buffer> {
    const cached = this.#cache.get(name)
    if (cached !== undefined) {
      this.#cache.delete(name)
      this.#cache.set(name, cached) // most recently used last
      return cached
    }
    let pending = this.#fetching.get(name)
    if (pending === undefined) {
      pending = (async () => {
        const sealed = await this.#get(`c/${name}`)
        if (sealed === undefined) throw errors.storageIntegrity(`chunk ${name.slice(0, 16)}… is missing`)
        const plain = openChunk(this.#keys, name, length, sealed)
        this.#cache.set(name, plain)
        while (this.#cache.size > this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value as string)
        return plain
      })().finally(() => this.#fetching.delete(name))
      this.#fetching.set(name, pending)
    }
    return pending
  }

  /** The plaintext bytes [offset, offset + length) of a chunk list. */
  async #readChunks(chunks: ChunkRef[], size: number, offset: number, length: number): Promise<Buffer> {
    const end = Math.min(size, offset + length)
    if (offset >= end) return Buffer.alloc(0)
    const out = Buffer.allocUnsafe(end - offset)
    let position = 0
    for (const [name, chunkLength] of chunks) {
      const chunkEnd = position + chunkLength
      if (chunkEnd > offset && position < end) {
        const plain = await this.#chunk(name, chunkLength)
        const from = Math.max(offset, position)
        plain.copy(out, from - offset, from - position, Math.min(end, chunkEnd) - position)
      }
      position = chunkEnd
      if (position >= end) break
    }
    return out
  }

  // ---- entries ---------------------------------------------------------------------

  #entry(state: State, path: string): EntryInfo | undefined {
    if (path === '') return { path: '', name: '', type: 'folder', size: 0, modified: state.changed }
    const file = state.files.get(path)
    if (file !== undefined) return { path, name: nameOf(path), type: 'file', size: file.size, modified: file.modified }
    const folder = state.folders.get(path)
    if (folder !== undefined) return { path, name: nameOf(path), type: 'folder', size: 0, modified: folder }
    return undefined
  }

  #existing(state: State, path: string): EntryInfo {
    const entry = this.#entry(state, path)
    if (entry === undefined) throw errors.notFound(path)
    return entry
  }

  /** Refuses a target that would replace a folder, or a file unless `overwrite`, or sit under a file. */
  #checkTarget(state: State, target: string, path: string, overwrite: boolean): void {
    if (state.folders.has(target)) throw errors.notAFile(path)
    if (state.files.has(target) && !overwrite) throw errors.exists(path)
    this.#checkParents(state, target)
  }

  #checkParents(state: State, path: string): void {
    for (let parent = parentOf(path); parent !== ''; parent = parentOf(parent)) {
      if (state.files.has(parent)) throw errors.notAFolder(parent)
    }
  }

  #ensureParents(state: State, path: string): void {
    const now = Date.now()
    for (let parent = parentOf(path); parent !== '' && !state.folders.has(parent); parent = parentOf(parent)) {
      state.folders.set(parent, now)
      this.#touch()
    }
  }

  #putFile(state: State, path: string, record: FileRecord): void {
    const replaced = state.files.get(path)
    state.files.set(path, record)
    if (replaced !== undefined) this.#release(replaced.chunks)
    this.#ensureParents(state, path)
    this.#touch()
  }

  // ---- StorageBackend ----------------------------------------------------------------

  async stat(path: string): Promise<EntryInfo> {
    const safe = cloudPath(path)
    return this.#existing(await this.#load(), safe)
  }

  async list(path: string): Promise<EntryInfo[]> {
    const safe = cloudPath(path)
    const state = await this.#load()
    if (this.#existing(state, safe).type !== 'folder') throw errors.notAFolder(path)
    const entries: EntryInfo[] = []
    for (const folder of state.folders.keys()) if (folder !== safe && parentOf(folder) === safe) entries.push(this.#entry(state, folder)!)
    for (const file of state.files.keys()) if (parentOf(file) === safe) entries.push(this.#entry(state, file)!)
    return entries.sort((a, b) => (a.type === b.type ? a.name.localeCompare(b.name) : a.type === 'folder' ? -1 : 1))
  }

  async read(path: string, offset: number, length: number): Promise<Uint8Array> {
    const safe = cloudPath(path)
    const state = await this.#load()
    const record = state.files.get(safe)
    if (record === undefined) {
      this.#existing(state, safe)
      throw errors.notAFile(path)
    }
    return this.#readChunks(record.chunks, record.size, offset, length)
  }

  async uploadSize(upload: string): Promise<number | undefined> {
    return (await this.#load()).uploads.get(upload)?.size
  }

  async uploadAppend(upload: string, offset: number, bytes: Uint8Array): Promise<number> {
    const check = (state: State): UploadRecord | undefined => {
      const record = state.uploads.get(upload)
      if (record === undefined && offset !== 0) throw errors.unknownUpload()
      if (record !== undefined && record.size !== offset) throw errors.uploadOffset(record.size, offset)
      return record
    }
    check(await this.#load()) // refuse early, before storing anything
    const refs = await this.#storeChunks(bytes)
    try {
      return await this.#mutate((state) => {
        const record = check(state)
        if (record === undefined) state.uploads.set(upload, { size: bytes.length, chunks: refs, touched: Date.now() })
        else {
          record.size += bytes.length
          record.chunks.push(...refs)
          record.touched = Date.now()
        }
        this.#retain(refs)
        this.#touch()
        return offset + bytes.length
      })
    } finally {
      this.#unpin(refs)
      // Chunks stored for an append that was refused are not named by anything.
      await this.#collect(refs.map(([name]) => name))
    }
  }

  async uploadCommit(upload: string, path: string, options: { overwrite: boolean }): Promise<EntryInfo> {
    const target = cloudPath(path)
    if (target === '') throw errors.unsafePath(path, 'the root is a folder')
    return this.#mutate((state) => {
      const record = state.uploads.get(upload)
      if (record === undefined) throw errors.unknownUpload()
      this.#checkTarget(state, target, path, options.overwrite)
      state.uploads.delete(upload)
      // The upload's references pass to the file.
      this.#putFile(state, target, { size: record.size, modified: Date.now(), chunks: record.chunks })
      return this.#entry(state, target)!
    })
  }

  async uploadAbort(upload: string): Promise<void> {
    await this.#mutate((state) => {
      const record = state.uploads.get(upload)
      if (record === undefined) return
      state.uploads.delete(upload)
      this.#release(record.chunks)
      this.#touch()
    })
  }

  async dropStaleUploads(idleMs: number): Promise<number> {
    const stale = (record: UploadRecord) => Date.now() - (record.touched ?? Date.now()) >= idleMs
    if (![...(await this.#load()).uploads.values()].some(stale)) return 0
    return this.#mutate((state) => {
      let dropped = 0
      for (const [upload, record] of state.uploads) {
        if (!stale(record)) continue
        state.uploads.delete(upload)
        this.#release(record.chunks)
        dropped++
      }
      this.#touch()
      return dropped
    })
  }

  async remove(path: string): Promise<void> {
    const safe = cloudPath(path)
    if (safe === '') throw errors.unsafePath(path, 'the root cannot be deleted')
    await this.#mutate((state) => {
      this.#existing(state, safe)
      const inside = `${safe}/`
      for (const [file, record] of state.files) {
        if (file === safe || file.startsWith(inside)) {
          state.files.delete(file)
          this.#release(record.chunks)
        }
      }
      for (const folder of state.folders.keys()) if (folder === safe || folder.startsWith(inside)) state.folders.delete(folder)
      this.#touch()
    })
  }

  async move(from: string, to: string, options: { overwrite: boolean }): Promise<EntryInfo> {
    const source = cloudPath(from)
    const target = cloudPath(to)
    if (source === '' || target === '') throw errors.unsafePath(source === '' ? from : to, 'the root cannot move')
    return this.#mutate((state) => {
      const info = this.#existing(state, source)
      if (source === target) return info
      if (info.type === 'file') {
        this.#checkTarget(state, target, to, options.overwrite)
        const record = state.files.get(source)!
        state.files.delete(source)
        this.#putFile(state, target, record)
        return this.#entry(state, target)!
      }
      if (`${target}/`.startsWith(`${source}/`)) throw errors.badRequest('a folder cannot move into itself')
      if (this.#entry(state, target) !== undefined) throw errors.exists(to)
      this.#checkParents(state, target)
      const rename = (path: string) => target + path.slice(source.length)
      const inside = `${source}/`
      for (const [folder, created] of [...state.folders]) {
        if (folder === source || folder.startsWith(inside)) {
          state.folders.delete(folder)
          state.folders.set(rename(folder), created)
        }
      }
      for (const [file, record] of [...state.files]) {
        if (file.startsWith(inside)) {
          state.files.delete(file)
          state.files.set(rename(file), record)
        }
      }
      this.#ensureParents(state, target)
      this.#touch()
      return this.#entry(state, target)!
    })
  }

  async copy(from: string, to: string, options: { overwrite: boolean }): Promise<EntryInfo> {
    const source = cloudPath(from)
    const target = cloudPath(to)
    return this.#mutate((state) => {
      if (this.#existing(state, source).type !== 'file') throw errors.notAFile(from)
      if (target === '') throw errors.notAFile(to)
      this.#checkTarget(state, target, to, options.overwrite)
      // A copy names the same chunks: no data is stored twice.
      const record = state.files.get(source)!
      const chunks = record.chunks.map(([name, length]): ChunkRef => [name, length])
      this.#retain(chunks)
      this.#putFile(state, target, { size: record.size, modified: Date.now(), chunks })
      return this.#entry(state, target)!
    })
  }

  async mkdir(path: string): Promise<EntryInfo> {
    const safe = cloudPath(path)
    return this.#mutate((state) => {
      if (safe === '') return this.#entry(state, '')!
      if (state.files.has(safe)) throw errors.notAFolder(path)
      this.#checkParents(state, safe)
      if (!state.folders.has(safe)) {
        state.folders.set(safe, Date.now())
        this.#ensureParents(state, safe)
        this.#touch()
      }
      return this.#entry(state, safe)!
    })
  }

  async search(query: string, limit: number): Promise<EntryInfo[]> {
    const needle = query.normalize('NFC').toLowerCase()
    const state = await this.#load()
    const paths = [...state.folders.keys(), ...state.files.keys()].sort()
    const found: EntryInfo[] = []
    for (const path of paths) {
      if (found.length >= limit) break
      if (nameOf(path).toLowerCase().includes(needle)) found.push(this.#entry(state, path)!)
    }
    return found
  }

  async usage(): Promise<StorageUsage> {
    const state = await this.#load()
    let usedBytes = 0
    for (const record of state.files.values()) usedBytes += record.size
    let sharedBytes = 0
    for (const share of state.shares.values()) sharedBytes += share.size
    let stagedBytes = 0
    for (const upload of state.uploads.values()) stagedBytes += upload.size
    return { usedBytes, files: state.files.size, sharedBytes, stagedBytes }
  }

  #shareKey(id: string): string {
    if (!SHARE_ID.test(id)) throw errors.notFound(`share ${id.slice(0, 80)}`)
    return `s/${id}.age`
  }

  async shareCommit(upload: string, share: Omit<ShareInfo, 'size'>): Promise<ShareInfo> {
    const key = this.#shareKey(share.id)
    const record = (await this.#load()).uploads.get(upload)
    if (record === undefined) throw errors.unknownUpload()
    // The sealed file is stored as the age file it is: the store holds what the sender
    // sealed, which only the recipients can open.
    const chunks = record.chunks
    const read = async function* (this: S3Storage) {
      for (const [name, length] of chunks) yield await this.#chunk(name, length)
    }.bind(this)
    await this.#put(key, Readable.from(read()), record.size)
    return this.#mutate((state) => {
      // The same staged bytes as were stored above (compared by content: a reload of the
      // index between the two makes new records of the same upload).
      const current = state.uploads.get(upload)
      if (current === undefined || current.size !== record.size || current.chunks.length !== record.chunks.length || current.chunks.some(([name], i) => name !== record.chunks[i]![0])) throw errors.unknownUpload()
      state.uploads.delete(upload)
      this.#release(current.chunks)
      const info: ShareInfo = { ...share, size: record.size }
      state.shares.set(share.id, info)
      this.#touch()
      return info
    })
  }

  async listShares(): Promise<ShareInfo[]> {
    return [...(await this.#load()).shares.values()].sort((a, b) => b.created - a.created)
  }

  async getShare(id: string): Promise<ShareInfo> {
    this.#shareKey(id)
    const share = (await this.#load()).shares.get(id)
    if (share === undefined) throw errors.notFound(`share ${id}`)
    return share
  }

  async readShare(id: string, offset: number, length: number): Promise<Uint8Array> {
    const share = await this.getShare(id)
    const end = Math.min(share.size, offset + length)
    if (offset >= end) return new Uint8Array()
    const bytes = await this.#get(this.#shareKey(id), `bytes=${offset}-${end - 1}`)
    if (bytes === undefined) throw errors.storageIntegrity(`the sealed file of share ${id} is missing`)
    return bytes
  }

  async updateShare(share: ShareInfo): Promise<void> {
    await this.#mutate((state) => {
      if (!state.shares.has(share.id)) throw errors.notFound(`share ${share.id}`)
      state.shares.set(share.id, share)
      this.#touch()
    })
  }

  async removeShare(id: string): Promise<void> {
    const key = this.#shareKey(id)
    await this.#mutate((state) => {
      if (!state.shares.delete(id)) return
      this.#touch()
    })
    await this.#delete([key])
  }
}

const isClient = (s3: S3Client | S3ClientConfig): s3 is S3Client => typeof (s3 as { send?: unknown }).send === 'function'

/** Where a back end remembers its bucket's index generation when not told: per user, per bucket, prefix, identity and endpoint. */
export function defaultStateFile(bucket: string, prefix: string, identity: string, s3: S3Client | S3ClientConfig): string {
  const endpoint = !isClient(s3) && typeof s3.endpoint === 'string' ? s3.endpoint : ''
  const name = createHash('sha256').update([bucket, prefix, identity, endpoint].join('\0')).digest('hex').slice(0, 32)
  const base = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state')
  return join(base, 'cloudbox', 's3', `${name}.json`)
}
