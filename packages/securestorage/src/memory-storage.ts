import { StorageStoppedError } from './errors.js'
import type { SecureStorage } from './interfaces/secure-storage.js'
import { assertBytes, assertValidName } from './names.js'

/**
 * Secrets in process memory, for tests and ephemeral nodes. Same semantics as the
 * other back ends: values are copied in and out, names validated, use before start refused.
 */
export class MemoryStorage implements SecureStorage {
  readonly kind = 'memory' as const
  readonly #entries = new Map<string, Uint8Array>()
  #started = false

  async start(): Promise<void> {
    this.#started = true
  }

  async stop(): Promise<void> {
    this.#started = false
  }

  #check(): void {
    if (!this.#started) throw new StorageStoppedError()
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
    this.#entries.get(name)?.fill(0)
    this.#entries.set(name, value.slice())
  }

  async delete(name: string): Promise<boolean> {
    assertValidName(name)
    this.#check()
    const value = this.#entries.get(name)
    value?.fill(0)
    return this.#entries.delete(name)
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
