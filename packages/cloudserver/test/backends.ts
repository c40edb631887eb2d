/**
 * The storage back ends the API suites run against: the local folder, and S3 on a real
 * S3-compatible server (s3rver) started here on 127.0.0.1 and stopped afterwards.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import S3rver from 's3rver'
import type { CloudBox } from '@cloudbox/cloudbox'
import { S3Storage, type StorageBackend } from '../src/index.js'

export const BUCKET = 'cloudbox-test'

/** A running s3rver and a plain client to look at (and tamper with) what it stores. */
export interface S3Fixture {
  endpoint: string
  client: S3Client
  config: { endpoint: string; region: string; forcePathStyle: true; credentials: { accessKeyId: string; secretAccessKey: string } }
  get(key: string): Promise<Buffer | undefined>
  put(key: string, body: Uint8Array): Promise<void>
  remove(key: string): Promise<void>
  keys(prefix?: string): Promise<string[]>
  stop(): Promise<void>
}

export async function startS3(): Promise<S3Fixture> {
  const directory = await mkdtemp(join(tmpdir(), 'cloudserver-s3rver-'))
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: BUCKET }] })
  const { port } = await server.run()
  const endpoint = `http://127.0.0.1:${port}`
  // s3rver checks signatures made with its fixed test credentials.
  const config = { endpoint, region: 'us-east-1', forcePathStyle: true as const, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } }
  const client = new S3Client({ ...config, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })
  return {
    endpoint,
    client,
    config,
    async get(key) {
      try {
        const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))
        return Buffer.from(await response.Body!.transformToByteArray())
      } catch (error) {
        if ((error as { name?: string }).name === 'NoSuchKey') return undefined
        throw error
      }
    },
    async put(key, body) {
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: Buffer.from(body), ContentLength: body.length }))
    },
    async remove(key) {
      await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }))
    },
    async keys(prefix = '') {
      const keys: string[] = []
      let token: string | undefined
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }))
        keys.push(...(page.Contents ?? []).map((object) => object.Key!))
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined
      } while (token !== undefined)
      return keys
    },
    async stop() {
      client.destroy()
      await server.close()
      await rm(directory, { recursive: true, force: true })
    },
  }
}

/** How a suite reaches a back end: make one for a server, and read or alter what it stored. */
export interface BackendFixture {
  kind: 'local' | 's3'
  /** The back end for this server (the default local folder for `local`). */
  storageFor(box: CloudBox): StorageBackend | undefined
  /** A file's content as stored, read back as another process would. */
  storedFile(box: CloudBox, path: string): Promise<Buffer>
  /** The bytes kept for a drop-box share, or undefined once it is gone. */
  storedShare(box: CloudBox, id: string): Promise<Buffer | undefined>
  alterStoredShare(box: CloudBox, id: string, bytes: Buffer): Promise<void>
  stop(): Promise<void>
}

export async function backendFixture(kind: 'local' | 's3'): Promise<BackendFixture> {
  const dropbox = (box: CloudBox, id: string) => join(box.init.folder, '.cloudbox', 'dropbox', `${id}.age`)
  if (kind === 'local') {
    return {
      kind,
      storageFor: () => undefined,
      storedFile: (box, path) => readFile(join(box.init.folder, path)),
      storedShare: (box, id) => readFile(dropbox(box, id)).catch(() => undefined),
      alterStoredShare: (box, id, bytes) => writeFile(dropbox(box, id), bytes),
      stop: async () => {},
    }
  }
  const s3 = await startS3()
  const storages: S3Storage[] = []
  const prefix = (box: CloudBox) => `clouds/${box.id}/`
  const open = (box: CloudBox) => {
    const storage = new S3Storage({ bucket: BUCKET, prefix: prefix(box), s3: s3.config, identity: box.identity, stateFile: join(box.init.folder, '.cloudbox', 's3-state.json') })
    storages.push(storage)
    return storage
  }
  return {
    kind,
    storageFor: open,
    async storedFile(box, path) {
      // A second instance, as after a restart: it reads the index and chunks from the store.
      const fresh = new S3Storage({ bucket: BUCKET, prefix: prefix(box), s3: s3.config, identity: box.identity })
      try {
        const { size } = await fresh.stat(path)
        return Buffer.from(await fresh.read(path, 0, size))
      } finally {
        await fresh.close()
      }
    },
    storedShare: (box, id) => s3.get(`${prefix(box)}s/${id}.age`),
    alterStoredShare: (box, id, bytes) => s3.put(`${prefix(box)}s/${id}.age`, bytes),
    async stop() {
      for (const storage of storages) await storage.close()
      await s3.stop()
    },
  }
}
