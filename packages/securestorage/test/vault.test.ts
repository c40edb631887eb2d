import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { isSecureStorageError, VaultStorage, type SecureStorage } from '../src/index.js'

const kdf = { opsLimit: 1, memLimit: 8 * 1024 * 1024 }
let dir: string
let reference: Buffer
const open: SecureStorage[] = []

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    if (isSecureStorageError(error)) return error.code
    throw error
  }
  return 'no error'
}

function vault(path: string, passphrase = 'correct horse'): VaultStorage {
  const storage = new VaultStorage({ path, passphrase, kdf })
  open.push(storage)
  return storage
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cloudbox-vault-'))
  const storage = vault(join(dir, 'reference.cbv'))
  await storage.start()
  await storage.set('identity', new TextEncoder().encode('{"recoveryPhrase":"abandon …"}'))
  await storage.set('other', new Uint8Array([1, 2, 3]))
  await storage.stop()
  reference = readFileSync(join(dir, 'reference.cbv'))
})

afterEach(async () => {
  for (const storage of open.splice(0)) await storage.stop()
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('vault file', () => {
  it('is created with mode 0600 and the documented header', () => {
    expect(statSync(join(dir, 'reference.cbv')).mode & 0o777).toBe(0o600)
    expect(reference.subarray(0, 8).toString('latin1')).toBe('CBVAULT\0')
    expect(reference.readUInt16BE(8)).toBe(1)
    expect(reference.readUInt8(10)).toBe(1)
    expect(reference.readUInt32BE(12)).toBe(kdf.opsLimit)
    expect(reference.readUInt32BE(16)).toBe(kdf.memLimit)
    expect(reference.includes(Buffer.from('abandon'))).toBe(false)
  })

  it('uses a fresh nonce on every write', async () => {
    const path = join(dir, 'nonce.cbv')
    const storage = vault(path)
    await storage.start()
    const nonces = new Set<string>()
    for (let i = 0; i < 5; i++) {
      await storage.set('x', new Uint8Array([1]))
      nonces.add(readFileSync(path).subarray(36, 60).toString('hex'))
    }
    expect(nonces.size).toBe(5)
  })

  it('refuses a wrong passphrase and leaves the file as it was', async () => {
    const path = join(dir, 'wrong.cbv')
    writeFileSync(path, reference, { mode: 0o600 })
    expect(await codeOf(vault(path, 'wrong horse').start())).toBe('ERR_VAULT_WRONG_PASSPHRASE')
    expect(readFileSync(path).equals(reference)).toBe(true)
    const right = vault(path)
    await right.start()
    expect(new TextDecoder().decode(await right.get('identity'))).toContain('abandon')
  })

  it('refuses every flipped byte of header and ciphertext with a typed error and never rewrites the file', async () => {
    const codes = new Set<string>()
    const path = join(dir, 'flip.cbv')
    for (let i = 0; i < reference.length; i++) {
      const copy = Buffer.from(reference)
      copy.writeUInt8(copy.readUInt8(i) ^ 0x04, i)
      writeFileSync(path, copy)
      const storage = vault(path)
      const code = await codeOf(storage.start())
      codes.add(code)
      expect(code, `byte ${i}`).toMatch(/^ERR_VAULT_(WRONG_PASSPHRASE|CORRUPTED|UNSUPPORTED_VERSION)$/)
      // A failed start leaves the storage stopped: no write can follow.
      expect(await codeOf(storage.set('x', new Uint8Array(1)))).toBe('ERR_STORAGE_STOPPED')
      expect(readFileSync(path).equals(copy)).toBe(true)
    }
    expect(codes).toContain('ERR_VAULT_CORRUPTED')
    expect(codes).toContain('ERR_VAULT_UNSUPPORTED_VERSION')
    expect(codes).toContain('ERR_VAULT_WRONG_PASSPHRASE')
  })

  it('refuses a truncated vault at every length', async () => {
    const path = join(dir, 'cut.cbv')
    for (let length = 0; length < reference.length; length++) {
      writeFileSync(path, reference.subarray(0, length))
      expect(await codeOf(vault(path).start()), `length ${length}`).toMatch(/^ERR_VAULT_(CORRUPTED|WRONG_PASSPHRASE)$/)
      expect(readFileSync(path).length).toBe(length)
    }
  })

  it('refuses hostile key-derivation costs before deriving anything', async () => {
    const path = join(dir, 'hostile.cbv')
    const copy = Buffer.from(reference)
    copy.writeUInt32BE(0xffffffff, 16) // 4 GiB of memory
    writeFileSync(path, copy)
    expect(await codeOf(vault(path).start())).toBe('ERR_VAULT_CORRUPTED')
    copy.writeUInt32BE(kdf.memLimit, 16)
    copy.writeUInt32BE(1_000_000, 12) // a million passes
    writeFileSync(path, copy)
    expect(await codeOf(vault(path).start())).toBe('ERR_VAULT_CORRUPTED')
    copy.writeUInt16BE(2, 8)
    writeFileSync(path, copy)
    expect(await codeOf(vault(path).start())).toBe('ERR_VAULT_UNSUPPORTED_VERSION')
  })

  it('never crashes on random files (fuzz)', async () => {
    const path = join(dir, 'fuzz.cbv')
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), fc.boolean(), async (bytes, withMagic) => {
        const content = withMagic ? Buffer.concat([reference.subarray(0, 20), Buffer.from(bytes)]) : Buffer.from(bytes)
        writeFileSync(path, content)
        expect(await codeOf(vault(path).start())).toMatch(/^ERR_VAULT_/)
        expect(readFileSync(path).equals(content)).toBe(true)
      }),
      { numRuns: 60 },
    )
  })

  it('asks for a passphrase only when needed, and refuses to go on without one', async () => {
    const missing = new VaultStorage({ path: join(dir, 'nopass.cbv'), kdf })
    expect(await codeOf(missing.start())).toBe('ERR_PASSPHRASE_REQUIRED')
    expect(existsSync(join(dir, 'nopass.cbv'))).toBe(false)
    expect(existsSync(join(dir, 'nopass.cbv.lock'))).toBe(false)
  })
})

