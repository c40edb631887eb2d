import { createReadStream, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { signDocument, verifyDocument, SIGNATURE_SCOPES, type SignatureScope } from '@cloudbox/encrypted-messaging'
import type { Command } from 'commander'
import { fileNotFoundError, usageError } from '../errors.js'
import { loadIdentity } from '../home.js'
import { globalOptions } from '../program.js'

function requireFile(path: string): void {
  if (!existsSync(path)) throw fileNotFoundError(path)
}

export function registerSignatureCommands(program: Command): void {
  program
    .command('sign')
    .argument('<file>', 'the document to sign')
    .description('Sign FILE with this identity in minisign format; writes FILE.minisig (`minisign -V` verifies it).')
    .option('--scope <scope>', `what the signature means: ${SIGNATURE_SCOPES.join(', ')}`)
    .option('-o, --output <file>', 'where to write the signature (default: FILE.minisig)')
    .option('-t, --trusted-comment <text>', 'the signed comment, as minisign -t takes it (instead of the time, file name, signer and scope CloudBox writes)')
    .addHelpText('after', '\nExamples:\n  cloudbox sign contract.pdf --scope accept\n  cloudbox sign release.tar.gz -t "release 1.2.0"\n  cloudbox verify contract.pdf --signer cb1…')
    .action(async (file: string, options: { scope?: string; output?: string; trustedComment?: string }, command: Command) => {
      const { home, output } = globalOptions(command)
      if (options.scope !== undefined && !(SIGNATURE_SCOPES as readonly string[]).includes(options.scope)) {
        throw usageError(`--scope is one of ${SIGNATURE_SCOPES.join(', ')}`)
      }
      if (options.scope !== undefined && options.trustedComment !== undefined) throw usageError('Give --scope or --trusted-comment, not both: your own comment replaces the one that carries the scope.')
      requireFile(file)
      const identity = await loadIdentity(home, output)
      try {
        const signature = await signDocument(identity, createReadStream(file), {
          fileName: file,
          ...(options.scope !== undefined ? { scope: options.scope as SignatureScope } : {}),
          ...(options.trustedComment !== undefined ? { trustedComment: options.trustedComment } : {}),
        })
        const target = options.output ?? `${file}.minisig`
        writeFileSync(target, signature)
        output.result(`Signed ${file} as ${identity.publicId}${options.scope ? ` (scope: ${options.scope})` : ''}; signature in ${target}.`, {
          file,
          signature: target,
          signerId: identity.publicId,
          scope: options.scope ?? null,
        })
      } finally {
        identity.destroy()
      }
    })

  program
    .command('verify')
    .argument('<file>', 'the signed document')
    .description('Verify FILE\'s minisign signature (made by CloudBox or by minisign) against the expected signer.')
    .requiredOption('--signer <id-or-pubkey-file>', 'the expected signer: a public ID (cb1…) or a minisign public key file')
    .option('--sig <file>', 'the signature file (default: FILE.minisig)')
    .option('--allow-legacy', 'also accept legacy (not prehashed) minisign signatures, as made by minisign -S -l; refused by default')
    .addHelpText('after', '\nExamples:\n  cloudbox verify report.pdf --signer cb1…\n  cloudbox verify release.tar.gz --signer minisign.pub --sig release.tar.gz.minisig')
    .action(async (file: string, options: { signer: string; sig?: string; allowLegacy?: boolean }, command: Command) => {
      const { output } = globalOptions(command)
      requireFile(file)
      const signaturePath = options.sig ?? `${file}.minisig`
      requireFile(signaturePath)
      const signer = /^cb1/i.test(options.signer.trim()) || !existsSync(options.signer) ? options.signer : readFileSync(options.signer, 'utf8')
      const verified = await verifyDocument(createReadStream(file), readFileSync(signaturePath, 'utf8'), signer, { allowLegacy: options.allowLegacy === true })
      const details = [`Valid signature of ${file} by ${verified.signerId} (key ${verified.keyId}).`]
      if (verified.scope) details.push(`scope:   ${verified.scope}`)
      if (verified.timestamp) details.push(`signed:  ${verified.timestamp.toISOString()}`)
      details.push(`trusted comment: ${verified.trustedComment.replaceAll('\t', '  ')}`)
      output.result(details.join('\n'), {
        valid: true,
        file,
        signerId: verified.signerId,
        keyId: verified.keyId,
        scope: verified.scope ?? null,
        timestamp: verified.timestamp?.toISOString() ?? null,
        trustedComment: verified.trustedComment,
      })
    })
}
