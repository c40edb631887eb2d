// A secret kept in an encrypted vault file (the fallback when the OS has no keyring):
// stored, read back after a restart, refused with a wrong passphrase.
// Run it from packages/securestorage after `pnpm build`: node examples/vault-secret.mjs
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isSecureStorageError, openSecureStorage } from '@cloudbox/securestorage'

const dir = await mkdtemp(join(tmpdir(), 'securestorage-example-'))
const vaultPath = join(dir, 'vault.cbv')
try {
  // prefer: 'auto' would try the OS keyring first; 'vault' keeps this example the same everywhere.
  const storage = await openSecureStorage({ service: 'example-app', vaultPath, prefer: 'vault', passphrase: 'correct horse battery staple' })
  await storage.set('api-token', new TextEncoder().encode('s3cr3t'))
  console.log(`stored in the ${storage.kind}: ${(await storage.list()).join(', ')}`)
  await storage.stop()

  // Later (another run of the app): the same passphrase opens it.
  const again = await openSecureStorage({ service: 'example-app', vaultPath, prefer: 'vault', passphrase: () => 'correct horse battery staple' })
  console.log(`read back: ${new TextDecoder().decode(await again.get('api-token'))}`)
  await again.stop()

  // A wrong passphrase gets a typed error, never the data.
  try {
    await openSecureStorage({ service: 'example-app', vaultPath, prefer: 'vault', passphrase: 'wrong' })
  } catch (error) {
    if (!isSecureStorageError(error)) throw error
    console.log(`wrong passphrase refused: ${error.code}`)
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}
