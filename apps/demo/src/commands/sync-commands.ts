/**
 * `cloudbox pair URI --pin PIN` and `cloudbox sync DIR`: this home as a device of a
 * cloud. The pairing (which cloud, how to reach it) lives in `<home>/client`; the folder
 * is chosen at sync time.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { CloudBox, STATE_FILE, type CloudBoxEvent, type PairedCloud } from '@cloudbox/cloudbox'
import type { Command } from 'commander'
import { printEvents } from '../box-events.js'
import { CliError, usageError } from '../errors.js'
import { pinOptions, requiredPin, type PinOptions } from '../pin-input.js'
import { loadIdentity } from '../home.js'
import { globalOptions } from '../program.js'
import { formatBytes } from '../progress.js'
import { untilStopped } from '../stop-signal.js'

export const clientStateDir = (home: string) => join(home, 'client')

/** The cloud this home is paired with, read without starting anything. */
export function pairedCloud(home: string): PairedCloud | undefined {
  const path = join(clientStateDir(home), STATE_FILE)
  if (!existsSync(path)) return undefined
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { paired?: PairedCloud }).paired
  } catch {
    return undefined
  }
}

export const notPairedError = (home: string) =>
  new CliError('ERR_NOT_PAIRED', `This home (${home}) is not paired with a cloud; run \`cloudbox pair URI --pin PIN --home ${home}\` first.`)

export function registerSyncCommands(program: Command): void {
  pinOptions(program
    .command('pair')
    .argument('<uri>', 'the server\'s pairing URI (cloudbox://pair?…), from its QR code or `cloudbox serve`'), 'the PIN the server\'s owner gave you')
    .option('--hub <url>', 'reach the server through this hub instead of the one in the URI')
    .option('--name <label>', 'how this device appears in the server\'s device list', hostname())
    .description('Pair this home with a cloud server: the server proves its key, this device proves the PIN; after that, keys alone authenticate.')
    .addHelpText('after', "\nExamples:\n  cloudbox pair 'cloudbox://pair?id=cb1…&hub=wss://hub.example.org' --pin-file ~/pin.txt\n  CLOUDBOX_PIN=2468-1357 cloudbox pair \"$URI\" --hub ws://127.0.0.1:7070\n  cloudbox pair \"$URI\" --pin 2468-1357")
    .action(async (uri: string, options: PinOptions & { hub?: string; name: string }, command: Command) => {
      const pin = requiredPin(options)
      const { home, output } = globalOptions(command)
      const identity = await loadIdentity(home, output)
      const stateDir = clientStateDir(home)
      const box = new CloudBox({ role: 'client', folder: join(stateDir, 'unsynced'), stateDir, name: options.name, sync: false }, { identity })
      try {
        await box.start()
        const paired = await box.pair(uri, pin, options.hub === undefined ? {} : { hub: options.hub })
        output.result(`Paired with "${paired.name}" (${paired.id}) as ${paired.role}.\nNext: cloudbox sync DIR${command.optsWithGlobals<{ home?: string }>().home ? ` --home ${home}` : ''}`, { paired })
      } finally {
        await box.stop()
      }
    })

  program
    .command('sync')
    .argument('<dir>', 'the local folder to keep in sync with the paired cloud (created if missing)')
    .option('--once', 'sync until both sides match, then exit 0; exit non-zero with the reason when that cannot happen')
    .option('--timeout <seconds>', 'with --once: give up after this long', '600')
    .description('Sync DIR with the paired cloud: continuously (Ctrl-C stops), or once.')
    .addHelpText('after', '\nExamples:\n  cloudbox sync ~/Cloud\n  cloudbox sync ~/Cloud --once && echo up to date\n\nExit codes with --once: 0 in sync; 1 refused, revoked, unreachable, or timed out (the message says which).')
    .action(async (dir: string, options: { once?: boolean; timeout: string }, command: Command) => {
      const { home, output } = globalOptions(command)
      const timeoutSeconds = Number(options.timeout)
      if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw usageError(`--timeout takes a number of seconds, not "${options.timeout}".`)
      const paired = pairedCloud(home)
      if (paired === undefined) throw notPairedError(home)
      const folder = resolve(dir)
      mkdirSync(folder, { recursive: true })
      const identity = await loadIdentity(home, output)
      const box = new CloudBox(
        { role: 'client', folder, stateDir: clientStateDir(home), ...(options.once ? { watch: false, reconnect: { initialDelayMs: 250, maxDelayMs: 2_000 } } : {}) },
        { identity },
      )
      const stopPrinting = printEvents(output, (listener) => box.status.on(listener))
      const started = performance.now()
      const done = new AbortController()
      const totals = { files: 0, bytesFromPeer: 0, bytesReused: 0, conflicts: 0 }
      const countTotals = box.status.on((event) => {
        if (event.type !== 'sync') return
        if (event.event.type === 'file' && event.event.action === 'downloaded') {
          totals.files++
          totals.bytesFromPeer += event.event.bytesFromPeer
          totals.bytesReused += event.event.bytesReused
        }
        if (event.event.type === 'conflict') totals.conflicts++
      })
      try {
        if (!options.once) {
          await box.start()
          output.note(`syncing ${folder} with "${paired.name}" (${paired.id}); Ctrl-C stops`)
          const signal = await untilStopped()
          process.exitCode = signal === 'SIGINT' ? 130 : 0
          return
        }
        const outcome = onceOutcome(box, timeoutSeconds * 1000, done.signal)
        outcome.catch(() => {}) // awaited below; start() may fail first
        await box.start()
        await outcome
      } finally {
        done.abort()
        countTotals()
        await box.stop()
        stopPrinting()
      }
      // After the box stopped: the result is the last line, after every event.
      const seconds = (performance.now() - started) / 1000
      output.result(
        `In sync with "${paired.name}": ${totals.files} files received (${formatBytes(totals.bytesFromPeer)} from the server, ${formatBytes(totals.bytesReused)} reused locally)${totals.conflicts > 0 ? `, ${totals.conflicts} conflict copies kept` : ''} in ${seconds.toFixed(1)} s.`,
        { inSync: true, cloud: paired.id, ...totals, seconds },
      )
    })
}

