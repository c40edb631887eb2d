import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import { passphraseFileError, passphraseRequiredError } from './errors.js'

/** The environment variable scripts use to pass the vault passphrase. */
export const PASSPHRASE_VARIABLE = 'CLOUDBOX_PASSPHRASE'
/** A file whose first line is the passphrase (a service's credential: systemd's LoadCredential). */
export const PASSPHRASE_FILE_VARIABLE = 'CLOUDBOX_PASSPHRASE_FILE'

async function ask(question: string): Promise<string> {
  // Echo nothing while the user types.
  let muted = false
  const output = new Writable({
    write(chunk, _encoding, callback) {
      if (!muted) process.stderr.write(chunk)
      callback()
    },
  })
  const reader = createInterface({ input: process.stdin, output, terminal: true })
  try {
    return await new Promise<string>((resolve) => {
      reader.question(question, (answer) => resolve(answer))
      muted = true
    })
  } finally {
    muted = false
    process.stderr.write('\n')
    reader.close()
  }
}

/**
 * The vault passphrase: from CLOUDBOX_PASSPHRASE, else asked on the terminal
 * (twice when creating a vault). Never from a default: a passphrase nobody chose protects nothing.
 */
export async function readPassphrase(options: { confirm: boolean }): Promise<string> {
  const fromEnvironment = process.env[PASSPHRASE_VARIABLE]
  if (fromEnvironment !== undefined && fromEnvironment !== '') return fromEnvironment
  const file = process.env[PASSPHRASE_FILE_VARIABLE]
  if (file !== undefined && file !== '') return passphraseFromFile(file)
  if (!process.stdin.isTTY) throw passphraseRequiredError()
  const first = await ask('Vault passphrase: ')
  if (first === '') throw passphraseRequiredError()
  if (options.confirm) {
    const second = await ask('Repeat the passphrase: ')
    if (second !== first) throw passphraseRequiredError()
  }
  return first
}

function passphraseFromFile(file: string): string {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw passphraseFileError(file, (error as NodeJS.ErrnoException).code ?? 'unreadable')
  }
  const first = text.split(/\r?\n/, 1)[0] ?? ''
  if (first === '') throw passphraseFileError(file, 'empty first line')
  return first
}
