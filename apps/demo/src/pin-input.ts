/**
 * Where a command takes a PIN from: `--pin-file FILE` (its first line), the CLOUDBOX_PIN
 * environment variable, or `--pin` (which any user can read with `ps` while the command
 * runs, so the others are preferred).
 */
import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { CliError, fileNotFoundError, usageError } from './errors.js'

export const PIN_ENV = 'CLOUDBOX_PIN'

export interface PinOptions {
  pin?: string
  pinFile?: string
}

/** Adds --pin and --pin-file to a command; `what` says what the PIN is for. */
export function pinOptions(command: Command, what: string, { environment = true }: { environment?: boolean } = {}): Command {
  return command
    .option('--pin <pin>', `${what} (other users can see it with ps: prefer --pin-file${environment ? ` or ${PIN_ENV}` : ''})`)
    .option('--pin-file <file>', `read ${what} from the first line of FILE (- for standard input)`)
}

/** The PIN given one of the three ways (the environment only where `environment`), or undefined when none was. */
export function givenPin(options: PinOptions, { environment = true }: { environment?: boolean } = {}): string | undefined {
  if (options.pin !== undefined && options.pinFile !== undefined) throw usageError('Give the PIN one way: --pin or --pin-file, not both.')
  if (options.pinFile !== undefined) {
    let text: string
    try {
      text = readFileSync(options.pinFile === '-' ? 0 : options.pinFile, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw fileNotFoundError(options.pinFile)
      throw new CliError('ERR_PIN_FILE', `Could not read the PIN from ${options.pinFile}: ${(error as Error).message}`, { cause: error })
    }
    const pin = text.split(/\r?\n/)[0] ?? ''
    if (pin === '') throw new CliError('ERR_PIN_FILE', `${options.pinFile} is empty: put the PIN on its first line.`)
    return pin
  }
  if (options.pin !== undefined) return options.pin
  if (!environment) return undefined
  const fromEnvironment = process.env[PIN_ENV]
  return fromEnvironment === undefined || fromEnvironment === '' ? undefined : fromEnvironment
}

export function requiredPin(options: PinOptions): string {
  const pin = givenPin(options)
  if (pin === undefined) throw usageError(`A PIN is needed: --pin-file FILE, the ${PIN_ENV} environment variable, or --pin PIN.`)
  return pin
}