/** Resolves when the server acknowledges the same state as ours; rejects with the reason it cannot. */
function onceOutcome(box: CloudBox, timeoutMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let connectedOnce = false
    const finish = (error?: Error) => {
      clearTimeout(timer)
      unsubscribe()
      signal.removeEventListener('abort', onAbort)
      if (error === undefined) resolvePromise()
      else reject(error)
    }
    const timer = setTimeout(() => finish(new CliError('ERR_TIMEOUT', `Not in sync after ${timeoutMs / 1000} s; check the server and the network, or raise --timeout.`)), timeoutMs)
    const unsubscribe = box.status.on((event: CloudBoxEvent) => {
      if (event.type === 'connection' && event.state === 'connected') connectedOnce = true
      else if (event.type === 'sync' && event.event.type === 'peer' && event.event.state === 'in-sync') finish()
      else if (event.type === 'refused') finish(new CliError(event.error.code, `The server refused this device: ${event.error.message}`))
      else if (event.type === 'retry' && !connectedOnce && event.attempt >= 4) {
        finish(new CliError('ERR_UNREACHABLE', `Cannot reach the cloud (${event.error?.message ?? 'no answer'}); check that the server runs and the address or hub, then retry.`))
      } else if (event.type === 'sync' && event.event.type === 'state' && event.event.state === 'error') {
        finish(new CliError('ERR_SYNC_FAILED', 'The sync engine stopped on an error (see the lines above); fix it and run again.'))
      }
    })
    const onAbort = () => finish(new CliError('ERR_CANCELLED', 'Stopped before the folders were in sync.'))
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
