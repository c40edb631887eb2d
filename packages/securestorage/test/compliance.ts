import { describe, expect, it } from 'vitest'
import { isSecureStorageError, type SecureStorage } from '../src/index.js'

/** The behaviour every back end shares; each back end's test file runs it. */
export function complianceSuite(label: string, make: () => Promise<SecureStorage>): void {
  describe(`${label}: SecureStorage compliance`, () => {
    it('stores, reads, lists, overwrites and deletes byte values', async () => {
      const storage = await make()
      await storage.start()
      try {
        const binary = new Uint8Array(256).map((_, i) => i)
        await storage.set('identity', binary)
        await storage.set('ünïcode name ✓', new Uint8Array([1, 2, 3]))
        await storage.set('empty', new Uint8Array(0))
        expect(await storage.get('identity')).toEqual(binary)
        expect(await storage.get('empty')).toEqual(new Uint8Array(0))
        expect(await storage.has('identity')).toBe(true)
        expect(await storage.has('missing')).toBe(false)
        expect(await storage.get('missing')).toBeUndefined()
        expect(await storage.list()).toEqual(['empty', 'identity', 'ünïcode name ✓'])
        await storage.set('identity', new Uint8Array([9]))
        expect(await storage.get('identity')).toEqual(new Uint8Array([9]))
        expect(await storage.delete('identity')).toBe(true)
        expect(await storage.delete('identity')).toBe(false)
        expect(await storage.list()).toEqual(['empty', 'ünïcode name ✓'])
        for (const name of await storage.list()) await storage.delete(name)
        expect(await storage.list()).toEqual([])
      } finally {
        await storage.stop()
      }
    })

    it('copies values in and out, so callers cannot change stored secrets by accident', async () => {
      const storage = await make()
      await storage.start()
      try {
        const value = new Uint8Array([1, 2, 3])
        await storage.set('copy', value)
        value[0] = 99
        const read = (await storage.get('copy')) as Uint8Array
        expect(read).toEqual(new Uint8Array([1, 2, 3]))
        read[1] = 42
        expect(await storage.get('copy')).toEqual(new Uint8Array([1, 2, 3]))
        await storage.delete('copy')
      } finally {
        await storage.stop()
      }
    })

    it('refuses bad names and use outside start/stop with typed errors', async () => {
      const storage = await make()
      await expect(storage.get('x')).rejects.toSatisfy((error) => isSecureStorageError(error, 'ERR_STORAGE_STOPPED'))
      await storage.start()
      try {
        for (const name of ['', 'a'.repeat(201), 'line\nbreak', 'nul\u0000', 42 as unknown as string]) {
          await expect(storage.set(name, new Uint8Array(1))).rejects.toSatisfy((error) => isSecureStorageError(error, 'ERR_INVALID_NAME'))
        }
        await expect(storage.set('ok', 'text' as unknown as Uint8Array)).rejects.toThrow(TypeError)
      } finally {
        await storage.stop()
      }
      await expect(storage.set('x', new Uint8Array(1))).rejects.toSatisfy((error) => isSecureStorageError(error, 'ERR_STORAGE_STOPPED'))
    })

    it('keeps values across stop and start, and works with await using', async () => {
      {
        await using storage = await make()
        await storage.start()
        await storage.set('persist', new Uint8Array([7, 7]))
      }
      const again = await make()
      await again.start()
      try {
        expect(await again.get('persist')).toEqual(new Uint8Array([7, 7]))
        await again.delete('persist')
      } finally {
        await again.stop()
      }
    })
  })
}
