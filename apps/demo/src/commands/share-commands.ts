/**
 * `cloudbox share` and `cloudbox inbox`: sealed files through the paired server's drop
 * box. The file is sealed here (age, for the recipients' keys) and signed by this
 * identity; the server stores ciphertext it cannot open.
 */
import { existsSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import { resolve } from 'node:path'
import type { CloudServerClient } from '@cloudbox/cloudserver'
import type { Command } from 'commander'
import { CliError, fileNotFoundError, outputExistsError, usageError } from '../errors.js'
import { loadIdentity } from '../home.js'
import { globalOptions } from '../program.js'
import { formatBytes, ProgressLine } from '../progress.js'
import { notPairedError, pairedCloud } from './sync-commands.js'
import { parseRecipient, type Identity } from '@cloudbox/encrypted-messaging'
import { fetchFromBucket, parseBucketUrl, parseShareLink, shareToBucket } from './bucket-share.js'
import { identitiesFor } from './seal-commands.js'

const apiOption = '--api <url>'
const apiHelp = 'the server\'s API URL (printed by `cloudbox serve`; default: through the hub of the pairing)'

async function apiClient(command: Command, api: string | undefined): Promise<{ client: CloudServerClient; identity: Identity }> {
  const { home, output } = globalOptions(command)
  const paired = pairedCloud(home)
  if (paired === undefined) throw notPairedError(home)
  // The API answers on the server's direct port, and through its hub: the first that answers.
  const { CloudServerClient, hubApiUrl } = await import('@cloudbox/cloudserver')
  const url = api ?? (await reachableDirect(paired.addresses)) ?? (paired.hub === undefined ? undefined : hubApiUrl(paired.hub, paired.id))
  if (url === undefined) throw new CliError('ERR_NO_API_ROUTE', `The paired server cannot be reached at ${paired.addresses.join(', ') || 'any direct address'} and has no hub; start it, or pass --api URL (\`cloudbox serve\` prints it).`)
  const identity = await loadIdentity(home, output)
  return { client: new CloudServerClient({ url, server: paired.id, identity }), identity }
}

/** The API base of the first direct address (ws://host:port → http://host:port) that takes a connection within 1.5 s. */
async function reachableDirect(addresses: readonly string[]): Promise<string | undefined> {
  for (const address of addresses) {
    let url: URL
    try {
      url = new URL(address)
    } catch {
      continue
    }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') continue
    const port = Number(url.port || (url.protocol === 'wss:' ? 443 : 80))
    const host = url.hostname.replace(/^\[|\]$/g, '')
    const open = await new Promise<boolean>((resolvePromise) => {
      const socket = connect({ host, port, timeout: 1_500 })
      const done = (ok: boolean) => {
        socket.destroy()
        resolvePromise(ok)
      }
      socket.once('connect', () => done(true))
      socket.once('timeout', () => done(false))
      socket.once('error', () => done(false))
    })
    if (open) return `${url.protocol === 'wss:' ? 'https:' : 'http:'}//${url.host}`
  }
  return undefined
}

const transferBar = (label: string) => {
  const bar = new ProgressLine()
  return {
    onProgress: ({ bytes, total }: { bytes: number; total: number }) => bar.update({ label, done: bytes, total }),
    done: () => bar.clear(),
  }
}

export function registerShareCommands(program: Command): void {
  program
    .command('share')
    .argument('<file>', 'the file to share')
    .requiredOption('--to <ids...>', 'recipients: cb1… public IDs or age1… keys')
    .option('--name <name>', 'the name recipients see (default: the file\'s name)')
    .option('--no-sign', 'do not sign the sealed file with this identity')
    .option(apiOption, apiHelp)
    .option('--bucket <s3-url>', 'no server: leave it in this bucket (s3://BUCKET/PREFIX) and print a share link; credentials from the usual AWS variables and files')
    .option('--endpoint <url>', 'with --bucket: an S3-compatible service (MinIO, Ceph, a local server) instead of AWS')
    .description('Seal FILE for the recipients and leave it in the paired server\'s drop box, or in a bucket of yours (--bucket); only they can open it.')
    .addHelpText(
      'after',
      '\nExamples:\n  cloudbox share report.pdf --to cb1qxy… cb1abc…\n  cloudbox share photo.jpg --to age1… --no-sign\n  cloudbox share report.pdf --to cb1qxy… age1… --bucket s3://my-bucket/shares\n  cloudbox fetch \'cloudbox://share?…\' -o report.pdf\n\n' +
        'With --bucket the object is plain age (age -d opens it with the recipient\'s key) under a random name, signed\n' +
        'beside it (NAME.minisig); the link names the bucket, the object and you, never a key or the file\'s name.',
    )
    .action(async (file: string, options: { to: string[]; name?: string; sign: boolean; api?: string; bucket?: string; endpoint?: string }, command: Command) => {
      const { home, output } = globalOptions(command)
      const path = resolve(file)
      if (!existsSync(path) || !statSync(path).isFile()) throw fileNotFoundError(path)
      const recipients = options.to.flatMap((entry) => entry.split(',')).map((entry) => entry.trim()).filter((entry) => entry !== '')
      if (options.bucket !== undefined) {
        if (options.api !== undefined) throw usageError('Choose --bucket (no server) or --api (the paired server), not both.')
        if (!options.sign) throw usageError('A bucket share is always signed: the recipient checks who left it there before opening it.')
        const location = parseBucketUrl(options.bucket)
        const identity = await loadIdentity(home, output)
        try {
          const shared = await shareToBucket(path, recipients, location, identity, options.endpoint)
          output.result(shared.link, { link: shared.link, bucket: location.bucket, key: shared.key, signature: shared.signatureKey, sealedBytes: shared.sealedBytes, recipients, from: identity.publicId })
        } finally {
          identity.destroy()
        }
        return
      }
      if (options.endpoint !== undefined) throw usageError('--endpoint goes with --bucket.')
      // Before anything is uploaded: every recipient must be a key.
      for (const recipient of recipients) {
        try {
          parseRecipient(recipient)
        } catch (error) {
          throw usageError(`--to: "${recipient}" is neither a public ID (cb1…) nor an age recipient (age1…): ${(error as Error).message}`)
        }
      }
      const { client, identity } = await apiClient(command, options.api)
      const bar = transferBar(`sharing ${file}`)
      try {
        const share = await client.share(path, options.to, { ...(options.name === undefined ? {} : { name: options.name }), ...(options.sign ? { signer: identity } : {}), onProgress: bar.onProgress })
        bar.done()
        output.result(`Shared "${share.name}" (${formatBytes(share.size)} sealed) as ${share.id} with ${share.to.length} recipient(s)${options.sign ? ', signed' : ''}.`, { ...share })
      } finally {
        bar.done()
        identity.destroy()
      }
    })

  program
    .command('fetch')
    .argument('<link>', 'a share link (cloudbox://share?…) from cloudbox share --bucket')
    .requiredOption('-o, --output <file>', 'where to write the opened file')
    .option('--endpoint <url>', 'the S3-compatible service (default: the link\'s, else AWS)')
    .option('-i, --identity <age-key-file>', 'open with an age identity file instead of this home\'s key; repeatable', (value: string, previous: string[] = []) => [...previous, value])
    .option('--force', 'overwrite the output file')
    .description('Download a share from its bucket, check that its sender signed it, and open it.')
    .addHelpText('after', "\nExamples:\n  cloudbox fetch 'cloudbox://share?bucket=…&key=…&from=cb1…' -o report.pdf")
    .action(async (text: string, options: { output: string; endpoint?: string; identity?: string[]; force?: boolean }, command: Command) => {
      const { home, output } = globalOptions(command)
      const link = parseShareLink(text)
      if (existsSync(options.output) && options.force !== true) throw outputExistsError(options.output)
      const { identities, release } = await identitiesFor(options.identity, home, output)
      try {
        const fetched = await fetchFromBucket(link, options.output, identities, options.endpoint)
        output.result(`Fetched ${formatBytes(fetched.bytes)} into ${options.output}, signed by ${link.from}${fetched.signedAt === undefined ? '' : ` on ${fetched.signedAt.toISOString().slice(0, 19).replace('T', ' ')} UTC`}.`, {
          output: options.output,
          bytes: fetched.bytes,
          from: link.from,
          signedAt: fetched.signedAt?.toISOString() ?? null,
          bucket: link.bucket,
          key: link.key,
        })
      } finally {
        release()
      }
    })

  const inbox = program
    .command('inbox')
    .option(apiOption, apiHelp)
    .description('What waits for this identity in the paired server\'s drop box.')
    .addHelpText('after', '\nExamples:\n  cloudbox inbox\n  cloudbox inbox --json\n  cloudbox inbox get ID -o report.pdf')
    .action(async (options: { api?: string }, command: Command) => {
      const { output } = globalOptions(command)
      const { client, identity } = await apiClient(command, options.api)
      const shares = await client.inbox().finally(() => identity.destroy())
      const lines = shares.map((share) => `${share.id}  ${new Date(share.created).toISOString().slice(0, 16).replace('T', ' ')}  ${formatBytes(share.size).padStart(9)}  ${share.name}  from ${share.from}${share.signature ? ' (signed)' : ''}`)
      output.result(lines.join('\n') || 'Nothing waits for you.', { shares })
    })
  inbox
    .command('get')
    .argument('<id>', 'the share\'s id (see `cloudbox inbox`)')
    .requiredOption('-o, --output <file>', 'where to write the opened file')
    .option('--force', 'overwrite the output file')
    .option('--keep', 'leave the share in the inbox after opening it')
    .option(apiOption, apiHelp)
    .description('Download a share, check its signature, open it with this identity, and (unless --keep) remove it from the inbox.')
    .action(async (id: string, options: { output: string; force?: boolean; keep?: boolean; api?: string }, command: Command) => {
      const { output } = globalOptions(command)
      const target = resolve(options.output)
      if (existsSync(target) && options.force !== true) throw outputExistsError(target)
      const { client, identity } = await apiClient(command, options.api ?? command.parent?.opts<{ api?: string }>().api)
      const bar = transferBar(`receiving ${id}`)
      try {
        const received = await client.receive(id, target, identity, { onProgress: bar.onProgress })
        bar.done()
        if (options.keep !== true) await client.removeShare(id)
        output.result(
          `Opened "${received.share.name}" from ${received.share.from} into ${target}${received.signedBy ? `; signature by ${received.signedBy} verified` : '; not signed'}.`,
          { id, output: target, from: received.share.from, signedBy: received.signedBy ?? null, size: statSync(target).size },
        )
      } finally {
        bar.done()
        identity.destroy()
      }
    })
}
