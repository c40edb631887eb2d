/**
 * Owner commands for a running server (`--home` of `cloudbox serve`): they go through the
 * home's control socket and act at once. `cloudbox status` also works for a device home.
 */
import type { DeviceInfo, PinInfo, SubCloudInfo } from '@cloudbox/cloudbox'
import type { Command } from 'commander'
import { usageError } from '../errors.js'
import { givenPin, pinOptions, type PinOptions } from '../pin-input.js'
import { hasIdentity, readMetadata } from '../home.js'
import { globalOptions } from '../program.js'
import { formatBytes } from '../progress.js'
import { callControl } from '../server/control-socket.js'
import { pairedCloud } from './sync-commands.js'
import { readSyncStatuses, type SyncStatus } from '../sync-status.js'

const when = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19)

function parseDuration(text: string): number {
  const match = /^(\d+)(s|m|h|d)$/.exec(text)
  if (match === null) throw usageError(`--expires takes a duration such as 30m, 12h or 7d, not "${text}".`)
  return Number(match[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd']
}

function parseBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?$/i.exec(text)
  if (match === null) throw usageError(`--quota takes bytes such as 500MiB or 2GiB, not "${text}".`)
  const unit = (match[2] ?? 'B').toLowerCase()
  return Math.round(Number(match[1]) * 1024 ** ['b', 'kib', 'mib', 'gib', 'tib'].indexOf(unit))
}

/** The lines `cloudbox status` prints for one running sync. */
function describeSync(status: SyncStatus): string[] {
  const { download, upload } = status.pending
  const state = status.connection !== 'connected' ? (status.connection === 'connecting' ? 'connecting to the cloud' : 'not connected (retrying)') : status.heldDeletes > 0 ? 'connected, deletions held' : !status.inSync ? 'connected, syncing' : status.unreadable.length > 0 ? `connected, in sync except ${status.unreadable.length} ${status.unreadable.length === 1 ? 'file' : 'files'} that cannot be read here` : 'connected, in sync'
  const lines = [`  sync ${status.folder} (PID ${status.pid}): ${state}${status.lastInSyncAt === null ? '' : `; last in sync ${when(status.lastInSyncAt)}`}`]
  if (download.files > 0 || upload.files > 0) lines.push(`    pending: ${download.files} files (${formatBytes(download.bytes)}) to download, ${upload.files} files (${formatBytes(upload.bytes)}) for the cloud to apply`)
  if (status.heldDeletes > 0) lines.push(`    deletions held: ${status.heldDeletes} files (choose: cloudbox sync ${status.folder} --confirm-deletes, or --restore-deleted)`)
  if (status.unreadable.length > 0) lines.push(`    not synced (cannot be read here): ${status.unreadable.slice(0, 5).join(', ')}${status.unreadable.length > 5 ? ', …' : ''}`)
  for (const error of status.errors.slice(-5)) lines.push(`    ${when(error.at)} ${error.code}: ${error.message}${error.path === undefined || error.message.includes(error.path) ? '' : ` (${error.path})`}`)
  return lines
}

export function registerAdminCommands(program: Command): void {
  const run = async (command: Command, op: string, args: unknown[] = []) => {
    const { home } = globalOptions(command)
    return callControl(home, op, args)
  }

  program
    .command('status')
    .description('What this home is: the running server\'s state, or the cloud this device is paired with.')
    .action(async (_options: unknown, command: Command) => {
      const { home, output } = globalOptions(command)
      const server = await callControl(home, 'status').catch((error: { code?: string }) => {
        if (error.code === 'ERR_SERVER_NOT_RUNNING') return undefined
        throw error
      })
      if (server !== undefined) {
        const status = server as { id: string; name: string; folder: string; uri: string; api: string; direct?: string; hub?: string; devices: DeviceInfo[]; storage: { usedBytes: number; files: number; quotaBytes?: number } }
        const online = status.devices.filter((device) => device.online).length
        output.result(
          [
            `Server "${status.name}" (${status.id}), running`,
            `  folder:  ${status.folder}`,
            `  storage: ${formatBytes(status.storage.usedBytes)} in ${status.storage.files} files${status.storage.quotaBytes === undefined ? '' : ` of ${formatBytes(status.storage.quotaBytes)}`}`,
            `  devices: ${status.devices.length} paired, ${online} online`,
            `  direct:  ${status.direct ?? 'none'}   hub: ${status.hub ?? 'none'}   API: ${status.api}`,
            `  pairing: ${status.uri}`,
          ].join('\n'),
          { role: 'server', running: true, ...status },
        )
        return
      }
      const identity = hasIdentity(home) ? readMetadata(home).publicId : undefined
      const paired = pairedCloud(home)
      if (paired !== undefined) {
        const syncs = readSyncStatuses(home)
        const lines = [`Device ${identity} paired with "${paired.name}" (${paired.id}) as ${paired.role} since ${when(paired.pairedAt)}.`, `  reach: ${[...paired.addresses, ...(paired.hub ? [`hub ${paired.hub}`] : [])].join(', ')}`]
        const running = syncs.filter((each) => each.running)
        if (running.length === 0) lines.push('  sync: not running (start it with cloudbox sync DIR)')
        for (const each of running) lines.push(...describeSync(each))
        output.result(lines.join('\n'), { role: 'client', id: identity, paired, syncs: running })
        return
      }
      output.result(identity === undefined ? `No identity in ${home}: run \`cloudbox init\`.` : `Identity ${identity}; not paired, and no server runs with this home.`, { id: identity ?? null, paired: null, running: false })
    })

  program
    .command('devices')
    .description('The running server\'s paired devices.')
    .action(async (_options: unknown, command: Command) => {
      const { output } = globalOptions(command)
      const devices = (await run(command, 'listDevices')) as DeviceInfo[]
      const lines = devices.map((device) => `${device.id}  ${device.role.padEnd(6)}  ${device.state.padEnd(7)}  ${device.online ? 'online ' : 'offline'}  last seen ${when(device.lastSeen)}  ${device.label}`)
      output.result(lines.length === 0 ? 'No paired devices yet.' : lines.join('\n'), { devices })
    })

  for (const [name, op, verb] of [
    ['revoke', 'revokeDevice', 'revoked: its sessions are closed and its key is refused'],
    ['block', 'blockDevice', 'blocked: its sessions are closed until you unblock it'],
    ['unblock', 'unblockDevice', 'unblocked'],
  ] as const) {
    program
      .command(name)
      .argument('<id>', 'the device\'s public ID (see `cloudbox devices`)')
      .description(`${name[0]!.toUpperCase()}${name.slice(1)} a paired device of the running server.`)
      .action(async (id: string, _options: unknown, command: Command) => {
        const { output } = globalOptions(command)
        await run(command, op, [id])
        output.result(`Device ${id} ${verb}.`, { device: id, change: name })
      })
  }

  const pin = program.command('pin').description('PINs that let new devices pair with the running server.')
  pinOptions(pin
    .command('add')
    .option('--label <label>', 'what the PIN is for', `pin-${Date.now().toString(36)}`)
    .option('--role <role>', 'owner or member', 'member'), 'the PIN (default: a random one)', { environment: false })
    .option('--expires <duration>', 'e.g. 30m, 12h, 7d (default 24h)', '24h')
    .description('Add a one-time PIN; it is shown only now.')
    .action(async (options: PinOptions & { label: string; role: string; expires: string }, command: Command) => {
      const { output } = globalOptions(command)
      if (options.role !== 'owner' && options.role !== 'member') throw usageError(`--role is owner or member, not "${options.role}".`)
      const chosen = givenPin(options, { environment: false })
      const added = (await run(command, 'addPin', [{ label: options.label, role: options.role, expiresInMs: parseDuration(options.expires), ...(chosen === undefined ? {} : { pin: chosen }) }])) as { label: string; pin: string; expiresAt: number }
      output.result(`One-time PIN "${added.label}" (${options.role}): ${added.pin}\nValid until ${when(added.expiresAt)}; it works once.`, added)
    })
  pin
    .command('list')
    .description('The PINs that can pair now (never their values).')
    .action(async (_options: unknown, command: Command) => {
      const { output } = globalOptions(command)
      const pins = (await run(command, 'listPins')) as PinInfo[]
      const lines = pins.map((each) => `${each.label.padEnd(16)}  ${each.role.padEnd(6)}  ${each.master ? 'master ' : 'one-use'}  made ${when(each.createdAt)}${each.expiresAt === undefined ? '' : `  expires ${when(each.expiresAt)}`}`)
      output.result(lines.join('\n') || 'No PINs.', { pins })
    })
  pin
    .command('remove')
    .argument('<label>')
    .description('Remove a one-time PIN.')
    .action(async (label: string, _options: unknown, command: Command) => {
      const { output } = globalOptions(command)
      await run(command, 'removePin', [label])
      output.result(`PIN "${label}" removed.`, { removed: label })
    })

  const subcloud = program.command('subcloud').description('Sub-clouds of the running server: own key, folder, devices and quota.')
  subcloud
    .command('create')
    .argument('<name>')
    .option('--quota <bytes>', 'e.g. 500MiB, 2GiB')
    .description('Create and start a sub-cloud; prints its pairing URI and a one-time owner PIN.')
    .action(async (name: string, options: { quota?: string }, command: Command) => {
      const { output } = globalOptions(command)
      const created = (await run(command, 'createSubCloud', [{ name, ...(options.quota === undefined ? {} : { quotaBytes: parseBytes(options.quota) }) }])) as SubCloudInfo & { pin: string }
      output.result(`Sub-cloud ${created.index} "${created.name}" (${created.id})\nPairing URI:\n${created.uri}\nOwner PIN (once): ${created.pin}`, { ...created })
    })
  subcloud
    .command('list')
    .description('The running server\'s sub-clouds.')
    .action(async (_options: unknown, command: Command) => {
      const { output } = globalOptions(command)
      const clouds = (await run(command, 'listSubClouds')) as SubCloudInfo[]
      output.result(clouds.map((each) => `${each.index}  ${each.id}  ${each.name}${each.quotaBytes === undefined ? '' : `  quota ${formatBytes(each.quotaBytes)}`}`).join('\n') || 'No sub-clouds.', { subClouds: clouds })
    })
  subcloud
    .command('destroy')
    .argument('<index>')
    .option('--wipe', 'also delete its folder and state')
    .description('Stop a sub-cloud (and with --wipe delete its files).')
    .action(async (index: string, options: { wipe?: boolean }, command: Command) => {
      const { output } = globalOptions(command)
      const number = Number(index)
      if (!Number.isInteger(number) || number < 0) throw usageError(`INDEX is a sub-cloud number (see \`cloudbox subcloud list\`), not "${index}".`)
      await run(command, 'destroySubCloud', [number, { wipe: options.wipe === true }])
      output.result(`Sub-cloud ${number} destroyed${options.wipe ? ' and wiped' : ''}.`, { destroyed: number, wiped: options.wipe === true })
    })
}
