/**
 * The `cloudbox` program. Every failure a user can cause ends with a message that says
 * what to do and a stable code; exit codes are documented in `--help`.
 */
import { readFileSync } from 'node:fs'
import { CommanderError } from 'commander'
import { ready } from '@cloudbox/encrypted-messaging'
import { registerDemoCommand } from './commands/demo-command.js'
import { registerAdminCommands } from './commands/admin-commands.js'
import { registerHubCommand } from './commands/hub-command.js'
import { registerServeCommand } from './commands/serve-command.js'
import { registerShareCommands } from './commands/share-commands.js'
import { registerSyncCommands } from './commands/sync-commands.js'
import { registerIdentityCommands } from './commands/identity-commands.js'
import { registerSealCommands } from './commands/seal-commands.js'
import { registerSignatureCommands } from './commands/signature-commands.js'
import { registerVersionCommands } from './commands/version-commands.js'
import { addHelpExamples } from './help-examples.js'
import { ExitCode } from './errors.js'
import { tuneGarbageCollector } from './gc-tuning.js'
import { createProgram, shareGlobalOptions } from './program.js'
import { handleInterrupts } from './stop-signal.js'

// Before any work: the process's V8 settings.
tuneGarbageCollector()

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

function describe(error: unknown): { message: string; code: string | undefined; exitCode: number } {
  if (error instanceof CommanderError) return { message: error.message, code: 'ERR_USAGE', exitCode: ExitCode.usage }
  if (error instanceof TypeError || error instanceof RangeError) {
    // Bad arguments reach the libraries as caller mistakes.
    return { message: error.message, code: 'ERR_USAGE', exitCode: ExitCode.usage }
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    const exitCode = (error as { exitCode?: unknown }).exitCode
    return { message: error.message, code: typeof code === 'string' ? code : undefined, exitCode: typeof exitCode === 'number' ? exitCode : ExitCode.failure }
  }
  return { message: String(error), code: undefined, exitCode: ExitCode.failure }
}

async function main(argv: string[]): Promise<void> {
  // A reader that went away (`cloudbox sync --json | head`) ends the program quietly, as in any pipeline.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(0)
      throw error
    })
  }
  const program = createProgram(version).exitOverride()
  registerIdentityCommands(program)
  registerSignatureCommands(program)
  registerSealCommands(program)
  registerDemoCommand(program)
  registerHubCommand(program)
  registerServeCommand(program)
  registerSyncCommands(program)
  registerAdminCommands(program)
  registerShareCommands(program)
  registerVersionCommands(program)
  shareGlobalOptions(program)
  addHelpExamples(program)
  handleInterrupts(() => {
    process.stderr.write('\nInterrupted.\n')
    process.exit(ExitCode.interrupted)
  })
  const json = argv.includes('--json')
  try {
    // Every command below may use keys synchronously.
    await ready()
    await program.parseAsync(argv)
  } catch (error) {
    // Help and version "errors" are normal exits.
    if (error instanceof CommanderError && (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help')) {
      process.exitCode = ExitCode.ok
      return
    }
    const { message, code, exitCode } = describe(error)
    // Errors go to standard error, as JSON with --json (standard output carries results only).
    if (json) process.stderr.write(`${JSON.stringify({ error: { code: code ?? 'ERR_UNKNOWN', message } })}\n`)
    // Commander already printed its own usage errors.
    else if (!(error instanceof CommanderError)) process.stderr.write(`cloudbox: ${message}${code ? ` (${code})` : ''}\n`)
    process.exitCode = exitCode
  }
}

await main(process.argv)
