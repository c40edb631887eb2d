/**
 * One side of the CloudBox benchmark in its own process, so its memory is its own:
 * `hub` runs a router hub; `server <folder> [hubUrl]` a cloud server (direct listener,
 * or registered at the hub); `client <folder>` a device that pairs when told and, on
 * each `sync`, scans its folder and answers once the server holds what it scanned.
 */
import { CloudBox } from '@cloudbox/cloudbox'
import { Identity } from '@cloudbox/encrypted-messaging'
import { RouterHub } from '@cloudbox/router-hub'

const [role, folder, hubUrl] = process.argv.slice(2)
const PIN = '2468-1357'
let stop = async () => {}
process.on('message', async (message) => {
  if (message === 'stop') {
    await stop()
    process.exit(0)
  }
})

if (role === 'hub') {
  const hub = new RouterHub({ host: '127.0.0.1', port: 0 })
  await hub.start()
  stop = () => hub.stop()
  process.send({ url: hub.url })
} else if (role === 'server') {
  const box = new CloudBox(
    { role: 'server', folder, masterPin: PIN, watch: false, ...(hubUrl === undefined ? { listen: { host: '127.0.0.1', port: 0 } } : { hub: hubUrl }) },
    { identity: Identity.generate().identity },
  )
  const registered = new Promise((resolve) => box.status.on((event) => event.type === 'hub' && event.state === 'registered' && resolve()))
  await box.start()
  if (hubUrl !== undefined) await registered
  stop = () => box.destroy()
  process.send({ uri: box.pairingUri() })
} else if (role === 'client') {
  const box = new CloudBox({ role: 'client', folder, watch: false }, { identity: Identity.generate().identity })
  // The last root the server acknowledged, kept across workloads.
  let acknowledged
  let wake = () => {}
  box.status.on((event) => {
    if (event.type === 'sync' && event.event.type === 'peer' && event.event.state === 'in-sync') {
      acknowledged = event.event.root
      wake()
    }
  })
  await box.start()
  stop = () => box.destroy()
  process.on('message', async (message) => {
    if (typeof message === 'object' && message.pair !== undefined) {
      await box.pair(message.pair, PIN)
      await box.waitConnected()
      process.send({ paired: true })
    } else if (message === 'sync') {
      // In sync once the server acknowledges the root the scan produced (earlier
      // acknowledgements are of the folder before the scan).
      // Records are announced as the scan commits them, so the server's last ack can come
      // before scan() returns: keep the last acknowledged root and compare once it does.
      // A rescan that changes nothing gets no new acknowledgement: the last one stands.
      const engine = box.engine
      await engine.scan()
      const scanned = engine.root
      while (acknowledged === undefined || Buffer.compare(acknowledged, scanned) !== 0) await new Promise((resolve) => (wake = resolve))
      process.send({ synced: true })
    }
  })
  process.send({ ready: true })
}
