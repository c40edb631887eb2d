// A node's identity from its recovery phrase; a signed document (minisign format); a file
// sealed for two recipients (age format); and a Noise channel over TCP to a known key.
// Run it from packages/encrypted-messaging after `pnpm build`: node examples/identity-tour.mjs
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  Identity, acceptSecureChannel, channelFromStream, initiateSecureChannel, openFile, ReplayGuard, sealFile, signDocument, verifyDocument,
} from '@cloudbox/encrypted-messaging'

const dir = await mkdtemp(join(tmpdir(), 'encrypted-messaging-example-'))
const closers = []
try {
  // A new node: show the phrase once; the same phrase gives the same keys on any device.
  const { identity: alice, recoveryPhrase } = Identity.generate()
  const restored = Identity.fromRecoveryPhrase(recoveryPhrase)
  console.log(`alice: ${alice.publicId} (restored from the phrase: ${restored.publicId === alice.publicId})`)
  const { identity: bob } = Identity.generate()

  // Sign a document; `minisign -Vm agreement.txt -P <key>` verifies the same bytes.
  const document = new TextEncoder().encode('I agree to the terms.\n')
  const signature = await signDocument(alice, document, { scope: 'accept', fileName: 'agreement.txt' })
  const verified = await verifyDocument(document, signature, alice.publicId)
  console.log(`signature checked: signer ${verified.signerId === alice.publicId ? 'alice' : '?'}, scope ${verified.scope}`)
  const tampered = new TextEncoder().encode('I agree to the terms!\n')
  console.log(`a changed document is refused: ${await verifyDocument(tampered, signature, alice.publicId).then(() => 'NO', (error) => error.code)}`)

  // Seal a file for Bob and Alice (the age tool opens it with either key); Bob opens it.
  await writeFile(join(dir, 'report.txt'), 'quarterly numbers\n')
  await sealFile(join(dir, 'report.txt'), join(dir, 'report.txt.age'), [bob.publicId, alice.ageRecipient])
  await openFile(join(dir, 'report.txt.age'), join(dir, 'report.opened.txt'), bob)
  console.log(`bob opened the sealed file: ${await readFile(join(dir, 'report.opened.txt'), 'utf8') === 'quarterly numbers\n'}`)

  // A Noise IK channel: the client knows the server's public ID in advance (from its QR code).
  const server = net.createServer(async (socket) => {
    const channel = await acceptSecureChannel(channelFromStream(socket), { identity: alice, replayGuard: new ReplayGuard(), authorize: (_key, id) => id === bob.publicId })
    for await (const message of channel) await channel.send(new TextEncoder().encode(`alice got: ${new TextDecoder().decode(message)}`))
  })
  closers.push(() => new Promise((resolve) => server.close(resolve)))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const socket = net.connect(server.address().port, '127.0.0.1')
  const channel = await initiateSecureChannel(channelFromStream(socket), { identity: bob, remotePublicKey: alice.publicId })
  await channel.send(new TextEncoder().encode('hello over Noise'))
  for await (const reply of channel) {
    console.log(new TextDecoder().decode(reply))
    break
  }
  await channel.close()
  socket.destroy()
} finally {
  for (const close of closers) await close()
  await rm(dir, { recursive: true, force: true })
}
