import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { channelFromStream } from '@cloudbox/encrypted-messaging'
import { afterEach, describe, expect, it } from 'vitest'
import { makeEngine, removeDir, tempDir, until } from './helpers.js'

const child = fileURLToPath(new URL('./crash-child.mjs', import.meta.url))
const built = existsSync(fileURLToPath(new URL('../dist/index.js', import.meta.url)))
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

interface Receiver {
  process: ChildProcess
  port: number
  lines: Record<string, unknown>[]
}

async function startReceiver(folder: string, window: number): Promise<Receiver> {
  const process_ = spawn(process.execPath, [child, folder, String(window)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: Record<string, unknown>[] = []
  let buffered = ''
  process_.stdout?.on('data', (data: Buffer) => {
    buffered += data.toString()
    let newline
    while ((newline = buffered.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffered.slice(0, newline)) as Record<string, unknown>)
      buffered = buffered.slice(newline + 1)
    }
  })
  cleanups.push(() => void process_.kill('SIGKILL'))
  await until(() => lines.some((line) => 'port' in line), 15_000, 'the receiver to listen')
  return { process: process_, port: lines.find((line) => 'port' in line)?.port as number, lines }
}

async function dial(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  cleanups.push(() => void socket.destroy())
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  return socket
}

describe('kill -9 of a syncing process', () => {
  it('the package is built (this test runs dist/ in a child process)', () => {
    expect(built, 'run `pnpm build` (npm test does it) first').toBe(true)
  })

  it('never leaves a half-written file in place of a good one, and resumes after restart', { timeout: 90_000 }, async () => {
    const root = tempDir()
    cleanups.push(() => removeDir(root))
    const sender = makeEngine(join(root, 'a'), 'sender', { folderId: 'crash-test' })
    const v1 = randomBytes(2 * 1024 * 1024)
    writeFileSync(join(sender.folder, 'big.bin'), v1)
    await sender.start()
    cleanups.push(() => sender.stop())
    const targetFolder = join(root, 'b')

    // First the old version lands completely.
    let receiver = await startReceiver(targetFolder, 16)
    let session = sender.connect(channelFromStream(await dial(receiver.port)), { peer: 'receiver' })
    await until(() => receiver.lines.some((line) => line.file === 'big.bin'), 20_000, 'v1 to land')
    expect(readFileSync(join(targetFolder, 'big.bin')).equals(v1)).toBe(true)

    // A new version, transferred slowly (one request at a time); kill -9 midway.
    const v2 = randomBytes(24 * 1024 * 1024)
    writeFileSync(join(sender.folder, 'big.bin'), v2)
    await sender.scan()
    const partialDir = join(targetFolder, '.cloudbox', 'partial')
    receiver.process.kill('SIGKILL')
    await new Promise((resolve) => receiver.process.once('exit', resolve))
    await session.closed
    receiver = await startReceiver(targetFolder, 1)
    session = sender.connect(channelFromStream(await dial(receiver.port)), { peer: 'receiver' })
    const partialSize = () => (existsSync(partialDir) ? readdirSync(partialDir).reduce((sum, name) => sum + statSync(join(partialDir, name)).size, 0) : 0)
    await until(() => partialSize() > 4 * 1024 * 1024, 30_000, 'the transfer to be under way')
    receiver.process.kill('SIGKILL')
    await new Promise((resolve) => receiver.process.once('exit', resolve))
    await session.closed

    // The old version is intact: no half-written file replaced it.
    expect(readFileSync(join(targetFolder, 'big.bin')).equals(v1)).toBe(true)

    // Restart: the transfer resumes from the partial file and completes.
    receiver = await startReceiver(targetFolder, 16)
    sender.connect(channelFromStream(await dial(receiver.port)), { peer: 'receiver' })
    await until(() => receiver.lines.some((line) => line.file === 'big.bin'), 30_000, 'v2 to land')
    expect(readFileSync(join(targetFolder, 'big.bin')).equals(v2)).toBe(true)
    const received = receiver.lines.find((line) => line.file === 'big.bin')?.received as number
    expect(received).toBeLessThan(v2.length - 2 * 1024 * 1024)
    receiver.process.kill('SIGTERM')
    await new Promise((resolve) => receiver.process.once('exit', resolve))
  })
})
