import { randomBytes as nodeRandomBytes } from 'node:crypto'
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { fsyncDirectory } from '@cloudbox/securestorage/durable-file'
import { wipe } from '../crypto.js'
import { AgePayloadCorruptedError, AgeTruncatedError, throwIfAborted, type AbortOptions } from '../errors.js'
import type { KeyAgreement } from '../interfaces/key-agreement.js'
import { looksArmored } from './armor.js'
import { chunkCipherPool, type BlockResult } from './chunk-cipher-pool.js'
import { findHeaderEnd, MAX_HEADER_LENGTH, parseHeader } from './header.js'
import { CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, payloadKey, PAYLOAD_NONCE_LENGTH } from './payload-stream.js'
import { fileKeyOf, headerCutError, identityList, openBatches, sealBatches, startSealing, type AgeRecipient, type SealOptions } from './seal.js'

/** Chunks per block handed to a worker: 2 MiB of plaintext, small enough for constant memory. */
const CHUNKS_PER_BLOCK = 32
/** Blocks in flight at once: enough to keep every worker and the disk busy. */
const BLOCKS_IN_FLIGHT = 4
/** Below this size the worker hand-off costs more than it saves. */
const PARALLEL_THRESHOLD = 4 * 1024 * 1024

/** Reads `length` bytes at `position` (fewer only at the end of the file) into a fresh buffer. */
async function readAt(handle: FileHandle, position: number, length: number): Promise<Uint8Array> {
  // A fresh, unpooled buffer each time: it is transferred to a worker or kept by the
  // payload code. Not zero-filled: every byte returned is read from the file.
  const allocated = Buffer.allocUnsafeSlow(length)
  const buffer = new Uint8Array(allocated.buffer, allocated.byteOffset, length)
  let filled = 0
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return buffer.subarray(0, filled)
}

/** Blocks of a file from `start`, each flagged final when the file ends after it; reads one ahead. */
async function* blocksOf(handle: FileHandle, start: number, blockSize: number): AsyncGenerator<{ data: Uint8Array; final: boolean }> {
  let position = start
  let current = await readAt(handle, position, blockSize)
  for (;;) {
    position += current.length
    const next = current.length < blockSize ? Promise.resolve(new Uint8Array(0)) : readAt(handle, position, blockSize)
    next.catch(() => {})
    const upcoming = await next
    const final = upcoming.length === 0
    yield { data: current, final }
    if (final) return
    current = upcoming
  }
}

async function* sequentialChunks(handle: FileHandle): AsyncGenerator<Uint8Array> {
  for await (const { data } of blocksOf(handle, 0, CHUNK_SIZE * CHUNKS_PER_BLOCK)) yield data
}

export interface FileOptions extends AbortOptions {
  /**
   * Seal or open files of 4 MiB and more on worker threads (default true): about twice
   * as fast on two cores. Set false to stay on the calling thread.
   */
  readonly parallel?: boolean
}

type Write = (pieces: Uint8Array[]) => Promise<void>

/**
 * Runs `produce` writing into a temporary file beside `output` (mode `mode`), then
 * fsyncs it and renames it over `output`. On any failure the temporary file is removed
 * and `output` is untouched. Writes overlap the caller's work: one is in flight while
 * the next batch is computed.
 */
async function writeAtomically(input: string, output: string, mode: number, produce: (source: FileHandle, write: Write) => Promise<void>): Promise<void> {
  const source = await open(input, 'r')
  const temporary = join(dirname(output), `.${basename(output)}.${nodeRandomBytes(6).toString('hex')}.tmp`)
  let target: FileHandle | undefined
  try {
    target = await open(temporary, 'wx', mode)
    const handle = target
    let writing: Promise<unknown> = Promise.resolve()
    await produce(source, async (pieces) => {
      await writing
      writing = handle.writev(pieces)
      writing.catch(() => {})
    })
    await writing
    await target.sync()
    await target.close()
    target = undefined
    await rename(temporary, output)
    await fsyncDirectory(dirname(output))
  } catch (error) {
    await target?.close().catch(() => {})
    await unlink(temporary).catch(() => {})
    throw error
  } finally {
    await source.close()
  }
}

