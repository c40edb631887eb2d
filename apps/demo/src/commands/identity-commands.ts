import { readFileSync, writeFileSync } from 'node:fs'
import { Identity } from '@cloudbox/encrypted-messaging'
import type { Command } from 'commander'
import { fileNotFoundError, identityExistsError, usageError } from '../errors.js'
import { checkHomePlace } from '../folder-safety.js'
import { hasIdentity, loadIdentity, readMetadata, resolveHome, saveIdentity, type StorageChoice } from '../home.js'
import { createOutput, type Output } from '../output.js'
import { globalOptions } from '../program.js'

/** How a new recovery phrase is shown, once. */
function phraseLines(recoveryPhrase: string): string[] {
  return [
    'Your recovery phrase (shown once; write it down and keep it offline, it restores this key and all its sub-clouds):',
    '',
    recoveryPhrase.split(' ').map((word, index) => `${String(index + 1).padStart(2)}. ${word}`).join('\n'),
  ]
}

/**
 * This home's identity; on a fresh home run from a terminal, a new one is made first (as
 * `cloudbox init` would, showing the recovery phrase once). Elsewhere (a script, a service)
 * the error says to run `cloudbox init`.
 */
export async function identityOrFirstRun(home: string, output: Output): Promise<Identity> {
  if (hasIdentity(home) || process.stdin.isTTY !== true || process.stderr.isTTY !== true || output.json) return loadIdentity(home, output)
  checkHomePlace(home)
  process.stderr.write(`No identity in ${home} yet: making one (as cloudbox init does).\n`)
  const { identity, recoveryPhrase } = Identity.generate()
  const metadata = await saveIdentity(home, identity, 'auto', output)
  process.stderr.write(`${[`Created identity ${metadata.publicId} (key kept in the ${metadata.storage}).`, '', ...phraseLines(recoveryPhrase), ''].join('\n')}\n`)
  return identity
}

export function registerIdentityCommands(program: Command): void {
  program
    .command('init')
    .description('Create this home\'s identity: a new key from a fresh 24-word recovery phrase, or restore one from a phrase file.')
    .option('--mnemonic-file <file>', 'restore from the 24-word recovery phrase in this file')
    .option('--storage <kind>', 'where the key is kept: auto (OS keyring, else vault), keyring or vault', 'auto')
    .option('--force', 'replace an existing identity in this home')
    .addHelpText('after', '\nExamples:\n  cloudbox init\n  CLOUDBOX_PASSPHRASE=… cloudbox init --home ./node-a --storage vault\n  cloudbox init --mnemonic-file phrase.txt')
    .action(async (options: { mnemonicFile?: string; storage: string; force?: boolean }, command: Command) => {
      const { home, output } = globalOptions(command)
      if (!['auto', 'keyring', 'vault'].includes(options.storage)) throw usageError('--storage is one of auto, keyring, vault')
      if (hasIdentity(home) && options.force !== true) throw identityExistsError(home)
      checkHomePlace(home)
      let identity: Identity
      let recoveryPhrase: string | undefined
      if (options.mnemonicFile !== undefined) {
        let text: string
        try {
          text = readFileSync(options.mnemonicFile, 'utf8')
        } catch {
          throw fileNotFoundError(options.mnemonicFile)
        }
        identity = Identity.fromRecoveryPhrase(text)
      } else {
        ;({ identity, recoveryPhrase } = Identity.generate())
      }
      const metadata = await saveIdentity(home, identity, options.storage as StorageChoice, output)
      identity.destroy()
      const human = [`Created identity ${metadata.publicId} in ${home} (key kept in the ${metadata.storage}).`]
      if (recoveryPhrase !== undefined) human.push('', ...phraseLines(recoveryPhrase))
      output.result(human.join('\n'), { publicId: metadata.publicId, storage: metadata.storage, home, ...(recoveryPhrase ? { recoveryPhrase } : {}) })
    })

  const id = program
    .command('id')
    .description('Show this home\'s public identity: public ID, public key, age recipient and minisign public key.')
    .option('--minisign-pub <file>', 'also write the minisign public key file there (what `minisign -V -p FILE` reads)')
    .addHelpText('after', '\nExamples:\n  cloudbox id\n  cloudbox id --json\n  cloudbox id --minisign-pub cloudbox.pub && minisign -Vm contract.pdf -p cloudbox.pub\n  cloudbox id export-age > key.txt')
    .action((options: { minisignPub?: string }, command: Command) => {
      const { home, output } = globalOptions(command)
      const metadata = readMetadata(home)
      if (options.minisignPub !== undefined) {
        if (options.minisignPub.trim() === '') throw usageError('--minisign-pub needs a file name')
        writeFileSync(options.minisignPub, metadata.minisignPublicKey.endsWith('\n') ? metadata.minisignPublicKey : `${metadata.minisignPublicKey}\n`)
        output.note(`minisign public key written to ${options.minisignPub}`)
      }
      output.result(
        [
          `public ID:      ${metadata.publicId}`,
          `public key:     ${metadata.publicKeyHex}`,
          `age recipient:  ${metadata.ageRecipient}`,
          `key storage:    ${metadata.storage}`,
          'minisign public key:',
          metadata.minisignPublicKey.trimEnd(),
        ].join('\n'),
        {
          publicId: metadata.publicId,
          publicKey: metadata.publicKeyHex,
          ageRecipient: metadata.ageRecipient,
          minisignPublicKey: metadata.minisignPublicKey,
          storage: metadata.storage,
        },
      )
    })

  id.command('export-age')
    .description('Print this identity\'s X25519 secret as an age identity (AGE-SECRET-KEY-1…), so the age tool can open files sealed to you. Keep it secret.')
    .action(async (_options: unknown, command: Command) => {
      const { home, output } = globalOptions(command)
      const identity = await loadIdentity(home, output)
      try {
        const secret = identity.exportAgeIdentity()
        const created = new Date().toISOString()
        const file = `# created: ${created}\n# public key: ${identity.ageRecipient}\n# cloudbox id: ${identity.publicId}\n${secret}`
        output.result(file, { ageIdentity: secret, ageRecipient: identity.ageRecipient, publicId: identity.publicId })
      } finally {
        identity.destroy()
      }
    })
}

