import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import * as api from '../src/index.js'

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
const rows = [...doc.matchAll(/^\| `(ERR_[A-Z0-9_]+)` \| (\d{3}) \|/gm)].map((match) => [match[1], Number(match[2])] as const)

describe('docs/errors.md', () => {
  it('documents every code with its HTTP status, and only those', () => {
    expect(Object.fromEntries(rows)).toEqual(api.HTTP_STATUS)
    expect(rows.map(([code]) => code).sort()).toEqual(Object.values(api.ErrorCodes).sort())
  })
})
