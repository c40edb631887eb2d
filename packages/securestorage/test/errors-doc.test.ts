import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import * as api from '../src/index.js'

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
const documented = new Set([...doc.matchAll(/^\| `(ERR_[A-Z0-9_]+)` \|/gm)].map((match) => match[1]))

describe('docs/errors.md', () => {
  it('documents every code, and only those', () => {
    const codes = Object.values(api.ErrorCodes) as string[]
    expect(codes.filter((code) => !documented.has(code))).toEqual([])
    expect([...documented].filter((code) => !codes.includes(code as string))).toEqual([])
  })

  it('exports one error class per code, each recognised by isSecureStorageError', () => {
    type ErrorClass = (new (message?: string) => api.SecureStorageError) & { name: string }
    const classes = (Object.values(api) as unknown[]).filter(
      (value): value is ErrorClass => typeof value === 'function' && value.prototype instanceof api.SecureStorageError,
    )
    const codes = classes.map((ErrorClass) => new ErrorClass().code).sort()
    expect(codes).toEqual((Object.values(api.ErrorCodes) as string[]).sort())
    for (const ErrorClass of classes) {
      const error = new ErrorClass()
      expect(api.isSecureStorageError(error, error.code)).toBe(true)
      expect(error.name).toBe(ErrorClass.name)
      expect(error.message.length).toBeGreaterThan(20)
    }
    expect(api.isSecureStorageError({ code: 'ERR_VAULT_LOCKED' })).toBe(false)
  })
})
