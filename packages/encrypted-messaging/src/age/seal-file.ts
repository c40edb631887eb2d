import { randomBytes as nodeRandomBytes } from 'node:crypto'
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { AbortOptions } from '../errors.js'
import type { KeyAgreement } from '../interfaces/key-agreement.js'
import { openBatches, sealBatches, type AgeRecipient, type SealOptions } from './seal.js'

/** Read size for files: large enough that per-call costs vanish, small enough for constant memory. */
const READ_SIZE = 1024 * 1024

async function* readChunks(handle: FileHandle): AsyncGenerator<Uint8Array> {
  for (;;) {
    // A fresh buffer each time: the payload code may keep a reference to the last chunk.
    const buffer = Buffer.allocUnsafe(READ_SIZE)
    const { bytesRead } = await handle.read(buffer, 0, READ_SIZE, null)
    if (bytesRead === 0) return
    yield buffer.subarray(0, bytesRead)
  }
}

async function fsyncDirectory(path: string): Promise<void> {
  let handle: FileHandle | undefined
  try {
    handle = await open(path, 'r')
    await handle.sync()
  } catch {
    // Some platforms cannot open or sync directories; the rename is still atomic.
  } finally {
    await handle?.close()
  }
}

/**
 * Streams `input` through `transform` into `output` atomically: the result goes to a
 * temporary file beside `output` (mode `mode`), is fsynced, and replaces `output` by
 * rename only when everything succeeded. On any failure the temporary file is removed
 * and `output` is untouched.
 */
async function transformFile(
  input: string,
  output: string,
  mode: number,
  transform: (source: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array[]>,
): Promise<void> {
  const source = await open(input, 'r')
  const temporary = join(dirname(output), `.${basename(output)}.${nodeRandomBytes(6).toString('hex')}.tmp`)
  let target: FileHandle | undefined
  try {
    target = await open(temporary, 'wx', mode)
    for await (const batch of transform(readChunks(source))) {
      await target.writev(batch)
    }
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

/**
 * Seals the file at `input` into `output` (age v1, binary unless `armor`), streaming in
 * constant memory. `output` is replaced atomically and only on success.
 * @example
 * await sealFile('report.pdf', 'report.pdf.age', ['cb1…', 'age1…'])
 */
export async function sealFile(input: string, output: string, recipients: readonly AgeRecipient[], options: SealOptions & AbortOptions = {}): Promise<void> {
  await transformFile(input, output, 0o644, (source) => sealBatches(source, recipients, options))
}

/**
 * Opens the sealed file at `input` into `output` (mode 0600), streaming in constant
 * memory. Nothing is left at `output` unless the whole file authenticated.
 * @throws the age errors of `openStream`, or the file system's.
 */
export async function openFile(input: string, output: string, identities: KeyAgreement | readonly KeyAgreement[], options: AbortOptions = {}): Promise<void> {
  await transformFile(input, output, 0o600, (source) => openBatches(source, identities, options))
}
