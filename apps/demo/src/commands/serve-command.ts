/**
 * `cloudbox serve DIR`: a cloud server for DIR with its encrypted REST API, reachable
 * directly and (with --hub) through a router hub; admin commands reach it through the
 * home's control socket while it runs.
 */
import { randomBytes } from 'node:crypto'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { CloudBox, dispatchAdmin, randomPin } from '@cloudbox/cloudbox'
import type { CloudServer } from '@cloudbox/cloudserver'
import type { Command } from 'commander'
import { createCommandLog, printEvents } from '../box-events.js'
import { LOG_LEVEL_HELP, logLevelFrom } from '../log.js'
import { CliError, usageError } from '../errors.js'
import { checkedFolder, makeFolder } from '../folder-safety.js'
import { givenPin, pinOptions, type PinOptions } from '../pin-input.js'
import { globalOptions } from '../program.js'
import { assertNotServing, serveControl } from '../server/control-socket.js'
import { stopsOnSignal, untilStopped } from '../stop-signal.js'
import { writeOut } from '../stdout-lines.js'
import { identityOrFirstRun } from './identity-commands.js'
import { versionOptions, VERSIONS_DISK_OPTION_HELP, VERSIONS_OPTION_HELP } from './version-commands.js'

export function parseHostPort(text: string, flag: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text)
  const port = Number(match?.[3])
  if (match === null || port > 65_535) throw usageError(`${flag} takes HOST:PORT (port 0 picks a free one), not "${text}".`)
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port }
}

/** The usual direct port; a second server on the machine takes another. */
const DEFAULT_PORT = 7443
const portFile = (home: string) => join(home, 'listen-port')

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const probe = createServer()
    probe.once('error', () => resolvePromise(false))
    probe.listen({ host: '0.0.0.0', port, exclusive: true }, () => probe.close(() => resolvePromise(true)))
  })
}

/** 0.0.0.0 on the port this home used last, else 7443, else a free one (said in a note). */
async function defaultListen(home: string, output: { note(message: string): void }): Promise<{ host: string; port: number }> {
  let remembered: number | undefined
  try {
    const value = Number(readFileSync(portFile(home), 'utf8').trim())
    if (Number.isInteger(value) && value > 0 && value <= 65_535) remembered = value
  } catch {
    // First start.
  }
  for (const port of [...new Set([remembered ?? DEFAULT_PORT, DEFAULT_PORT])]) {
    if (await portIsFree(port)) return { host: '0.0.0.0', port }
  }
  output.note(`port ${remembered ?? DEFAULT_PORT} is in use (another server?); listening on a free port instead (kept for the next start)`)
  return { host: '0.0.0.0', port: 0 }
}

/** The status page's token, kept in the home (0600) so its address survives restarts; a new one on request. */
function statusToken(home: string, renew: boolean): string {
  const path = join(home, 'status-token')
  if (!renew) {
    try {
      const kept = readFileSync(path, 'utf8').trim()
      if (/^[A-Za-z0-9_-]{32}$/.test(kept)) return kept
    } catch {
      // None yet.
    }
  }
  const token = randomBytes(24).toString('base64url')
  writeFileSync(path, `${token}\n`, { mode: 0o600 })
  chmodSync(path, 0o600)
  return token
}

function rememberPort(home: string, port: number): void {
  try {
    writeFileSync(portFile(home), `${port}\n`)
  } catch {
    // Not remembered: the next start picks again.
  }
}

