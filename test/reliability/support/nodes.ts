/** Reliability-test plumbing: CloudBox nodes as processes, byte-exact folder comparison, temporary folders, a seeded random. */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const script = fileURLToPath(new URL('./box-process.mjs', import.meta.url))

export interface NodeProcess {
  child: ChildProcess
  lines: Record<string, unknown>[]
  /** Resolves with the first printed line that has `key`. */
  line(key: string, timeoutMs?: number): Promise<Record<string, unknown>>
}

export function startNode(args: string[]): NodeProcess {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: Record<string, unknown>[] = []
  let buffered = ''
  let stderr = ''
  child.stdout?.on('data', (data: Buffer) => {
    buffered += data.toString()
    for (let newline; (newline = buffered.indexOf('\n')) >= 0; buffered = buffered.slice(newline + 1)) {
      lines.push(JSON.parse(buffered.slice(0, newline)) as Record<string, unknown>)
    }
  })
  child.stderr?.on('data', (data: Buffer) => (stderr = (stderr + data.toString()).slice(-4000)))
  return {
    child,
    lines,
    async line(key, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs
      while (Date.now() < until) {
        const found = lines.find((line) => key in line)
        if (found !== undefined) return found
        if (child.exitCode !== null) throw new Error(`The node exited with ${child.exitCode} before printing ${key}: ${stderr}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      throw new Error(`The node did not print ${key} within ${timeoutMs} ms: ${stderr}`)
    },
  }
}

export function kill9(node: NodeProcess): Promise<void> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    node.child.once('exit', () => resolve())
    node.child.kill('SIGKILL')
  })
}

export async function stopNode(node: NodeProcess | undefined): Promise<void> {
  if (node === undefined || node.child.exitCode !== null || node.child.signalCode !== null) return
  const exited = new Promise((resolve) => node.child.once('exit', resolve))
  node.child.kill('SIGTERM')
  const timer = setTimeout(() => node.child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}

export const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

/** Relative path → SHA-256 of every file the user sees (CloudBox's state folder left out). */
export function folderDigest(dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (folder: string) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      if (entry.name === '.cloudbox') continue
      const path = join(folder, entry.name)
      if (entry.isDirectory()) walk(path)
      else out.set(relative(dir, path), sha256(readFileSync(path)))
    }
  }
  walk(dir)
  return out
}

/** Files of `expected` missing from `actual` or different there. */
export function lostFiles(expected: Map<string, string>, actual: Map<string, string>): string[] {
  return [...expected].filter(([path, digest]) => actual.get(path) !== digest).map(([path]) => path)
}

/** A temporary folder, removed by the cleanup it registers. */
export function tempRoot(prefix: string, cleanups: (() => unknown)[]): string {
  const root = mkdtempSync(join(tmpdir(), prefix))
  cleanups.push(() => rmSync(root, { recursive: true, force: true }))
  return root
}

/** A small deterministic generator, so a failing run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 2 ** 32
  }
}
