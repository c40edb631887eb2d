/**
 * vitest globalSetup: a real, private OS keyring for the keyring back end's tests.
 * Starts a D-Bus session bus and an unlocked gnome-keyring-daemon (Secret Service) in a
 * temporary home, hands the bus address to the tests, and stops both afterwards.
 * The kernel keyring (keyutils) needs no daemon; its test runs under `keyctl session`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AsyncEntry } from '@napi-rs/keyring'
import type { TestProject } from 'vitest/node'
import { ensureCommands } from '../../../test/support/system-tools.js'

declare module 'vitest' {
  export interface ProvidedContext {
    dbusAddress: string
  }
}

function busConfig(socket: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`
}

function readLine(child: ChildProcess, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => reject(new Error(`${what} did not start within 10 s`)), 10_000)
    child.stdout?.on('data', (data: Buffer) => {
      buffered += data.toString()
      const newline = buffered.indexOf('\n')
      if (newline >= 0) {
        clearTimeout(timer)
        resolve(buffered.slice(0, newline).trim())
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${what} exited with ${code}`))
    })
  })
}

/** gnome-keyring prints nothing in the foreground: poll until the Secret Service answers. */
async function waitForSecretService(address: string, daemon: ChildProcess): Promise<void> {
  const saved = process.env.DBUS_SESSION_BUS_ADDRESS
  process.env.DBUS_SESSION_BUS_ADDRESS = address
  try {
    const deadline = Date.now() + 15_000
    let lastError: unknown
    while (Date.now() < deadline) {
      if (daemon.exitCode !== null) throw new Error(`gnome-keyring-daemon exited with ${daemon.exitCode}`)
      try {
        const entry = new AsyncEntry('cloudbox-test-setup', 'ready', { linux: { store: 'secret-service' } })
        await entry.setSecret(new Uint8Array([1]))
        await entry.deleteCredential()
        return
      } catch (error) {
        lastError = error
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    throw new Error(`The test Secret Service did not answer within 15 s: ${String(lastError)}`)
  } finally {
    if (saved === undefined) delete process.env.DBUS_SESSION_BUS_ADDRESS
    else process.env.DBUS_SESSION_BUS_ADDRESS = saved
  }
}

async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
  await exited
  clearTimeout(timer)
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  ensureCommands({ 'dbus-daemon': 'dbus-daemon', 'gnome-keyring-daemon': 'gnome-keyring', keyctl: 'keyutils' })
  const home = mkdtempSync(join(tmpdir(), 'cloudbox-keyring-'))
  const env = { ...process.env, HOME: home, XDG_RUNTIME_DIR: home, XDG_DATA_HOME: join(home, 'data'), XDG_CONFIG_HOME: join(home, 'config') }
  let bus: ChildProcess | undefined
  let keyring: ChildProcess | undefined
  const teardown = async () => {
    await stopProcess(keyring)
    await stopProcess(bus)
    rmSync(home, { recursive: true, force: true })
  }
  try {
    // A bus without service activation: otherwise the first client call would start a
    // second, locked keyring daemon before ours has registered.
    const config = join(home, 'bus.conf')
    writeFileSync(config, busConfig(join(home, 'bus')))
    bus = spawn('dbus-daemon', [`--config-file=${config}`, '--nofork', '--print-address=1'], { env, stdio: ['ignore', 'pipe', 'ignore'] })
    const address = await readLine(bus, 'dbus-daemon')
    keyring = spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], {
      env: { ...env, DBUS_SESSION_BUS_ADDRESS: address },
      stdio: ['pipe', 'pipe', 'ignore'],
    })
    // The login keyring's password, on stdin; it is created unlocked.
    keyring.stdin?.end('cloudbox-test-keyring')
    await waitForSecretService(address, keyring)
    project.provide('dbusAddress', address)
    return teardown
  } catch (error) {
    await teardown()
    throw error
  }
}
