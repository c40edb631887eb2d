import { Command } from 'commander'
import { resolveHome } from './home.js'
import { createOutput, type Output } from './output.js'

/** The options every command takes: `--home DIR` and `--json`. */
export function globalOptions(command: Command): { home: string; output: Output } {
  const options = command.optsWithGlobals<{ home?: string; json?: boolean }>()
  return { home: resolveHome(options.home), output: createOutput(options.json === true) }
}

/**
 * Makes `--home` and `--json` options of every subcommand too, and the program's own
 * options positional (before the subcommand only): so `restore --version ID` is the
 * subcommand's, not the program's `--version`, while `cloudbox sync DIR --json` still works.
 */
export function shareGlobalOptions(program: Command): void {
  program.enablePositionalOptions()
  const visit = (command: Command) => {
    for (const sub of command.commands) {
      if (!sub.options.some((option) => option.long === '--home')) sub.option('--home <dir>', 'the CloudBox home folder (default: $CLOUDBOX_HOME, else ~/.config/cloudbox)')
      if (!sub.options.some((option) => option.long === '--json')) sub.option('--json', 'machine-readable output')
      visit(sub)
    }
  }
  visit(program)
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
