/**
 * A client of a cloud server's encrypted REST API: every call is sealed for the server's
 * key and signed by this device (encrypted-messaging's API envelope), sent over plain
 * HTTP(S), and the answer opened with the key of that call. Uploads and downloads go in
 * chunks and resume where they stopped.
 */
import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, open, rename, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  API_REQUEST_MEDIA_TYPE,
  API_RESPONSE_MEDIA_TYPE,
  BufferPool,
  openFile,
  sealApiRequest,
  sealFile,
  signDocument,
  verifyDocument,
  type ApiMethod,
  type ApiResponse,
  type KeyAgreement,
  type PooledApiResponse,
  type SealedApiRequest,
  type Signer,
} from '@cloudbox/encrypted-messaging'
import type { AdminOperation, CloudAdmin } from '@cloudbox/cloudbox'
import { CloudServerError, errors } from '../errors.js'
import type { EntryInfo, ShareInfo, StorageUsage } from '../storage/storage-backend.js'
import { API_PATH } from './api-server.js'
import { postBytes, type HttpAnswer } from './http-exchange.js'

export interface CloudServerClientOptions {
  /** The API's base URL (`http://host:port`), or a hub's exposure of it. */
  url: string
  /** The server's public ID (`cb1…`), from its pairing URI. */
  server: string
  /** This device's identity (paired with the server). */
  identity: Signer
  /**
   * Bytes per upload or download call (default 4 MiB, at most 16 MiB). Since envelope
   * version 2 (no hash of the body), 8 MiB moves data no faster here and holds some 20 MiB
   * more on each side.
   */
  chunkSize?: number
}

export interface TransferProgress {
  bytes: number
  total: number
}

export class CloudServerClient {
  readonly options: CloudServerClientOptions
  readonly #chunkSize: number
  /**
   * The large buffers of transfers: an upload's chunk read from disk and three sealed (two
   * in flight); a download's two answers arriving and three opened (one being written).
   */
  readonly #buffers = new BufferPool(5)

  constructor(options: CloudServerClientOptions) {
    this.options = options
    this.#chunkSize = Math.min(options.chunkSize ?? 4 * 1024 * 1024, 16 * 1024 * 1024)
  }

