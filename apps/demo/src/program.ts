import { Command } from 'commander'
import { resolveHome } from './home.js'
import { createOutput, type Output } from './output.js'

/** The options every command takes: `--home DIR` and `--json`. */
export function globalOptions(command: Command): { home: string; output: Output } {
  const options = command.optsWithGlobals<{ home?: string; json?: boolean }>()
  return { home: resolveHome(options.home), output: createOutput(options.json === true) }
}

export function createProgram(version: string): Command {
  return new Command('cloudbox')
    .description('CloudBox: private, end-to-end encrypted clouds. Keys come from a 24-word recovery phrase; no accounts.')
    .version(version)
    .option('--home <dir>', 'the CloudBox home folder (default: $CLOUDBOX_HOME, else ~/.config/cloudbox)')
    .option('--json', 'machine-readable output (one JSON document, or JSON lines for events)')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', '\nThe vault passphrase can come from CLOUDBOX_PASSPHRASE. Exit codes: 0 done, 1 failed, 2 usage error, 130 interrupted.')
}
