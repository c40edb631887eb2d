import { connect } from 'node:net'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Identity } from '@cloudbox/encrypted-messaging'
import { CloudBox } from '@cloudbox/cloudbox'
import { CloudServer } from '@cloudbox/cloudserver'
const root = mkdtempSync(join(tmpdir(), 'dbg-'))
const box = new CloudBox({ role: 'server', folder: join(root, 's'), listen: { host: '127.0.0.1', port: 0 }, masterPin: '2468-1357' }, { identity: Identity.generate().identity })
await box.start()
const api = new CloudServer({ statusPage: true }, { box })
await api.start()
const url = new URL(api.statusUrl)
const port = Number(url.port)
const UPGRADE = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'
const cases = {
  upgradeApi: `GET /v1/api HTTP/1.1\r\nHost: x\r\n${UPGRADE}\r\n`,
  upgradeStatus: `GET /status/xx HTTP/1.1\r\nHost: x\r\n${UPGRADE}\r\n`,
  post: `POST /foo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc`,
  garbage: `\u0001\u0002zzz`,
  upgradeBadKey: `GET /v1/api HTTP/1.1\r\nSec-WebSocket-Key: ${'A'.repeat(10000)}\r\n${UPGRADE}\r\n`,
}
const which = process.argv[2]
await new Promise((resolve) => {
  const s = connect(port, '127.0.0.1')
  s.on('data', (d) => { console.log(which, JSON.stringify(d.toString().split('\r\n')[0])); s.destroy(); resolve() })
  s.on('close', resolve); s.on('error', resolve)
  s.on('connect', () => s.end(cases[which]))
  setTimeout(() => { s.destroy(); resolve() }, 500)
})
await new Promise((r) => setTimeout(r, 200))
const t = Date.now()
await Promise.race([api.stop(), new Promise((r) => setTimeout(r, 3000))]); console.log('api.stop', Date.now() - t)
process.exit(0)
