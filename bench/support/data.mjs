/**
 * The benchmarks' data, the same bytes on every run and machine: 2,000 files of
 * 1–256 KiB in nested folders, one large file, an edit of it (100 bytes inserted near
 * the start, 1 MiB changed in the middle), and tens of thousands of files of 0–8 KiB. Bytes are an AES-256-CTR keystream keyed
 * by a seed: incompressible, never accidentally deduplicated, and fast to make.
 */
import { createCipheriv, createHash } from 'node:crypto'
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { join, relative } from 'node:path'

export const MIB = 1024 * 1024

function* keystream(seed, length) {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16))
  const zeros = Buffer.alloc(MIB)
  for (let produced = 0; produced < length; ) {
    const n = Math.min(MIB, length - produced)
    produced += n
    yield cipher.update(zeros.subarray(0, n))
  }
}

function writeGenerated(path, seed, length) {
  const fd = openSync(path, 'w')
  for (const block of keystream(seed, length)) writeSync(fd, block)
  closeSync(fd)
}

/** 2,000 files of 1–256 KiB under `dir`, in 20 × 7 folders. Returns their total size. */
export function writeSmallFiles(dir, count = 2000) {
  let rng = 42
  const next = () => (rng = (rng * 1103515245 + 12345) >>> 0) / 2 ** 32
  let bytes = 0
  for (let i = 0; i < count; i++) {
    const folder = join(dir, `dir${i % 20}`, `sub${i % 7}`)
    mkdirSync(folder, { recursive: true })
    const size = 1024 + Math.floor(next() * (256 * 1024 - 1024))
    bytes += size
    writeGenerated(join(folder, `file${i}.bin`), `small${i}`, size)
  }
  return bytes
}

/**
 * `count` files of 0–8 KiB under `dir`, 50 to a folder in two levels (`d<i>/e<j>/`), each
 * a slice of one keystream at its own offset: distinct contents, made in seconds.
 * Returns their total size.
 */
export function writeTinyFiles(dir, count, seed = 'tiny') {
  const pool = Buffer.concat([...keystream(seed, 64 * MIB)])
  let rng = 7
  // Math.imul: the plain product passes 2^53 and loses its low bits, and the sequence then
  // cycled after about 4,000 steps (50,000 files held 4,041 distinct contents).
  const next = () => (rng = (Math.imul(rng, 1103515245) + 12345) >>> 0) / 2 ** 32
  let bytes = 0
  for (let i = 0; i < count; i++) {
    const folder = join(dir, `d${Math.floor(i / 1000)}`, `e${Math.floor(i / 50) % 20}`)
    if (i % 50 === 0) mkdirSync(folder, { recursive: true })
    const size = Math.floor(next() * 8193)
    const offset = Math.floor(next() * (pool.length - size))
    bytes += size
    writeFileSync(join(folder, `t${i}.bin`), pool.subarray(offset, offset + size))
  }
  return bytes
}

export function writeBigFile(path, sizeMiB, seed = 'big') {
  writeGenerated(path, seed, sizeMiB * MIB)
}

/** The edit, streamed: 100 bytes inserted at 4 KiB, the MiB at the middle replaced. */
export function writeEditedCopy(source, target) {
  const size = statSync(source).size
  const middle = Math.floor(size / MIB / 2) * MIB
  const changed = keystream('edit', MIB).next().value
  const input = openSync(source, 'r')
  const output = openSync(target, 'w')
  const block = Buffer.alloc(MIB)
  for (let position = 0; ; ) {
    const read = readSync(input, block, 0, MIB, position)
    if (read === 0) break
    if (position === 0) {
      writeSync(output, block, 0, 4096)
      writeSync(output, Buffer.alloc(100, 7))
      writeSync(output, block, 4096, read - 4096)
    } else if (position === middle) {
      writeSync(output, changed, 0, read)
    } else {
      writeSync(output, block, 0, read)
    }
    position += read
  }
  closeSync(input)
  closeSync(output)
}

/** Names the tools keep beside the data (CloudBox state, Syncthing markers): not compared. */
const TOOL_ENTRIES = new Set(['.cloudbox', '.stfolder', '.stversions', '.stignore'])

export function fileDigest(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

/** Relative path → SHA-256 of every file under `dir`, tool entries left out. */
export function treeDigest(dir) {
  const out = new Map()
  const walk = (folder) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      if (TOOL_ENTRIES.has(entry.name)) continue
      const path = join(folder, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.isFile()) out.set(relative(dir, path), fileDigest(path))
    }
  }
  walk(dir)
  return out
}

/** Throws unless `target` holds exactly the files of `expected` (a treeDigest). */
export function assertSameTree(expected, target, who) {
  const actual = treeDigest(target)
  const missing = [...expected.keys()].filter((path) => actual.get(path) !== expected.get(path))
  const extra = [...actual.keys()].filter((path) => !expected.has(path))
  if (missing.length > 0 || extra.length > 0) {
    throw new Error(`${who}: the receiver's folder differs from the sender's (${missing.length} missing or different, e.g. ${missing.slice(0, 3).join(', ')}; ${extra.length} extra, e.g. ${extra.slice(0, 3).join(', ')})`)
  }
}
