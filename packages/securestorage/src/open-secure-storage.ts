import type { LinuxStore } from '@napi-rs/keyring'
import { isSecureStorageError } from './errors.js'
import type { SecureStorage } from './interfaces/secure-storage.js'
import { KeyringStorage } from './keyring-storage.js'
import { VaultStorage, type PassphraseSource } from './vault-storage.js'
import type { KdfParameters } from './vault-format.js'

export interface StorageNotice {
  /** `KEYRING_FALLBACK` when the keyring did not work and the vault is used instead. */
  readonly code: 'KEYRING_FALLBACK'
  readonly message: string
  readonly cause: unknown
}

export interface OpenSecureStorageOptions {
  /** Keyring service name (one per application and home). */
  readonly service: string
  /** Where the vault file lives when the vault is used. */
  readonly vaultPath: string
  /** The vault passphrase, or a function asked only if the vault is used. */
  readonly passphrase?: PassphraseSource
  /** `auto` (default): keyring, else vault. `keyring` or `vault`: that one or an error. */
  readonly prefer?: 'auto' | 'keyring' | 'vault'
  readonly keyringStore?: LinuxStore
  readonly kdf?: KdfParameters
  readonly signal?: AbortSignal
  /** Told when the keyring was unusable and the vault is used instead. */
  readonly onNotice?: (notice: StorageNotice) => void
}

/**
 * A started secret storage: the OS keyring where it works, else the encrypted vault
 * file, with a notice saying why. There is no third fallback: no key is ever derived
 * from machine or user names (they are not secrets).
 * @example
 * const storage = await openSecureStorage({ service: 'my-app', vaultPath: '/home/me/.my-app/vault.cbv', passphrase: () => ask() })
 * await storage.set('key', bytes)
 * await storage.stop()
 */
export async function openSecureStorage(options: OpenSecureStorageOptions): Promise<SecureStorage> {
  const prefer = options.prefer ?? 'auto'
  const startOptions = options.signal === undefined ? {} : { signal: options.signal }
  if (prefer !== 'vault') {
    const keyring = new KeyringStorage({ service: options.service, ...(options.keyringStore === undefined ? {} : { store: options.keyringStore }) })
    try {
      await keyring.start(startOptions)
      return keyring
    } catch (error) {
      if (prefer === 'keyring' || !(isSecureStorageError(error, 'ERR_KEYRING_UNAVAILABLE') || isSecureStorageError(error, 'ERR_KEYRING_REFUSED'))) throw error
      options.onNotice?.({
        code: 'KEYRING_FALLBACK',
        message: `The OS keyring is not usable here (${(error as Error).message}); secrets go to the encrypted vault ${options.vaultPath} instead, protected by your passphrase.`,
        cause: error,
      })
    }
  }
  const vault = new VaultStorage({
    path: options.vaultPath,
    ...(options.passphrase === undefined ? {} : { passphrase: options.passphrase }),
    ...(options.kdf === undefined ? {} : { kdf: options.kdf }),
  })
  await vault.start(startOptions)
  return vault
}
