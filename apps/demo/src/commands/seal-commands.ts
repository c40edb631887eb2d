import { createReadStream, createWriteStream, existsSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { finished } from 'node:stream/promises'
import type { Writable } from 'node:stream'
import { openFile, openStream, parseAgeIdentityFile, parseRecipient, sealFile, sealStream, type KeyAgreement } from '@cloudbox/encrypted-messaging'
import type { Command } from 'commander'
import { fileNotFoundError, outputExistsError, usageError } from '../errors.js'
import { loadIdentity } from '../home.js'
import type { Output } from '../output.js'
import { globalOptions } from '../program.js'

/** `-` names standard input or output, as age and most tools do. */
const STDIO = '-'

function checkOutput(path: string, force: boolean | undefined): void {
  if (path !== STDIO && existsSync(path) && force !== true) throw outputExistsError(path)
}

const collect = (value: string, previous: string[] = []) => [...previous, value]

/** Recipients from a file, one per line (`#` comments and blank lines skipped), as `age -R` reads them. */
function recipientsFile(path: string): string[] {
  const text = path === STDIO ? readFileSync(0, 'utf8') : existsSync(path) ? readFileSync(path, 'utf8') : (() => { throw fileNotFoundError(path) })()
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
}

/** Writes a stream's pieces to standard output, or atomically to a file (a temporary beside it, renamed when complete). */
async function writePieces(pieces: AsyncIterable<Uint8Array>, target: string, mode: number): Promise<void> {
  if (target === STDIO) {
    for await (const piece of pieces) if (!process.stdout.write(piece)) await new Promise((resolve) => process.stdout.once('drain', resolve))
    return
  }
  const temporary = `${target}.cloudbox-${process.pid}.tmp`
  const out: Writable = createWriteStream(temporary, { mode })
  try {
    for await (const piece of pieces) if (!out.write(piece)) await new Promise((resolve) => out.once('drain', resolve))
    out.end()
    await finished(out)
    renameSync(temporary, target)
  } catch (error) {
    out.destroy()
    rmSync(temporary, { force: true })
    throw error
  }
}

/** The keys to open with: the age identity files given (each is tried), else this home's identity (`release` wipes it). */
export async function identitiesFor(files: readonly string[] | undefined, home: string, output: Output): Promise<{ identities: KeyAgreement[]; release: () => void }> {
  if (files !== undefined && files.length > 0) {
    const identities = files.flatMap((path) => {
      if (!existsSync(path)) throw fileNotFoundError(path)
      return parseAgeIdentityFile(readFileSync(path, 'utf8'))
    })
    return { identities, release: () => {} }
  }
  const identity = await loadIdentity(home, output)
  return { identities: [identity], release: () => identity.destroy() }
}

const input = (file: string) => (file === STDIO ? process.stdin : createReadStream(file))

export function registerSealCommands(program: Command): void {
  program
    .command('seal')
    .argument('<file>', 'the file to seal, or - for standard input')
    .description('Seal FILE for one or more recipients in the age format (the age tool opens it). Recipients: public IDs (cb1…) or age recipients (age1…).')
    .option('-r, --to <recipient...>', 'who can open it: cb1… or age1… (repeat or list several)')
    .option('-R, --recipients-file <file>', 'recipients from a file, one per line (# comments), as age -R reads them; repeatable', collect)
    .option('-o, --output <file>', 'where to write the sealed file (default: FILE.age; standard output for standard input; - for standard output)')
    .option('-a, --armor', 'write ASCII armor (PEM) instead of binary')
    .option('--force', 'overwrite the output if it exists')
    .addHelpText('after', '\nExamples:\n  cloudbox seal report.pdf --to cb1… age1…\n  cloudbox seal notes.txt --to cb1… -o notes.txt.age\n  tar c photos | cloudbox seal - -R team.txt > photos.tar.age')
    .action(async (file: string, options: { to?: string[]; recipientsFile?: string[]; output?: string; armor?: boolean; force?: boolean }, command: Command) => {
      const { output } = globalOptions(command)
      if (file !== STDIO && !existsSync(file)) throw fileNotFoundError(file)
      const recipients = [...(options.to ?? []).flatMap((entry) => entry.split(',')), ...(options.recipientsFile ?? []).flatMap(recipientsFile)].map((entry) => entry.trim()).filter((entry) => entry !== '')
      if (recipients.length === 0) throw usageError('Name at least one recipient: --to cb1…|age1…, or -R FILE')
      const keys = recipients.map(parseRecipient)
      const target = options.output ?? (file === STDIO ? STDIO : `${file}.age`)
      checkOutput(target, options.force)
      const started = performance.now()
      if (file !== STDIO && target !== STDIO) await sealFile(file, target, keys, { armor: options.armor === true })
      else await writePieces(sealStream(input(file), keys, { armor: options.armor === true }), target, 0o644)
      const seconds = (performance.now() - started) / 1000
      const summary = `Sealed ${file === STDIO ? 'standard input' : file} for ${recipients.length} recipient${recipients.length === 1 ? '' : 's'} into ${target === STDIO ? 'standard output' : target} (${seconds.toFixed(2)} s).`
      // Standard output carries the sealed bytes: nothing else may go there.
      if (target === STDIO) output.note(summary)
      else output.result(summary, { file, output: target, recipients, seconds })
    })

  program
    .command('open')
    .argument('<file>', 'the sealed file, or - for standard input')
    .description('Open a sealed (age) file with this identity, or with age identity files.')
    .option('-i, --identity <age-key-file>', "an age identity file (AGE-SECRET-KEY-1…) instead of this home's key; repeatable (each is tried)", collect)
    .option('-o, --output <file>', 'where to write the plaintext (default: FILE without .age; standard output for standard input; - for standard output)')
    .option('--force', 'overwrite the output if it exists')
    .addHelpText('after', '\nExamples:\n  cloudbox open report.pdf.age\n  cloudbox open notes.age --identity key.txt -o notes.txt\n  cloudbox open - -i old.txt -i new.txt < photos.tar.age | tar x')
    .action(async (file: string, options: { identity?: string[]; output?: string; force?: boolean }, command: Command) => {
      const { home, output } = globalOptions(command)
      if (file !== STDIO && !existsSync(file)) throw fileNotFoundError(file)
      const target = options.output ?? (file === STDIO ? STDIO : file.endsWith('.age') ? file.slice(0, -4) : `${file}.opened`)
      checkOutput(target, options.force)
      const { identities, release } = await identitiesFor(options.identity, home, output)
      try {
        if (file !== STDIO && target !== STDIO) await openFile(file, target, identities)
        else await writePieces(openStream(input(file), identities), target, 0o600)
      } finally {
        release()
      }
      const summary = `Opened ${file === STDIO ? 'standard input' : file} into ${target === STDIO ? 'standard output' : target}.`
      if (target === STDIO) output.note(summary)
      else output.result(summary, { file, output: target })
    })
}
