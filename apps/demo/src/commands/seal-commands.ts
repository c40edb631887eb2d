import { existsSync, readFileSync } from 'node:fs'
import { openFile, parseAgeIdentityFile, parseRecipient, sealFile, type KeyAgreement } from '@cloudbox/encrypted-messaging'
import type { Command } from 'commander'
import { fileNotFoundError, outputExistsError, usageError } from '../errors.js'
import { loadIdentity } from '../home.js'
import { globalOptions } from '../program.js'

function checkOutput(path: string, force: boolean | undefined): void {
  if (existsSync(path) && force !== true) throw outputExistsError(path)
}

export function registerSealCommands(program: Command): void {
  program
    .command('seal')
    .argument('<file>', 'the file to seal')
    .description('Seal FILE for one or more recipients in the age format (the age tool opens it). Recipients: public IDs (cb1…) or age recipients (age1…).')
    .requiredOption('--to <recipient...>', 'who can open it: cb1… or age1… (repeat or list several)')
    .option('-o, --output <file>', 'where to write the sealed file (default: FILE.age)')
    .option('--armor', 'write ASCII armor (PEM) instead of binary')
    .option('--force', 'overwrite the output if it exists')
    .addHelpText('after', '\nExamples:\n  cloudbox seal report.pdf --to cb1… age1…\n  cloudbox seal notes.txt --to cb1… -o notes.txt.age')
    .action(async (file: string, options: { to: string[]; output?: string; armor?: boolean; force?: boolean }, command: Command) => {
      const { output } = globalOptions(command)
      if (!existsSync(file)) throw fileNotFoundError(file)
      const recipients = options.to.flatMap((entry) => entry.split(',')).filter((entry) => entry.trim() !== '')
      if (recipients.length === 0) throw usageError('--to needs at least one recipient')
      const keys = recipients.map(parseRecipient)
      const target = options.output ?? `${file}.age`
      checkOutput(target, options.force)
      const started = performance.now()
      await sealFile(file, target, keys, { armor: options.armor === true })
      const seconds = (performance.now() - started) / 1000
      output.result(`Sealed ${file} for ${recipients.length} recipient${recipients.length === 1 ? '' : 's'} into ${target} (${seconds.toFixed(2)} s).`, {
        file,
        output: target,
        recipients,
        seconds,
      })
    })

  program
    .command('open')
    .argument('<file>', 'the sealed file')
    .description('Open a sealed (age) file with this identity, or with an age identity file.')
    .option('--identity <age-key-file>', 'an age identity file (AGE-SECRET-KEY-1…) instead of this home\'s key')
    .option('-o, --output <file>', 'where to write the plaintext (default: FILE without .age)')
    .option('--force', 'overwrite the output if it exists')
    .addHelpText('after', '\nExamples:\n  cloudbox open report.pdf.age\n  cloudbox open notes.age --identity key.txt -o notes.txt')
    .action(async (file: string, options: { identity?: string; output?: string; force?: boolean }, command: Command) => {
      const { home, output } = globalOptions(command)
      if (!existsSync(file)) throw fileNotFoundError(file)
      const target = options.output ?? (file.endsWith('.age') ? file.slice(0, -4) : `${file}.opened`)
      checkOutput(target, options.force)
      let identities: KeyAgreement[]
      let release = () => {}
      if (options.identity !== undefined) {
        if (!existsSync(options.identity)) throw fileNotFoundError(options.identity)
        identities = parseAgeIdentityFile(readFileSync(options.identity, 'utf8'))
      } else {
        const identity = await loadIdentity(home, output)
        identities = [identity]
        release = () => identity.destroy()
      }
      try {
        await openFile(file, target, identities)
      } finally {
        release()
      }
      output.result(`Opened ${file} into ${target}.`, { file, output: target })
    })
}
