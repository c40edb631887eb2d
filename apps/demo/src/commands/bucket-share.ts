/**
 * Shares through a bucket, with no CloudBox server (the CloudSecureShare flow):
 * `cloudbox share FILE --to ID… --bucket s3://BUCKET/PREFIX` seals FILE for the recipients
 * (plain age: the age tool opens it), signs the sealed object with this identity (minisign,
 * beside it as `<object>.minisig.age`, sealed for the same recipients so that the bucket
 * does not learn who sent it), uploads both under a random name, and prints a link
 * that names the bucket, the object and the sender, never a key or the file's name.
 * `cloudbox fetch LINK -o OUT` downloads, checks the signature against the sender named in
 * the link, and opens. Credentials come from the AWS SDK's usual chain (environment,
 * ~/.aws files, instance roles).
 */
import { randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { S3Client } from '@aws-sdk/client-s3'
import { openBytes, openFile, parseRecipient, sealBytes, sealFile, signDocument, verifyDocument, type KeyAgreement, type Signer } from '@cloudbox/encrypted-messaging'
import { CliError, usageError } from '../errors.js'

const LINK_PREFIX = 'cloudbox://share?'
/** Objects above this size go up in parts (S3 takes at most 5 GiB in one request). */
const PART_SIZE = 64 * 1024 * 1024

export interface BucketLocation {
  readonly bucket: string
  readonly prefix: string
}

/** `s3://BUCKET/PREFIX` (the prefix may be empty). */
export function parseBucketUrl(text: string): BucketLocation {
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(text.trim())
  if (match === null) throw usageError(`--bucket takes s3://BUCKET/PREFIX (a bucket name of 3–63 lowercase letters, digits, dots and dashes), not "${text}".`)
  const prefix = (match[2] ?? '').replace(/^\/+|\/+$/g, '')
  return { bucket: match[1] as string, prefix }
}

type Sdk = typeof import('@aws-sdk/client-s3')
let sdk: Promise<Sdk> | undefined
/** The SDK, loaded by the commands that use a bucket only: it is a fifth of every other command's start-up. */
const loadSdk = (): Promise<Sdk> => (sdk ??= import('@aws-sdk/client-s3'))

/** An S3 client from the SDK's usual configuration; a given endpoint (MinIO, a local server) uses path-style addresses. */
export async function bucketClient(endpoint: string | undefined): Promise<S3Client> {
  if (endpoint !== undefined && !/^https?:\/\//.test(endpoint)) throw usageError(`--endpoint takes an http:// or https:// URL, not "${endpoint}".`)
  // The SDK warns on every run that its releases of 2027 will need Node 22; this program supports Node 20.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const { S3Client } = await loadSdk()
  return new S3Client({
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(endpoint === undefined ? {} : { endpoint, forcePathStyle: true }),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
}

/** What a share link says. */
export interface ShareLink {
  readonly bucket: string
  readonly key: string
  /** The sender's public ID (cb1…): the signature must be theirs. */
  readonly from: string
  readonly endpoint?: string
}

export function formatShareLink(link: ShareLink): string {
  const query = new URLSearchParams({ bucket: link.bucket, key: link.key, from: link.from, ...(link.endpoint === undefined ? {} : { endpoint: link.endpoint }) })
  return LINK_PREFIX + query.toString()
}

export function parseShareLink(text: string): ShareLink {
  const bad = (why: string) => new CliError('ERR_BAD_SHARE_LINK', `That is not a CloudBox share link (${why}); it looks like cloudbox://share?bucket=…&key=…&from=cb1…`, { exitCode: 2 })
  if (!text.startsWith(LINK_PREFIX)) throw bad('it does not start with cloudbox://share?')
  const query = new URLSearchParams(text.slice(LINK_PREFIX.length))
  const bucket = query.get('bucket')
  const key = query.get('key')
  const from = query.get('from')
  const endpoint = query.get('endpoint') ?? undefined
  if (bucket === null || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw bad('no valid bucket')
  if (key === null || key === '' || key.length > 1024 || key.endsWith('.minisig')) throw bad('no valid object key')
  if (from === null || !from.startsWith('cb1')) throw bad('no sender (from=cb1…)')
  return { bucket, key, from, ...(endpoint === undefined ? {} : { endpoint }) }
}

/** S3 and network failures as errors that say what to do. */
function bucketError(error: unknown, what: string): never {
  const name = (error as { name?: string }).name ?? ''
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
  if (name === 'NoSuchKey' || (status === 404 && name !== 'NoSuchBucket' && what.startsWith('Downloading'))) throw new CliError('ERR_SHARE_NOT_FOUND', `${what}: the object is not in the bucket (removed, or a wrong link).`, { cause: error })
  if (name === 'NoSuchBucket' || status === 404) throw new CliError('ERR_BUCKET_NOT_FOUND', `${what}: no such bucket; check the name, the region (AWS_REGION) or --endpoint.`, { cause: error })
  if (name === 'CredentialsProviderError' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'AccessDenied' || status === 403) {
    throw new CliError('ERR_BUCKET_ACCESS', `${what}: the bucket refused these credentials (${name || status}). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / ~/.aws/credentials) for an account that may use it.`, { cause: error })
  }
  if ((error as NodeJS.ErrnoException).code === 'ECONNREFUSED' || name === 'TimeoutError') throw new CliError('ERR_BUCKET_UNREACHABLE', `${what}: the storage service cannot be reached (${(error as Error).message}); check --endpoint and the network.`, { cause: error })
  throw new CliError('ERR_BUCKET', `${what}: ${(error as Error).message}`, { cause: error })
}

async function upload(client: S3Client, bucket: string, key: string, path: string, contentType: string): Promise<void> {
  const { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } = await loadSdk()
  const size = statSync(path).size
  if (size <= PART_SIZE) {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: readFileSync(path), ContentLength: size, ContentType: contentType }))
    return
  }
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: contentType }))
  const parts: { ETag: string; PartNumber: number }[] = []
  const file = await open(path, 'r')
  try {
    const buffer = Buffer.allocUnsafe(PART_SIZE)
    for (let offset = 0, number = 1; offset < size; offset += PART_SIZE, number++) {
      const { bytesRead } = await file.read(buffer, 0, Math.min(PART_SIZE, size - offset), offset)
      const { ETag } = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: number, Body: buffer.subarray(0, bytesRead), ContentLength: bytesRead }))
      parts.push({ ETag: ETag as string, PartNumber: number })
    }
    await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }))
  } catch (error) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => {})
    throw error
  } finally {
    await file.close()
  }
}

