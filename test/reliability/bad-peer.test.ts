/**
 * A peer that deletes everything, and one that overwrites everything (a mistake, a
 * ransomware-encrypted laptop): the changes reach the server and every device, as sync
 * should make them, and `cloudbox restore` brings every file back, byte for byte, on
 * every device. Real `cloudbox` processes: a server, the bad laptop, a desktop.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { noise } from '../integration/helpers.js'
import { recordOutcome } from './support/outcomes.js'
import { folderDigest, lostFiles, tempRoot } from './support/nodes.js'

const cli = fileURLToPath(new URL('../../apps/demo/dist/cli.js', import.meta.url))
const PIN = '2468-1357'
const env = (): NodeJS.ProcessEnv => ({ ...process.env, CLOUDBOX_HOME: '', NO_COLOR: '1', CLOUDBOX_PASSPHRASE: 'correct horse battery staple', DBUS_SESSION_BUS_ADDRESS: '' })

let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

function run(args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], { env: env(), encoding: 'utf8', timeout: 90_000 })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

function json(args: string[]): Record<string, unknown> {
  const result = run([...args, '--json'])
  expect(result.status, `${args.join(' ')}: ${result.stderr}${result.stdout}`).toBe(0)
  const last = result.stdout.trim().split('\n').at(-1) as string
  try {
    return JSON.parse(last) as Record<string, unknown>
  } catch {
    throw new Error(`${args.join(' ')} printed no JSON result: ${result.stdout.slice(-2000)}`)
  }
}

/** `cloudbox serve`, until it prints its pairing URI; stopped (Ctrl-C) after the test. */
async function serve(folder: string, home: string): Promise<string> {
  const child: ChildProcess = spawn(process.execPath, [cli, 'serve', folder, '--home', home, '--listen', '127.0.0.1:0', '--pin', PIN, '--json'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] })
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGINT')
      }),
  )
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  return new Promise((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 30_000)
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      for (const line of buffered.split('\n').slice(0, -1)) {
        const parsed = JSON.parse(line) as { event?: string; uri?: string }
        if (parsed.event === 'serving' && parsed.uri !== undefined) {
          clearTimeout(timer)
          resolve(parsed.uri)
        }
      }
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1)
    })
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)))
  })
}

/** A server with a cloud of files in folders, and two paired devices in sync with it. */
async function cloudWithTwoDevices() {
  const root = tempRoot('cloudbox-bad-peer-', cleanups)
  const homes = { server: join(root, 'server-home'), laptop: join(root, 'laptop-home'), desktop: join(root, 'desktop-home') }
  for (const home of Object.values(homes)) json(['init', '--home', home, '--storage', 'vault'])
  const folders = { server: join(root, 'cloud'), laptop: join(root, 'laptop'), desktop: join(root, 'desktop') }
  mkdirSync(join(folders.server, 'photos', '2026'), { recursive: true })
  mkdirSync(join(folders.server, 'docs'))
  for (let i = 0; i < 12; i++) writeFileSync(join(folders.server, 'photos', '2026', `img-${i}.jpg`), noise(20_000 + i * 9_000, i))
  for (let i = 0; i < 8; i++) writeFileSync(join(folders.server, 'docs', `note-${i}.txt`), `note ${i}\n`.repeat(50 + i))
  writeFileSync(join(folders.server, 'big.bin'), noise(3 * 1024 * 1024, 99))
  const original = folderDigest(folders.server)
  const uri = await serve(folders.server, homes.server)
  for (const device of ['laptop', 'desktop'] as const) {
    json(['pair', uri, '--pin', PIN, '--home', homes[device], '--name', device])
    json(['sync', folders[device], '--once', '--home', homes[device]])
    expect(lostFiles(original, folderDigest(folders[device]))).toEqual([])
  }
  return { homes, folders, original }
}

const sameFiles = (expected: Map<string, string>, folder: string) => {
  const actual = folderDigest(folder)
  return lostFiles(expected, actual).length === 0 && actual.size === expected.size
}

