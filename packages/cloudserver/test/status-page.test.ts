import { randomBytes } from 'node:crypto'
import { existsSync, rmSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import sharp from 'sharp'
import { chromium, type Browser as Chromium } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudServer, CloudServerClient } from '../src/index.js'

let root: string
let box: CloudBox
let server: CloudServer
let device: CloudBox
let deviceIdentity: Identity
let page: string

const externalAddress = Object.values(networkInterfaces())
  .flat()
  .find((each) => each !== undefined && each.family === 'IPv4' && !each.internal)?.address

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cloudserver-status-'))
  await mkdir(join(root, 'cloud'))
  await mkdir(join(root, 'device'))
  box = new CloudBox({ role: 'server', folder: join(root, 'cloud'), name: 'Status test', listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357' }, { identity: Identity.generate().identity })
  await box.start()
  // A wildcard address, so the test can also knock from a non-loopback address.
  server = new CloudServer({ host: '0.0.0.0', port: 0, statusPage: true }, { box })
  await server.start()
  page = server.statusUrl!
  deviceIdentity = Identity.generate().identity
  device = new CloudBox({ role: 'client', folder: join(root, 'device'), name: 'Laptop', keepAliveMs: 2_000 }, { identity: deviceIdentity })
  await device.start()
  await device.pair(box.pairingUri(), '2468-1357')
})

afterAll(async () => {
  await server?.stop()
  await device?.destroy()
  await box?.destroy()
  await rm(root, { recursive: true, force: true })
})

describe('the status page', () => {
  it('is served at a tokened loopback URL, with headers that keep the token in and outside code out', async () => {
    expect(page).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/status\/[A-Za-z0-9_-]{32}\/$/)
    const response = await fetch(page)
    expect(response.status).toBe(200)
    expect(await response.text()).toContain('<img id="qr" src="qr.svg"')
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'")
    expect(response.headers.get('referrer-policy')).toBe('no-referrer')
    expect(response.headers.get('x-frame-options')).toBe('DENY')
    const qr = await fetch(new URL('qr.svg', page))
    expect(qr.headers.get('content-type')).toBe('image/svg+xml')
    expect(await qr.text()).toContain('<svg')
    const state = (await (await fetch(new URL('state', page))).json()) as { cloud: { id: string; uri: string }; devices: { id: string; label: string }[] }
    expect(state.cloud.id).toBe(box.id)
    expect(state.cloud.uri).toBe(box.pairingUri())
    expect(state.devices.map((each) => each.id)).toContain(deviceIdentity.publicId)
  })

  it('answers 404 without the right token, for every route', async () => {
    const token = new URL(page).pathname.split('/')[2]!
    const origin = new URL(page).origin
    const wrong = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A')
    for (const path of ['/status/', '/status', `/status/${wrong}/`, `/status/${wrong}/state`, `/status/${wrong}/qr.svg`, `/status/${token.slice(0, 8)}/state`, `/status/${token}x/state`]) {
      const response = await fetch(origin + path)
      expect([path, response.status]).toEqual([path, 404])
    }
    // Thumbnails only for images the page lists: no probing of other paths.
    for (const path of ['../../etc/passwd', '.cloudbox/cloudbox.json', 'nothing.png']) {
      expect((await fetch(new URL(`thumbnail?path=${encodeURIComponent(path)}`, page))).status).toBe(404)
    }
  })

  it.skipIf(externalAddress === undefined)('answers 404 to a caller that is not on loopback, token or not', async () => {
    const url = new URL(page)
    url.hostname = externalAddress!
    expect((await fetch(url)).status).toBe(404)
    expect((await fetch(new URL('state', url))).status).toBe(404)
  })

  it('refuses the live feed to another origin and to a page that talks back', async () => {
    const live = page.replace(/^http/, 'ws') + 'live'
    const refused = await new Promise<number>((resolve) => {
      const socket = new WebSocket(live, { origin: 'http://evil.example' })
      socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0))
      socket.on('open', () => resolve(101))
    })
    expect(refused).toBe(403)
    const socket = new WebSocket(live, { origin: new URL(page).origin })
    const first = await new Promise<{ type: string; state: { cloud: { id: string } } }>((resolve) => socket.once('message', (data) => resolve(JSON.parse(String(data)))))
    expect(first.type).toBe('snapshot')
    expect(first.state.cloud.id).toBe(box.id)
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)))
    socket.send('hello')
    expect(await closed).toBe(1008)
  })

  it('takes actions only from its own page: the action header and its own origin, or 403', async () => {
    const origin = new URL(page).origin
    const restore = new URL('versions/20260101-000000-abcd/restore', page)
    expect((await fetch(restore, { method: 'POST', headers: { origin } })).status).toBe(403)
    expect((await fetch(restore, { method: 'POST', headers: { origin: 'http://evil.example', 'x-cloudbox-action': '1' } })).status).toBe(403)
    expect((await fetch(restore, { method: 'POST', headers: { 'x-cloudbox-action': '1' } })).status).toBe(403)
    const token = new URL(page).pathname.split('/')[2]!
    // One character off (never the same one: a token can end in any letter).
    const wrong = token.slice(0, -1) + (token.endsWith('x') ? 'y' : 'x')
    expect((await fetch(`${origin}/status/${wrong}/held/confirm`, { method: 'POST', headers: { origin, 'x-cloudbox-action': '1' } })).status).toBe(404)
    const unknown = await fetch(restore, { method: 'POST', headers: { origin, 'x-cloudbox-action': '1' } })
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('ERR_VERSION_NOT_FOUND')
    const bad = await fetch(new URL('versions/..%2F..%2Fetc%2Fpasswd/restore', page), { method: 'POST', headers: { origin, 'x-cloudbox-action': '1' } })
    expect(bad.status).toBe(404)
  })

  it('refuses options that would put it off loopback or make the token guessable', async () => {
    await expect(new CloudServer({ host: '192.0.2.10', statusPage: true }, { box }).start()).rejects.toThrow(/loopback/)
    await expect(new CloudServer({ statusPage: { token: 'short' } }, { box }).start()).rejects.toThrow(/16 characters/)
  })
})

