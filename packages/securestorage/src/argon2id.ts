import type sodiumModule from 'libsodium-wrappers-sumo'

type Native = typeof import('@node-rs/argon2')

let native: Promise<Native | undefined> | undefined
/** The native build where one exists for this platform; undefined where it does not load. */
const loadNative = (): Promise<Native | undefined> => (native ??= import('@node-rs/argon2').catch(() => undefined))

/** Which implementation derives keys here (for tests and diagnostics). */
export async function argon2idBackend(): Promise<'native' | 'libsodium'> {
  return (await loadNative()) === undefined ? 'libsodium' : 'native'
}

/**
 * Argon2id v1.3, one lane, `length` bytes of raw output: the same bytes from either
 * implementation. The native one (@node-rs/argon2, off the event loop) takes 70–110 ms for
 * the vault's parameters here against libsodium's WebAssembly 320–490 ms, and frees its
 * 64 MiB when done, where a WebAssembly memory only grows and stays for the process's life.
 * `memLimit` is in bytes, as libsodium takes it (whole KiB count).
 */
export async function argon2id(lib: typeof sodiumModule, length: number, passphrase: string, salt: Uint8Array, opsLimit: number, memLimit: number, backend: 'auto' | 'libsodium' = 'auto'): Promise<Uint8Array> {
  const fast = backend === 'auto' ? await loadNative() : undefined
  if (fast !== undefined) {
    const key = await fast.hashRaw(Buffer.from(passphrase, 'utf8'), {
      salt,
      timeCost: opsLimit,
      memoryCost: Math.floor(memLimit / 1024),
      parallelism: 1,
      outputLen: length,
      // The declarations are const enums, which this build cannot read: Argon2id, v1.3.
      algorithm: 2,
      version: 1,
    })
    const out = new Uint8Array(key)
    key.fill(0)
    return out
  }
  return lib.crypto_pwhash(length, passphrase, salt, opsLimit, memLimit, lib.crypto_pwhash_ALG_ARGON2ID13)
}
