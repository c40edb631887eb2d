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

  it('gives every error the shared marker and its own, so lower-layer codes are told apart', () => {
    for (const code of Object.values(api.ErrorCodes)) {
      const error = new api.CloudBoxError(code, 'x')
      expect(api.isCloudBoxError(error, code)).toBe(true)
      expect((error as unknown as Record<symbol, unknown>)[Symbol.for('cloudbox.error')]).toBe(true)
    }
    expect(api.isCloudBoxError(Object.assign(new Error('x'), { code: 'ERR_TIMEOUT' }))).toBe(false)
  })
})
