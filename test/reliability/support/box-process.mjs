// A CloudBox node in its own process, for the fault tests: it can be killed with SIGKILL
// at any moment and started again on the same folder, identity and port.
//   server <folder> <recoveryPhrase> <port> <pin>      prints {"uri", "port"}
//   client <folder> <recoveryPhrase> [<uri> <pin>]      pairs when not paired yet, prints {"ready"}
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'

const [role, folder, phrase, ...rest] = process.argv.slice(2)
const identity = Identity.fromRecoveryPhrase(phrase)
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`)
const fast = { keepAliveMs: 1_000, reconnect: { initialDelayMs: 50, maxDelayMs: 400 } }

let box
if (role === 'server') {
  const [port, pin] = rest
  box = new CloudBox({ role: 'server', folder, masterPin: pin, listen: { host: '127.0.0.1', port: Number(port) }, ...fast }, { identity })
} else {
  box = new CloudBox({ role: 'client', folder, ...fast }, { identity })
}
await box.start()
if (role === 'server') {
  print({ uri: box.pairingUri(), port: Number(new URL(box.directUrl).port) })
} else {
  if (box.paired === undefined) await box.pair(rest[0], rest[1])
  print({ ready: true })
}
process.on('SIGTERM', async () => {
  await box.stop()
  process.exit(0)
})
