/**
 * @packageDocumentation
 * `@cloudbox/securestorage`: one interface for small secrets (bytes by name) over three
 * back ends: the OS keyring, an encrypted vault file, and memory (for tests).
 * `openSecureStorage()` picks the keyring where it works and falls back to the vault.
 */
export type { SecureStorage, SecureStorageKind } from './interfaces/secure-storage.js'
export { KeyringStorage, classifyKeyringError } from './keyring-storage.js'
export type { KeyringStorageOptions } from './keyring-storage.js'
export { VaultStorage, DEFAULT_KDF } from './vault-storage.js'
export type { VaultStorageOptions, PassphraseSource } from './vault-storage.js'
export type { KdfParameters } from './vault-format.js'
export { MemoryStorage } from './memory-storage.js'
export { openSecureStorage } from './open-secure-storage.js'
export type { OpenSecureStorageOptions, StorageNotice } from './open-secure-storage.js'
export { MAX_NAME_LENGTH } from './names.js'
export {
  ErrorCodes,
  SecureStorageError,
  isSecureStorageError,
  KeyringUnavailableError,
  KeyringRefusedError,
  KeyringEntryInvalidError,
  PassphraseRequiredError,
  VaultWrongPassphraseError,
  VaultCorruptedError,
  VaultUnsupportedVersionError,
  VaultLockedError,
  InvalidNameError,
  StorageStoppedError,
} from './errors.js'
export type { ErrorCode } from './errors.js'
