/**
 * Every package's README points at a runnable example in its `examples/` folder; each one
 * runs to the end against the built packages, as a reader would run it.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const published = readdirSync(join(root, 'packages')).map((name) => `packages/${name}`)
const withExamples = [...published, 'apps/demo']

describe('runnable examples', () => {
  it.each(withExamples)('%s has one, and its README names it', (dir) => {
    const examples = existsSync(join(root, dir, 'examples')) ? readdirSync(join(root, dir, 'examples')).filter((name) => name.endsWith('.mjs')) : []
    expect(examples.length, `${dir}/examples/*.mjs`).toBeGreaterThan(0)
    const readme = readFileSync(join(root, dir, 'README.md'), 'utf8')
    for (const example of examples) expect(readme, `${dir}/README.md mentions examples/${example}`).toContain(`examples/${example}`)
  })

  const all = withExamples.flatMap((dir) =>
    existsSync(join(root, dir, 'examples')) ? readdirSync(join(root, dir, 'examples')).filter((name) => name.endsWith('.mjs')).map((name) => [dir, name] as const) : [],
  )
  it.each(all)('%s/examples/%s runs to the end', { timeout: 90_000 }, (dir, name) => {
    const result = spawnSync(process.execPath, [join('examples', name)], { cwd: join(root, dir), encoding: 'utf8', timeout: 80_000 })
    expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0)
    expect(result.stdout.trim().length).toBeGreaterThan(0)
    // No example prints a check that failed.
    expect(result.stdout).not.toMatch(/\b(false|NO)\b/)
  })
})
