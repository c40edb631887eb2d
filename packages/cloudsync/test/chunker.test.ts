import { createCipheriv, createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chunkBytes, Chunker, chunkParametersFor, referenceCutLengths } from '../src/chunker.js'
import { hashFile } from '../src/file-hasher.js'
import { hashInSegments } from '../src/hash-pool.js'

// Small parameters so a few megabytes hold many chunks (the rules are the same at any size).
const params = { minSize: 4096, averageSize: 8192, maxSize: 32768 }

/** Deterministic pseudo-random bytes (AES-CTR keystream of a seed), so results never flake. */
function randomBytes(length: number, seed = `seed-${length}`): Buffer {
  return createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16)).update(Buffer.alloc(length))
}
const hex = (chunk: { hash: Uint8Array }) => Buffer.from(chunk.hash).toString('hex')

describe('content-defined chunking', () => {
  it('covers the input exactly, within the size bounds, and hashes each chunk', () => {
    const data = randomBytes(1024 * 1024)
    const chunks = chunkBytes(data, params)
    let offset = 0
    for (const [index, chunk] of chunks.entries()) {
      expect(chunk.offset).toBe(offset)
      if (index < chunks.length - 1) expect(chunk.length).toBeGreaterThanOrEqual(params.minSize)
      expect(chunk.length).toBeLessThanOrEqual(params.maxSize)
      offset += chunk.length
    }
    expect(offset).toBe(data.length)
    const average = data.length / chunks.length
    expect(average).toBeGreaterThan(params.averageSize * 0.6)
    expect(average).toBeLessThan(params.averageSize * 1.6)
    expect(chunkBytes(new Uint8Array(0), params)).toEqual([])
  })

  it('does not depend on how the stream is split (property)', () => {
    const data = randomBytes(200_000)
    const whole = chunkBytes(data, params).map(hex)
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 50_000 }), { minLength: 1, maxLength: 20 }), (cuts) => {
        const chunker = new Chunker(params)
        const out = []
        let offset = 0
        let i = 0
        while (offset < data.length) {
          const n = cuts[i++ % cuts.length] as number
          out.push(...chunker.push(data.subarray(offset, offset + n)))
          offset += n
        }
        out.push(...chunker.finish())
        expect(out.map(hex)).toEqual(whole)
      }),
      { numRuns: 30 },
    )
  })

  it('an insertion or a change only touches the chunks around it', () => {
    const data = randomBytes(2 * 1024 * 1024)
    const before = new Set(chunkBytes(data, params).map(hex))
    const inserted = Buffer.concat([data.subarray(0, 100_000), Buffer.from('x'.repeat(100)), data.subarray(100_000)])
    // Over many edit positions the effect stays local: a few chunks' worth of new bytes
    // (boundaries resynchronise within a chunk or two after the edit).
    let total = 0
    for (let k = 1; k <= 20; k++) {
      const at = k * 97_003
      const shifted = Buffer.concat([data.subarray(0, at), Buffer.from('y'.repeat(100)), data.subarray(at)])
      const fresh = chunkBytes(shifted, params).filter((chunk) => !before.has(hex(chunk))).reduce((sum, chunk) => sum + chunk.length, 0)
      expect(fresh).toBeLessThan(8 * params.averageSize)
      total += fresh
    }
    expect(total / 20).toBeLessThan(3 * params.averageSize)
    const afterInsert = chunkBytes(inserted, params)
    expect(afterInsert.filter((chunk) => !before.has(hex(chunk))).length).toBeLessThanOrEqual(4)
    const changed = Buffer.from(data)
    randomBytes(64 * 1024, 'change').copy(changed, 1024 * 1024)
    const afterChange = chunkBytes(changed, params)
    const newBytes = afterChange.filter((chunk) => !before.has(hex(chunk))).reduce((sum, chunk) => sum + chunk.length, 0)
    expect(newBytes).toBeLessThan(64 * 1024 + 6 * params.averageSize)
  })

  it('scales the average chunk size with the file size: 64 KiB up to 512 MiB, then about 8,192 chunks, at most 4 MiB', () => {
    expect(chunkParametersFor(0)).toEqual({ minSize: 32 * 1024, averageSize: 64 * 1024, maxSize: 256 * 1024 })
    expect(chunkParametersFor(512 * 1024 * 1024).averageSize).toBe(64 * 1024)
    expect(chunkParametersFor(2 * 1024 ** 3).averageSize).toBe(256 * 1024)
    expect(chunkParametersFor(100 * 1024 ** 3).averageSize).toBe(4 * 1024 * 1024)
    // A file keeps its average across edits that stay within 4× of its class.
    expect(chunkParametersFor(600 * 1024 * 1024, 64 * 1024).averageSize).toBe(64 * 1024)
    expect(() => new Chunker({ minSize: 10, averageSize: 1000, maxSize: 10 })).toThrow(RangeError)
  })

  it('the WebAssembly loop cuts exactly where the byte-by-byte JavaScript reference does', () => {
    for (const [size, seed] of [[3 * 1024 * 1024, 'a'], [1_000_003, 'b'], [4095, 'c'], [0, 'd']] as const) {
      const data = randomBytes(size, seed)
      expect(chunkBytes(data, params).map((chunk) => chunk.length), seed).toEqual(referenceCutLengths(data, params))
    }
    // Data without cut points (zeros) is cut at the maximum.
    expect(chunkBytes(new Uint8Array(100_000), params).map((chunk) => chunk.length)).toEqual(referenceCutLengths(new Uint8Array(100_000), params))
    const real = chunkParametersFor(8 * 1024 * 1024)
    const large = randomBytes(8 * 1024 * 1024, 'large')
    expect(chunkBytes(large, real).map((chunk) => chunk.length)).toEqual(referenceCutLengths(large, real))
  })

  it('a file cut in parallel segments gets exactly the chunks of one pass', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cloudsync-segments-'))
    try {
      const cases: [string, Buffer][] = [
        ['random', randomBytes(40 * 1024 * 1024, 'segments')],
        ['zeros', Buffer.alloc(40 * 1024 * 1024)],
        ['mixed', Buffer.concat([randomBytes(5 * 1024 * 1024, 'm1'), Buffer.alloc(13 * 1024 * 1024), randomBytes(22 * 1024 * 1024 + 17, 'm2')])],
      ]
      for (const [name, data] of cases) {
        const file = join(dir, name)
        writeFileSync(file, data)
        const whole = await hashFile(file, data.length)
        for (const segments of [2, 3, 5]) {
          const parallel = await hashInSegments(file, data.length, segments)
          expect(parallel.chunkLengths, `${name}, ${segments} segments`).toEqual(whole.chunkLengths)
          expect(Buffer.from(parallel.chunkHashes).equals(Buffer.from(whole.chunkHashes)), `${name}, ${segments} segments`).toBe(true)
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