export function registerServeCommand(program: Command): void {
  pinOptions(program
    .command('serve'), 'the master PIN to set (default: keep the current one, or make a random one and print it)')
    .argument('<dir>', 'the folder to serve (created if missing)')
    .description('Run a cloud server for DIR. Prints the pairing URI and a QR code; devices pair with it and the PIN, then sync.')
    .option('--hub <url>', 'register at this router hub, so devices reach the server without an open port')
    .option('--cluster-hub <url...>', 'another hub of --hub\'s cluster (its --public-url) where routes may be accepted (repeatable); routes to any other hub are refused')
    .option('--listen <host:port>', `listen for direct connections here (port 0 picks a free one; default 0.0.0.0:${DEFAULT_PORT}, or the port this home used last, or a free one when that is taken)`)
    .option('--no-listen', 'no direct connections: devices reach the server through --hub only (no open port)')
    .option('--new-status-token', 'replace the status page token kept in the home (the old address stops working)')
    .option('--api <host:port>', 'serve the encrypted REST API here', '127.0.0.1:0')

    .option('--name <label>', 'the name devices see', `CloudBox on ${hostname()}`)
    .option('--no-status-page', 'do not serve the status page (by default it is on 127.0.0.1, at a URL with a random token)')
    .option('--versions <policy>', VERSIONS_OPTION_HELP)
    .option('--versions-disk <percent>', VERSIONS_DISK_OPTION_HELP)
    .option('--log-level <level>', LOG_LEVEL_HELP)
    .addHelpText(
      'after',
      `
Examples:
  cloudbox serve ~/Cloud --pin-file ~/.config/cloudbox/master-pin
  CLOUDBOX_PIN=2468-1357 cloudbox serve ~/Cloud
  cloudbox serve /srv/cloud --hub wss://hub.example.org --listen 127.0.0.1:0

While it runs, admin commands with the same --home act on it at once:
  cloudbox devices, cloudbox revoke ID, cloudbox pin add, cloudbox subcloud create NAME …
Ctrl-C stops it cleanly.`,
    )
    .action(async (dir: string, options: PinOptions & { hub?: string; clusterHub?: string[]; listen?: string | false; api: string; name: string; statusPage: boolean; newStatusToken?: boolean; versions?: string; versionsDisk?: string; logLevel?: string }, command: Command) => {
      const logging = createCommandLog('serve', logLevelFrom(options.logLevel))
      stopsOnSignal()
      const masterPin = givenPin(options)
      const versions = versionOptions(options)
      const { home, output } = globalOptions(command)
      const folder = checkedFolder(dir, home, 'serve')
      if (options.listen === false && options.hub === undefined) throw usageError('--no-listen needs --hub: without a listener and a hub, no device could reach the server.')
      const listen = options.listen === false ? undefined : options.listen === undefined ? await defaultListen(home, output) : parseHostPort(options.listen, '--listen')
      const api = parseHostPort(options.api, '--api')
      if (makeFolder(folder, 'serve')) output.note(`created ${folder}`)
      await assertNotServing(home)
      const identity = await identityOrFirstRun(home, output)
      const box = new CloudBox(
        { role: 'server', folder, name: options.name, ...(listen === undefined ? {} : { listen }), ...(options.hub === undefined ? {} : { hub: options.hub }), ...(options.clusterHub === undefined ? {} : { clusterHubs: options.clusterHub }), ...(masterPin === undefined ? {} : { masterPin }), ...(versions === undefined ? {} : { versions }) },
        { identity },
      )
      let madePin: string | undefined
      const stopPrinting = printEvents(output, (listener) => box.status.on(listener), logging)
      // The page answers loopback callers only: with --api on another address it stays off.
      // Loaded here, not at the program's start: every other command would pay for the web server.
      const { CloudServer, listensOnLoopback } = await import('@cloudbox/cloudserver')
      const loopbackApi = listensOnLoopback(api.host)
      if (options.statusPage && !loopbackApi) logging.log.warn(`no status page: it answers on loopback only, and --api listens on ${api.host}`)
      const statusPage = options.statusPage && loopbackApi ? { token: statusToken(home, options.newStatusToken === true) } : false
      const server = new CloudServer({ host: api.host, port: api.port, statusPage }, { box, log: ({ level, message, ...fields }) => logging.log[level](fields, message) })
      let control: { close(): Promise<void> } | undefined
      try {
        await box.start()
        // Without any master PIN nobody could pair: make one and show it once.
        if (!(await box.admin.listPins()).some((pin) => pin.master)) {
          madePin = randomPin()
          await box.setMasterPin(madePin)
        }
        await server.start()
        control = await serveControl(home, async ({ op, args }) => {
          if (op === 'status') return { ...serverStatus(box, server), devices: await box.admin.listDevices(), storage: await box.admin.storage() }
          return dispatchAdmin(box.admin, op, args)
        })
      } catch (error) {
        await control?.close()
        await server.stop()
        await box.stop()
        stopPrinting()
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'EADDRINUSE') throw new CliError('ERR_ADDRESS_IN_USE', `${listen === undefined ? '' : `${listen.host}:${listen.port} or `}${options.api} is in use; pick another --listen / --api (port 0 picks a free one).`, { cause: error })
        throw error
      }
      // The next start listens on the same port, so paired devices find the server where it was.
      if (options.listen === undefined && box.directUrl !== undefined) rememberPort(home, Number(new URL(box.directUrl).port))
      const status = serverStatus(box, server)
      if (output.json) {
        writeOut(`${JSON.stringify({ event: 'serving', ...status, ...(madePin === undefined ? {} : { pin: madePin }) })}\n`)
      } else {
        process.stdout.write(`CloudBox server for ${folder}\n  cloud ID: ${box.id}\n  direct:   ${status.direct ?? 'none'}\n  hub:      ${options.hub ?? 'none'}\n  API:      ${status.api}\n`)
        process.stdout.write(`  status:   ${status.statusPage ?? 'off'}${status.statusPage ? ' (this machine only; the token is its password)' : ''}\n\n`)
        process.stdout.write(`Pairing URI (scan the QR code or copy the line below):\n${status.uri}\n\n${await box.pairingQr(process.stdout.isTTY === true && process.env.NO_COLOR === undefined ? 'terminal' : 'text')}\n`)
        if (madePin !== undefined) process.stdout.write(`Master PIN: ${madePin} (set your own with --pin)\n`)
        process.stdout.write(`Pair a device: cloudbox pair '${status.uri}' --pin PIN\nCtrl-C stops the server.\n`)
      }
      const signal = await untilStopped()
      await control.close()
      await server.stop()
      await box.stop()
      stopPrinting()
      logging.log.info('server stopped')
      process.exitCode = signal === 'SIGINT' ? 130 : 0
    })
}

function serverStatus(box: CloudBox, server: CloudServer) {
  return { role: 'server', id: box.id, name: box.init.name, folder: box.init.folder, uri: box.pairingUri(), direct: box.directUrl, hub: box.init.hub, api: server.url, statusPage: server.statusUrl }
}
