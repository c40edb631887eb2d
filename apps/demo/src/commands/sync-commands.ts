/**
 * `cloudbox pair URI --pin PIN` and `cloudbox sync DIR`: this home as a device of a
 * cloud. The pairing (which cloud, how to reach it) lives in `<home>/client`; the folder
 * is chosen at sync time.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { CloudBox, STATE_FILE, type CloudBoxEvent, type PairedCloud } from '@cloudbox/cloudbox'
import type { Command } from 'commander'
import { createCommandLog, printEvents } from '../box-events.js'
import { LOG_LEVEL_HELP, logLevelFrom } from '../log.js'
import { CliError, ExitCode, usageError } from '../errors.js'
import { pinOptions, requiredPin, type PinOptions } from '../pin-input.js'
import { loadIdentity } from '../home.js'
import { checkedFolder, makeFolder } from '../folder-safety.js'
import type { Output } from '../output.js'
import { globalOptions } from '../program.js'
import { formatBytes } from '../progress.js'
import { stopsOnSignal, untilStopped } from '../stop-signal.js'
import { SyncStatusWriter } from '../sync-status.js'
import { identityOrFirstRun } from './identity-commands.js'
import { versionOptions, VERSIONS_DISK_OPTION_HELP, VERSIONS_OPTION_HELP } from './version-commands.js'

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
      const identity = await identityOrFirstRun(home, output)
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
    .option('--confirm-deletes', 'let the deletions the mass-delete guard holds back go ahead (they reach every device)')
    .option('--restore-deleted', 'instead of deleting, bring the files the guard holds back from the cloud')
    .option('--versions <policy>', VERSIONS_OPTION_HELP)
    .option('--versions-disk <percent>', VERSIONS_DISK_OPTION_HELP)
    .option('--log-level <level>', LOG_LEVEL_HELP)
    .description('Sync DIR with the paired cloud: continuously (Ctrl-C stops), or once.')
    .addHelpText(
      'after',
      '\nExamples:\n  cloudbox sync ~/Cloud\n  cloudbox sync ~/Cloud --once && echo up to date\n  cloudbox sync ~/Cloud --once --restore-deleted\n\n' +
        'When many files vanish at once (an unmounted disk, a wrong folder), their deletions are held: nothing\n' +
        'is deleted anywhere until you choose --confirm-deletes or --restore-deleted.\n\n' +
        `Exit codes with --once: 0 in sync; 1 refused, revoked, unreachable, or timed out (the message says which); ${ExitCode.filesNotSynced} some files could not be read here (ERR_FILES_NOT_SYNCED, listed); ${ExitCode.deletesHeld} deletions held (ERR_DELETES_HELD).`,
    )
    .action(async (dir: string, options: { once?: boolean; timeout: string; confirmDeletes?: boolean; restoreDeleted?: boolean; versions?: string; versionsDisk?: string; logLevel?: string }, command: Command) => {
      const { home, output } = globalOptions(command)
      const logging = createCommandLog('sync', logLevelFrom(options.logLevel))
      const versions = versionOptions(options)
      const timeoutSeconds = Number(options.timeout)
      if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw usageError(`--timeout takes a number of seconds, not "${options.timeout}".`)
      if (options.confirmDeletes && options.restoreDeleted) throw usageError('Choose one of --confirm-deletes (delete everywhere) and --restore-deleted (bring the files back), not both.')
      const paired = pairedCloud(home)
      if (paired === undefined) throw notPairedError(home)
      const folder = checkedFolder(dir, home, 'sync')
      makeFolder(folder, 'sync')
      const identity = await loadIdentity(home, output)
      const box = new CloudBox(
        { role: 'client', folder, stateDir: clientStateDir(home), ...(versions === undefined ? {} : { versions }), ...(options.once ? { watch: false, reconnect: { initialDelayMs: 250, maxDelayMs: 2_000 } } : {}) },
        { identity },
      )
      const stopPrinting = printEvents(output, (listener) => box.status.on(listener), logging)
      // For `cloudbox status` in another terminal.
      const statusFile = new SyncStatusWriter(home, folder, { id: paired.id, name: paired.name }, box)
      statusFile.start()
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
      // What to do about held deletions, once the first scan has found them.
      const heldAction = options.confirmDeletes ? confirmHeld(box, output) : options.restoreDeleted ? restoreHeld(box, output, done.signal) : undefined
      try {
        if (!options.once) {
          stopsOnSignal()
          await box.start()
          logging.log.info({ folder, cloud: paired.id }, `syncing ${folder} with "${paired.name}"; Ctrl-C stops`)
          void heldAction?.().catch((error: Error) => logging.log.error({ code: (error as { code?: string }).code }, `held deletions: ${error.message}`))
          const signal = await untilStopped()
          process.exitCode = signal === 'SIGINT' ? 130 : 0
          return
        }
        const outcome = onceOutcome(box, timeoutSeconds * 1000, done.signal)
        outcome.promise.catch(() => {}) // awaited below; start() may fail first
        // The session opens while the first scan runs: an acknowledgement of what was
        // scanned so far is not the end.
        const starting = box.start()
        outcome.during(starting)
        await starting
        if (heldAction !== undefined) outcome.during(heldAction())
        await outcome.promise
      } finally {
        done.abort()
        countTotals()
        statusFile.stop()
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

/** Per-file refusals of the cloud's changes: the rest syncs, those files do not. */
const PER_FILE_CODES = new Set(['ERR_FILE_UNWRITABLE', 'ERR_NAME_TOO_LONG', 'ERR_CASE_CLASH', 'ERR_UNSAFE_PATH', 'ERR_QUOTA_EXCEEDED', 'ERR_SYMLINKS_UNSUPPORTED'])
/** After the last refusal, this long without other progress means the rest is done. */
const REFUSED_SETTLE_MS = 3_000

