import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudBox, type CloudBoxInit } from '@cloudbox/cloudbox'

/** A scratch area whose instances and folders are all removed by `cleanup`. */
export async function scratch() {
  const root = await mkdtemp(join(tmpdir(), 'cloudbox-it-'))
  const boxes: CloudBox[] = []
  let n = 0
  return {
    root,
    box(init: Omit<CloudBoxInit, 'folder'> & { folder?: string }, identity: Identity = Identity.generate().identity, now?: () => number): CloudBox {
      const box = new CloudBox({ keepAliveMs: 2_000, reconnect: { initialDelayMs: 50, maxDelayMs: 500 }, folder: join(root, `${init.role}-${n++}`), ...init }, { identity, ...(now === undefined ? {} : { now }) })
      boxes.push(box)
      return box
    },
    async cleanup() {
      for (const box of boxes) await box.destroy().catch(() => {})
      await rm(root, { recursive: true, force: true })
    },
  }
}

export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`Timed out waiting for ${what}`)
}

export async function fileIs(path: string, content: string): Promise<boolean> {
  try {
    return (await readFile(path, 'utf8')) === content
  } catch {
    return false
  }
}

/** Resolves with the first event that matches. */
export function nextEvent<E extends { type: string }>(stream: { on(listener: (event: E) => void): () => void }, match: (event: E) => boolean, timeoutMs = 20_000): Promise<E> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error('Timed out waiting for an event'))
    }, timeoutMs)
    const off = stream.on((event) => {
      if (!match(event)) return
      clearTimeout(timer)
      off()
      resolve(event)
    })
  })
}

/** Incompressible, deterministic bytes. */
export function noise(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out.writeUInt32LE(x >>> 0, Math.min(i, size - 4))
  }
  return out
}
