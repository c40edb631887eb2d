#!/usr/bin/env node
/**
 * One process of the API benchmark (api.bench.mjs forks it): `hub` runs a router hub,
 * `server` a cloud server with its encrypted API (registered at the hub, listening on
 * 127.0.0.1), `s3` an s3rver. Each answers its parent over IPC; `{ type: 'stop' }` ends it
 * after it reported its peak RSS, so every figure is one process's own.
 */
const [role, ...args] = process.argv.slice(2)
const send = (message) => process.send(message)
let stop = async () => {}

if (role === 'hub') {
  const { RouterHub } = await import('@cloudbox/router-hub')
  const hub = new RouterHub({ host: '127.0.0.1', port: 0 })
  await hub.start()
  stop = () => hub.stop()
  send({ type: 'ready', url: hub.url })
} else if (role === 's3') {
  const { default: S3rver } = await import('s3rver')
  const s3rver = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: args[0], configureBuckets: [{ name: 'bench' }] })
  const { port } = await s3rver.run()
  stop = () => s3rver.close()
  send({ type: 'ready', endpoint: `http://127.0.0.1:${port}` })
} else if (role === 'server') {
  const [folder, hubUrl, pin] = args
  const { CloudBox } = await import('@cloudbox/cloudbox')
  const { Identity } = await import('@cloudbox/encrypted-messaging')
  const { CloudServer, S3Storage } = await import('@cloudbox/cloudserver')
  const box = new CloudBox({ role: 'server', folder, listen: { host: '127.0.0.1', port: 0 }, hub: hubUrl, masterPin: pin, watch: false, sync: false }, { identity: Identity.generate().identity })
  const registered = new Promise((resolve) => box.status.on((event) => event.type === 'hub' && event.state === 'registered' && resolve()))
  await box.start()
  await registered
  let api = new CloudServer({ host: '127.0.0.1', port: 0 }, { box })
  let storage
  await api.start()
  process.on('message', async (message) => {
    if (message.type !== 's3') return
    // The same API with the files in an object store.
    await api.stop()
    storage = new S3Storage({
      bucket: 'bench',
      s3: { endpoint: message.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } },
      identity: box.identity,
    })
    api = new CloudServer({ host: '127.0.0.1', port: 0 }, { box, storage })
    await api.start()
    send({ type: 's3-ready' })
  })
  stop = async () => {
    await api.stop()
    await storage?.close()
    await box.destroy()
  }
  send({ type: 'ready', id: box.id, pairingUri: box.pairingUri(), direct: box.directUrl.replace(/^ws/, 'http') })
} else {
  console.error('usage: api-bench-node.mjs hub | s3 DIR | server FOLDER HUB PIN')
  process.exit(2)
}

process.on('message', async (message) => {
  if (message.type === 'peak') send({ type: 'peak', peak: process.resourceUsage().maxRSS * 1024 })
  if (message.type !== 'stop') return
  // maxRSS is in KiB: the peak of this process over its whole life.
  const usage = process.resourceUsage()
  await stop()
  send({ type: 'stopped', peak: usage.maxRSS * 1024, usage })
  process.disconnect()
})