/** A choice about the deletions the guard holds: runs once the engine is up (and, to restore, connected). */
type HeldAction = () => Promise<void>

function confirmHeld(box: CloudBox, output: Output): HeldAction {
  return async () => {
    const engine = box.engine
    if (engine === undefined) return
    const held = engine.heldDeletes.length
    await engine.confirmDeletes()
    if (held > 0) output.note(`${held} held deletions confirmed; they go to the cloud now`)
  }
}

function restoreHeld(box: CloudBox, output: Output, signal: AbortSignal): HeldAction {
  const report = (result: { restored: string[]; failed: { path: string; error: Error }[] }) => {
    if (result.restored.length > 0) output.note(`${result.restored.length} held files brought back from the cloud`)
    if (result.failed.length > 0) {
      const some = result.failed.slice(0, 5).map((failure) => `${failure.path}: ${failure.error.message}`).join('; ')
      throw new CliError('ERR_RESTORE_INCOMPLETE', `${result.failed.length} held files could not be brought back (${some}); nothing was deleted. Run again once the cloud is reachable, or choose --confirm-deletes.`)
    }
  }
  return async () => {
    const engine = box.engine
    if (engine === undefined || engine.heldDeletes.length === 0) return
    // The files come from the cloud: until a session is up, wait for the next one.
    for (;;) {
      const connected = nextPeer(box, signal)
      try {
        report(await engine.restoreHeldDeletes())
        connected.cancel()
        return
      } catch (error) {
        if ((error as { code?: string }).code !== 'ERR_NO_PEER') {
          connected.cancel()
          throw error
        }
      }
      await connected.promise
    }
  }
}

/** The next time a sync session with the cloud is up (subscribed at once, so none is missed). */
function nextPeer(box: CloudBox, signal: AbortSignal): { promise: Promise<void>; cancel: () => void } {
  let off = () => {}
  const promise = new Promise<void>((resolvePromise, reject) => {
    const onAbort = () => reject(new CliError('ERR_CANCELLED', 'Stopped before the held files were brought back.'))
    const unsubscribe = box.status.on((event) => {
      if (event.type === 'sync' && event.event.type === 'peer' && event.event.state === 'connected') resolvePromise()
    })
    signal.addEventListener('abort', onAbort, { once: true })
    off = () => {
      unsubscribe()
      signal.removeEventListener('abort', onAbort)
    }
  })
  promise.catch(() => {})
  return { promise: promise.finally(() => off()), cancel: () => off() }
}

/**
 * Resolves when the server acknowledges the same state as ours and nothing is held here;
 * rejects with the reason it cannot. `during(work)` holds the verdict until `work` (a
 * choice about held deletions) is done.
 */
