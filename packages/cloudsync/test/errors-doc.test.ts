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

  it('exports one error class per code', () => {
    type ErrorClass = (new () => api.SyncError) & { name: string }
    const classes = (Object.values(api) as unknown[]).filter((value): value is ErrorClass => typeof value === 'function' && value.prototype instanceof api.SyncError)
    expect(classes.map((ErrorClass) => new ErrorClass().code).sort()).toEqual((Object.values(api.ErrorCodes) as string[]).sort())
    for (const ErrorClass of classes) expect(api.isSyncError(new ErrorClass())).toBe(true)
  })
})
