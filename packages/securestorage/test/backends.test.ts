import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { classifyKeyringError, isSecureStorageError, KeyringStorage, MemoryStorage, openSecureStorage, VaultStorage, type StorageNotice } from '../src/index.js'
import { complianceSuite } from './compliance.js'

// Tests use a cheap Argon2id cost; the format and code path are the same.
const kdf = { opsLimit: 1, memLimit: 8 * 1024 * 1024 }
const dir = mkdtempSync(join(tmpdir(), 'cloudbox-storage-'))
const service = `cloudbox-test-${process.pid}-${Date.now()}`

beforeAll(() => {
  // The private Secret Service started by test/keyring-setup.ts.
  process.env.DBUS_SESSION_BUS_ADDRESS = inject('dbusAddress')
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

const memory = new MemoryStorage()
complianceSuite('memory', async () => memory)
complianceSuite('vault', async () => new VaultStorage({ path: join(dir, 'compliance.cbv'), passphrase: 'correct horse', kdf }))
complianceSuite('keyring (Secret Service: gnome-keyring over D-Bus)', async () => new KeyringStorage({ service, store: 'secret-service' }))

describe('KeyringStorage', () => {
  it('keeps services apart', async () => {
    const a = new KeyringStorage({ service: `${service}-a`, store: 'secret-service' })
    const b = new KeyringStorage({ service: `${service}-b`, store: 'secret-service' })
    await a.start()
    await b.start()
    await a.set('same-name', new Uint8Array([1]))
    expect(await b.get('same-name')).toBeUndefined()
    expect(await b.list()).toEqual([])
    await a.delete('same-name')
    await a.stop()
    await b.stop()
  })

  it('tells a refusing keyring from a missing one', () => {
    expect(classifyKeyringError(new Error('Couldn\'t access platform storage: collection is locked')).code).toBe('ERR_KEYRING_REFUSED')
    expect(classifyKeyringError(new Error('Platform failure: prompt dismissed')).code).toBe('ERR_KEYRING_REFUSED')
    expect(classifyKeyringError(new Error('Platform failure: DBus error: Using X11 for dbus-daemon autolaunch was disabled')).code).toBe('ERR_KEYRING_UNAVAILABLE')
    expect(classifyKeyringError(new Error("Couldn't access platform storage: AccessDenied")).code).toBe('ERR_KEYRING_UNAVAILABLE')
  })
})

describe('openSecureStorage', () => {
  it('uses the keyring when it works', async () => {
    const notices: StorageNotice[] = []
    const storage = await openSecureStorage({ service, vaultPath: join(dir, 'unused.cbv'), passphrase: () => { throw new Error('no passphrase needed') }, keyringStore: 'secret-service', onNotice: (n) => notices.push(n) })
    expect(storage.kind).toBe('keyring')
    expect(notices).toEqual([])
    await storage.stop()
  })

  it('never derives a key without a passphrase when the vault is used', async () => {
    await expect(openSecureStorage({ service, vaultPath: join(dir, 'nopass.cbv'), prefer: 'vault', kdf })).rejects.toSatisfy((error) => isSecureStorageError(error, 'ERR_PASSPHRASE_REQUIRED'))
    await expect(openSecureStorage({ service, vaultPath: join(dir, 'nopass.cbv'), prefer: 'vault', kdf, passphrase: '' })).rejects.toSatisfy((error) => isSecureStorageError(error, 'ERR_PASSPHRASE_REQUIRED'))
  })

  it('opens the vault directly when asked, asking for the passphrase only then', async () => {
    let asked = 0
    const storage = await openSecureStorage({ service, vaultPath: join(dir, 'direct.cbv'), prefer: 'vault', kdf, passphrase: async () => { asked++; return 'pw' } })
    expect(storage.kind).toBe('vault')
    expect(asked).toBe(1)
    await storage.stop()
  })
})
