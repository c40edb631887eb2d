import { spawnSync } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { chunkBytes, chunkParametersFor } from '../src/index.js'
import { removeDir, tempDir } from './helpers.js'

// The built package hashes on worker threads (dist/hash-worker.js); run from sources it
// hashes in-thread. Both must give the same chunks.
const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url))
const root = tempDir()
afterAll(() => removeDir(root))

describe('scanning on worker threads (built package)', () => {
  it('gives the same chunks as hashing in-thread', () => {
    expect(existsSync(dist) && existsSync(fileURLToPath(new URL('../dist/hash-worker.js', import.meta.url))), 'run `pnpm build` first').toBe(true)
    const folder = join(root, 'f')
    mkdirSync(join(folder, 'sub'), { recursive: true })
    const files: Record<string, Buffer> = {}
    for (const [name, size] of [['a.bin', 3 * 1024 * 1024 + 17], ['sub/b.bin', 200_000], ['empty', 0], ['sub/c.txt', 5]] as const) {
      const data = createCipheriv('aes-256-ctr', createHash('sha256').update(name).digest(), Buffer.alloc(16)).update(Buffer.alloc(size))
      writeFileSync(join(folder, name), data)
      files[name] = data
    }
    const script = `
      const { SyncEngine } = await import(${JSON.stringify(dist)})
      const engine = new SyncEngine({ folder: ${JSON.stringify(folder)}, deviceId: 'd', folderId: 'f', watch: false })
      await engine.start()
      const out = engine.records().filter((r) => r.kind === undefined).map((r) => [r.path, Buffer.from(r.chunkHashes).toString('hex'), r.chunkLengths])
      await engine.stop()
      console.log(JSON.stringify(out))`
    const scriptPath = join(root, 'scan.mjs')
    writeFileSync(scriptPath, script)
    const result = spawnSync(process.execPath, [scriptPath], { encoding: 'utf8' })
    expect(result.status, result.stderr).toBe(0)
    const records = JSON.parse(result.stdout) as [string, string, number[]][]
    expect(records.map(([path]) => path).sort()).toEqual(Object.keys(files).sort())
    for (const [path, hashes, lengths] of records) {
      const data = files[path] as Buffer
      const chunks = chunkBytes(data, chunkParametersFor(data.length))
      expect(lengths).toEqual(chunks.map((chunk) => chunk.length))
      expect(hashes).toBe(Buffer.concat(chunks.map((chunk) => chunk.hash)).toString('hex'))
    }
    expect(readFileSync(join(folder, 'sub/c.txt')).length).toBe(5)
  })
})
