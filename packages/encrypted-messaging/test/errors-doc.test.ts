import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import * as api from '../src/index.js'

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
const documented = new Set([...doc.matchAll(/^\| `(ERR_[A-Z0-9_]+)` \|/gm)].map((match) => match[1]))

describe('docs/errors.md', () => {
  it('documents every exported code, and only those', () => {
    const exported = new Set(Object.values(api.ErrorCodes))
    expect([...exported].filter((code) => !documented.has(code))).toEqual([])
    expect([...documented].filter((code) => !exported.has(code as never))).toEqual([])
  })

  it('exports an error class per code, each carrying its code', () => {
    type ErrorClass = (new (message?: string) => api.EncryptedMessagingError) & { name: string }
    const classes = (Object.values(api) as unknown[]).filter(
      (value): value is ErrorClass => typeof value === 'function' && value.prototype instanceof api.EncryptedMessagingError,
    )
    const codes = new Set(classes.map((ErrorClass) => new ErrorClass('x').code))
    expect([...codes].sort()).toEqual(Object.values(api.ErrorCodes).sort())
    for (const ErrorClass of classes) {
      const error = new ErrorClass('x')
      expect(api.isEncryptedMessagingError(error, error.code)).toBe(true)
      expect(error.name).toBe(ErrorClass.name)
    }
    expect(api.isEncryptedMessagingError(new Error('plain'))).toBe(false)
    expect(api.isEncryptedMessagingError({ code: 'ERR_BAD_FRAME' })).toBe(false)
  })
})
