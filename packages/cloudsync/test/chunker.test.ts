import { createCipheriv, createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { chunkBytes, Chunker, chunkParametersFor } from '../src/chunker.js'

const params = { minSize: 2048, averageSize: 8192, maxSize: 65536 }

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

  it('scales the average chunk size with the file size', () => {
    expect(chunkParametersFor(0).averageSize).toBe(8192)
    expect(chunkParametersFor(512 * 1024 * 1024).averageSize).toBe(64 * 1024)
    expect(chunkParametersFor(100 * 1024 ** 3).averageSize).toBe(1024 * 1024)
    expect(() => new Chunker({ minSize: 10, averageSize: 1000, maxSize: 10 })).toThrow(RangeError)
  })
})
