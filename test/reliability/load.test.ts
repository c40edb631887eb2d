/**
 * Load: 1,000 devices, each paired with its own key, hold sessions through one router
 * hub (a process of its own) to one server at the same time, while some of them sync.
 * Reports the hub's memory and the error count; bounded in time.
 */
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import type { CloudBox, CloudBoxEvent } from '@cloudbox/cloudbox'
import { scratch, waitFor } from '../integration/helpers.js'
import { recordOutcome } from './support/outcomes.js'
import { folderDigest } from './support/nodes.js'

const SESSIONS = Number(process.env.CLOUDBOX_LOAD_SESSIONS ?? 1_000)
const SYNCING = 20
const PIN = '2468-1357'
let cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups = []
})

const memoryMiB = (pid: number, field: 'VmRSS' | 'VmHWM') => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024

describe('load through one hub', () => {
  it(`${SESSIONS.toLocaleString('en')} concurrent device sessions through one hub, with ${SYNCING} of them syncing`, { timeout: 300_000 }, async () => {
    const hubProcess = spawn(process.execPath, [fileURLToPath(new URL('./support/hub-process.mjs', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] })
    cleanups.push(() => void hubProcess.kill('SIGKILL'))
    const url = await new Promise<string>((resolve) => hubProcess.stdout?.once('data', (data: Buffer) => resolve((JSON.parse(data.toString()) as { url: string }).url)))
    const idleMiB = memoryMiB(hubProcess.pid as number, 'VmRSS')
    const area = await scratch()
    cleanups.push(() => area.cleanup())
    // Every device comes from one address here, as many would behind one NAT: the stranger limits are raised.
    const server = area.box({ role: 'server', hub: url, masterPin: PIN, maxSessions: SESSIONS + 24, maxPendingSessions: { perAddress: 256, total: 256 }, keepAliveMs: 10_000 })
    let serverErrors = 0
    // Once every device is connected, any disconnection at all is an error.
    let steady = false
    server.status.on((event: CloudBoxEvent) => {
      // A pairing session ends once it has paired: only a session that fails counts.
      if (event.type === 'session-error' || (event.type === 'connection' && event.state === 'disconnected' && (event.error !== undefined || steady))) serverErrors += 1
    })
    await server.start()
    await waitFor(async () => (await fetch(`${url.replace('ws', 'http')}/health`).then((r) => r.ok, () => false)), 'the hub')
    const uri = server.pairingUri()
    const devices: CloudBox[] = []
    // Stopped together (one by one would take most of the test's time).
    cleanups.push(async () => {
      for (let i = 0; i < devices.length; i += 100) await Promise.all(devices.slice(i, i + 100).map((device) => device.destroy().catch(() => {})))
    })
    let deviceErrors = 0
    const started = performance.now()
    for (let i = 0; i < SESSIONS; i += 50) {
      const batch = Array.from({ length: Math.min(50, SESSIONS - i) }, (_, j) => {
        const device = area.box({ role: 'client', name: `device-${i + j}`, sync: i + j < SYNCING, keepAliveMs: 10_000 })
        device.status.on((event: CloudBoxEvent) => {
          if (event.type === 'session-error' || event.type === 'refused' || (event.type === 'connection' && event.state === 'disconnected' && (event.error !== undefined || steady))) deviceErrors += 1
        })
        devices.push(device)
        return device
      })
      await Promise.all(batch.map(async (device) => {
        await device.start()
        await device.pair(uri, PIN)
        await device.waitConnected()
      }))
    }
    const connectSeconds = (performance.now() - started) / 1000
    steady = true
    // All of them at once, seen from the server and from the hub.
    await waitFor(async () => (await server.admin.listDevices()).filter((device) => device.online).length === SESSIONS, 'every session to show on the server', 30_000)
    const metrics = await fetch(`${url.replace('ws', 'http')}/metrics`).then((response) => response.text())
    const metric = (name: string) => Number(new RegExp(`^cloudbox_hub_${name} (\\d+)`, 'm').exec(metrics)?.[1])
    const loadedMiB = memoryMiB(hubProcess.pid as number, 'VmRSS')
    // Traffic while every session is open.
    const syncing = devices.slice(0, SYNCING)
    for (const [i, device] of syncing.entries()) writeFileSync(join(device.init.folder, `from-${i}.txt`), `device ${i} under load`)
    await waitFor(() => syncing.every((_, i) => folderDigest(server.init.folder).has(`from-${i}.txt`)), 'files from the syncing devices', 60_000)
    const peakMiB = memoryMiB(hubProcess.pid as number, 'VmHWM')
    expect(metric('routes')).toBeGreaterThanOrEqual(SESSIONS)
    expect(devices.every((device) => device.connected)).toBe(true)
    expect(deviceErrors + serverErrors).toBe(0)
    const note = `connected in ${connectSeconds.toFixed(1)} s (pairing included); hub RSS ${idleMiB.toFixed(0)} MiB idle, ${loadedMiB.toFixed(0)} MiB with ${metric('routes')} routes (${(((loadedMiB - idleMiB) * 1024) / SESSIONS).toFixed(0)} KiB per session), peak ${peakMiB.toFixed(0)} MiB; ${deviceErrors + serverErrors} errors`
    console.log(note)
    recordOutcome({ group: 'load', what: `${SESSIONS.toLocaleString('en')} concurrent device sessions through one hub`, injected: SESSIONS, survived: devices.filter((device) => device.connected).length, dataLost: 0, note })
  })
})