function onceOutcome(box: CloudBox, timeoutMs: number, signal: AbortSignal): { promise: Promise<void>; during: (work: Promise<void>) => void } {
  let during: (work: Promise<void>) => void = () => {}
  const promise = new Promise<void>((resolvePromise, reject) => {
    let connectedOnce = false
    let acknowledged: Uint8Array | undefined
    let busy = 0
    // The cloud's files this device refused (cannot write them, a name it cannot hold…): once
    // nothing moves for a while after the last one, they will not sync this run.
    const refused = new Map<string, string>()
    let settle: NodeJS.Timeout | undefined
    const notSynced = () => {
      const unreadable = box.engine?.unreadable ?? []
      const lines = [...[...refused].map(([path, code]) => `${path} (${code})`), ...unreadable.map((path) => `${path} (ERR_FILE_UNREADABLE)`)]
      const listed = lines.slice(0, 20).join(', ') + (lines.length > 20 ? `, and ${lines.length - 20} more` : '')
      return new CliError(
        'ERR_FILES_NOT_SYNCED',
        `${lines.length} files or folders did not sync: ${listed}. ${unreadable.length > 0 ? 'Give this user read access (chmod, chown) to what cannot be read; ' : ''}${refused.size > 0 ? 'see the lines above for what to do about the others; ' : ''}or list them in .cloudboxignore.local. Everything else is in sync.`,
        { exitCode: ExitCode.filesNotSynced },
      )
    }
    const finish = (error?: Error) => {
      clearTimeout(timer)
      clearTimeout(settle)
      unsubscribe()
      signal.removeEventListener('abort', onAbort)
      if (error === undefined) resolvePromise()
      else reject(error)
    }
    // In sync: the server acknowledged the root we hold now, and no deletion is held here.
    const check = () => {
      const engine = box.engine
      if (acknowledged === undefined || busy > 0 || engine === undefined) return
      const held = engine.heldDeletes.length
      if (held > 0) {
        finish(
          new CliError(
            'ERR_DELETES_HELD',
            `${held} files are missing here and their deletions are held (so many vanished at once: an unmounted disk, a wrong folder?); nothing was deleted anywhere. Run again with --confirm-deletes to delete them everywhere, or --restore-deleted to bring them back from the cloud.`,
            { exitCode: ExitCode.deletesHeld },
          ),
        )
      } else if (Buffer.compare(acknowledged, engine.root) === 0) {
        if (engine.unreadable.length === 0 && refused.size === 0) return finish()
        finish(notSynced())
      }
    }
    during = (work) => {
      busy++
      work.then(
        () => {
          busy--
          check()
        },
        (error: Error) => finish(error),
      )
    }
    const timer = setTimeout(() => finish(new CliError('ERR_TIMEOUT', `Not in sync after ${timeoutMs / 1000} s; check the server and the network, or raise --timeout.`)), timeoutMs)
    const unsubscribe = box.status.on((event: CloudBoxEvent) => {
      if (event.type === 'sync' && event.event.type === 'error' && event.event.path !== undefined && PER_FILE_CODES.has(event.event.error.code)) refused.set(event.event.path, event.event.error.code)
      // The cloud refused one of this device's files: it will not sync this run either.
      if (event.type === 'sync' && event.event.type === 'peer-error' && event.event.path !== undefined && (PER_FILE_CODES.has(event.event.code) || event.event.code === 'ERR_FILE_UNREADABLE')) refused.set(event.event.path, `${event.event.code} on the cloud`)
      if (event.type === 'sync' && event.event.type === 'peer-error' && event.event.code === 'ERR_MASS_DELETE') {
        return finish(new CliError('ERR_DELETES_HELD', `The cloud holds deletions of its own (${event.event.message}): the folders are not the same until its owner chooses, on the server's status page or with its program. Nothing was deleted here.`, { exitCode: ExitCode.deletesHeld }))
      }
      // A full disk stops every download (here) or upload (there): waiting would only time out.
      if (event.type === 'sync' && event.event.type === 'error' && event.event.error.code === 'ERR_DISK_FULL') {
        return finish(new CliError('ERR_DISK_FULL', `The disk holding this folder is full, so the cloud's files cannot all arrive (${event.event.error.message}). Nothing was damaged and what arrived is kept: free some space and run sync again.`))
      }
      if (event.type === 'sync' && event.event.type === 'peer-error' && event.event.code === 'ERR_DISK_FULL') {
        return finish(new CliError('ERR_DISK_FULL', `The cloud's disk is full, so this device's changes cannot all reach it (${event.event.message}). Nothing was damaged: ask the server's owner to free some space, then run sync again.`))
      }
      if (refused.size > 0 && event.type === 'sync' && ['error', 'peer-error', 'file', 'progress', 'peer'].includes(event.event.type)) {
        clearTimeout(settle)
        settle = setTimeout(() => finish(notSynced()), REFUSED_SETTLE_MS)
      }
      if (event.type === 'connection' && event.state === 'connected') connectedOnce = true
      else if (event.type === 'sync' && event.event.type === 'peer' && event.event.state === 'in-sync') {
        acknowledged = event.event.root
        check()
      } else if (event.type === 'refused') finish(new CliError(event.error.code, `The server refused this device: ${event.error.message}`))
      else if (event.type === 'retry' && !connectedOnce && event.attempt >= 4) {
        finish(new CliError('ERR_UNREACHABLE', `Cannot reach the cloud (${event.error?.message ?? 'no answer'}); check that the server runs and the address or hub, then retry.`))
      } else if (event.type === 'sync' && event.event.type === 'state' && event.event.state === 'error') {
        finish(new CliError('ERR_SYNC_FAILED', 'The sync engine stopped on an error (see the lines above); fix it and run again.'))
      }
    })
    const onAbort = () => finish(new CliError('ERR_CANCELLED', 'Stopped before the folders were in sync.'))
    signal.addEventListener('abort', onAbort, { once: true })
  })
  return { promise, during: (work) => during(work) }
}
