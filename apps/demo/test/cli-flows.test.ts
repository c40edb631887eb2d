/**
 * The program's server and device flows on real processes: a hub, a server, and devices
 * that pair, sync once, and are administered while the server runs.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parsePairingUri } from '@cloudbox/cloudbox'

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const PIN = '2468-1357'
let dir: string
const children: ChildProcess[] = []
/** Small file systems mounted by a test, unmounted before the temp folder goes. */
const unmounts: string[] = []

const env = (): NodeJS.ProcessEnv => ({ ...process.env, CLOUDBOX_HOME: '', NO_COLOR: '1', CLOUDBOX_PASSPHRASE: 'correct horse battery staple', DBUS_SESSION_BUS_ADDRESS: '' })

function run(args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], { env: env(), encoding: 'utf8', timeout: 60_000 })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

function json(args: string[]): Record<string, unknown> {
  const result = run([...args, '--json'])
  expect(result.status, result.stderr + result.stdout).toBe(0)
  // Long commands print their events as JSON lines first; the result is the last line.
  const lines = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  return lines.at(-1)!
}

/** Starts a long-running command and waits for its first JSON line matching `ready`. */
async function start(args: string[], ready: (line: Record<string, unknown>) => boolean, as?: { uid: number; gid: number }): Promise<{ child: ChildProcess; first: Record<string, unknown>; lines: Record<string, unknown>[]; stderr: () => string }> {
  const child = spawn(process.execPath, [cli, ...args, '--json'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'], ...(as === undefined ? {} : { ...as, cwd: '/' }) })
  children.push(child)
  const lines: Record<string, unknown>[] = []
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start: ${stderr}`)), 30_000)
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      let newline: number
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = JSON.parse(buffered.slice(0, newline)) as Record<string, unknown>
        buffered = buffered.slice(newline + 1)
        lines.push(line)
        if (ready(line)) {
          clearTimeout(timer)
          resolve(line)
        }
      }
    })
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}: ${stderr}`)))
  })
  return { child, first, lines, stderr: () => stderr }
}

/** Polls `condition` every 100 ms for up to 15 s. */
async function waitFor(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** One raw request on a home's control socket, as a script would send it. */
function callControl(home: string, op: string, args: unknown[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(join(home, 'run', 'control.sock'))
    let text = ''
    socket.on('error', reject)
    socket.on('connect', () => socket.write(`${JSON.stringify({ op, args })}\n`))
    socket.on('data', (chunk) => {
      text += chunk.toString()
      if (text.includes('\n')) {
        socket.destroy()
        resolve(JSON.parse(text) as Record<string, unknown>)
      }
    })
  })
}

/** Ctrl-C, then the exit code; a program that does not exit within 20 s fails with what it printed. */
async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  child.kill('SIGINT')
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  const code = await exited
  clearTimeout(timer)
  if (child.signalCode === 'SIGKILL') throw new Error(`The program did not exit within 20 s of Ctrl-C; its last output: ${stderr}`)
  return code
}

beforeAll(() => {
  if (!existsSync(cli)) throw new Error('Build the workspace first (npm test does): apps/demo/dist/cli.js is missing')
  dir = mkdtempSync(join(tmpdir(), 'cloudbox-flows-'))
})

afterAll(async () => {
  for (const child of children) await stop(child)
  for (const path of unmounts) spawnSync('umount', ['-l', path])
  rmSync(dir, { recursive: true, force: true })
})