describe('vault locking and crashes', () => {
  it('a second opener of the same vault gets ERR_VAULT_LOCKED until the first stops', async () => {
    const path = join(dir, 'locked.cbv')
    const first = vault(path)
    await first.start()
    expect(await codeOf(vault(path).start())).toBe('ERR_VAULT_LOCKED')
    await first.stop()
    const second = vault(path)
    await second.start()
    await second.stop()
    expect(existsSync(`${path}.lock`)).toBe(false)
  })

  it('takes over the lock of a process that died', async () => {
    const path = join(dir, 'stale.cbv')
    const child = spawn(process.execPath, ['-e', ''])
    const pid = child.pid as number
    await new Promise((resolve) => child.once('exit', resolve))
    writeFileSync(`${path}.lock`, `${pid}\n`)
    const storage = vault(path)
    await storage.start()
    await storage.set('ok', new Uint8Array([1]))
  })

  it('a temporary file left by a crash mid-write does not break the next start, and a read-only folder fails a write cleanly', async () => {
    const folder = mkdtempSync(join(dir, 'crash-'))
    const path = join(folder, 'v.cbv')
    writeFileSync(path, reference, { mode: 0o600 })
    writeFileSync(join(folder, '.v.cbv.0123456789ab.tmp'), reference.subarray(0, 30))
    const storage = vault(path)
    await storage.start()
    expect(await storage.list()).toEqual(['identity', 'other'])
    if (process.getuid?.() !== 0) {
      // Root ignores directory permissions, so this part runs only as a normal user.
      chmodSync(folder, 0o500)
      await expect(storage.set('new', new Uint8Array([1]))).rejects.toThrow()
      chmodSync(folder, 0o700)
      expect(await storage.has('new')).toBe(false)
    }
    await storage.stop()
    expect(readdirSync(folder).filter((name) => name.endsWith('.lock'))).toEqual([])
  })
})
