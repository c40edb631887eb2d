// Runs a keyring scenario in a fresh process (the native keyring library keeps its
// D-Bus connection for the life of a process) and prints the outcome as JSON.
// Used by test/keyring-processes.test.ts against the built package.
import { KeyringStorage, openSecureStorage } from '../dist/index.js'

const [scenario, service, vaultPath] = process.argv.slice(2)
const result = {}
try {
  if (scenario === 'unavailable') {
    const storage = new KeyringStorage({ service, store: 'secret-service', probeTimeoutMs: 5000 })
    result.start = await storage.start().then(() => 'started', (error) => error.code ?? String(error))
    const notices = []
    const fallback = await openSecureStorage({ service, vaultPath, passphrase: 'pw', keyringStore: 'secret-service', kdf: { opsLimit: 1, memLimit: 8192 * 1024 }, onNotice: (n) => notices.push(n.code) })
    result.fallbackKind = fallback.kind
    result.notices = notices
    await fallback.stop()
    result.preferKeyring = await openSecureStorage({ service, vaultPath, passphrase: 'pw', prefer: 'keyring', keyringStore: 'secret-service' }).then(() => 'opened', (error) => error.code ?? String(error))
  } else if (scenario === 'keyutils') {
    const storage = new KeyringStorage({ service, store: 'keyutils' })
    await storage.start()
    await storage.set('a', new Uint8Array([1, 2, 3]))
    await storage.set('b', new Uint8Array(0))
    result.a = Array.from((await storage.get('a')) ?? [])
    result.list = await storage.list()
    result.deleted = await storage.delete('a')
    result.after = await storage.list()
    result.missing = (await storage.get('a')) === undefined
    await storage.delete('b')
    await storage.stop()
  } else {
    throw new Error(`unknown scenario ${scenario}`)
  }
} catch (error) {
  result.error = { code: error.code, message: String(error.message ?? error) }
}
process.stdout.write(JSON.stringify(result))
