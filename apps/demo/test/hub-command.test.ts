import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))

describe('cloudbox hub', () => {
  it('listens, answers health checks, and stops cleanly on Ctrl-C', async () => {
    const child = spawn(process.execPath, [cli, 'hub', '--port', '0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    for (let i = 0; i < 200 && !stdout.includes('"listening"'); i++) await new Promise((resolve) => setTimeout(resolve, 25))
    const events = stdout.trim().split('\n').map((line) => JSON.parse(line) as { event: string; url: string })
    const listening = events.find((event) => event.event === 'listening') as { event: string; url: string }
    expect(listening.event).toBe('listening')
    expect(listening.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/)
    const health = await fetch(`${listening.url.replace('ws:', 'http:')}/health`)
    expect(await health.json()).toMatchObject({ status: 'ok', nodes: 0 })
    child.kill('SIGINT')
    const [code] = await once(child, 'exit')
    expect(code).toBe(130)
  })

  it('refuses a bad port with a usage error', async () => {
    const child = spawn(process.execPath, [cli, 'hub', '--port', '99999'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const [code] = await once(child, 'exit')
    expect(code).toBe(2)
    expect(stderr).toContain('--port takes 0–65535')
  })
})
