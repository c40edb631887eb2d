import { readFile } from 'node:fs/promises'
import sodiumModule from 'libsodium-wrappers-sumo'
import { argon2id } from './argon2id.js'
import { PassphraseRequiredError, StorageStoppedError, VaultWrongPassphraseError } from './errors.js'
import { writeFileAtomically } from './durable-file.js'
import { acquireLock } from './file-lock.js'
import type { SecureStorage } from './interfaces/secure-storage.js'
import { assertBytes, assertValidName } from './names.js'
import {
  decodeEntries,
  decodeHeader,
  encodeEntries,
  encodeHeader,
  HEADER_LENGTH,
  KDF_LIMITS,
  NONCE_LENGTH,
  SALT_LENGTH,
  type KdfParameters,
} from './vault-format.js'

/** A passphrase, or a function asked for it only when one is needed (a terminal prompt). */
export type PassphraseSource = string | (() => string | Promise<string>)

/** Argon2id cost for new vaults: 3 passes over 64 MiB (about half a second here). */
export const DEFAULT_KDF: KdfParameters = { opsLimit: 3, memLimit: 64 * 1024 * 1024 }

export interface VaultStorageOptions {
  /** The vault file; created on first start. A `<path>.lock` file sits beside it while open. */
  readonly path: string
  readonly passphrase?: PassphraseSource
  /** Argon2id cost for a new vault (an existing vault keeps its own). */
  readonly kdf?: KdfParameters
}

let sodium: typeof sodiumModule | undefined
async function ready(): Promise<typeof sodiumModule> {
  if (sodium === undefined) {
    await sodiumModule.ready
    sodium = sodiumModule
  }
  return sodium
}

async function resolvePassphrase(source: PassphraseSource | undefined): Promise<string> {
  const passphrase = typeof source === 'function' ? await source() : source
  if (typeof passphrase !== 'string' || passphrase.length === 0) throw new PassphraseRequiredError()
  return passphrase
}

/**
 * Secrets in one encrypted file: Argon2id turns the passphrase into a key,
 * XChaCha20-Poly1305 seals the whole entry table with the header as associated data,
 * and every write replaces the file atomically (temporary file with mode 0600, fsync,
 * rename, directory fsync). A file that fails to decode is never overwritten.
 */
export class VaultStorage implements SecureStorage {
  readonly kind = 'vault' as const
  readonly #options: VaultStorageOptions
  #key: Uint8Array | undefined
  #kdf: KdfParameters | undefined
  #salt: Uint8Array | undefined
  #entries = new Map<string, Uint8Array>()
  #release: (() => Promise<void>) | undefined
  #writes: Promise<unknown> = Promise.resolve()

  constructor(options: VaultStorageOptions) {
    if (typeof options?.path !== 'string' || options.path.length === 0) throw new TypeError('A vault path is required')
    const kdf = options.kdf ?? DEFAULT_KDF
    if (kdf.opsLimit < KDF_LIMITS.minOps || kdf.opsLimit > KDF_LIMITS.maxOps || kdf.memLimit < KDF_LIMITS.minMem || kdf.memLimit > KDF_LIMITS.maxMem) {
      throw new RangeError(`Argon2id cost out of bounds: opsLimit ${KDF_LIMITS.minOps}–${KDF_LIMITS.maxOps}, memLimit ${KDF_LIMITS.minMem}–${KDF_LIMITS.maxMem} bytes`)
    }
    this.#options = options
  }

  get path(): string {
    return this.#options.path
  }

