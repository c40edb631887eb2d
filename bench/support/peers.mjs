/**
 * The programs the side-by-side benchmark compares, each behind the same small interface:
 * `start({ source, target, work })` sets up a sender on `source` and a receiver on
 * `target` on 127.0.0.1; `sync()` resolves once the receiver holds what `source` holds;
 * `pids()` names the sender and receiver processes; `stop()` ends them all.
 * Every connection between sender and receiver goes through `countingProxy`, so "bytes on
 * the wire" is measured the same way for all: TCP payload bytes, both directions.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const peerScript = fileURLToPath(new URL('./cloudbox-peer.mjs', import.meta.url))
const cloudboxCli = fileURLToPath(new URL('../../apps/demo/dist/cli.js', import.meta.url))

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
    server.on('error', reject)
  })
}

/** A TCP relay on 127.0.0.1 that counts the bytes it carries. */
export async function countingProxy(targetPort) {
  let closedBytes = 0
  const open = new Set()
  const server = createServer((inbound) => {
    const outbound = connect(targetPort, '127.0.0.1')
    open.add(inbound)
    inbound.pipe(outbound)
    outbound.pipe(inbound)
    const end = () => {
      if (!open.delete(inbound)) return
      closedBytes += inbound.bytesRead + inbound.bytesWritten
      inbound.destroy()
      outbound.destroy()
    }
    inbound.on('close', end).on('error', end)
    outbound.on('close', end).on('error', end)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: server.address().port,
    bytes: () => closedBytes + [...open].reduce((sum, socket) => sum + socket.bytesRead + socket.bytesWritten, 0),
    close: () => {
      for (const socket of open) socket.destroy()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

async function waitForPort(port, child, what) {
  for (let i = 0; i < 400; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before listening`)
    const ok = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy()
        resolve(true)
      })
      socket.on('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`${what} did not listen on port ${port}`)
}

function stopChild(child, signal = 'SIGTERM') {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill(signal)
  })
}

/** A cloudbox-peer.mjs process and its messages, in order. */
function peerProcess(...args) {
  // BENCH_CPU_PROF=<dir> writes a CPU profile of each CloudBox process there.
  const profile = process.env.BENCH_CPU_PROF === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF]
  // The V8 setting the cloudbox program makes for itself (apps/demo/src/gc-tuning.ts).
  const child = spawn(process.execPath, ['--no-incremental-marking', ...profile, peerScript, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const queue = []
  const waiting = []
  child.on('message', (message) => (waiting.length > 0 ? waiting.shift().resolve(message) : queue.push(message)))
  child.on('exit', (code) => {
    for (const waiter of waiting.splice(0)) waiter.reject(new Error(`the CloudBox ${args[0]} process exited with ${code}`))
  })
  return {
    child,
    next: () => (queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise((resolve, reject) => waiting.push({ resolve, reject }))),
    send: (message) => child.send(message),
    async stop() {
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.send('stop')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
  }
}

export function cloudboxPeer({ viaHub }) {
  let hub
  let server
  let client
  let proxy
  return {
    name: viaHub ? 'CloudBox through the hub' : 'CloudBox direct',
    transport: viaHub ? 'WebSocket to a router hub on 127.0.0.1, Noise end to end' : 'WebSocket, Noise end to end',
    async start({ source, target }) {
      let hubUrl
      if (viaHub) {
        hub = peerProcess('hub')
        hubUrl = (await hub.next()).url
      }
      server = peerProcess('server', target, ...(hubUrl === undefined ? [] : [hubUrl]))
      const { uri } = await server.next()
      // The device gets the server's pairing URI with its way in replaced by the counting proxy.
      const params = new URLSearchParams(uri.slice('cloudbox://pair?'.length))
      const way = viaHub ? 'hub' : 'addr'
      proxy = await countingProxy(Number(new URL(params.get(way)).port))
      params.delete(way)
      params.set(way, `ws://127.0.0.1:${proxy.port}`)
      client = peerProcess('client', source)
      await client.next()
      client.send({ pair: `cloudbox://pair?${params}` })
      await client.next()
    },
    async sync() {
      client.send('sync')
      await client.next()
    },
    wire: () => proxy.bytes(),
    pids: () => ({ sender: [client.child.pid], receiver: [server.child.pid] }),
    async stop() {
      await client?.stop()
      await server?.stop()
      await hub?.stop()
      await proxy?.close()
    },
  }
}

/**
 * The `cloudbox` program as users run it: `cloudbox serve` on the receiver, and on the
 * sender `cloudbox sync <folder> --once` per workload (process start, vault unlock, index
 * open and rescan included), paired once with `cloudbox pair`.
 */
export function cloudboxProgramPeer() {
  const PIN = '2468-1357'
  const env = { ...process.env, CLOUDBOX_HOME: '', NO_COLOR: '1', CLOUDBOX_PASSPHRASE: 'bench passphrase, not a secret', DBUS_SESSION_BUS_ADDRESS: '' }
  const homes = {}
  let server
  let proxy
  let running
  let source
  const cli = (args) =>
    new Promise((resolve, reject) => {
      const profile = process.env.BENCH_CPU_PROF === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF]
      const child = spawn(process.execPath, [...profile, cloudboxCli, ...args, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
      running = child
      let output = ''
      child.stdout.on('data', (data) => (output += data))
      child.stderr.on('data', (data) => (output += data))
      child.once('exit', (code) => {
        running = undefined
        if (code === 0) resolve(output)
        else reject(new Error(`cloudbox ${args[0]} exited with ${code}: ${output.slice(-500)}`))
      })
    })
  return {
    name: 'cloudbox program',
    transport: '`cloudbox sync --once` → `cloudbox serve`, WebSocket, Noise',
    async start(dirs) {
      source = dirs.source
      homes.server = join(dirs.work, 'server-home')
      homes.device = join(dirs.work, 'device-home')
      await cli(['init', '--home', homes.server, '--storage', 'vault'])
      await cli(['init', '--home', homes.device, '--storage', 'vault'])
      const profile = process.env.BENCH_CPU_PROF === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF]
      server = spawn(process.execPath, [...profile, cloudboxCli, 'serve', dirs.target, '--home', homes.server, '--listen', '127.0.0.1:0', '--json'], { env: { ...env, CLOUDBOX_PIN: PIN }, stdio: ['ignore', 'pipe', 'inherit'] })
      const serving = await new Promise((resolve, reject) => {
        let buffered = ''
        const read = (data) => {
          buffered += data
          for (const line of buffered.split('\n').slice(0, -1)) {
            const event = JSON.parse(line)
            if (event.event === 'serving') {
              // Its later lines are drained unread (parsing them would cost the machine's CPU).
              server.stdout.off('data', read)
              server.stdout.resume()
              resolve(event)
              return
            }
          }
          buffered = buffered.slice(buffered.lastIndexOf('\n') + 1)
        }
        server.stdout.on('data', read)
        server.once('exit', (code) => reject(new Error(`cloudbox serve exited with ${code}`)))
      })
      const params = new URLSearchParams(serving.uri.slice('cloudbox://pair?'.length))
      proxy = await countingProxy(Number(new URL(params.get('addr')).port))
      params.set('addr', `ws://127.0.0.1:${proxy.port}`)
      await cli(['pair', `cloudbox://pair?${params}`, '--home', homes.device, '--name', 'bench', '--pin', PIN])
    },
    async sync() {
      await cli(['sync', source, '--once', '--home', homes.device])
    },
    wire: () => proxy.bytes(),
    pids: () => ({ sender: running === undefined ? [] : [running.pid], receiver: [server.pid] }),
    async stop() {
      await stopChild(server)
      await proxy?.close()
    },
  }
}

export function rsyncPeer() {
  let daemon
  let proxy
  let port
  let running
  let source
  return {
    name: 'rsync',
    transport: 'rsync daemon protocol over TCP, unencrypted',
    descendants: true,
    async start(dirs) {
      source = dirs.source
      port = await freePort()
      const config = join(dirs.work, 'rsyncd.conf')
      writeFileSync(config, `pid file = ${join(dirs.work, 'rsyncd.pid')}\nuse chroot = false\n[bench]\npath = ${dirs.target}\nread only = false\nuid = 0\ngid = 0\n`)
      daemon = spawn('rsync', ['--daemon', '--no-detach', `--config=${config}`, '--address=127.0.0.1', `--port=${port}`], { stdio: 'ignore' })
      await waitForPort(port, daemon, 'rsync --daemon')
      proxy = await countingProxy(port)
    },
    async sync() {
      running = spawn('rsync', ['-a', '--delete', '--no-whole-file', '--stats', `${source}/`, `rsync://127.0.0.1:${proxy.port}/bench/`], { stdio: ['ignore', 'pipe', 'pipe'] })
      let output = ''
      running.stdout.on('data', (data) => (output += data))
      running.stderr.on('data', (data) => (output += data))
      const code = await new Promise((resolve) => running.once('exit', resolve))
      running = undefined
      if (code !== 0) throw new Error(`rsync exited with ${code}: ${output.slice(-500)}`)
    },
    wire: () => proxy.bytes(),
    pids: () => ({ sender: running === undefined ? [] : [running.pid], receiver: [daemon.pid] }),
    async stop() {
      await stopChild(daemon)
      await proxy?.close()
    },
  }
}

/** Syncthing's REST API on one instance. */
function rest(guiPort, apiKey) {
  return async (method, path, body) => {
    const response = await fetch(`http://127.0.0.1:${guiPort}${path}`, {
      method,
      headers: { 'X-API-Key': apiKey, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await response.text()
    if (!response.ok) throw new Error(`Syncthing ${method} ${path}: ${response.status} ${text.slice(0, 300)}`)
    return text === '' ? undefined : JSON.parse(text)
  }
}

async function startSyncthing(home) {
  mkdirSync(home, { recursive: true })
  const guiPort = await freePort()
  const apiKey = randomBytes(16).toString('hex')
  const child = spawn('syncthing', ['serve', `--home=${home}`, '--no-browser', '--no-restart', '--no-upgrade', '--no-default-folder', '--skip-port-probing', `--gui-address=http://127.0.0.1:${guiPort}`, `--gui-apikey=${apiKey}`, '--logfile=-'], {
    stdio: 'ignore',
    env: { ...process.env, STNORESTART: '1', STNOUPGRADE: '1', STNODEFAULTFOLDER: '1' },
  })
  await waitForPort(guiPort, child, 'syncthing')
  const call = rest(guiPort, apiKey)
  for (let i = 0; ; i++) {
    try {
      await call('GET', '/rest/system/ping')
      break
    } catch (error) {
      if (i > 200) throw error
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  const { myID } = await call('GET', '/rest/system/status')
  return { child, call, id: myID }
}

export function syncthingPeer() {
  let sender
  let receiver
  const proxies = []
  return {
    name: 'Syncthing',
    transport: 'BEP over TLS 1.3',
    // A monitor process starts the worker: both count.
    descendants: true,
    async start({ source, target, work }) {
      sender = await startSyncthing(join(work, 'syncthing-sender'))
      receiver = await startSyncthing(join(work, 'syncthing-receiver'))
      const listen = { sender: await freePort(), receiver: await freePort() }
      for (const [who, instance] of [['sender', sender], ['receiver', receiver]]) {
        // Loopback only: no discovery, relays, NAT traversal, usage reports or upgrades.
        await instance.call('PATCH', '/rest/config/options', {
          listenAddresses: [`tcp://127.0.0.1:${listen[who]}`],
          globalAnnounceEnabled: false,
          localAnnounceEnabled: false,
          relaysEnabled: false,
          natEnabled: false,
          urAccepted: -1,
          autoUpgradeIntervalH: 0,
          crashReportingEnabled: false,
          startBrowser: false,
        })
      }
      // Each reaches the other only through a counting proxy.
      for (const port of [listen.sender, listen.receiver]) proxies.push(await countingProxy(port))
      const [toSender, toReceiver] = proxies
      await sender.call('POST', '/rest/config/devices', { deviceID: receiver.id, name: 'receiver', addresses: [`tcp://127.0.0.1:${toReceiver.port}`] })
      await receiver.call('POST', '/rest/config/devices', { deviceID: sender.id, name: 'sender', addresses: [`tcp://127.0.0.1:${toSender.port}`] })
      const folder = (path, type) => ({ id: 'bench', label: 'bench', path, type, devices: [{ deviceID: sender.id }, { deviceID: receiver.id }], rescanIntervalS: 3600, fsWatcherEnabled: false })
      await sender.call('POST', '/rest/config/folders', folder(source, 'sendonly'))
      await receiver.call('POST', '/rest/config/folders', folder(target, 'receiveonly'))
      for (let i = 0; ; i++) {
        const { connections } = await sender.call('GET', '/rest/system/connections')
        if (connections[receiver.id]?.connected) break
        if (i > 1200) throw new Error('the two Syncthing instances did not connect within 60 s')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    },
    async sync() {
      await sender.call('POST', '/rest/db/scan?folder=bench')
      // Done when the receiver's database holds what the sender's does, nothing is left to
      // pull, and the sender's view of the receiver agrees (the receiver announced it all).
      const want = await sender.call('GET', '/rest/db/status?folder=bench')
      for (;;) {
        const have = await receiver.call('GET', '/rest/db/status?folder=bench')
        if (have.state === 'idle' && have.needFiles === 0 && have.needBytes === 0 && have.localFiles === want.localFiles && have.localBytes === want.localBytes && have.globalBytes === want.localBytes) {
          const completion = await sender.call('GET', `/rest/db/completion?folder=bench&device=${receiver.id}`)
          if (completion.completion === 100 && completion.needItems === 0) return
        }
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    wire: () => proxies.reduce((sum, proxy) => sum + proxy.bytes(), 0),
    pids: () => ({ sender: [sender.child.pid], receiver: [receiver.child.pid] }),
    async stop() {
      await stopChild(sender?.child)
      await stopChild(receiver?.child)
      for (const proxy of proxies.splice(0)) await proxy.close()
    },
  }
}
