#!/usr/bin/env node
// js-libp2p Circuit Relay v2 and DCUtR peers for peerloom's interop tests (tests/interop/test_js_relay.py).
//
//   node relay.mjs server [--port 0]
//       a relay (circuitRelayServer, default limits: 2 min / 128 KiB per circuit)
//   node relay.mjs client --relay MULTIADDR [--dcutr] [--port 0]
//       reserves on the relay (listens on MULTIADDR/p2p-circuit) and serves /peerloom/echo/1.0.0 on limited
//       connections too; with --dcutr (give a --port), its TCP port is also announced as /dns4/localhost/tcp/PORT
//       (js DCUtR ignores loopback addresses) and it runs the dcutr service
//   node relay.mjs dial MULTIADDR [--echo BYTES] [--dcutr] [--port 0]
//       dials (a /p2p-circuit address), echoes BYTES over a limited connection; with --dcutr waits for the
//       relayed connection to be upgraded to a direct one
//
// stdout: JSON lines. The first has `peer_id` and `addrs`; then {"event": "reserved", "addrs"} (client),
// {"event": "connection", "peer", "remote_addr", "limited"} on every connection opened, {"event": "echo", ...}
// (dial), {"event": "direct", "peer", "remote_addr"} (dial --dcutr), {"event": "error", "error"}.
// Stops on SIGTERM or when stdin closes.
import './node20-compat.mjs'

import { createHash, randomBytes } from 'node:crypto'
import process from 'node:process'
import { parseArgs } from 'node:util'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const ECHO_PROTOCOL = '/peerloom/echo/1.0.0'
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const errorText = (err) => `${err?.name ?? 'Error'}: ${err?.message ?? String(err)}`

function readAll (stream, onChunk) {
  return new Promise((resolve, reject) => {
    stream.addEventListener('message', (evt) => {
      const data = evt.data
      if (data instanceof Uint8Array) onChunk(data)
      else for (const buf of data) onChunk(buf)
    })
    stream.addEventListener('end', () => resolve())
    stream.addEventListener('close', (evt) => (evt.error != null ? reject(evt.error) : resolve()))
    if (stream.readableEnded) resolve()
  })
}

function echoHandler (stream) {
  readAll(stream, (buf) => { stream.send(buf) })
    .then(() => stream.close())
    .catch((err) => emit({ event: 'stream_error', error: errorText(err) }))
}

async function makeNode ({ server = false, relayTransport = false, dcutrOn = false, port = 0, relay = null }) {
  const node = await createLibp2p({
    addresses: {
      listen: [`/ip4/127.0.0.1/tcp/${port}`, ...(relay != null ? [`${relay}/p2p-circuit`] : [])],
      // js DCUtR drops loopback addresses: announce the port under a name, which it treats as public
      ...(dcutrOn ? { appendAnnounce: [`/dns4/localhost/tcp/${port}`] } : {})
    },
    transports: [tcp(), ...(relayTransport ? [circuitRelayTransport()] : [])],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      ...(server ? { relay: circuitRelayServer() } : {}),
      ...(dcutrOn ? { dcutr: dcutr() } : {})
    },
    connectionMonitor: { enabled: false },
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128'] }
  })
  node.addEventListener('connection:open', (evt) => {
    const conn = evt.detail
    emit({ event: 'connection', peer: conn.remotePeer.toString(), remote_addr: conn.remoteAddr.toString(), limited: conn.limits != null })
  })
  await node.handle(ECHO_PROTOCOL, echoHandler, { runOnLimitedConnection: true })
  return node
}

function hello (node) {
  emit({ peer_id: node.peerId.toString(), addrs: node.getMultiaddrs().map(a => a.toString()) })
}

async function echo (conn, bytes) {
  const payload = randomBytes(bytes)
  const stream = await conn.newStream(ECHO_PROTOCOL, { runOnLimitedConnection: true })
  const got = []
  const done = readAll(stream, (buf) => got.push(Buffer.from(buf.subarray ? buf.subarray() : buf)))
  for (let off = 0; off < bytes; off += 16384) {
    if (!stream.send(payload.subarray(off, off + 16384))) await stream.onDrain()
  }
  await stream.close()
  await done
  const back = Buffer.concat(got)
  const sha = (b) => createHash('sha256').update(b).digest('hex')
  return { event: 'echo', bytes, received: back.byteLength, match: sha(back) === sha(payload), limited: conn.limits != null }
}

function waitDirect (node, peer, timeoutMs) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const direct = node.getConnections(peer).find(c => c.limits == null && !c.remoteAddr.toString().includes('p2p-circuit'))
      if (direct != null) { clearInterval(timer); clearTimeout(deadline); resolve(direct) }
    }
    const timer = setInterval(check, 50)
    const deadline = setTimeout(() => { clearInterval(timer); reject(new Error('no direct connection')) }, timeoutMs)
    check()
  })
}

async function main (argv) {
  const [cmd, ...rest] = argv
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      port: { type: 'string', default: '0' },
      relay: { type: 'string' },
      dcutr: { type: 'boolean', default: false },
      echo: { type: 'string', default: '0' }
    }
  })
  const port = Number(values.port)
  let node
  if (cmd === 'server') {
    node = await makeNode({ server: true, port })
    hello(node)
  } else if (cmd === 'client') {
    node = await makeNode({ relayTransport: true, dcutrOn: values.dcutr, port, relay: values.relay })
    hello(node)
    emit({ event: 'reserved', addrs: node.getMultiaddrs().map(a => a.toString()) })
  } else if (cmd === 'dial') {
    node = await makeNode({ relayTransport: true, dcutrOn: values.dcutr, port })
    hello(node)
    const target = multiaddr(positionals[0])
    const conn = await node.dial(target)
    if (Number(values.echo) > 0) emit(await echo(conn, Number(values.echo)))
    if (values.dcutr) {
      const direct = await waitDirect(node, conn.remotePeer, 30000)
      emit({ event: 'direct', peer: conn.remotePeer.toString(), remote_addr: direct.remoteAddr.toString() })
    }
  } else {
    throw new Error('usage: node relay.mjs server | client --relay MULTIADDR [--dcutr] | dial MULTIADDR [--echo N] [--dcutr]')
  }
  const stop = () => { node.stop().finally(() => process.exit(0)) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.stdin.on('end', stop)
  process.stdin.resume()
}

main(process.argv.slice(2)).catch((err) => { emit({ event: 'error', error: errorText(err) }); process.exit(1) })
