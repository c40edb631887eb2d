#!/usr/bin/env node
/**
 * Secure channel figures: IK and XX handshakes per second, and transport throughput of
 * 16 MiB messages over an in-memory pair and over TCP on 127.0.0.1 (one direction,
 * encrypt + decrypt in this one process, so both ends share the CPU).
 */
import { connect, createServer } from 'node:net'
import {
  acceptSecureChannel,
  channelFromStream,
  createMemoryChannelPair,
  Identity,
  initiateSecureChannel,
} from '../dist/index.js'

const alice = Identity.generate().identity
const bob = Identity.generate().identity
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function handshakes(kind, count) {
  const times = []
  for (let i = 0; i < count; i++) {
    const [a, b] = createMemoryChannelPair()
    const started = performance.now()
    const [client, server] = await Promise.all([
      initiateSecureChannel(a, { identity: alice, ...(kind === 'IK' ? { remotePublicKey: bob.publicKey } : {}) }),
      acceptSecureChannel(b, { identity: bob }),
    ])
    times.push(performance.now() - started)
    await client.close()
    for await (const _ of server);
  }
  return median(times)
}

async function throughput(client, server, messages, size) {
  const payload = new Uint8Array(size).fill(7)
  const started = performance.now()
  const received = (async () => {
    let bytes = 0
    for await (const message of server) bytes += message.length
    return bytes
  })()
  for (let i = 0; i < messages; i++) await client.send(payload)
  await client.close()
  const bytes = await received
  const seconds = (performance.now() - started) / 1000
  return (bytes / 1e6) / seconds
}

const MIB = 1024 * 1024
const rows = []
const ik = await handshakes('IK', 50)
const xx = await handshakes('XX', 50)
rows.push(['IK handshake (both sides, one process)', `${ik.toFixed(2)} ms median`, `${(1000 / ik).toFixed(0)} /s`])
rows.push(['XX handshake (both sides, one process)', `${xx.toFixed(2)} ms median`, `${(1000 / xx).toFixed(0)} /s`])

const memory = []
for (let run = 0; run < 3; run++) {
  const [a, b] = createMemoryChannelPair()
  const [client, server] = await Promise.all([initiateSecureChannel(a, { identity: alice, remotePublicKey: bob.publicKey }), acceptSecureChannel(b, { identity: bob })])
  memory.push(await throughput(client, server, 16, 16 * MIB))
}
rows.push(['transport, memory pair, 16 × 16 MiB', `${median(memory).toFixed(0)} MB/s median`, `min ${Math.min(...memory).toFixed(0)}, max ${Math.max(...memory).toFixed(0)}`])

const tcp = []
for (let run = 0; run < 3; run++) {
  let serverReady
  const accepted = new Promise((resolve) => { serverReady = resolve })
  const listener = createServer((socket) => serverReady(acceptSecureChannel(channelFromStream(socket), { identity: bob })))
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const socket = connect(listener.address().port, '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  const [client, server] = await Promise.all([initiateSecureChannel(channelFromStream(socket), { identity: alice, remotePublicKey: bob.publicKey }), accepted])
  tcp.push(await throughput(client, server, 16, 16 * MIB))
  await new Promise((resolve) => listener.close(resolve))
}
rows.push(['transport, TCP 127.0.0.1, 16 × 16 MiB', `${median(tcp).toFixed(0)} MB/s median`, `min ${Math.min(...tcp).toFixed(0)}, max ${Math.max(...tcp).toFixed(0)}`])

console.log('Secure channel (Noise IK/XX, ChaChaPoly, BLAKE2b); sender and receiver in one process.\n')
console.log('| measure | figure | range |')
console.log('|---|---|---|')
for (const row of rows) console.log(`| ${row.join(' | ')} |`)
