import sodium from 'libsodium-wrappers-sumo'
import { beforeAll, describe, expect, it } from 'vitest'
import { argon2id, argon2idBackend } from '../src/argon2id.js'

beforeAll(async () => {
  await sodium.ready
})

describe('Argon2id', () => {
  it('is native on the platforms with a prebuilt binary', async () => {
    if (['linux', 'darwin', 'win32'].includes(process.platform) && ['x64', 'arm64'].includes(process.arch)) expect(await argon2idBackend()).toBe('native')
  })

  // A vault made with one implementation must open with the other (a platform without the
  // native build, or an older CloudBox that used libsodium only).
  it.each([
    ['correct horse', 1, 8 * 1024 * 1024, 32],
    ['pässphrase, 日本語 and an emoji 🔑', 2, 8 * 1024 * 1024, 32],
    ['', 3, 16 * 1024 * 1024, 32],
    ['longer output', 1, 8 * 1024 * 1024 + 512, 64],
  ])('gives libsodium’s bytes for %j (ops %i, mem %i, %i bytes)', async (passphrase, ops, mem, length) => {
    const salt = new Uint8Array(16).map((_, i) => i * 7 + ops)
    const native = await argon2id(sodium, length, passphrase, salt, ops, mem)
    const wasm = await argon2id(sodium, length, passphrase, salt, ops, mem, 'libsodium')
    expect(native).toHaveLength(length)
    expect(Buffer.from(native).toString('hex')).toBe(Buffer.from(wasm).toString('hex'))
    // Another salt, another key.
    const other = await argon2id(sodium, length, passphrase, salt.map((byte) => byte ^ 1), ops, mem)
    expect(Buffer.from(other).equals(Buffer.from(native))).toBe(false)
  })
})
