// A router hub in its own process, so the load test can read its memory: prints its URL
// and pid. Loopback tests come from one address, so the per-address limit is raised.
import { RouterHub } from '@cloudbox/router-hub'

const hub = new RouterHub({ host: '127.0.0.1', port: 0, maxConnectionsPerAddress: 4096, maxRoutesPerNode: 2048, maxRoutesPerAddress: 2048 })
await hub.start()
process.stdout.write(`${JSON.stringify({ url: hub.url })}\n`)
process.on('SIGTERM', async () => {
  await hub.stop()
  process.exit(0)
})
