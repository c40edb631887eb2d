import { describe, expect, it } from 'vitest'
import { BufferPool } from '../src/api/buffer-pool.js'

describe('BufferPool', () => {
  it('reuses a released large buffer for the next call, exactly as long as asked', () => {
    const pool = new BufferPool(1)
    const first = pool.acquire(8 * 1024 * 1024 + 5)
    expect(first.length).toBe(8 * 1024 * 1024 + 5)
    pool.release(first)
    const second = pool.acquire(3 * 1024 * 1024)
    expect(second.length).toBe(3 * 1024 * 1024)
    expect(second.buffer).toBe(first.buffer)
    // Taken: the next one is new memory.
    expect(pool.acquire(3 * 1024 * 1024).buffer).not.toBe(first.buffer)
  })

  it('keeps no more buffers than asked, and never pools small ones (a small call does not hold 1 MiB)', () => {
    const pool = new BufferPool(1)
    const a = pool.acquire(2 * 1024 * 1024)
    const b = pool.acquire(2 * 1024 * 1024)
    pool.release(a)
    pool.release(b)
    expect(pool.acquire(2 * 1024 * 1024).buffer).toBe(a.buffer)
    expect(pool.acquire(2 * 1024 * 1024).buffer).not.toBe(b.buffer)
    const small = pool.acquire(1000)
    expect(small.buffer.byteLength).toBeLessThan(1024 * 1024)
    pool.release(small)
    const large = pool.acquire(4 * 1024 * 1024)
    pool.release(large)
    // A small call leaves the pooled large buffer for the large call that follows.
    expect(pool.acquire(500).buffer).not.toBe(large.buffer)
    expect(pool.acquire(4 * 1024 * 1024).buffer).toBe(large.buffer)
  })

  it('takes back only what it lent, once: a stranger\'s buffer or a second release cannot be lent to two users', () => {
    const pool = new BufferPool(4)
    const stranger = Buffer.allocUnsafeSlow(2 * 1024 * 1024)
    pool.release(stranger)
    expect(pool.acquire(2 * 1024 * 1024).buffer).not.toBe(stranger.buffer)
    const lent = pool.acquire(2 * 1024 * 1024)
    pool.release(lent)
    pool.release(lent)
    const first = pool.acquire(2 * 1024 * 1024)
    const second = pool.acquire(2 * 1024 * 1024)
    expect(first.buffer).toBe(lent.buffer)
    expect(second.buffer).not.toBe(lent.buffer)
    // The late second release of an earlier lending, and another view of the memory, leave the new holder's buffer alone.
    pool.release(lent)
    pool.release(first.subarray(0, 10))
    expect(pool.acquire(2 * 1024 * 1024).buffer).not.toBe(first.buffer)
    pool.release(first)
    expect(pool.acquire(2 * 1024 * 1024).buffer).toBe(first.buffer)
  })
})