/** Sends blocks to the worker pool, several in flight, and writes results in order. */
async function pipeBlocks(
  blocks: AsyncIterable<{ data: Uint8Array; final: boolean }>,
  job: (data: Uint8Array, final: boolean, index: number) => Promise<BlockResult>,
  onFailure: (result: Exclude<BlockResult, { data: Uint8Array }>) => Error,
  write: Write,
  signal: AbortSignal | undefined,
): Promise<void> {
  const inFlight: Promise<BlockResult>[] = []
  const drainOne = async () => {
    const result = await (inFlight.shift() as Promise<BlockResult>)
    if ('failure' in result) throw onFailure(result)
    await write([result.data])
  }
  try {
    let index = 0
    for await (const { data, final } of blocks) {
      throwIfAborted(signal)
      const pending = job(data, final, index++)
      pending.catch(() => {})
      inFlight.push(pending)
      if (inFlight.length >= BLOCKS_IN_FLIGHT) await drainOne()
    }
    while (inFlight.length > 0) await drainOne()
  } finally {
    // On failure, let outstanding jobs finish quietly; their results are dropped.
    inFlight.length = 0
  }
}

/**
 * Seals the file at `input` into `output` (age v1, binary unless `armor`), streaming in
 * constant memory; large files are sealed on worker threads. `output` is replaced
 * atomically and only on success.
 * @example
 * await sealFile('report.pdf', 'report.pdf.age', ['cb1…', 'age1…'])
 */
export async function sealFile(input: string, output: string, recipients: readonly AgeRecipient[], options: SealOptions & FileOptions = {}): Promise<void> {
  throwIfAborted(options.signal)
  await writeAtomically(input, output, 0o644, async (source, write) => {
    const { size } = await source.stat()
    if (options.armor === true || options.parallel === false || size < PARALLEL_THRESHOLD) {
      for await (const batch of sealBatches(sequentialChunks(source), recipients, options)) await write(batch)
      return
    }
    const { prefix, key } = startSealing(recipients)
    try {
      await write([prefix])
      const pool = chunkCipherPool()
      await pipeBlocks(
        blocksOf(source, 0, CHUNK_SIZE * CHUNKS_PER_BLOCK),
        (data, final, index) => pool.run({ mode: 'seal', key, counter: index * CHUNKS_PER_BLOCK, data, final }),
        () => new Error('Sealing failed in a worker thread'),
        write,
        options.signal,
      )
    } finally {
      wipe(key)
    }
  })
}

/**
 * Opens the sealed file at `input` into `output` (mode 0600), streaming in constant
 * memory; large files are opened on worker threads. Nothing is left at `output` unless
 * the whole file authenticated.
 * @throws the age errors of `openStream`, or the file system's.
 */
export async function openFile(input: string, output: string, identities: KeyAgreement | readonly KeyAgreement[], options: FileOptions = {}): Promise<void> {
  throwIfAborted(options.signal)
  const list = identityList(identities)
  await writeAtomically(input, output, 0o600, async (source, write) => {
    const { size } = await source.stat()
    const head = await readAt(source, 0, Math.min(MAX_HEADER_LENGTH, Math.max(size, 64)))
    if (options.parallel === false || size < PARALLEL_THRESHOLD || looksArmored(head.subarray(0, 64))) {
      for await (const batch of openBatches(sequentialChunks(source), list, options)) await write(batch)
      return
    }
    const end = findHeaderEnd(head)
    if (end === undefined) throw headerCutError(head)
    const fileKey = fileKeyOf(parseHeader(head.subarray(0, end)), list)
    const nonce = head.subarray(end, end + PAYLOAD_NONCE_LENGTH)
    if (nonce.length < PAYLOAD_NONCE_LENGTH) {
      wipe(fileKey)
      throw new AgeTruncatedError()
    }
    const key = payloadKey(fileKey, nonce)
    wipe(fileKey)
    try {
      const pool = chunkCipherPool()
      await pipeBlocks(
        blocksOf(source, end + PAYLOAD_NONCE_LENGTH, ENCRYPTED_CHUNK_SIZE * CHUNKS_PER_BLOCK),
        (data, final, index) => pool.run({ mode: 'open', key, counter: index * CHUNKS_PER_BLOCK, data, final }),
        (result) => (result.failure === 'truncated' ? new AgeTruncatedError() : result.failure === 'empty-last' ? new AgePayloadCorruptedError('The sealed file ends with an empty chunk, which age forbids; it was modified.') : new AgePayloadCorruptedError()),
        write,
        options.signal,
      )
    } finally {
      wipe(key)
    }
  })
}