describe('cloudbox serve, pair, sync and admin', () => {
  it('pairs a device through the hub, syncs both ways once, and the owner revokes it while the server runs', async () => {
    const homes = { server: join(dir, 'server-home'), laptop: join(dir, 'laptop-home'), phone: join(dir, 'phone-home') }
    for (const home of Object.values(homes)) json(['init', '--home', home, '--storage', 'vault'])

    const hub = await start(['hub', '--port', '0'], (line) => line.event === 'listening')
    const hubUrl = String(hub.first.url)
    const cloud = join(dir, 'cloud')
    mkdirSync(cloud)
    writeFileSync(join(cloud, 'hello.txt'), 'hello from the server\n')
    const server = await start(['serve', cloud, '--home', homes.server, '--hub', hubUrl, '--listen', '127.0.0.1:0', '--pin', PIN], (line) => line.event === 'serving')
    const uri = String(server.first.uri)
    expect(parsePairingUri(uri)).toMatchObject({ id: String(json(['id', '--home', homes.server]).publicId), hub: hubUrl })
    // The control socket is the owner's alone.
    expect(statSync(join(homes.server, 'run')).mode & 0o777).toBe(0o700)
    expect(statSync(join(homes.server, 'run', 'control.sock')).mode & 0o777).toBe(0o600)
    // The status page: on loopback, behind its token; the state it shows names this cloud.
    const statusPage = String(server.first.statusPage)
    expect(statusPage).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/status\/[\w-]{32}\/$/)
    expect((await fetch(statusPage)).status).toBe(200)
    expect((await fetch(statusPage.replace(/[\w-]{32}\/$/, 'x'.repeat(32) + '/'))).status).toBe(404)
    expect(((await (await fetch(`${statusPage}state`)).json()) as { cloud: { uri: string } }).cloud.uri).toBe(uri)
    // A second server on the same home is refused.
    expect(run(['serve', cloud, '--home', homes.server, '--listen', '127.0.0.1:0']).stderr).toContain('ERR_ALREADY_RUNNING')

    const wrongPin = run(['pair', uri, '--pin', '0000-0000', '--home', homes.laptop])
    expect(wrongPin.status).toBe(1)
    expect(wrongPin.stderr).toContain('ERR_WRONG_PIN')
    const paired = json(['pair', uri, '--pin', PIN, '--home', homes.laptop, '--name', 'laptop'])
    expect(paired.paired).toMatchObject({ role: 'owner' })

    const laptopFolder = join(dir, 'laptop')
    const first = json(['sync', laptopFolder, '--once', '--home', homes.laptop])
    expect(first).toMatchObject({ inSync: true, files: 1 })
    expect(readFileSync(join(laptopFolder, 'hello.txt'), 'utf8')).toBe('hello from the server\n')

    // The other way: a file made on the laptop reaches the server.
    writeFileSync(join(laptopFolder, 'notes.md'), '# from the laptop\n')
    expect(json(['sync', laptopFolder, '--once', '--home', homes.laptop])).toMatchObject({ inSync: true })
    const deadline = Date.now() + 10_000
    while (!existsSync(join(cloud, 'notes.md')) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
    expect(readFileSync(join(cloud, 'notes.md'), 'utf8')).toBe('# from the laptop\n')

    // Admin through the running server.
    const status = json(['status', '--home', homes.server])
    expect(status).toMatchObject({ role: 'server', running: true, uri })
    const devices = json(['devices', '--home', homes.server]).devices as { id: string; label: string }[]
    const laptopId = String(json(['id', '--home', homes.laptop]).publicId)
    expect(devices.map((device) => device.id)).toEqual([laptopId])
    const guestPin = json(['pin', 'add', '--label', 'phone', '--role', 'member', '--expires', '1h', '--home', homes.server])
    expect(String(guestPin.pin)).toMatch(/^\d{8}$/)
    expect((json(['pin', 'list', '--home', homes.server]).pins as { label: string }[]).map((pin) => pin.label)).toContain('phone')
    json(['pair', uri, '--pin', String(guestPin.pin), '--home', homes.phone, '--name', 'phone'])
    // The one-time PIN is spent.
    expect(run(['pair', uri, '--pin', String(guestPin.pin), '--home', join(dir, 'nobody')]).status).not.toBe(0)

    const unknown = await callControl(homes.server, 'format', [])
    expect(unknown).toMatchObject({ error: { code: 'ERR_INVALID_ADMIN_CALL' } })

    const sub = json(['subcloud', 'create', 'family', '--quota', '10MiB', '--home', homes.server])
    expect(String(sub.uri)).toMatch(/^cloudbox:\/\/pair/)
    expect((json(['subcloud', 'list', '--home', homes.server]).subClouds as unknown[]).length).toBe(1)
    json(['subcloud', 'destroy', String(sub.index), '--wipe', '--home', homes.server])

    // A sealed file from the laptop to the phone through the server's drop box.
    const phoneId = String(json(['id', '--home', homes.phone]).publicId)
    const report = join(dir, 'report.txt')
    writeFileSync(report, 'for the phone only\n')
    const shared = json(['share', report, '--to', phoneId, '--home', homes.laptop])
    expect(shared).toMatchObject({ from: laptopId, to: [phoneId], name: 'report.txt' })
    expect(json(['inbox', '--home', homes.laptop]).shares).toEqual([])
    const inbox = json(['inbox', '--home', homes.phone]).shares as { id: string }[]
    expect(inbox.map((share) => share.id)).toEqual([shared.id])
    const opened = json(['inbox', 'get', String(shared.id), '-o', join(dir, 'opened.txt'), '--home', homes.phone])
    expect(opened).toMatchObject({ signedBy: laptopId })
    expect(readFileSync(join(dir, 'opened.txt'), 'utf8')).toBe('for the phone only\n')
    expect(json(['inbox', '--home', homes.phone]).shares).toEqual([])

    json(['block', laptopId, '--home', homes.server])
    const blocked = run(['sync', laptopFolder, '--once', '--home', homes.laptop, '--json'])
    expect(blocked.status).toBe(1)
    expect(blocked.stdout + blocked.stderr).toContain('ERR_DEVICE_BLOCKED')
    json(['unblock', laptopId, '--home', homes.server])
    json(['revoke', laptopId, '--home', homes.server])
    const revoked = run(['sync', laptopFolder, '--once', '--home', homes.laptop])
    expect(revoked.status).toBe(1)
    expect(revoked.stderr).toMatch(/ERR_DEVICE_REVOKED|ERR_NOT_PAIRED/)
    // The client-side status still names the cloud it was paired with.
    expect(json(['status', '--home', homes.laptop])).toMatchObject({ role: 'client' })

    expect(await stop(server.child)).toBe(130)
    // Once stopped, admin commands say so.
    const down = run(['devices', '--home', homes.server])
    expect(down.status).toBe(1)
    expect(down.stderr).toContain('ERR_SERVER_NOT_RUNNING')
    expect(await stop(hub.child)).toBe(130)
  }, 120_000)

  it('prints the pairing URI on a line of its own and a terminal QR code, and makes a PIN when none is set', async () => {
    const home = join(dir, 'plain-home')
    json(['init', '--home', home, '--storage', 'vault'])
    const child = spawn(process.execPath, [cli, 'serve', join(dir, 'plain-cloud'), '--home', home, '--listen', '127.0.0.1:0'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    let stdout = ''
    let stderr = ''
    // Drained from the start: a full pipe would block the program.
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no output: ${stdout} ${stderr}`)), 30_000)
      child.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString()
        if (stdout.includes('Ctrl-C stops the server')) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    const lines = stdout.split('\n')
    expect(lines.some((line) => /^cloudbox:\/\/pair\?id=cb1[^ ]*$/.test(line))).toBe(true)
    expect(stdout).toMatch(/[▀▄█]/)
    // Not a terminal: plain blocks, no colour escapes in what may land in a file.
    expect(stdout).not.toContain('\u001b[')
    expect(stdout).toMatch(/Master PIN: \d{8}/)
    // The status page keeps its address across restarts (the token lives in the home, 0600).
    const page = /status: +(http:\S+)/.exec(stdout)![1]!
    expect(statSync(join(home, 'status-token')).mode & 0o777).toBe(0o600)
    expect(await stop(child)).toBe(130)
    const again = await start(['serve', join(dir, 'plain-cloud'), '--home', home, '--listen', '127.0.0.1:0'], (line) => line.event === 'serving')
    expect(new URL(String(again.first.statusPage)).pathname).toBe(new URL(page).pathname)
    expect(await stop(again.child)).toBe(130)
    const renewed = await start(['serve', join(dir, 'plain-cloud'), '--home', home, '--listen', '127.0.0.1:0', '--new-status-token'], (line) => line.event === 'serving')
    expect(new URL(String(renewed.first.statusPage)).pathname).not.toBe(new URL(page).pathname)
    expect(await stop(renewed.child)).toBe(130)
  }, 60_000)

  it('holds a mass delete: --once exits 4 with ERR_DELETES_HELD, --restore-deleted brings the files back, --confirm-deletes lets them go', async () => {
    const homes = { server: join(dir, 'held-server-home'), device: join(dir, 'held-device-home') }
    for (const home of Object.values(homes)) json(['init', '--home', home, '--storage', 'vault'])
    const cloud = join(dir, 'held-cloud')
    mkdirSync(cloud)
    const names = Array.from({ length: 20 }, (_, i) => `note-${i}.txt`)
    for (const name of names) writeFileSync(join(cloud, name), `note ${name}\n`)
    let server = await start(['serve', cloud, '--home', homes.server, '--listen', '127.0.0.1:0', '--pin', PIN], (line) => line.event === 'serving')
    json(['pair', String(server.first.uri), '--pin', PIN, '--home', homes.device, '--name', 'laptop'])
    const folder = join(dir, 'held-laptop')
    json(['sync', folder, '--once', '--home', homes.device])
    expect(names.every((name) => existsSync(join(folder, name)))).toBe(true)

    // 16 of 20 vanish (an unmounted disk, say): held, nothing deleted anywhere, and --once says so.
    for (const name of names.slice(0, 16)) rmSync(join(folder, name))
    const held = run(['sync', folder, '--once', '--home', homes.device, '--json'])
    expect(held.status, held.stderr).toBe(4)
    expect(held.stderr).toContain('ERR_DELETES_HELD')
    expect(held.stderr).toContain('16 files')
    expect(held.stderr).toContain('--restore-deleted')
    expect(names.every((name) => existsSync(join(cloud, name)))).toBe(true)

    // Brought back from the cloud, byte for byte; the guard lets go.
    json(['sync', folder, '--once', '--restore-deleted', '--home', homes.device])
    for (const name of names) expect(readFileSync(join(folder, name), 'utf8')).toBe(`note ${name}\n`)
    json(['sync', folder, '--once', '--home', homes.device])

    // The same deletions, confirmed this time: they reach the server.
    for (const name of names.slice(0, 16)) rmSync(join(folder, name))
    expect(run(['sync', folder, '--once', '--home', homes.device]).status).toBe(4)
    json(['sync', folder, '--once', '--confirm-deletes', '--home', homes.device])
    expect(names.filter((name) => existsSync(join(cloud, name)))).toEqual(names.slice(16))
    json(['sync', folder, '--once', '--home', homes.device])

    const both = run(['sync', folder, '--once', '--confirm-deletes', '--restore-deleted', '--home', homes.device])
    expect(both.status).toBe(2)
    expect(both.stderr).toContain('not both')

    // The cloud's own guard holds (files vanished from the server's folder): the device's
    // --once does not call the folders the same either.
    const more = Array.from({ length: 20 }, (_, i) => `more-${i}.txt`)
    for (const name of more) writeFileSync(join(folder, name), `more ${name}\n`)
    json(['sync', folder, '--once', '--home', homes.device])
    // Deleted while the server is down (its first scan sees them all, whatever a watcher would batch); back on the same port.
    const port = new URL(String(server.first.direct)).port
    expect(await stop(server.child)).toBe(130)
    for (const name of more.slice(0, 16)) rmSync(join(cloud, name))
    server = await start(['serve', cloud, '--home', homes.server, '--listen', `127.0.0.1:${port}`, '--pin', PIN], (line) => line.event === 'serving')
    expect(server.lines.some((line) => (line.event as { type?: string } | undefined)?.type === 'delete-guard')).toBe(true)
    const cloudHeld = run(['sync', folder, '--once', '--home', homes.device])
    expect(cloudHeld.status, cloudHeld.stderr).toBe(4)
    expect(cloudHeld.stderr).toContain('ERR_DELETES_HELD')
    expect(cloudHeld.stderr).toContain('The cloud holds deletions')
    expect(more.every((name) => existsSync(join(folder, name)))).toBe(true)

    // Folders that must not be synced are refused before anything starts.
    const empty = run(['sync', '', '--once', '--home', homes.device])
    expect(empty.status).toBe(2)
    expect(empty.stderr).toContain('empty')
    const inside = join(folder, 'sub')
    mkdirSync(inside)
    expect(run(['sync', inside, '--once', '--home', homes.device]).stderr).toContain('ERR_NESTED_FOLDER')
    expect(run(['sync', dir, '--once', '--home', homes.device]).stderr).toContain('ERR_NESTED_FOLDER')
    const holdsHome = join(dir, 'holds-home')
    mkdirSync(join(holdsHome, 'deep'), { recursive: true })
    json(['init', '--home', join(holdsHome, 'deep', 'other-home'), '--storage', 'vault'])
    const refused = run(['sync', holdsHome, '--once', '--home', homes.device])
    expect(refused.status).toBe(1)
    expect(refused.stderr).toContain('ERR_NESTED_FOLDER')
    expect(refused.stderr).toContain('other-home')
    expect(existsSync(join(holdsHome, '.cloudbox'))).toBe(false)
    writeFileSync(join(dir, 'a-file'), 'not a folder')
    expect(run(['sync', join(dir, 'a-file'), '--once', '--home', homes.device]).stderr).toContain('ERR_NOT_A_FOLDER')
    rmSync(inside, { recursive: true })
    // A home made later inside the synced folder is refused as well (the folder's own walk ran on its first use only).
    const lateHome = run(['init', '--home', join(folder, 'later-home'), '--storage', 'vault'])
    expect(lateHome.status).toBe(1)
    expect(lateHome.stderr).toContain('ERR_NESTED_FOLDER')
    expect(existsSync(join(folder, 'later-home', 'identity.json'))).toBe(false)

    // One process per folder: a second sync on it is refused, naming the first.
    const running = await start(['sync', folder, '--home', homes.device], (line) => line.type === 'connection' && line.state === 'connected')
    const second = run(['sync', folder, '--once', '--home', homes.device])
    expect(second.status).toBe(1)
    expect(second.stderr).toContain('ERR_FOLDER_IN_USE')
    expect(second.stderr).toContain(`PID ${running.child.pid}`)
    // `cloudbox status` on the device home shows what the running sync does.
    let status: { syncs: { folder: string; pid: number; connection: string; inSync: boolean; heldDeletes: number }[] } = { syncs: [] }
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 250))) {
      status = json(['status', '--home', homes.device]) as typeof status
      if (status.syncs[0]?.inSync === true) break
    }
    expect(status.syncs).toMatchObject([{ folder, pid: running.child.pid, connection: 'connected', inSync: true, heldDeletes: 0 }])
    const human = run(['status', '--home', homes.device])
    expect(human.stdout).toContain(`sync ${folder} (PID ${running.child.pid}): connected, in sync`)
    expect(await stop(running.child)).toBe(130)
    expect((json(['status', '--home', homes.device]) as typeof status).syncs).toEqual([])
    expect(run(['status', '--home', homes.device]).stdout).toContain('sync: not running')
    expect(await stop(server.child)).toBe(130)
  }, 120_000)

  // Root reads any file: the device runs as `nobody`, without CAP_DAC_OVERRIDE.
  it.runIf(process.getuid?.() === 0)('skips a file or folder it cannot read with ERR_FILE_UNREADABLE, syncs the rest, and --once exits 3 listing them', async () => {
    const NOBODY = 65534
    const asNobody = (args: string[]) => {
      const result = spawnSync(process.execPath, [cli, ...args], { env: env(), encoding: 'utf8', timeout: 60_000, uid: NOBODY, gid: NOBODY, cwd: '/' })
      return { status: result.status, stdout: result.stdout, stderr: result.stderr }
    }
    chmodSync(dir, 0o711)
    const serverHome = join(dir, 'unreadable-server-home')
    json(['init', '--home', serverHome, '--storage', 'vault'])
    const cloud = join(dir, 'unreadable-cloud')
    // A file of the cloud's that the device cannot write: its folder there is read-only.
    mkdirSync(join(cloud, 'readonly-here'), { recursive: true })
    writeFileSync(join(cloud, 'readonly-here', 'from-cloud.txt'), 'for the device')
    const server = await start(['serve', cloud, '--home', serverHome, '--listen', '127.0.0.1:0', '--pin', PIN], (line) => line.event === 'serving')
    const deviceHome = join(dir, 'unreadable-device-home')
    const folder = join(dir, 'unreadable-laptop')
    mkdirSync(deviceHome)
    mkdirSync(join(folder, 'locked'), { recursive: true })
    mkdirSync(join(folder, 'readonly-here'))
    writeFileSync(join(folder, 'ok-1.txt'), 'one')
    writeFileSync(join(folder, 'ok-2.txt'), 'two')
    writeFileSync(join(folder, 'secret.txt'), 'not for nobody')
    writeFileSync(join(folder, 'locked', 'inner.txt'), 'inside a closed folder')
    for (const path of [deviceHome, folder, join(folder, 'locked'), join(folder, 'ok-1.txt'), join(folder, 'ok-2.txt'), join(folder, 'secret.txt'), join(folder, 'locked', 'inner.txt'), join(folder, 'readonly-here')]) chownSync(path, NOBODY, NOBODY)
    chmodSync(join(folder, 'readonly-here'), 0o555)
    chmodSync(join(folder, 'secret.txt'), 0o000)
    chmodSync(join(folder, 'locked'), 0o000)
    expect(asNobody(['init', '--home', deviceHome, '--storage', 'vault']).status).toBe(0)
    const paired = asNobody(['pair', String(server.first.uri), '--pin', PIN, '--home', deviceHome])
    expect(paired.status, paired.stderr).toBe(0)

    const first = asNobody(['sync', folder, '--once', '--home', deviceHome])
    expect(first.status, first.stderr).toBe(3)
    expect(first.stderr).toContain('ERR_FILES_NOT_SYNCED')
    expect(first.stderr).toContain('ERR_FILE_UNREADABLE')
    expect(first.stderr).toContain('secret.txt')
    expect(first.stderr).toContain('locked')
    expect(first.stderr).toContain('ERR_FILE_UNWRITABLE')
    expect(first.stderr).toContain('readonly-here/from-cloud.txt')
    expect(first.stderr).not.toContain('EACCES:')
    // The server's owner hears of it too: the device told the server which file cannot leave it.
    const peerError = (line: Record<string, unknown>) => {
      const event = line.event as { type?: string; code?: string; path?: string } | undefined
      return line.type === 'sync' && event?.type === 'peer-error' && event.code === 'ERR_FILE_UNREADABLE' && event.path === 'secret.txt'
    }
    await waitFor(() => server.lines.some(peerError), 'the server to hear of the unreadable file')
    // Everything else arrived.
    expect(readFileSync(join(cloud, 'ok-1.txt'), 'utf8')).toBe('one')
    expect(readFileSync(join(cloud, 'ok-2.txt'), 'utf8')).toBe('two')
    expect(existsSync(join(cloud, 'secret.txt'))).toBe(false)

    // A folder it may not create (its parent is root's, 0755): a plain error, not EACCES.
    const notWritable = asNobody(['sync', join(dir, 'not-for-nobody', 'Cloud'), '--once', '--home', deviceHome])
    expect(notWritable.status).toBe(1)
    expect(notWritable.stderr).toContain('ERR_FOLDER_NOT_WRITABLE')
    expect(notWritable.stderr).not.toContain('EACCES:')

    // Readable again: the next run takes them, and says in sync.
    chmodSync(join(folder, 'secret.txt'), 0o644)
    chmodSync(join(folder, 'locked'), 0o755)
    chmodSync(join(folder, 'readonly-here'), 0o755)
    const second = asNobody(['sync', folder, '--once', '--home', deviceHome])
    expect(second.status, second.stderr).toBe(0)
    expect(readFileSync(join(cloud, 'secret.txt'), 'utf8')).toBe('not for nobody')
    expect(readFileSync(join(cloud, 'locked', 'inner.txt'), 'utf8')).toBe('inside a closed folder')
    expect(readFileSync(join(folder, 'readonly-here', 'from-cloud.txt'), 'utf8')).toBe('for the device')
    expect(await stop(server.child)).toBe(130)
  }, 120_000)

  it.runIf(process.getuid?.() === 0)('a file the server cannot read keeps a device\'s sync --once from saying in sync: exit 3 naming it', async () => {
    const NOBODY = 65534
    chmodSync(dir, 0o711)
    const homes = { server: join(dir, 'blind-server-home'), device: join(dir, 'blind-device-home') }
    const cloud = join(dir, 'blind-cloud')
    mkdirSync(homes.server)
    mkdirSync(cloud)
    writeFileSync(join(cloud, 'shared.txt'), 'for everyone')
    writeFileSync(join(cloud, 'locked.txt'), 'not for the server')
    for (const path of [homes.server, cloud, join(cloud, 'shared.txt'), join(cloud, 'locked.txt')]) chownSync(path, NOBODY, NOBODY)
    chmodSync(join(cloud, 'locked.txt'), 0o000)
    const init = spawnSync(process.execPath, [cli, 'init', '--home', homes.server, '--storage', 'vault'], { env: env(), uid: NOBODY, gid: NOBODY, cwd: '/', encoding: 'utf8' })
    expect(init.status, init.stderr).toBe(0)
    // The server runs as `nobody` (root would read the file anyway).
    const server = await start(['serve', cloud, '--home', homes.server, '--listen', '127.0.0.1:0', '--pin', PIN], (line) => line.event === 'serving', { uid: NOBODY, gid: NOBODY })
    json(['init', '--home', homes.device, '--storage', 'vault'])
    json(['pair', String(server.first.uri), '--pin', PIN, '--home', homes.device])
    const folder = join(dir, 'blind-laptop')
    const synced = run(['sync', folder, '--once', '--home', homes.device])
    expect(synced.status, synced.stderr).toBe(3)
    expect(synced.stderr).toContain('ERR_FILES_NOT_SYNCED')
    expect(synced.stderr).toContain('locked.txt (ERR_FILE_UNREADABLE on the cloud)')
    expect(readFileSync(join(folder, 'shared.txt'), 'utf8')).toBe('for everyone')
    expect(existsSync(join(folder, 'locked.txt'))).toBe(false)
    // Readable again: the server's next scan takes it, and the device is in sync.
    chmodSync(join(cloud, 'locked.txt'), 0o644)
    let last = run(['sync', folder, '--once', '--home', homes.device])
    for (let attempt = 0; attempt < 10 && !existsSync(join(folder, 'locked.txt')); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 500))
      last = run(['sync', folder, '--once', '--home', homes.device])
    }
    expect(last.status, last.stderr).toBe(0)
    expect(readFileSync(join(folder, 'locked.txt'), 'utf8')).toBe('not for the server')
    expect(await stop(server.child)).toBe(130)
  }, 120_000)

  it('skips a name too long for the device with ERR_NAME_TOO_LONG, syncs the rest, and --once exits 3 naming it', async () => {
    const homes = { server: join(dir, 'long-server-home'), device: join(dir, 'long-device-home') }
    for (const home of Object.values(homes)) json(['init', '--home', home, '--storage', 'vault'])
    // Each name is legal (250 bytes); the whole path fits under the server's short folder
    // but not under the device's deep one (Linux refuses paths of 4,096 bytes or more).
    const cloud = join(dir, 'long-cloud')
    const deep = Array.from({ length: 15 }, (_, index) => `${index}`.padEnd(250, 'n')).join('/')
    mkdirSync(join(cloud, deep), { recursive: true })
    writeFileSync(join(cloud, deep, 'f.txt'), 'far down')
    writeFileSync(join(cloud, 'short.txt'), 'near')
    const folder = join(dir, 'd'.repeat(200), 'e'.repeat(200), 'Cloud')
    expect(folder.length + 1 + deep.length).toBeGreaterThan(4096)
    const server = await start(['serve', cloud, '--home', homes.server, '--listen', '127.0.0.1:0', '--pin', PIN], (line) => line.event === 'serving')
    json(['pair', String(server.first.uri), '--pin', PIN, '--home', homes.device])
    const synced = run(['sync', folder, '--once', '--home', homes.device])
    expect(synced.status, synced.stderr).toBe(3)
    expect(synced.stderr).toContain('ERR_FILES_NOT_SYNCED')
    expect(synced.stderr).toContain('ERR_NAME_TOO_LONG')
    expect(synced.stderr).toMatch(/shorter|Rename it/)
    expect(synced.stderr).not.toContain('ENAMETOOLONG:')
    expect(synced.stderr).not.toMatch(/check the server and the network/i)
    expect(readFileSync(join(folder, 'short.txt'), 'utf8')).toBe('near')
    // Nothing of it is deleted on the server, and a second run says the same, no worse.
    expect(readFileSync(join(cloud, deep, 'f.txt'), 'utf8')).toBe('far down')
    const again = run(['sync', folder, '--once', '--home', homes.device])
    expect(again.status, again.stderr).toBe(3)
    expect(readFileSync(join(cloud, deep, 'f.txt'), 'utf8')).toBe('far down')
    expect(await stop(server.child)).toBe(130)
  }, 120_000)

  const canMount = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0
  it.runIf(canMount)('a full disk on either side ends sync --once at once with ERR_DISK_FULL and what to do, damaging nothing', async () => {
    const homes = { server: join(dir, 'full-server-home'), device: join(dir, 'full-device-home') }
    for (const home of Object.values(homes)) json(['init', '--home', home, '--storage', 'vault'])
    const mountSmall = (path: string) => {
      mkdirSync(path, { recursive: true })
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', path])
      unmounts.push(path)
    }
    const big = randomBytes(6 * 1024 * 1024)
    // The device's disk is full: the cloud's large file cannot arrive.
    const cloud = join(dir, 'full-cloud')
    mkdirSync(cloud)
    writeFileSync(join(cloud, 'big.bin'), big)
    const server = await start(['serve', cloud, '--home', homes.server, '--listen', '127.0.0.1:0', '--pin', PIN], (line) => line.event === 'serving')
    json(['pair', String(server.first.uri), '--pin', PIN, '--home', homes.device])
    const small = join(dir, 'full-small-disk')
    mountSmall(small)
    const began = Date.now()
    const here = run(['sync', join(small, 'Cloud'), '--once', '--home', homes.device])
    expect(here.status, here.stderr).toBe(1)
    expect(here.stderr).toContain('ERR_DISK_FULL')
    expect(here.stderr).toMatch(/free some space and run sync again/i)
    expect(here.stderr).not.toMatch(/ERR_TIMEOUT|check the server and the network|ENOSPC:/)
    expect(Date.now() - began).toBeLessThan(30_000)
    // Never a partial file in view.
    expect(existsSync(join(small, 'Cloud', 'big.bin'))).toBe(false)
    expect(await stop(server.child)).toBe(130)

    // The cloud's disk is full: the device's large file cannot reach it.
    const fullCloud = join(dir, 'full-cloud-disk')
    mountSmall(fullCloud)
    const again = await start(['serve', join(fullCloud, 'cloud'), '--home', homes.server, '--listen', '127.0.0.1:0', '--pin', PIN], (line) => line.event === 'serving')
    rmSync(homes.device, { recursive: true })
    json(['init', '--home', homes.device, '--storage', 'vault'])
    json(['pair', String(again.first.uri), '--pin', PIN, '--home', homes.device])
    const laptop = join(dir, 'full-laptop')
    mkdirSync(laptop)
    writeFileSync(join(laptop, 'big.bin'), big)
    const there = run(['sync', laptop, '--once', '--home', homes.device])
    expect(there.status, there.stderr).toBe(1)
    expect(there.stderr).toContain('ERR_DISK_FULL')
    expect(there.stderr).toMatch(/cloud's disk is full/)
    expect(there.stderr).not.toMatch(/ERR_TIMEOUT|check the server and the network/)
    expect(readFileSync(join(laptop, 'big.bin')).equals(big)).toBe(true)
    expect(existsSync(join(fullCloud, 'cloud', 'big.bin'))).toBe(false)
    expect(await stop(again.child)).toBe(130)
  }, 120_000)

  it('syncs empty folders and symbolic links (as links, never followed) both ways', async () => {
    const homes = { server: join(dir, 'links-server-home'), device: join(dir, 'links-device-home') }
    for (const home of Object.values(homes)) json(['init', '--home', home, '--storage', 'vault'])
    const cloud = join(dir, 'links-cloud')
    mkdirSync(join(cloud, 'empty', 'deeper'), { recursive: true })
    writeFileSync(join(cloud, 'notes.txt'), 'notes')
    symlinkSync('notes.txt', join(cloud, 'latest'))
    symlinkSync('/etc/hostname', join(cloud, 'outside'))
    const server = await start(['serve', cloud, '--home', homes.server, '--listen', '127.0.0.1:0', '--pin', PIN], (line) => line.event === 'serving')
    json(['pair', String(server.first.uri), '--pin', PIN, '--home', homes.device])
    const folder = join(dir, 'links-laptop')
    json(['sync', folder, '--once', '--home', homes.device])
    expect(statSync(join(folder, 'empty', 'deeper')).isDirectory()).toBe(true)
    expect(readlinkSync(join(folder, 'latest'))).toBe('notes.txt')
    expect(readlinkSync(join(folder, 'outside'))).toBe('/etc/hostname')
    expect(lstatSync(join(folder, 'outside')).isSymbolicLink()).toBe(true)
    // The device's own: a new empty folder and a link, and the server's empty folder removed.
    mkdirSync(join(folder, 'inbox'))
    symlinkSync('../elsewhere', join(folder, 'dangling'))
    rmSync(join(folder, 'empty'), { recursive: true })
    json(['sync', folder, '--once', '--home', homes.device])
    expect(statSync(join(cloud, 'inbox')).isDirectory()).toBe(true)
    expect(readlinkSync(join(cloud, 'dangling'))).toBe('../elsewhere')
    expect(existsSync(join(cloud, 'empty'))).toBe(false)
    // Paired directly (no hub): the API answers on the same port, so share and inbox need no --api.
    const me = String(json(['id', '--home', homes.device]).publicId)
    writeFileSync(join(dir, 'links-note.txt'), 'a note to myself')
    const shared = json(['share', join(dir, 'links-note.txt'), '--to', me, '--home', homes.device])
    expect((json(['inbox', '--home', homes.device]) as { shares: { id: string }[] }).shares.map((each) => each.id)).toEqual([shared.id])
    // Only the API is answered there: the status page is not.
    const direct = new URL(String(server.first.direct))
    expect((await fetch(`http://${direct.host}${new URL(String(server.first.statusPage)).pathname}`)).status).toBe(404)
    expect(await stop(server.child)).toBe(130)
  }, 120_000)

  it('sync --once connects while its first scan runs, and ends only once the server holds every file', async () => {
    const homes = { server: join(dir, 'many-server-home'), device: join(dir, 'many-device-home') }
    for (const home of Object.values(homes)) json(['init', '--home', home, '--storage', 'vault'])
    const cloud = join(dir, 'many-cloud')
    const server = await start(['serve', cloud, '--home', homes.server, '--listen', '127.0.0.1:0', '--pin', PIN], (line) => line.event === 'serving')
    json(['pair', String(server.first.uri), '--pin', PIN, '--home', homes.device])
    // Enough small files that the scan outlasts the first acknowledgements of what it found so far.
    const folder = join(dir, 'many-laptop')
    for (let d = 0; d < 40; d++) {
      mkdirSync(join(folder, `d${d}`), { recursive: true })
      for (let f = 0; f < 300; f++) writeFileSync(join(folder, `d${d}`, `f${f}.txt`), `file ${d}/${f}`)
    }
    expect(json(['sync', folder, '--once', '--home', homes.device])).toMatchObject({ inSync: true })
    const onServer = readdirSync(cloud, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile() && !join(entry.parentPath, entry.name).includes('.cloudbox'))
    expect(onServer).toHaveLength(12_000)
    expect(readFileSync(join(cloud, 'd39', 'f299.txt'), 'utf8')).toBe('file 39/299')
    expect(await stop(server.child)).toBe(130)
  }, 120_000)

  it('a hub-only server (--no-listen) has no open port; two servers on one machine each find a port and keep it', async () => {
    const homes = { a: join(dir, 'ports-a-home'), b: join(dir, 'ports-b-home'), device: join(dir, 'ports-device-home') }
    for (const home of Object.values(homes)) json(['init', '--home', home, '--storage', 'vault'])
    expect(run(['serve', join(dir, 'ports-x'), '--home', homes.a, '--no-listen']).status).toBe(2)
    const hub = await start(['hub', '--port', '0'], (line) => line.event === 'listening')
    const cloud = join(dir, 'ports-hub-only')
    mkdirSync(cloud)
    writeFileSync(join(cloud, 'via-hub.txt'), 'through the hub only')
    const hubOnly = await start(['serve', cloud, '--home', homes.a, '--no-listen', '--hub', String(hub.first.url), '--pin', PIN], (line) => line.event === 'serving')
    expect(hubOnly.first.direct ?? null).toBeNull()
    json(['pair', String(hubOnly.first.uri), '--pin', PIN, '--home', homes.device])
    const folder = join(dir, 'ports-device')
    json(['sync', folder, '--once', '--home', homes.device])
    expect(readFileSync(join(folder, 'via-hub.txt'), 'utf8')).toBe('through the hub only')
    expect(await stop(hubOnly.child)).toBe(130)
    // Two servers with the default listener: the second does not fail on the first one's port.
    const first = await start(['serve', join(dir, 'ports-one'), '--home', homes.a, '--pin', PIN], (line) => line.event === 'serving')
    const second = await start(['serve', join(dir, 'ports-two'), '--home', homes.b, '--pin', PIN], (line) => line.event === 'serving')
    const portOf = (line: Record<string, unknown>) => new URL(String(line.direct)).port
    expect(portOf(first.first)).not.toBe(portOf(second.first))
    expect(await stop(second.child)).toBe(130)
    // Restarted, the second keeps its port, so its paired devices find it where it was.
    const again = await start(['serve', join(dir, 'ports-two'), '--home', homes.b, '--pin', PIN], (line) => line.event === 'serving')
    expect(portOf(again.first)).toBe(portOf(second.first))
    for (const each of [again, first, hub]) expect(await stop(each.child)).toBe(130)
  }, 120_000)

  // `script` gives the program a terminal, as a person running it has.
  it.runIf(spawnSync('script', ['--version']).status === 0)('serve on a fresh home in a terminal makes the identity first (the phrase shown once); without one it says to run init', async () => {
    const home = join(dir, 'first-run-home')
    const cloud = join(dir, 'first-run-cloud')
    const refused = run(['serve', cloud, '--home', home, '--listen', '127.0.0.1:0'])
    expect(refused.status).toBe(1)
    expect(refused.stderr).toContain('cloudbox init')
    const command = [process.execPath, cli, 'serve', cloud, '--home', home, '--listen', '127.0.0.1:0', '--pin', PIN].map((part) => `'${part}'`).join(' ')
    const child = spawn('script', ['-qec', command, '/dev/null'], { env: env(), stdio: ['pipe', 'pipe', 'pipe'] })
    children.push(child)
    let seen = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no server: ${seen}`)), 30_000)
      child.stdout!.on('data', (chunk: Buffer) => {
        seen += chunk.toString()
        if (seen.includes('Ctrl-C stops the server')) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    expect(seen).toContain('making one')
    expect(seen).toMatch(/24\. [a-z]+/)
    expect(String(json(['id', '--home', home]).publicId)).toMatch(/^cb1/)
    child.kill('SIGINT')
    await new Promise((resolve) => child.once('exit', resolve))
  }, 60_000)

  it('refuses sync before pairing, and a bad --listen, with what to do', () => {
    const home = join(dir, 'lonely-home')
    json(['init', '--home', home, '--storage', 'vault'])
    const unpaired = run(['sync', join(dir, 'x'), '--once', '--home', home])
    expect(unpaired.status).toBe(1)
    expect(unpaired.stderr).toContain('ERR_NOT_PAIRED')
    expect(unpaired.stderr).toContain('cloudbox pair')
    const bad = run(['serve', join(dir, 'y'), '--listen', 'nowhere', '--home', home])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain('--listen takes HOST:PORT')
  })
})