describe('a bad peer, undone with cloudbox restore', () => {
  it('peer deletes everything: the deletions reach every device, and every file comes back with cloudbox restore', { timeout: 180_000 }, async () => {
    const { homes, folders, original } = await cloudWithTwoDevices()
    // The laptop deletes the whole folder's content and confirms it past the mass-delete guard.
    for (const entry of readdirSync(folders.laptop)) if (entry !== '.cloudbox') spawnSync('rm', ['-rf', join(folders.laptop, entry)])
    expect(run(['sync', folders.laptop, '--once', '--home', homes.laptop]).status).toBe(4)
    json(['sync', folders.laptop, '--once', '--confirm-deletes', '--home', homes.laptop])
    json(['sync', folders.desktop, '--once', '--home', homes.desktop])
    for (const folder of [folders.server, folders.desktop]) expect(folderDigest(folder).size, `${folder} is emptied`).toBe(0)

    // What was deleted is listed on the server, each with the device it came from.
    const listed = json(['versions', folders.server]) as { versions: { path: string; reason: string; id: string; size: number; device: string }[] }
    expect(listed.versions.map((version) => version.path).sort()).toEqual([...original.keys()].sort())
    expect(listed.versions.every((version) => version.reason === 'deleted')).toBe(true)
    const one = run(['versions', join(folders.server, 'docs', 'note-3.txt')])
    expect(one.status).toBe(0)
    expect(one.stdout).toContain('note-3.txt')
    expect(one.stdout).toContain('deleted')

    // One restore on the server, while it runs: every file back, and on to every device.
    const restored = json(['restore', folders.server]) as { restored: unknown[] }
    expect(restored.restored).toHaveLength(original.size)
    expect(sameFiles(original, folders.server)).toBe(true)
    // The running server picks the restored files up through its watcher; a device that
    // asks before it has may find nothing new yet, and asks again.
    for (const device of ['laptop', 'desktop'] as const) {
      for (let attempt = 0; attempt < 10 && !sameFiles(original, folders[device]); attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 500))
        json(['sync', folders[device], '--once', '--home', homes[device]])
      }
    }
    const lost = [folders.laptop, folders.desktop].flatMap((folder) => lostFiles(original, folderDigest(folder)))
    recordOutcome({ group: 'faults', what: 'a peer deletes every file; cloudbox restore on the server', injected: original.size, survived: original.size - lost.length, dataLost: lost.length })
    expect(lost).toEqual([])
  })

  it('peer overwrites everything: the new contents reach every device, and cloudbox restore on a device brings the old ones back everywhere', { timeout: 180_000 }, async () => {
    const { homes, folders, original } = await cloudWithTwoDevices()
    // The laptop overwrites every file (encrypted by ransomware, say) and syncs.
    for (const path of original.keys()) writeFileSync(join(folders.laptop, path), noise(4_096, path.length))
    json(['sync', folders.laptop, '--once', '--home', homes.laptop])
    json(['sync', folders.desktop, '--once', '--home', homes.desktop])
    expect(lostFiles(original, folderDigest(folders.desktop))).toHaveLength(original.size)

    // One file first, to a place outside the folder: the folder is left as it is.
    const out = join(folders.desktop, '..', 'rescued-note.txt')
    const one = json(['restore', join(folders.desktop, 'docs', 'note-1.txt'), '-o', out]) as { restored: { to: string }[] }
    expect(one.restored[0]!.to).toBe(out)
    expect(readFileSync(out, 'utf8')).toBe(`note 1\n`.repeat(51))
    expect(lostFiles(original, folderDigest(folders.desktop))).toHaveLength(original.size)
    // A version named by its ID, from `versions --json`.
    const versions = json(['versions', join(folders.desktop, 'big.bin')]) as { versions: { id: string; reason: string }[] }
    expect(versions.versions).toHaveLength(1)
    json(['restore', join(folders.desktop, 'big.bin'), '--version', versions.versions[0]!.id])
    // Then the rest: the whole folder, on the desktop, and sync takes it to the server and the laptop.
    json(['restore', folders.desktop])
    expect(sameFiles(original, folders.desktop)).toBe(true)
    json(['sync', folders.desktop, '--once', '--home', homes.desktop])
    json(['sync', folders.laptop, '--once', '--home', homes.laptop])
    const lost = [folders.server, folders.laptop].flatMap((folder) => lostFiles(original, folderDigest(folder)))
    recordOutcome({ group: 'faults', what: 'a peer overwrites every file; cloudbox restore on another device', injected: original.size, survived: original.size - lost.length, dataLost: lost.length })
    expect(lost).toEqual([])
    // The ransomware's versions are kept too, on the laptop, so nothing is lost either way.
    expect((json(['versions', folders.laptop]) as { versions: unknown[] }).versions.length).toBeGreaterThanOrEqual(original.size)

    // Mistakes are refused with what to do.
    const outside = run(['versions', join(folders.desktop, '..')])
    expect(outside.status).toBe(1)
    expect(outside.stderr).toContain('ERR_NOT_SYNCED')
    const unknown = run(['restore', join(folders.desktop, 'big.bin'), '--version', '20200101-000000-dead'])
    expect(unknown.status).toBe(1)
    expect(unknown.stderr).toContain('ERR_VERSION_NOT_FOUND')
    const exists = run(['restore', join(folders.desktop, 'docs', 'note-1.txt'), '-o', out])
    expect(exists.stderr).toContain('ERR_OUTPUT_EXISTS')

    // The policy is the folder's choice: simple:1 keeps the newest only, off keeps none.
    const bad = run(['sync', folders.desktop, '--once', '--versions', 'forever', '--home', homes.desktop])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain('ERR_USAGE')
    const kept = (path: string) => (json(['versions', join(folders.desktop, path)]) as { versions: { size: number }[] }).versions
    for (const round of [1, 2, 3]) {
      writeFileSync(join(folders.laptop, 'docs', 'note-2.txt'), `round ${round}\n`)
      json(['sync', folders.laptop, '--once', '--home', homes.laptop])
      json(['sync', folders.desktop, '--once', '--versions', 'simple:1', '--home', homes.desktop])
    }
    expect(readFileSync(join(folders.desktop, 'docs', 'note-2.txt'), 'utf8')).toBe('round 3\n')
    expect(kept('docs/note-2.txt')).toMatchObject([{ size: 'round 2\n'.length }])
    const before = kept('docs/note-4.txt').length
    writeFileSync(join(folders.laptop, 'docs', 'note-4.txt'), 'not kept\n')
    json(['sync', folders.laptop, '--once', '--home', homes.laptop])
    json(['sync', folders.desktop, '--once', '--versions', 'off', '--home', homes.desktop])
    expect(readFileSync(join(folders.desktop, 'docs', 'note-4.txt'), 'utf8')).toBe('not kept\n')
    expect(kept('docs/note-4.txt')).toHaveLength(before)
  })
})
