import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { createMemoryChannelPair } from '@cloudbox/encrypted-messaging'
import { SyncEngine, type SyncEngineOptions, type SyncEvent, type SyncSession } from '../src/index.js'

export function tempDir(prefix = 'cloudsync-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export function makeEngine(folder: string, deviceId: string, options: Partial<SyncEngineOptions> = {}): SyncEngine & { events: SyncEvent[] } {
  mkdirSync(folder, { recursive: true })
  const engine = new SyncEngine({ folder, deviceId, folderId: 'test-folder', watch: false, ...options }) as SyncEngine & { events: SyncEvent[] }
  engine.events = []
  engine.status.on((event) => engine.events.push(event))
  return engine
}

export function link(a: SyncEngine, b: SyncEngine): [SyncSession, SyncSession] {
  const [x, y] = createMemoryChannelPair()
  return [a.connect(x, { peer: b.deviceId }), b.connect(y, { peer: a.deviceId })]
}

export async function until(condition: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

export function sameRoot(a: SyncEngine, b: SyncEngine): boolean {
  return Buffer.compare(a.root, b.root) === 0
}

/** Every synced file of a folder (not .cloudbox/) with its content, sorted by path. */
export function snapshot(folder: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      const rel = relative(folder, path).split('\\').join('/')
      if (rel === '.cloudbox' || rel.startsWith('.cloudbox/')) continue
      if (entry.isDirectory()) walk(path)
      else if (entry.isFile()) out[rel] = readFileSync(path).toString('base64')
    }
  }
  walk(folder)
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)))
}

export function removeDir(path: string): void {
  rmSync(path, { recursive: true, force: true })
}

export function sizeOf(path: string): number {
  return statSync(path).size
}
