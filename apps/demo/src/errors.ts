/** Errors of the `cloudbox` program itself (usage and environment), with stable codes. */
const ERROR_MARKER = Symbol.for('cloudbox.error')

export class CliError extends Error {
  readonly code: string
  readonly exitCode: number
  readonly [ERROR_MARKER] = true

  constructor(code: string, message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause })
    this.code = code
    this.exitCode = options.exitCode ?? 1
    this.name = 'CliError'
  }
}

/** Exit codes: scripts rely on them. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** `sync --once`: files that did not sync (ERR_FILES_NOT_SYNCED, listed). */
  filesNotSynced: 3,
  /** `sync --once`: deletions held by the mass-delete guard (ERR_DELETES_HELD). */
  deletesHeld: 4,
  interrupted: 130,
} as const

export const usageError = (message: string) => new CliError('ERR_USAGE', message, { exitCode: ExitCode.usage })
export const noIdentityError = (home: string) =>
  new CliError('ERR_NO_IDENTITY', `No identity in ${home}: run \`cloudbox init --home ${home}\` first.`)
export const identityExistsError = (home: string) =>
  new CliError('ERR_IDENTITY_EXISTS', `${home} already holds an identity; use another --home, or --force to replace it (the old key is lost unless you kept its recovery phrase).`)
export const fileNotFoundError = (path: string) => new CliError('ERR_FILE_NOT_FOUND', `No such file: ${path}`)
export const outputExistsError = (path: string) => new CliError('ERR_OUTPUT_EXISTS', `${path} already exists: choose another -o, or pass --force to overwrite it.`)
export const passphraseRequiredError = () =>
  new CliError('ERR_PASSPHRASE_REQUIRED', 'The vault needs a passphrase: set CLOUDBOX_PASSPHRASE (or CLOUDBOX_PASSPHRASE_FILE to a file holding it), or run in a terminal to be asked for it.')
export const passphraseFileError = (file: string, why: string) =>
  new CliError('ERR_PASSPHRASE_REQUIRED', `CLOUDBOX_PASSPHRASE_FILE names ${file}, which gives no passphrase (${why}): put the passphrase on its first line, readable by this user.`)