async function download(client: S3Client, bucket: string, key: string, path: string): Promise<void> {
  const { GetObjectCommand } = await loadSdk()
  const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  await pipeline(response.Body as Readable, createWriteStream(path, { mode: 0o600 }))
}

/** Seals, signs and uploads `file`; returns the link and where the objects went. */
export async function shareToBucket(file: string, recipients: readonly string[], location: BucketLocation, signer: Signer & { publicId: string }, endpoint: string | undefined): Promise<{ link: string; key: string; signatureKey: string; sealedBytes: number }> {
  const keys = recipients.map((recipient) => {
    try {
      return parseRecipient(recipient)
    } catch (error) {
      throw usageError(`--to: "${recipient}" is neither a public ID (cb1…) nor an age recipient (age1…): ${(error as Error).message}`)
    }
  })
  const client = await bucketClient(endpoint)
  const { PutObjectCommand } = await loadSdk()
  const scratch = mkdtempSync(join(tmpdir(), 'cloudbox-share-'))
  try {
    const sealed = join(scratch, 'sealed.age')
    await sealFile(file, sealed, keys)
    // The signature covers the object as stored: a recipient checks the sender before opening.
    const signature = await signDocument(signer, createReadStream(sealed))
    // A random name: the bucket learns nothing of the file's name.
    const key = `${location.prefix === '' ? '' : `${location.prefix}/`}${randomBytes(16).toString('hex')}.age`
    // The signature names its signer: sealed, only the recipients read it (age -d, then minisign -V).
    const signatureKey = `${key}.minisig.age`
    const sealedSignature = sealBytes(new TextEncoder().encode(signature), keys)
    try {
      await upload(client, location.bucket, key, sealed, 'application/octet-stream')
      await client.send(new PutObjectCommand({ Bucket: location.bucket, Key: signatureKey, Body: sealedSignature, ContentType: 'application/octet-stream' }))
    } catch (error) {
      bucketError(error, `Uploading to s3://${location.bucket}/${key}`)
    }
    const link = formatShareLink({ bucket: location.bucket, key, from: signer.publicId, ...(endpoint === undefined ? {} : { endpoint }) })
    return { link, key, signatureKey, sealedBytes: statSync(sealed).size }
  } finally {
    client.destroy()
    rmSync(scratch, { recursive: true, force: true })
  }
}

/** Downloads a share, checks its signature against the sender the link names, and opens it into `output`. */
export async function fetchFromBucket(link: ShareLink, output: string, identities: readonly KeyAgreement[], endpoint: string | undefined): Promise<{ signedAt: Date | undefined; bytes: number }> {
  const client = await bucketClient(endpoint ?? link.endpoint)
  const { GetObjectCommand } = await loadSdk()
  const scratch = mkdtempSync(join(tmpdir(), 'cloudbox-fetch-'))
  try {
    const sealed = join(scratch, 'sealed.age')
    let sealedSignature: Uint8Array
    try {
      await download(client, link.bucket, link.key, sealed)
      const response = await client.send(new GetObjectCommand({ Bucket: link.bucket, Key: `${link.key}.minisig.age` }))
      sealedSignature = await response.Body!.transformToByteArray()
    } catch (error) {
      bucketError(error, `Downloading s3://${link.bucket}/${link.key}`)
    }
    // Before the file is opened: the object must be exactly what the sender signed.
    const signature = new TextDecoder().decode(openBytes(sealedSignature, identities))
    const verified = await verifyDocument(createReadStream(sealed), signature, link.from)
    await openFile(sealed, output, identities)
    return { signedAt: verified.timestamp, bytes: statSync(output).size }
  } finally {
    client.destroy()
    rmSync(scratch, { recursive: true, force: true })
  }
}