  async start(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#key !== undefined) return
    options.signal?.throwIfAborted()
    const lib = await ready()
    const release = await acquireLock(`${this.#options.path}.lock`)
    try {
      let file: Uint8Array | undefined
      try {
        file = new Uint8Array(await readFile(this.#options.path))
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      }
      if (file === undefined) {
        const passphrase = await resolvePassphrase(this.#options.passphrase)
        options.signal?.throwIfAborted()
        this.#kdf = this.#options.kdf ?? DEFAULT_KDF
        this.#salt = lib.randombytes_buf(SALT_LENGTH)
        this.#key = await this.#derive(lib, passphrase, this.#salt, this.#kdf)
        this.#entries = new Map()
        await this.#write()
      } else {
        const header = decodeHeader(file)
        const passphrase = await resolvePassphrase(this.#options.passphrase)
        options.signal?.throwIfAborted()
        const key = await this.#derive(lib, passphrase, header.salt, header)
        let plaintext: Uint8Array
        try {
          plaintext = lib.crypto_aead_xchacha20poly1305_ietf_decrypt(null, file.subarray(HEADER_LENGTH), file.subarray(0, HEADER_LENGTH), header.nonce, key)
        } catch {
          key.fill(0)
          throw new VaultWrongPassphraseError()
        }
        try {
          this.#entries = decodeEntries(plaintext)
        } finally {
          plaintext.fill(0)
        }
        this.#key = key
        this.#kdf = { opsLimit: header.opsLimit, memLimit: header.memLimit }
        this.#salt = header.salt
      }
      this.#release = release
    } catch (error) {
      this.#wipe()
      await release()
      throw error
    }
  }

  #derive(lib: typeof sodiumModule, passphrase: string, salt: Uint8Array, kdf: KdfParameters): Promise<Uint8Array> {
    return argon2id(lib, lib.crypto_aead_xchacha20poly1305_ietf_KEYBYTES, passphrase, salt, kdf.opsLimit, kdf.memLimit)
  }

  /** Seals the entries and replaces the file atomically. Writes are serialized. */
  #write(): Promise<void> {
    const run = async () => {
      const lib = await ready()
      const key = this.#key
      if (key === undefined || this.#kdf === undefined || this.#salt === undefined) throw new StorageStoppedError()
      const header = encodeHeader({ ...this.#kdf, salt: this.#salt, nonce: lib.randombytes_buf(NONCE_LENGTH) })
      const plaintext = encodeEntries(this.#entries)
      const ciphertext = lib.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, header, null, header.subarray(36, 60), key)
      plaintext.fill(0)
      await writeFileAtomically(this.#options.path, [header, ciphertext])
    }
    const next = this.#writes.then(run)
    this.#writes = next.catch(() => {})
    return next
  }

  async stop(): Promise<void> {
    await this.#writes
    this.#wipe()
    const release = this.#release
    this.#release = undefined
    await release?.()
  }

  #wipe(): void {
    this.#key?.fill(0)
    this.#key = undefined
    for (const value of this.#entries.values()) value.fill(0)
    this.#entries = new Map()
  }

  #check(): void {
    if (this.#key === undefined) throw new StorageStoppedError()
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    assertValidName(name)
    this.#check()
    return this.#entries.get(name)?.slice()
  }

  async set(name: string, value: Uint8Array): Promise<void> {
    assertValidName(name)
    assertBytes(value)
    this.#check()
    const previous = this.#entries.get(name)
    this.#entries.set(name, value.slice())
    try {
      await this.#write()
    } catch (error) {
      // The file keeps the old state; so does memory.
      if (previous === undefined) this.#entries.delete(name)
      else this.#entries.set(name, previous)
      throw error
    }
    previous?.fill(0)
  }

  async delete(name: string): Promise<boolean> {
    assertValidName(name)
    this.#check()
    const previous = this.#entries.get(name)
    if (previous === undefined) return false
    this.#entries.delete(name)
    try {
      await this.#write()
    } catch (error) {
      this.#entries.set(name, previous)
      throw error
    }
    previous.fill(0)
    return true
  }

  async has(name: string): Promise<boolean> {
    assertValidName(name)
    this.#check()
    return this.#entries.has(name)
  }

  async list(): Promise<string[]> {
    this.#check()
    return [...this.#entries.keys()].sort()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }
}
