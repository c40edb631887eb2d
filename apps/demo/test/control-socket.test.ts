/**
 * The control socket takes whatever a local process writes: garbage, half lines, a
 * line over the limit, a reset mid-line, and calls whose answers cannot be written as
 * JSON. Each gets an error answer or a closed socket; the server goes on answering.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { callControl, controlSocketPath, serveControl } from '../src/server/control-socket.js'

let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

function send(path: string, bytes: string | Buffer, reset = false): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection(path)
    let answer = ''
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(answer)
    }
    const timer = setTimeout(done, 500)
    socket.on('error', done)
    socket.on('close', done)
    socket.on('data', (data: Buffer) => {
      answer += data.toString()
      if (answer.includes('\n')) done()
    })
    socket.on('connect', () => {
      socket.write(bytes)
      if (reset) socket.destroy()
    })
  })
}

it('answers garbage with an error line, drops over-long lines, survives resets and unwritable answers', async () => {
  const home = mkdtempSync(join(tmpdir(), 'cloudbox-control-'))
  cleanups.push(() => rmSync(home, { recursive: true, force: true }))
  const control = await serveControl(home, async ({ op }) => {
    if (op === 'bigint') return { value: 10n }
    if (op === 'throw-nothing') throw undefined
    if (op === 'throw-null') throw null
    return { op }
  })
  cleanups.push(() => control.close())
  const path = controlSocketPath(home)

  for (const garbage of ['not json\n', 'null\n', '[]\n', '{"op":1,"args":[]}\n', '{"op":"x"}\n', '\u0000\u00ff\n']) {
    expect(JSON.parse(await send(path, garbage)).error.code, garbage).toBe('ERR_BAD_REQUEST')
  }
  expect(await send(path, 'x'.repeat(1024 * 1024 + 10))).toBe('')
  await send(path, '{"op":"status","ar', true)
  expect(JSON.parse(await send(path, '{"op":"bigint","args":[]}\n')).error.code).toBe('ERR_INTERNAL')
  expect(JSON.parse(await send(path, '{"op":"throw-nothing","args":[]}\n')).error.code).toBe('ERR_INTERNAL')
  expect(JSON.parse(await send(path, '{"op":"throw-null","args":[]}\n')).error.code).toBe('ERR_INTERNAL')
  // Still answering.
  expect(await callControl(home, 'status')).toEqual({ op: 'status' })
})
