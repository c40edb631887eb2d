#!/usr/bin/env node
/**
 * The one-way rule (ARCHITECTURE.md): a package depends only on packages below it,
 * through their published entry points. Checks every package.json and every import
 * in src/ and test/; exits non-zero on a violation.
 */
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

// `--root DIR` checks another tree (the script's own tests use fixtures).
const rootFlag = process.argv.indexOf('--root')
const root = rootFlag > 0 ? process.argv[rootFlag + 1] : join(fileURLToPath(new URL('.', import.meta.url)), '..')
// Lowest first. The router hub sits on encrypted-messaging alone; the `cloudbox` program
// (apps/demo) may use every package and also hosts the hub through router-hub's public
// API (`cloudbox hub`, issue 6). That is the one app-to-app edge, one way only: nothing
// imports demo, and router-hub never reaches above encrypted-messaging.
const layers = ['securestorage', 'encrypted-messaging', 'cloudsync', 'cloudbox', 'cloudserver']
const apps = ['router-hub', 'demo']
const allowedBelow = {
  'router-hub': ['encrypted-messaging', 'securestorage'],
  demo: [...layers, 'router-hub'],
}

const problems = []

function allowed(from) {
  const index = layers.indexOf(from)
  return index >= 0 ? layers.slice(0, index) : allowedBelow[from] ?? []
}

function* sourceFiles(dir) {
  if (!existsSync(dir)) return
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === 'dist') continue
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) yield* sourceFiles(path)
    else if (/\.(c|m)?[tj]sx?$/.test(entry)) yield path
  }
}

const importPattern = /(?:from\s+|import\s*\(\s*|require\s*\(\s*|import\s+)['"](@cloudbox\/[^'"]+|\.\.\/[^'"]*)['"]/g

for (const name of [...layers, ...apps]) {
  const dir = join(root, layers.includes(name) ? 'packages' : 'apps', name)
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const ok = allowed(name)
  for (const field of ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies']) {
    for (const dep of Object.keys(manifest[field] ?? {})) {
      if (!dep.startsWith('@cloudbox/')) continue
      const target = dep.slice('@cloudbox/'.length)
      if (!ok.includes(target)) problems.push(`${relative(root, dir)}/package.json: ${field} has ${dep}, which is not below ${name}`)
    }
  }
  for (const file of [...sourceFiles(join(dir, 'src')), ...sourceFiles(join(dir, 'test')), ...sourceFiles(join(dir, 'bench'))]) {
    const text = readFileSync(file, 'utf8')
    for (const match of text.matchAll(importPattern)) {
      const specifier = match[1]
      if (specifier.startsWith('@cloudbox/')) {
        const [, target, ...subpath] = specifier.split('/')
        if (!ok.includes(target)) problems.push(`${relative(root, file)} imports ${specifier}: ${target} is not below ${name}`)
        if (subpath[0] === 'src') problems.push(`${relative(root, file)} imports ${specifier}: use the package's entry point, not its src/`)
      } else {
        // A relative path must not climb into another package.
        const resolved = relative(root, join(file, '..', specifier))
        const ownRoot = relative(root, dir)
        if (/^(packages|apps)\//.test(resolved) && !resolved.startsWith(ownRoot + '/') && resolved !== ownRoot) {
          problems.push(`${relative(root, file)} imports ${specifier}: reach other packages by name, never by path`)
        }
      }
    }
  }
}

if (problems.length > 0) {
  console.error('One-way dependency rule broken:\n' + problems.map((p) => `- ${p}`).join('\n'))
  process.exit(1)
}
console.log(`One-way dependency rule: ${layers.length + apps.length} packages checked, no violation.`)
