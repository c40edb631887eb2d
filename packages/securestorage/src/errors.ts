/**
 * Typed errors of @cloudbox/securestorage. Every error a user can cause has a stable
 * `code` (listed with what to do in docs/errors.md) and a message that says what to do.
 */

export const ErrorCodes = {
  KEYRING_UNAVAILABLE: 'ERR_KEYRING_UNAVAILABLE',
  KEYRING_REFUSED: 'ERR_KEYRING_REFUSED',
  KEYRING_ENTRY_INVALID: 'ERR_KEYRING_ENTRY_INVALID',
  PASSPHRASE_REQUIRED: 'ERR_PASSPHRASE_REQUIRED',
  VAULT_WRONG_PASSPHRASE: 'ERR_VAULT_WRONG_PASSPHRASE',
  VAULT_CORRUPTED: 'ERR_VAULT_CORRUPTED',
  VAULT_UNSUPPORTED_VERSION: 'ERR_VAULT_UNSUPPORTED_VERSION',
  VAULT_LOCKED: 'ERR_VAULT_LOCKED',
  INVALID_NAME: 'ERR_INVALID_NAME',
  STORAGE_STOPPED: 'ERR_STORAGE_STOPPED',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

// Shared by every CloudBox package, so `isCloudBoxError` checks work across copies.
const MARKER = Symbol.for('cloudbox.error')

export class SecureStorageError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
    Object.defineProperty(this, MARKER, { value: true })
  }
}

/** True for an error of this package (optionally with `code`), even from another copy of it. */
export function isSecureStorageError(error: unknown, code?: ErrorCode): error is SecureStorageError {
  if (typeof error !== 'object' || error === null || (error as Record<symbol, unknown>)[MARKER] !== true) return false
  const actual = (error as { code?: unknown }).code
  if (typeof actual !== 'string' || !(Object.values(ErrorCodes) as string[]).includes(actual)) return false
  return code === undefined || actual === code
}

/** No OS keyring can be reached from this process (no Secret Service, no session keyring). */
export class KeyringUnavailableError extends SecureStorageError {
  constructor(message = 'No OS keyring is reachable from this process (no Secret Service on D-Bus and no kernel session keyring). Use the encrypted vault file instead.', options?: { cause?: unknown }) {
    super(ErrorCodes.KEYRING_UNAVAILABLE, message, options)
  }
}

/** The keyring exists but refused access (locked, prompt dismissed, permission denied). */
export class KeyringRefusedError extends SecureStorageError {
  constructor(message = 'The OS keyring refused access (it is locked or the request was dismissed). Unlock it and try again, or use the encrypted vault file.', options?: { cause?: unknown }) {
    super(ErrorCodes.KEYRING_REFUSED, message, options)
  }
}

/** A keyring entry under this service holds something CloudBox did not write. */
export class KeyringEntryInvalidError extends SecureStorageError {
  constructor(message = 'A keyring entry was not written by CloudBox (or by a newer version); remove it or update CloudBox.', options?: { cause?: unknown }) {
    super(ErrorCodes.KEYRING_ENTRY_INVALID, message, options)
  }
}

export class PassphraseRequiredError extends SecureStorageError {
  constructor(message = 'The vault needs a passphrase: set CLOUDBOX_PASSPHRASE or run the command on a terminal.', options?: { cause?: unknown }) {
    super(ErrorCodes.PASSPHRASE_REQUIRED, message, options)
  }
}

export class VaultWrongPassphraseError extends SecureStorageError {
  constructor(message = 'Wrong passphrase for this vault (or the vault was modified). Try again; the vault was not changed.', options?: { cause?: unknown }) {
    super(ErrorCodes.VAULT_WRONG_PASSPHRASE, message, options)
  }
}

export class VaultCorruptedError extends SecureStorageError {
  constructor(message = 'The vault file is damaged or truncated. It was left as it is: restore it from a backup, or restore your identity from its recovery phrase.', options?: { cause?: unknown }) {
    super(ErrorCodes.VAULT_CORRUPTED, message, options)
  }
}

export class VaultUnsupportedVersionError extends SecureStorageError {
  constructor(message = 'The vault file was written by a newer version of CloudBox. Update CloudBox to open it.', options?: { cause?: unknown }) {
    super(ErrorCodes.VAULT_UNSUPPORTED_VERSION, message, options)
  }
}

export class VaultLockedError extends SecureStorageError {
  constructor(message = 'Another running CloudBox process has this vault open. Stop it first, or wait for it to finish.', options?: { cause?: unknown }) {
    super(ErrorCodes.VAULT_LOCKED, message, options)
  }
}

export class InvalidNameError extends SecureStorageError {
  constructor(message = 'An entry name must be 1 to 200 characters without control characters.', options?: { cause?: unknown }) {
    super(ErrorCodes.INVALID_NAME, message, options)
  }
}

export class StorageStoppedError extends SecureStorageError {
  constructor(message = 'This storage is not started (or was stopped): call start() first.', options?: { cause?: unknown }) {
    super(ErrorCodes.STORAGE_STOPPED, message, options)
  }
}
