/** Where a storage keeps its secrets. */
export type SecureStorageKind = 'keyring' | 'vault' | 'memory'

/**
 * A small store of named secrets (bytes). Every back end behaves the same; the
 * compliance tests run one suite against all of them.
 *
 * Lifecycle: `start()` before use (it unlocks, probes or creates), `stop()` after
 * (it wipes cached keys and releases locks). `await using` works too.
 */
export interface SecureStorage {
  readonly kind: SecureStorageKind
  start(options?: { signal?: AbortSignal }): Promise<void>
  stop(): Promise<void>
  /** A copy of the value, or undefined when there is no entry of that name. */
  get(name: string): Promise<Uint8Array | undefined>
  /** Stores a copy of `value`, replacing any previous value. Durable when it resolves. */
  set(name: string, value: Uint8Array): Promise<void>
  /** True when an entry was removed. */
  delete(name: string): Promise<boolean>
  has(name: string): Promise<boolean>
  /** Entry names, sorted. */
  list(): Promise<string[]>
  [Symbol.asyncDispose](): Promise<void>
}
