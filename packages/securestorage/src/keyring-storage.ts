import { randomBytes } from 'node:crypto'
import { AsyncEntry, type LinuxStore } from '@napi-rs/keyring'
import { KeyringEntryInvalidError, KeyringRefusedError, KeyringUnavailableError, SecureStorageError, StorageStoppedError } from './errors.js'
import type { SecureStorage } from './interfaces/secure-storage.js'
import { assertBytes, assertValidName } from './names.js'

export interface KeyringStorageOptions {
  /** The keyring service name: one per application and home, e.g. `cloudbox:<id>`. */
  readonly service: string
  /**
   * Linux only: pin a credential store. Default: the library's choice (Secret Service,
   * falling back to the kernel keyring).
   */
  readonly store?: LinuxStore
  /** How long start() waits for the keyring to answer its probe (default 10 s). */
  readonly probeTimeoutMs?: number
}

// Entries are stored under account names with these prefixes; the index (the list of
// names) is an entry too, because not every store can enumerate a service's entries.
const ENTRY_PREFIX = 'entry:'
const INDEX_ACCOUNT = 'index'
const PROBE_ACCOUNT = 'probe'
// Every stored value starts with this byte: some stores (the kernel keyring) refuse
// empty secrets, and it leaves room for a future encoding.
const VALUE_FORMAT = 0x01

function encodeValue(value: Uint8Array): Uint8Array {
  const out = new Uint8Array(value.length + 1)
  out[0] = VALUE_FORMAT
  out.set(value, 1)
  return out
}

function decodeValue(raw: number[], name: string): Uint8Array {
  if (raw[0] !== VALUE_FORMAT) throw new KeyringEntryInvalidError(`The keyring entry "${name}" was not written by CloudBox (or by a newer version); remove it or update CloudBox.`)
  return Uint8Array.from(raw.slice(1))
}

/**
 * Sorts a failure of the OS keyring into "refused" (it exists but said no: locked,
 * prompt dismissed) or "unavailable" (nothing to talk to). Internal; exported for tests.
 */
export function classifyKeyringError(error: unknown): SecureStorageError {
  if (error instanceof SecureStorageError) return error
  const text = error instanceof Error ? `${error.message} ${String((error as { cause?: unknown }).cause ?? '')}` : String(error)
  if (/\block(ed)?\b|prompt|dismiss|cancel|refus|not allowed|permission denied|user interaction/i.test(text)) {
    return new KeyringRefusedError(undefined, { cause: error })
  }
  return new KeyringUnavailableError(`No OS keyring is reachable from this process (${text.trim().slice(0, 160)}). Use the encrypted vault file instead.`, { cause: error })
}

/**
 * Secrets in the OS keyring (macOS Keychain, Windows Credential Manager, Secret Service
 * or the kernel keyring on Linux) through `@napi-rs/keyring`. start() proves the keyring
 * works with a write/read/delete probe, so failures surface before any real secret is
 * entrusted to it.
 */
export class KeyringStorage implements SecureStorage {
  readonly kind = 'keyring' as const
  readonly #options: KeyringStorageOptions
  #started = false
  // Serializes index updates within this process.
  #queue: Promise<unknown> = Promise.resolve()

  constructor(options: KeyringStorageOptions) {
    if (typeof options?.service !== 'string' || options.service.length === 0) throw new TypeError('A keyring service name is required')
    this.#options = options
  }

  #entry(account: string): AsyncEntry {
    try {
      return new AsyncEntry(this.#options.service, account, this.#options.store === undefined ? undefined : { linux: { store: this.#options.store } })
    } catch (error) {
      throw classifyKeyringError(error)
    }
  }

  async #call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw classifyKeyringError(error)
    }
  }

  async start(options: { signal?: AbortSignal } = {}): Promise<void> {
    const timeout = AbortSignal.timeout(this.#options.probeTimeoutMs ?? 10_000)
    const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
    const probe = this.#entry(PROBE_ACCOUNT)
    const value = new Uint8Array(randomBytes(16))
    await this.#call(async () => {
      try {
        await probe.setSecret(value, signal)
        const read = await probe.getSecret(signal)
        if (read === null || Buffer.compare(Buffer.from(read), Buffer.from(value)) !== 0) {
          throw new KeyringUnavailableError('The OS keyring did not return what was stored in it; it cannot be trusted with secrets. Use the encrypted vault file instead.')
        }
        await probe.deleteCredential(signal)
      } catch (error) {
        if (timeout.aborted && !(options.signal?.aborted ?? false)) {
          throw new KeyringUnavailableError('The OS keyring did not answer in time (is an unlock prompt waiting?). Use the encrypted vault file instead.', { cause: error })
        }
        if (options.signal?.aborted) throw options.signal.reason
        throw error
      }
    })
    this.#started = true
  }

  async stop(): Promise<void> {
    await this.#queue.catch(() => {})
    this.#started = false
  }

  #check(): void {
    if (!this.#started) throw new StorageStoppedError()
  }

  async #readIndex(): Promise<Set<string>> {
    const raw = await this.#call(() => this.#entry(INDEX_ACCOUNT).getSecret())
    if (raw === null) return new Set()
    try {
      const names: unknown = JSON.parse(Buffer.from(raw).toString('utf8'))
      return new Set(Array.isArray(names) ? names.filter((name): name is string => typeof name === 'string') : [])
    } catch {
      // A damaged index loses only the listing, never a secret; it is rebuilt on the next write.
      return new Set()
    }
  }

  #updateIndex(change: (names: Set<string>) => void): Promise<void> {
    const next = this.#queue.then(async () => {
      const names = await this.#readIndex()
      change(names)
      await this.#call(() => this.#entry(INDEX_ACCOUNT).setSecret(Buffer.from(JSON.stringify([...names].sort()), 'utf8')))
    })
    this.#queue = next.catch(() => {})
    return next
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    assertValidName(name)
    this.#check()
    const raw = await this.#call(() => this.#entry(ENTRY_PREFIX + name).getSecret())
    return raw === null ? undefined : decodeValue(raw, name)
  }

  async set(name: string, value: Uint8Array): Promise<void> {
    assertValidName(name)
    assertBytes(value)
    this.#check()
    const encoded = encodeValue(value)
    try {
      await this.#call(() => this.#entry(ENTRY_PREFIX + name).setSecret(encoded))
    } finally {
      encoded.fill(0)
    }
    await this.#updateIndex((names) => names.add(name))
  }

  async delete(name: string): Promise<boolean> {
    assertValidName(name)
    this.#check()
    const deleted = await this.#call(() => this.#entry(ENTRY_PREFIX + name).deleteCredential())
    await this.#updateIndex((names) => names.delete(name))
    return deleted
  }

  async has(name: string): Promise<boolean> {
    return (await this.get(name)) !== undefined
  }

  async list(): Promise<string[]> {
    this.#check()
    await this.#queue
    return [...(await this.#readIndex())].sort()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }
}
