import { spawnSync } from 'node:child_process'
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatMinisignPublicKey, Identity, openFile, sealFile, signDocument, verifyDocument } from '@cloudbox/encrypted-messaging'
import type { Command } from 'commander'
import { loadIdentity, saveIdentity } from '../home.js'
import { PASSPHRASE_VARIABLE } from '../passphrase.js'
import { globalOptions } from '../program.js'
import { untilStopped } from '../stop-signal.js'
import { runCloudTour } from './demo-cloud.js'

function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0
}

const megabytes = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('A guided tour in temporary homes: an identity, a signature, a sealed file; then a hub, a server and devices on 127.0.0.1 that pair, sync, settle a conflict and share a sealed file.')
    .option('--exit', 'exit when done (by default the hub and server keep running until Ctrl-C, so you can pair your own device)')
    .option('--keep', 'keep the temporary folder to look at the files')
    .action(async (options: { exit?: boolean; keep?: boolean }, command: Command) => {
      const { output } = globalOptions(command)
      const say = (line = '') => {
        if (!output.json) process.stdout.write(`${line}\n`)
      }
      const workspace = mkdtempSync(join(tmpdir(), 'cloudbox-demo-'))
      const events: Record<string, unknown>[] = []
      const step = (name: string, data: Record<string, unknown>) => {
        events.push({ step: name, ...data })
        if (output.json) process.stdout.write(`${JSON.stringify({ step: name, ...data })}\n`)
      }
      try {
        // The demo's vault passphrase is random and lives only in this process.
        process.env[PASSPHRASE_VARIABLE] ??= randomBytes(18).toString('base64url')
        say('CloudBox demo: identity, signature, sealed file.\n')

        const home = join(workspace, 'alice-home')
        const alice = Identity.generate().identity
        const metadata = await saveIdentity(home, alice, 'vault', output)
        alice.destroy()
        const restored = await loadIdentity(home, output)
        say(`1. Alice's identity: ${restored.publicId}`)
        say(`   24-word recovery phrase → SLIP-0010 key at ${restored.derivationPath}; secret kept in an encrypted ${metadata.storage} (${join(home, 'vault.cbv')}).`)
        say(`   age recipient: ${restored.ageRecipient}`)
        step('identity', { publicId: restored.publicId, storage: metadata.storage, ageRecipient: restored.ageRecipient })

        const documentPath = join(workspace, 'agreement.txt')
        writeFileSync(documentPath, 'Alice agrees to back up the family photos every Sunday.\n')
        const started = performance.now()
        const signature = await signDocument(restored, createReadStream(documentPath), { fileName: documentPath, scope: 'accept' })
        writeFileSync(`${documentPath}.minisig`, signature)
        const verified = await verifyDocument(createReadStream(documentPath), signature, restored.publicId)
        say(`\n2. Signed ${documentPath} (scope: accept) in ${(performance.now() - started).toFixed(1)} ms; signature in agreement.txt.minisig.`)
        say(`   Verified: signer ${verified.signerId}, key ${verified.keyId}, at ${verified.timestamp?.toISOString()}.`)
        let minisignChecked: boolean | null = null
        if (hasTool('minisign')) {
          writeFileSync(join(workspace, 'alice.pub'), formatMinisignPublicKey(restored.publicKey))
          minisignChecked = spawnSync('minisign', ['-V', '-q', '-p', join(workspace, 'alice.pub'), '-m', documentPath]).status === 0
          say(`   minisign -V agrees: ${minisignChecked ? 'yes' : 'NO'}`)
        }
        step('signature', { file: documentPath, signerId: verified.signerId, keyId: verified.keyId, minisignVerified: minisignChecked })

        const bob = Identity.generate().identity
        const photoPath = join(workspace, 'photos.bin')
        writeFileSync(photoPath, randomBytes(8 * 1024 * 1024))
        const sealStarted = performance.now()
        await sealFile(photoPath, `${photoPath}.age`, [bob.x25519PublicKey, restored.x25519PublicKey])
        const sealSeconds = (performance.now() - sealStarted) / 1000
        const openStarted = performance.now()
        await openFile(`${photoPath}.age`, join(workspace, 'photos.opened'), [bob])
        const openSeconds = (performance.now() - openStarted) / 1000
        const intact = readFileSync(photoPath).equals(readFileSync(join(workspace, 'photos.opened')))
        const size = statSync(photoPath).size
        say(`\n3. Sealed photos.bin (${megabytes(size)} MiB) for Bob (${bob.publicId}) and Alice in the age format:`)
        say(`   sealed in ${sealSeconds.toFixed(3)} s (${(size / 1024 / 1024 / sealSeconds).toFixed(0)} MiB/s), ${statSync(`${photoPath}.age`).size - size} bytes of overhead.`)
        say(`   Bob opened it in ${openSeconds.toFixed(3)} s; content intact: ${intact ? 'yes' : 'NO'}.`)
        let ageOpened: boolean | null = null
        if (hasTool('age')) {
          writeFileSync(join(workspace, 'bob.key'), `${bob.exportAgeIdentity()}\n`, { mode: 0o600 })
          const result = spawnSync('age', ['-d', '-i', join(workspace, 'bob.key'), `${photoPath}.age`], { maxBuffer: 64 * 1024 * 1024 })
          ageOpened = result.status === 0 && Buffer.compare(result.stdout, readFileSync(photoPath)) === 0
          say(`   The age tool opens it with Bob's exported key too: ${ageOpened ? 'yes' : 'NO'}`)
        }
        step('seal', { bytes: size, sealSeconds, openSeconds, intact, ageOpened })
        bob.destroy()
        restored.destroy()
        if (!intact || minisignChecked === false || ageOpened === false) process.exitCode = 1

        const tour = await runCloudTour(workspace, say, step)
        try {
          if (options.exit !== true) {
            say(`\nThe hub, the server and its status page keep running: ${tour.api.statusUrl}`)
            say('Pair a device of your own from another terminal:')
            say(`   cloudbox init --home /tmp/my-device && cloudbox pair '${tour.server.pairingUri()}' --pin PIN --home /tmp/my-device`)
            say('   (the PIN is printed above). Ctrl-C stops the demo.')
            const signal = await untilStopped()
            if (signal === 'SIGINT') process.exitCode = 130
          }
        } finally {
          await tour.close()
        }
        say(`\nDone.${options.keep ? ` Files kept in ${workspace}` : ''} Next: \`cloudbox init\` makes your own identity, \`cloudbox serve DIR\` a server.`)
      } finally {
        if (options.keep !== true) rmSync(workspace, { recursive: true, force: true })
      }
    })
}
