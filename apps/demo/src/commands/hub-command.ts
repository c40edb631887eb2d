import type { Command } from 'commander'
import { CliError } from '../errors.js'
import { createLogger, LOG_LEVEL_HELP, logLevelFrom } from '../log.js'
import { globalOptions } from '../program.js'
import { stopsOnSignal, untilStopped } from '../stop-signal.js'

function parsePort(text: string): number {
  const port = Number(text)
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new CliError('ERR_USAGE', `--port takes 0–65535, not "${text}".`, { exitCode: 2 })
  return port
}

export function registerHubCommand(program: Command): void {
  program
    .command('hub')
    .description('Run a router hub: nodes register by proving their key, clients reach them by public ID, frames pass through unread.')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0 picks a free one)', '7070')
    .option('--redis <url>', 'cluster mode: share routes with the other hubs on this Redis (redis://host:port)')
    .option('--public-url <url>', 'in cluster mode, this hub\'s own address as nodes reach it (default: ws://HOST:PORT)')
    .option('--proxy-url <url...>', 'a proxy or load balancer in front of this hub, as nodes dial it (repeatable); nodes sign their registration for the URL they dialed')
    .option('--log-level <level>', LOG_LEVEL_HELP)
    .addHelpText(
      'after',
      `
Examples:
  cloudbox hub
  cloudbox hub --host 0.0.0.0 --port 443
  cloudbox hub --host 127.0.0.1 --port 7070 --proxy-url wss://hub.example.org
  cloudbox hub --host 0.0.0.0 --port 7070 --redis redis://10.0.0.5:6379 --public-url wss://hub-a.example.org --proxy-url wss://hub.example.org

In cluster mode hubs run side by side (behind a load balancer, each also reachable at its
own --public-url): a client on any hub reaches a node registered on any other. Behind a
proxy or load balancer, name it with --proxy-url: a node signs its registration for the
URL it dialed, and the hub refuses one made for another hub. Servers of a cluster list the
members' --public-url with \`cloudbox serve --cluster-hub URL\`.
Health: GET /health. Metrics (Prometheus): GET /metrics. Ctrl-C stops it cleanly.`,
    )
    .action(async (options: { host: string; port: string; redis?: string; publicUrl?: string; proxyUrl?: string[]; logLevel?: string }, command: Command) => {
      const log = createLogger('hub', logLevelFrom(options.logLevel))
      stopsOnSignal()
      const { output } = globalOptions(command)
      if (options.redis !== undefined && !/^rediss?:\/\/\S+$/.test(options.redis)) throw new CliError('ERR_USAGE', `--redis takes a redis:// or rediss:// URL, not "${options.redis}".`, { exitCode: 2 })
      if (options.publicUrl !== undefined && !/^wss?:\/\/\S+$/.test(options.publicUrl)) throw new CliError('ERR_USAGE', `--public-url takes a ws:// or wss:// URL, not "${options.publicUrl}".`, { exitCode: 2 })
      if (options.publicUrl !== undefined && options.redis === undefined) throw new CliError('ERR_USAGE', '--public-url only matters in cluster mode: add --redis URL (behind a proxy, use --proxy-url).', { exitCode: 2 })
      for (const url of options.proxyUrl ?? []) if (!/^wss?:\/\/\S+$/.test(url)) throw new CliError('ERR_USAGE', `--proxy-url takes a ws:// or wss:// URL, not "${url}".`, { exitCode: 2 })
      const { RouterHub } = await import('@cloudbox/router-hub')
      const hub = new RouterHub(
        {
          host: options.host,
          port: parsePort(options.port),
          ...(options.proxyUrl === undefined ? {} : { publicUrls: options.proxyUrl }),
          ...(options.redis === undefined ? {} : { cluster: { redis: options.redis, ...(options.publicUrl === undefined ? {} : { publicUrl: options.publicUrl }) } }),
        },
        {
          log: ({ level, message, ...fields }) => log[level](fields, message),
        },
      )
      try {
        await hub.start()
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'EADDRINUSE') throw new CliError('ERR_ADDRESS_IN_USE', `${options.host}:${options.port} is in use; pick another --port (0 picks a free one).`, { cause: error })
        if (code === 'EACCES') throw new CliError('ERR_ADDRESS_DENIED', `Not allowed to listen on ${options.host}:${options.port}; use a port above 1023 or run with the needed rights.`, { cause: error })
        if (options.redis !== undefined && /could not join the cluster/.test((error as Error).message)) throw new CliError('ERR_REDIS_UNAVAILABLE', `${(error as Error).message}. Check that Redis runs there and the URL (with credentials) is right.`, { cause: error })
        throw error
      }
      if (output.json) process.stdout.write(`${JSON.stringify({ event: 'listening', url: hub.url, ...(options.redis === undefined ? {} : { cluster: options.redis, hubId: hub.clusterId }) })}\n`)
      else process.stdout.write(`CloudBox hub listening on ${hub.url}${options.redis === undefined ? '' : ` (cluster member ${hub.clusterId} on ${options.redis})`}\n`)
      // Ctrl-C: close every connection, then exit 130.
      const signal = await untilStopped()
      await hub.stop()
      log.info('hub stopped')
      // A service manager's SIGTERM is a normal stop; Ctrl-C is an interruption.
      process.exitCode = signal === 'SIGINT' ? 130 : 0
    })
}