// What page-side checks touch (this project has no DOM types; the page's CSP forbids
// evaluating strings, so checks are functions).
interface PageElement {
  textContent: string | null
  alt: string
  naturalWidth?: number
}
interface Browser {
  document: { getElementById(id: string): PageElement | null; querySelectorAll(selector: string): ArrayLike<PageElement> }
  cloudboxStatus: { progressEvents: number }
}
const listed = (text: string) => ((globalThis as unknown as Browser).document.getElementById('transfer-list')!.textContent ?? '').includes(text)

describe('the status page in headless Chromium', () => {
  let browser: Chromium
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
  })
  afterAll(async () => {
    await browser?.close()
  })

  it('shows the QR code and devices, then live progress, transfers and thumbnails as a device syncs', { timeout: 90_000 }, async () => {
    const tab = await browser.newPage({ viewport: { width: 1100, height: 1000 } })
    const problems: string[] = []
    tab.on('pageerror', (error) => problems.push(error.message))
    tab.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text())
    })
    tab.on('response', (response) => {
      if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`)
    })
    // A paired device chooses its own label: the page must show it as text.
    const other = new CloudBox({ role: 'client', folder: join(root, 'other'), name: '<img id=injected src=x>' }, { identity: Identity.generate().identity })
    await mkdir(join(root, 'other'))
    await other.start()
    await other.pair(box.pairingUri(), '2468-1357')
    await other.destroy()
    await tab.goto(page)
    await tab.waitForFunction(() => (globalThis as unknown as Browser).document.getElementById('qr')!.naturalWidth! > 0)
    await tab.waitForFunction(() => (globalThis as unknown as Browser).document.getElementById('feed')!.textContent === 'live')
    await tab.waitForSelector(`tr[data-device="${deviceIdentity.publicId}"]`)
    expect(await tab.textContent('#device-rows')).toContain('Laptop')
    expect(await tab.textContent('#device-rows')).toContain('<img id=injected src=x>')
    expect(await tab.textContent('#cloud-name')).toBe('Status test')

    // A file big enough to take a while, an image, and a name that is HTML.
    const big = join(root, 'big.bin')
    await writeFile(big, randomBytes(64 * 1024 * 1024))
    await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 200, g: 80, b: 20 } } }).jpeg().toFile(join(root, 'device', 'sunset.jpg'))
    await writeFile(join(root, 'device', 'Tom &amp; Jerry.txt'), 'a file name is text, not markup')
    await copyFile(big, join(root, 'device', 'big.bin'))

    await tab.waitForFunction(() => (globalThis as unknown as Browser).cloudboxStatus.progressEvents > 0, undefined, { timeout: 60_000 })
    // The small files may be announced (and shown) before the large one: wait for its progress.
    await tab.waitForFunction(() => / of [\d.]+ MiB/.test((globalThis as unknown as Browser).document.getElementById('sync-detail')!.textContent ?? ''), undefined, { timeout: 60_000 })
    expect(await tab.textContent('#sync-detail')).toMatch(/^[\d.]+ (B|KiB|MiB) of [\d.]+ (KiB|MiB) · \d+\/\d+ files · [\d.]+ (B|KiB|MiB|GiB)\/s/)
    expect(Number(await tab.getAttribute('#sync-progress', 'max'))).toBeGreaterThan(0)
    await tab.waitForFunction(listed, '↓ big.bin', { timeout: 60_000 })
    await tab.waitForFunction(() => Array.from((globalThis as unknown as Browser).document.querySelectorAll('#thumbnails img')).some((img) => img.alt === 'sunset.jpg' && img.naturalWidth! > 0), undefined, { timeout: 30_000 })
    await tab.waitForFunction(listed, 'Tom &amp; Jerry.txt', { timeout: 30_000 })
    expect(await tab.$('#injected')).toBeNull()
    expect(await tab.textContent('#storage-used')).toMatch(/MiB · 3 files/)

    const screenshot = await tab.screenshot({ fullPage: true })
    expect(screenshot.subarray(1, 4).toString()).toBe('PNG')
    // `CLOUDBOX_SCREENSHOT=path` keeps the picture (the README's one is made this way).
    if (process.env.CLOUDBOX_SCREENSHOT) await writeFile(process.env.CLOUDBOX_SCREENSHOT, screenshot)
    expect(problems).toEqual([])
    await tab.close()
  })

  it('lists what a device deleted among the kept versions and restores it with a click; held deletions come back with one button, or go everywhere with the other', { timeout: 90_000 }, async () => {
    const tab = await browser.newPage({ viewport: { width: 1100, height: 1400 } })
    const problems: string[] = []
    tab.on('pageerror', (error) => problems.push(error.message))
    await tab.goto(page)
    await tab.waitForFunction(() => (globalThis as unknown as Browser).document.getElementById('feed')!.textContent === 'live')
    const onServer = (path: string) => readFile(join(root, 'cloud', path), 'utf8').catch(() => undefined)
    const until = async (check: () => Promise<boolean>, what: string) => {
      const deadline = Date.now() + 30_000
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    await writeFile(join(root, 'device', 'keep-me.txt'), 'precious words')
    await until(async () => (await onServer('keep-me.txt')) === 'precious words', 'keep-me.txt on the server')
    await rm(join(root, 'device', 'keep-me.txt'))
    await until(async () => (await onServer('keep-me.txt')) === undefined, 'the deletion on the server')
    const row = await tab.waitForSelector('#version-rows tr:has-text("keep-me.txt")', { timeout: 30_000 })
    expect(await row.textContent()).toContain('deleted')
    // A locator, not the handle: each snapshot re-renders the rows, and a locator finds the row again.
    await tab.locator('#version-rows tr:has-text("keep-me.txt") button').first().click()
    await tab.waitForFunction(() => /Restored keep-me.txt/.test((globalThis as unknown as Browser).document.getElementById('version-result')!.textContent ?? ''))
    expect(await onServer('keep-me.txt')).toBe('precious words')
    // And back on the device, as a change the server made.
    await until(async () => (await readFile(join(root, 'device', 'keep-me.txt'), 'utf8').catch(() => '')) === 'precious words', 'keep-me.txt back on the device')

    // Files written on the device reach the server; then every file of the server vanishes at once (a disk unmounted under it), and the page shows them held.
    const thenAllVanish = async (names: string[], text: (name: string) => string) => {
      for (const name of names) await writeFile(join(root, 'device', name), text(name))
      await until(async () => (await Promise.all(names.map(onServer))).every((each, i) => each === text(names[i]!)), `${names[0]}… on the server`)
      const all = (await readdir(join(root, 'cloud'), { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile() && !join(entry.parentPath, entry.name).includes('.cloudbox'))
      // All at once, as an unmount would: one by one with awaits between, under load, the
      // watcher could see the first few as a small deletion of their own, which the guard lets go.
      for (const entry of all) rmSync(join(entry.parentPath, entry.name))
      await box.engine!.scan()
      await tab.waitForSelector('#held:not([hidden])', { timeout: 30_000 })
    }
    // Held, shown, brought back from the device.
    const names = ['held-1.txt', 'held-2.txt', 'held-3.txt', 'held-4.txt', 'held-5.txt', 'held-6.txt', 'held-7.txt', 'held-8.txt']
    await thenAllVanish(names, (name) => `content of ${name}`)
    expect(await tab.textContent('#held-text')).toMatch(/\d+ files vanished/)
    await tab.click('#held-restore')
    await tab.waitForFunction(() => / files brought back/.test((globalThis as unknown as Browser).document.getElementById('held-result')!.textContent ?? ''), undefined, { timeout: 30_000 })
    for (const name of names) expect(await onServer(name)).toBe(`content of ${name}`)
    await tab.waitForSelector('#held[hidden]', { state: 'attached', timeout: 30_000 })

    // Files vanish from the server again, meant this time: "Delete them everywhere" lets the deletions reach the device.
    const gone = Array.from({ length: 12 }, (_, i) => `gone-${i}.txt`)
    await thenAllVanish(gone, (name) => `soon gone ${name}`)
    expect(gone.every((name) => existsSync(join(root, 'device', name)))).toBe(true)
    await tab.click('#held-confirm')
    await until(async () => gone.every((name) => !existsSync(join(root, 'device', name))), 'the confirmed deletions on the device')
    await tab.waitForSelector('#held[hidden]', { state: 'attached', timeout: 30_000 })
    expect(problems).toEqual([])
    await tab.close()
  })

  it('lists files stored through the REST API as uploads', async () => {
    const tab = await browser.newPage()
    await tab.goto(page)
    await tab.waitForFunction(() => (globalThis as unknown as Browser).document.getElementById('feed')!.textContent === 'live')
    const client = new CloudServerClient({ url: server.url, server: box.id, identity: deviceIdentity })
    const local = join(root, 'notes.txt')
    await writeFile(local, 'uploaded through the API')
    await client.upload(local, 'api/notes.txt')
    await tab.waitForFunction(listed, '↑ api/notes.txt')
    await tab.close()
  })
})