  /** One sealed call; throws the server's typed error for an error status. */
  async call(method: ApiMethod, path: string, body?: Uint8Array | object, signal?: AbortSignal): Promise<Uint8Array> {
    return (await this.#exchange(await this.#seal(method, path, body), signal)).body
  }

  #seal(method: ApiMethod, path: string, body?: Uint8Array | object): Promise<SealedApiRequest> {
    const payload = body === undefined ? undefined : body instanceof Uint8Array ? body : Buffer.from(JSON.stringify(body))
    return sealApiRequest(this.options.identity, this.options.server, { method, path, ...(payload === undefined ? {} : { body: payload }) }, { pool: this.#buffers })
  }

  /** Sends a sealed call and opens its answer (into `into`, when given: release it once used). */
  async #exchange(sealed: SealedApiRequest, signal?: AbortSignal): Promise<ApiResponse>
  async #exchange(sealed: SealedApiRequest, signal: AbortSignal | undefined, into: BufferPool): Promise<PooledApiResponse>
  async #exchange(sealed: SealedApiRequest, signal?: AbortSignal, into?: BufferPool): Promise<ApiResponse | PooledApiResponse> {
    const url = this.options.url.replace(/\/$/, '') + API_PATH
    let response: HttpAnswer
    try {
      response = await postBytes(url, API_REQUEST_MEDIA_TYPE, sealed.parts, { pool: this.#buffers, ...(signal === undefined ? {} : { signal }) })
    } catch (error) {
      sealed.release()
      if ((error as Error).name === 'AbortError') throw error
      throw errors.unreachable(url, error)
    }
    void response.sent.then(() => sealed.release())
    let answer: ApiResponse | PooledApiResponse
    try {
      if (response.contentType !== API_RESPONSE_MEDIA_TYPE) {
        // Refused before it could be opened (bad envelope, replay, clock): a clear JSON error.
        const error = parseError(response.body)
        if (error !== undefined) throw new CloudServerError(error.code, error.message, { status: response.status })
        throw errors.unreachable(url)
      }
      // The plaintext is a buffer of its own: the received bytes can take the next answer.
      answer = into === undefined ? await sealed.openResponse(response.body) : await sealed.openResponse(response.body, into)
    } finally {
      this.#buffers.release(response.body)
    }
    if (answer.status >= 400) {
      const error = parseError(answer.body) ?? { code: 'ERR_INTERNAL', message: `The server answered ${answer.status}.` }
      if (into !== undefined) (answer as PooledApiResponse).release()
      throw new CloudServerError(error.code, error.message, { status: answer.status, ...(error.expectedOffset === undefined ? {} : { expectedOffset: error.expectedOffset }) })
    }
    return answer
  }

  async #json<T>(method: ApiMethod, path: string, body?: object): Promise<T> {
    const bytes = await this.call(method, path, body)
    return (bytes.length === 0 ? null : JSON.parse(Buffer.from(bytes).toString())) as T
  }

  list(path = ''): Promise<EntryInfo[]> {
    return this.#json<{ entries: EntryInfo[] }>('GET', `/v1/files?${query({ path })}`).then((result) => result.entries)
  }

  stat(path: string): Promise<EntryInfo> {
    return this.#json('GET', `/v1/stat?${query({ path })}`)
  }

  /** An image's thumbnail (made now if needed); ERR_NOT_FOUND when it has none. */
  thumbnail(path: string): Promise<Uint8Array> {
    return this.call('GET', `/v1/thumbnail?${query({ path })}`)
  }

  /** Up to `length` bytes of a file from `offset`. */
  read(path: string, offset = 0, length = this.#chunkSize): Promise<Uint8Array> {
    return this.call('GET', `/v1/content?${query({ path, offset: String(offset), length: String(length) })}`)
  }

  async remove(path: string): Promise<void> {
    await this.call('DELETE', `/v1/files?${query({ path })}`)
  }

  move(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<EntryInfo> {
    return this.#json('POST', '/v1/move', { from, to, overwrite: options.overwrite ?? false })
  }

  rename(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<EntryInfo> {
    return this.move(from, to, options)
  }

  copy(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<EntryInfo> {
    return this.#json('POST', '/v1/copy', { from, to, overwrite: options.overwrite ?? false })
  }

  mkdir(path: string): Promise<EntryInfo> {
    return this.#json('POST', '/v1/folders', { path })
  }

  search(text: string, limit = 200): Promise<EntryInfo[]> {
    return this.#json<{ entries: EntryInfo[] }>('GET', `/v1/search?${query({ q: text, limit: String(limit) })}`).then((result) => result.entries)
  }

  storage(): Promise<StorageUsage & { quotaBytes?: number }> {
    return this.#json('GET', '/v1/storage')
  }

  /** The cloud's admin functions, for owner devices. */
  get admin(): CloudAdmin {
    const call = (op: AdminOperation) => async (...args: unknown[]) => {
      while (args.length > 0 && args[args.length - 1] === undefined) args.pop()
      return (await this.#json<{ result: unknown }>('POST', `/v1/admin/${op}`, { args })).result ?? undefined
    }
    const ops: AdminOperation[] = ['listDevices', 'blockDevice', 'unblockDevice', 'revokeDevice', 'listPins', 'addPin', 'removePin', 'storage', 'setQuota', 'createSubCloud', 'listSubClouds', 'destroySubCloud']
    return Object.fromEntries(ops.map((op) => [op, call(op)])) as unknown as CloudAdmin
  }

  /**
   * Uploads a local file to `path` in chunks. Give the same `upload` ID again to resume
   * an interrupted upload from where the server stands.
   */
  async upload(localPath: string, path: string, options: { upload?: string; overwrite?: boolean; onProgress?: (progress: TransferProgress) => void; signal?: AbortSignal } = {}): Promise<EntryInfo> {
    const upload = await this.#stage(localPath, options)
    return await this.#json('POST', '/v1/uploads/commit', { upload, path, overwrite: options.overwrite ?? false })
  }

  /** Sends a local file to the server's staging area in chunks (resuming `upload`); returns the upload ID. */
  async #stage(localPath: string, options: { upload?: string; onProgress?: (progress: TransferProgress) => void; signal?: AbortSignal }): Promise<string> {
    const upload = options.upload ?? randomBytes(12).toString('base64url')
    const handle = await open(localPath, 'r')
    try {
      const total = (await handle.stat()).size
      const standing = async () => (await this.#json<{ size: number | null }>('GET', `/v1/uploads?${query({ upload })}`)).size
      const size = await standing()
      let offset = size ?? 0
      if (offset > total) throw errors.badRequest('the upload on the server is longer than the local file; start a new upload')
      const chunkAt = (at: number, bytes: Uint8Array) => this.#seal('POST', `/v1/uploads?${query({ upload, offset: String(at), total: String(total) })}`, bytes)
      // An empty file is one empty chunk (unless it is staged already).
      if (total === 0) {
        if (size === null) await this.#exchange(await chunkAt(0, new Uint8Array(0)), options.signal)
        return upload
      }
      const buffer = this.#buffers.acquire(this.#chunkSize)
      type Prepared = { end: number; sealed: SealedApiRequest }
      // Reads and seals the chunk at `at` (the sealed message is a copy: the buffer is free again).
      const prepare = async (at: number): Promise<Prepared> => {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(this.#chunkSize, total - at), at)
        return { end: at + bytesRead, sealed: await chunkAt(at, buffer.subarray(0, bytesRead)) }
      }
      const ahead = (at: number) => {
        const next = at < total ? prepare(at) : undefined
        next?.catch(() => {})
        return next
      }
      // Two chunks in flight and a third sealed: the server opens one while it stores the
      // one before, and this side has the next ready when an answer comes. The server stores
      // them in the order they reach it; one that overtook the other is refused, and sent again.
      const window: { start: number; end: number; answer: Promise<number> }[] = []
      let prepared = ahead(offset)
      let sentEnd = offset
      let restarts = 0
      let restartedAt = -1
      const restart = async () => {
        await Promise.allSettled([prepared, ...window.splice(0).map((each) => each.answer)])
        // Only restarts that made no progress count: a long upload may be overtaken now and then.
        restarts = offset > restartedAt ? 0 : restarts + 1
        restartedAt = offset
        if (restarts > 3) throw errors.badRequest('the server kept refusing the chunks\' order; try the upload again')
        offset = (await standing()) ?? 0
        sentEnd = offset
        prepared = ahead(offset)
      }
      while (offset < total) {
        while (window.length < 2 && prepared !== undefined) {
          const chunk = await prepared
          const start = sentEnd
          const answer = this.#exchange(chunk.sealed, options.signal).then(({ body }) => (JSON.parse(Buffer.from(body).toString()) as { size: number }).size)
          answer.catch(() => {})
          window.push({ start, end: chunk.end, answer })
          sentEnd = chunk.end
          prepared = ahead(chunk.end)
        }
        const first = window.shift()!
        try {
          offset = await first.answer
        } catch (error) {
          // Refused for its place: it overtook the chunk before it (a small last chunk opens
          // sooner), which the server had not stored yet, so it saw another offset or no upload.
          const overtook = error instanceof CloudServerError && (error.code === 'ERR_UPLOAD_OFFSET' || (error.code === 'ERR_UNKNOWN_UPLOAD' && first.start > 0))
          if (!overtook) throw error
          await restart()
          continue
        }
        options.onProgress?.({ bytes: offset, total })
        // The server stands elsewhere than this side counted: go on from where it stands.
        if (offset !== first.end) await restart()
      }
      // Nothing reads into it any more (on a failure, a read may still be under way: it is left to the collector).
      if (prepared === undefined) this.#buffers.release(buffer)
      return upload
    } finally {
      await handle.close()
    }
  }

  /**
   * Seals a local file for the recipients (their `cb1…` IDs or `age1…` keys) and leaves it
   * in the server's drop box; `signer` adds a signature of the sealed file. The server
   * stores ciphertext it cannot open.
   */
  async share(localPath: string, recipients: readonly string[], options: { name?: string; signer?: Signer; onProgress?: (progress: TransferProgress) => void; signal?: AbortSignal } = {}): Promise<ShareInfo> {
    if (recipients.length === 0) throw errors.badRequest('name at least one recipient')
    const scratch = await mkdtemp(join(tmpdir(), 'cloudbox-share-'))
    try {
      const sealed = join(scratch, 'sealed.age')
      await sealFile(localPath, sealed, recipients)
      const signature = options.signer === undefined ? undefined : await signDocument(options.signer, createReadStream(sealed))
      const upload = await this.#stage(sealed, options)
      const name = options.name ?? localPath.split(/[\\/]/).pop() ?? 'file'
      return await this.#json('POST', '/v1/shares', { upload, to: recipients, name, ...(signature === undefined ? {} : { signature }) })
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
  }

  /** What waits in the drop box for this device's identity. */
  inbox(): Promise<ShareInfo[]> {
    return this.#json<{ shares: ShareInfo[] }>('GET', '/v1/shares').then((result) => result.shares)
  }

  /**
   * Downloads a share and opens it with `identity` into `localPath`. When the share is
   * signed, the signature is checked against its sender first (a bad one throws
   * ERR_SIGNATURE_INVALID and nothing is written); `signedBy` is then the sender's ID.
   */
  async receive(id: string, localPath: string, identity: KeyAgreement, options: { onProgress?: (progress: TransferProgress) => void; signal?: AbortSignal } = {}): Promise<{ share: ShareInfo; signedBy?: string }> {
    const share = (await this.inbox()).find((each) => each.id === id)
    if (share === undefined) throw errors.notFound(`share ${id}`)
    const scratch = await mkdtemp(join(tmpdir(), 'cloudbox-receive-'))
    try {
      const sealed = join(scratch, 'sealed.age')
      const handle = await open(sealed, 'w', 0o600)
      try {
        for (let offset = 0; offset < share.size; ) {
          const bytes = await this.call('GET', `/v1/shares/content?${query({ id, offset: String(offset), length: String(Math.min(this.#chunkSize, share.size - offset)) })}`, undefined, options.signal)
          if (bytes.length === 0) throw errors.notFound(`share ${id}`)
          await handle.write(bytes, 0, bytes.length, offset)
          offset += bytes.length
          options.onProgress?.({ bytes: offset, total: share.size })
        }
      } finally {
        await handle.close()
      }
      if (share.signature !== undefined) await verifyDocument(createReadStream(sealed), share.signature, share.from)
      await openFile(sealed, localPath, identity)
      return { share, ...(share.signature === undefined ? {} : { signedBy: share.from }) }
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
  }

  /** Removes a share from this device's inbox (the sender withdraws it for everyone). */
  async removeShare(id: string): Promise<void> {
    await this.call('DELETE', `/v1/shares?${query({ id })}`)
  }

  /** Bytes already uploaded under `upload`, or undefined (to show resume progress). */
  async uploadStatus(upload: string): Promise<number | undefined> {
    return (await this.#json<{ size: number | null }>('GET', `/v1/uploads?${query({ upload })}`)).size ?? undefined
  }

  /**
   * Downloads `path` to a local file in chunks, through `<localPath>.part`; an earlier
   * partial download is resumed when the remote file has not changed size meanwhile.
   */
  async download(path: string, localPath: string, options: { onProgress?: (progress: TransferProgress) => void; signal?: AbortSignal } = {}): Promise<EntryInfo> {
    const info = await this.stat(path)
    if (info.type !== 'file') throw errors.notAFile(path)
    const partial = `${localPath}.part`
    const existing = (await stat(partial).catch(() => undefined))?.size ?? 0
    let offset = existing <= info.size ? existing : 0
    const handle = await open(partial, offset === 0 ? 'w' : 'r+')
    let writing: Promise<unknown> = Promise.resolve()
    try {
      const length = (at: number) => Math.min(this.#chunkSize, info.size - at)
      const read = (at: number): { at: number; call: Promise<PooledApiResponse> } => {
        const call = this.#seal('GET', `/v1/content?${query({ path, offset: String(at), length: String(length(at)) })}`).then((sealed) => this.#exchange(sealed, options.signal, this.#buffers))
        call.catch(() => {})
        return { at, call }
      }
      // Two calls in flight and the disk written behind them: the server reads and seals the
      // next chunks while this side opens one and writes the one before.
      const window: { at: number; call: Promise<PooledApiResponse> }[] = []
      let requested = offset
      while (offset < info.size) {
        while (window.length < 2 && requested < info.size) {
          window.push(read(requested))
          requested += length(requested)
        }
        const first = window.shift()!
        const chunk = await first.call
        const bytes = chunk.body
        // A chunk shorter than asked: the file changed meanwhile, and the chunks around it may be of two versions.
        if (bytes.length !== length(first.at)) {
          chunk.release()
          throw errors.badRequest('the file changed on the server during the download; download it again')
        }
        await writing
        writing = handle.write(bytes, 0, bytes.length, first.at).finally(() => chunk.release())
        writing.catch(() => {})
        offset = first.at + bytes.length
        options.onProgress?.({ bytes: offset, total: info.size })
      }
      await writing
      await handle.truncate(info.size)
      await handle.sync()
    } finally {
      await writing.catch(() => {})
      await handle.close()
    }
    await rename(partial, localPath)
    return info
  }
}

const query = (params: Record<string, string>) => new URLSearchParams(params).toString()

function parseError(bytes: Uint8Array): { code: string; message: string; expectedOffset?: number } | undefined {
  try {
    const value = JSON.parse(Buffer.from(bytes).toString()) as { code?: unknown; message?: unknown; expectedOffset?: unknown }
    if (typeof value.code !== 'string' || typeof value.message !== 'string') return undefined
    return { code: value.code, message: value.message, ...(typeof value.expectedOffset === 'number' ? { expectedOffset: value.expectedOffset } : {}) }
  } catch {
    return undefined
  }
}
