#!/usr/bin/env node
// js-libp2p peer for peerloom's interop tests and benchmarks.
//
//   node peer.mjs listen [--port 0] [--host 127.0.0.1] [--key HEX] [--agent STR] [--ignore-stdin]
//   node peer.mjs dial MULTIADDR [--ping N] [--echo BYTES] [--sink BYTES] [--key HEX]
//                     [--chunk BYTES] [--seed STR] [--timeout SECONDS] [--identify-timeout SECONDS]
//   node peer.mjs keygen
//
// stdout carries JSON lines only (one object per line); the formats are documented in
// README.md and are a stable interface for tests/support/jslibp2p.py. libp2p's own debug
// output (DEBUG=libp2p:*) goes to stderr.
import './node20-compat.mjs'

import { createCipheriv, createHash } from 'node:crypto'
import { fstatSync } from 'node:fs'
import process from 'node:process'
import { parseArgs } from 'node:util'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

export const ECHO_PROTOCOL = '/peerloom/echo/1.0.0'
export const SINK_PROTOCOL = '/peerloom/sink/1.0.0'

// Yamux lets a peer grow a stream's receive window up to 16 MiB; while an echo stream is
// paused (waiting for its own send side to drain) that much can land in the read buffer,
// so the default 4 MiB cap would reset the stream. Keep well above the window.
const HANDLER_READ_BUFFER = 64 * 1024 * 1024
const DEFAULT_CHUNK = 64 * 1024
const SINK_BLOCK = 4 * 1024 * 1024
const STOP_GRACE_MS = 5000

// ---------------------------------------------------------------------------------- output

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

class PeerError extends Error {
  constructor (code, message, stage) {
    super(message)
    this.code = code
    this.stage = stage
  }
}

function errorText (err) {
  if (err == null) return 'unknown error'
  const name = err.name != null && err.name !== 'Error' ? `${err.name}: ` : ''
  let text = `${name}${err.message ?? String(err)}`
  // AggregateError (e.g. every address failed): include the first cause
  if (Array.isArray(err.errors) && err.errors.length > 0) {
    text += ` (${errorText(err.errors[0])})`
  }
  return text
}

function allErrors (err, out = []) {
  if (err == null || out.length > 16) return out
  out.push(err)
  if (Array.isArray(err.errors)) err.errors.forEach(e => allErrors(e, out))
  if (err.cause != null) allErrors(err.cause, out)
  return out
}

function classify (err, stage) {
  if (err instanceof PeerError) return err.code
  const errs = allErrors(err)
  const has = (re) => errs.some(e => re.test(`${e?.name ?? ''} ${e?.code ?? ''} ${e?.message ?? ''}`))
  if (has(/UnexpectedPeer|InvalidPeerId|unexpected peer|peer id mismatch|does not match expected remote/i)) return 'peer_id_mismatch'
  if (has(/ECONNREFUSED/)) return 'connection_refused'
  if (has(/UnsupportedProtocol|protocol selection failed|protocols? not supported/i)) return 'protocol_unsupported'
  if (has(/TimeoutError|AbortError|timed out|timeout/i)) return 'timeout'
  if (has(/StreamReset|reset/i)) return 'stream_reset'
  return `${stage}_failed`
}

function fail (err, stage) {
  emit({
    event: 'error',
    stage,
    code: classify(err, stage),
    error: errorText(err)
  })
  process.exit(1)
}

// ------------------------------------------------------------------------------- arguments

function parseBytes (text, what) {
  const m = /^\s*(\d+)\s*(k|kb|kib|m|mb|mib|g|gb|gib)?\s*$/i.exec(String(text))
  if (m == null) throw new PeerError('bad_args', `${what}: not a byte count: ${text}`, 'args')
  const mult = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 }[(m[2] ?? '').charAt(0).toLowerCase()] ?? 1
  const n = Number(m[1]) * mult
  if (!Number.isSafeInteger(n)) throw new PeerError('bad_args', `${what}: too large: ${text}`, 'args')
  return n
}

function parseCount (text, what) {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 0) throw new PeerError('bad_args', `${what}: not a count: ${text}`, 'args')
  return n
}

function parseSeconds (text, what) {
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0) throw new PeerError('bad_args', `${what}: not a positive number: ${text}`, 'args')
  return n
}

async function loadKey (hex) {
  if (hex == null) return generateKeyPair('Ed25519')
  const clean = hex.trim().replace(/^0x/i, '')
  if (!/^([0-9a-f]{2})+$/i.test(clean)) throw new PeerError('bad_args', '--key: not hex', 'args')
  try {
    return privateKeyFromProtobuf(Buffer.from(clean, 'hex'))
  } catch (err) {
    throw new PeerError('bad_args', `--key: not a protobuf-encoded libp2p private key (${errorText(err)})`, 'args')
  }
}

// --------------------------------------------------------------------------------- the node

async function createNode ({ privateKey, listen, agent }) {
  const node = await createLibp2p({
    privateKey,
    ...(agent != null ? { nodeInfo: { userAgent: agent } } : {}),
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // no peerDiscovery, peerRouters, contentRouters, relay, upnp, autonat, dcutr, kad...
    services: {
      identify: identify(),
      ping: ping()
    },
    // the monitor would ping every connected peer in the background; keep traffic to what
    // the test asks for
    connectionMonitor: { enabled: false },
    connectionManager: {
      // loopback peers bypass the inbound rate limit (5 conn/s per host) and pending cap
      allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']
    },
    start: false
  })
  await node.handle(ECHO_PROTOCOL, (stream, connection) => echoHandler(stream, connection), {
    maxInboundStreams: 256,
    runOnLimitedConnection: false
  })
  await node.handle(SINK_PROTOCOL, (stream, connection) => sinkHandler(stream, connection), {
    maxInboundStreams: 256,
    runOnLimitedConnection: false
  })
  await node.start()
  return node
}

function agentOf (node) {
  // the same string identify sends (components is not public API, hence the fallback)
  return node.components?.nodeInfo?.userAgent ?? null
}

function identifyJson (result) {
  return {
    peer: result.peerId.toString(),
    agent: result.agentVersion ?? null,
    protocol_version: result.protocolVersion ?? null,
    protocols: [...(result.protocols ?? [])].sort(),
    listen_addrs: (result.listenAddrs ?? []).map(a => a.toString()),
    observed_addr: result.observedAddr?.toString() ?? null,
    signed_peer_record: result.signedPeerRecord != null,
    remote_addr: result.connection?.remoteAddr?.toString() ?? null
  }
}

async function stopNode (node) {
  await Promise.race([
    node.stop().catch(() => {}),
    new Promise(resolve => setTimeout(resolve, STOP_GRACE_MS).unref())
  ])
}

// ------------------------------------------------------------------------- stream handlers

// Feed each received chunk to onChunk (no copy) and resolve once the remote has closed its
// write side and everything it sent has been delivered; reject if the stream is reset or
// aborted first. Backpressure is left to the caller (pause/resume).
function readAll (stream, onChunk) {
  return new Promise((resolve, reject) => {
    let settled = false
    const settle = (err) => {
      if (settled) return
      settled = true
      if (err != null) reject(err)
      else resolve()
    }
    stream.addEventListener('message', (evt) => {
      const data = evt.data
      if (data instanceof Uint8Array) onChunk(data)
      else for (const buf of data) onChunk(buf)
    })
    stream.addEventListener('end', () => settle())
    stream.addEventListener('close', (evt) => {
      if (evt.error != null) settle(evt.error)
      else if (stream.readableEnded) settle()
      else settle(new PeerError('stream_closed', 'stream closed before the remote finished writing', 'stream'))
    })
    // the remote may have closed its write side before we attached (e.g. an empty echo)
    if (stream.readableEnded) settle()
  })
}

function echoHandler (stream, connection) {
  const peer = connection.remotePeer.toString()
  let total = 0
  stream.maxReadBufferLength = HANDLER_READ_BUFFER
  const done = readAll(stream, (buf) => {
    total += buf.byteLength
    let more
    try {
      more = stream.send(buf)
    } catch (err) {
      // e.g. the remote reset the stream; readAll() rejects via the 'close' event
      stream.abort(err)
      return
    }
    if (!more && stream.readStatus === 'readable') {
      // the send side is full: stop reading (yamux withholds window updates) until it drains
      stream.pause()
      stream.onDrain().then(() => {
        if (stream.readStatus === 'paused') stream.resume()
      }, () => {})
    }
  })
  done
    .then(() => stream.close())
    .then(() => emit({ event: 'echo', peer, bytes: total }))
    .catch((err) => {
      emit({ event: 'stream_error', protocol: ECHO_PROTOCOL, peer, bytes: total, error: errorText(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    })
}

function sinkHandler (stream, connection) {
  const peer = connection.remotePeer.toString()
  let total = 0
  stream.maxReadBufferLength = HANDLER_READ_BUFFER
  readAll(stream, (buf) => { total += buf.byteLength })
    .then(() => {
      const reply = new Uint8Array(8)
      new DataView(reply.buffer).setBigUint64(0, BigInt(total), false)
      stream.send(reply)
      return stream.close()
    })
    .then(() => emit({ event: 'sink', peer, bytes: total }))
    .catch((err) => {
      emit({ event: 'stream_error', protocol: SINK_PROTOCOL, peer, bytes: total, error: errorText(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    })
}

// ----------------------------------------------------------------------------------- listen

async function cmdListen (args) {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      key: { type: 'string' },
      agent: { type: 'string' },
      'ignore-stdin': { type: 'boolean', default: false }
    },
    strict: true,
    allowPositionals: false
  })
  const port = parseCount(values.port, '--port')
  const host = values.host
  const family = host.includes(':') ? 'ip6' : 'ip4'
  const privateKey = await loadKey(values.key)
  let node
  try {
    node = await createNode({ privateKey, listen: [`/${family}/${host}/tcp/${port}`], agent: values.agent })
  } catch (err) {
    fail(err, 'listen')
  }

  node.addEventListener('connection:open', (evt) => {
    const c = evt.detail
    emit({ event: 'connection', peer: c.remotePeer.toString(), remote_addr: c.remoteAddr.toString(), direction: c.direction, id: c.id })
  })
  node.addEventListener('connection:close', (evt) => {
    const c = evt.detail
    emit({ event: 'disconnect', peer: c.remotePeer.toString(), remote_addr: c.remoteAddr.toString(), id: c.id })
  })
  node.addEventListener('peer:identify', (evt) => {
    emit({ event: 'identify', ...identifyJson(evt.detail) })
  })

  emit({
    peer_id: node.peerId.toString(),
    addrs: node.getMultiaddrs().map(a => a.toString()),
    agent: agentOf(node),
    protocols: [...node.getProtocols()].sort()
  })

  let stopping = false
  const shutdown = async (why) => {
    if (stopping) return
    stopping = true
    await stopNode(node)
    emit({ event: 'stopped', reason: why })
    process.exit(0)
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  process.on('SIGINT', () => { shutdown('SIGINT') })
  if (!values['ignore-stdin'] && stdinIsWatchable()) {
    // the parent closing our stdin (or dying) means "stop"
    process.stdin.on('end', () => { shutdown('stdin closed') })
    process.stdin.on('error', () => { shutdown('stdin error') })
    process.stdin.resume()
  }
}

// stdin EOF is a stop signal only when stdin is a pipe, socket or terminal: /dev/null or a
// regular file reach EOF at once, which would stop the listener as soon as it started.
function stdinIsWatchable () {
  try {
    const st = fstatSync(0)
    return st.isFIFO() || st.isSocket() || process.stdin.isTTY === true
  } catch {
    return false
  }
}

// ------------------------------------------------------------------------------------- dial

// Deterministic pseudo-random bytes: the AES-128-CTR keystream for a key derived from seed.
function keystream (seed) {
  const key = createHash('sha256').update(`peerloom-interop:${seed}`).digest()
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32))
}

function pseudoRandom (bytes, seed) {
  if (bytes === 0) return Buffer.alloc(0)
  return keystream(seed).update(Buffer.alloc(bytes))
}

function rate (bytes, seconds) {
  return seconds > 0 ? round(bytes / 1e6 / seconds, 2) : null
}

function round (x, digits) {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

async function sendAll (stream, total, pieceAt, signal) {
  let sent = 0
  while (sent < total) {
    const piece = pieceAt(sent, total - sent)
    sent += piece.byteLength
    if (!stream.send(piece)) await stream.onDrain({ signal })
  }
  await stream.close({ signal })
}

async function runEcho (conn, bytes, { chunk, seed, signal }) {
  // Generate and hash the payload before the clock starts, and hash what comes back after
  // it stops, so the rate measures the libp2p path only (SHA-256 is slower than loopback
  // on small machines). Memory: about twice BYTES.
  const payload = pseudoRandom(bytes, seed)
  const sentSha = createHash('sha256').update(payload).digest('hex')
  const stream = await conn.newStream(ECHO_PROTOCOL, { signal })
  const received = []
  let receivedBytes = 0
  const t0 = performance.now()
  const done = readAll(stream, (buf) => { received.push(buf); receivedBytes += buf.byteLength })
  const sending = sendAll(stream, bytes, (off, left) => payload.subarray(off, off + Math.min(chunk, left)), signal)
  await Promise.all([sending, done])
  const seconds = (performance.now() - t0) / 1000
  const h = createHash('sha256')
  for (const buf of received) h.update(buf)
  const recvSha = h.digest('hex')
  const result = {
    event: 'echo',
    bytes,
    received_bytes: receivedBytes,
    sent_sha256: sentSha,
    received_sha256: recvSha,
    match: recvSha === sentSha && receivedBytes === bytes,
    seconds: round(seconds, 4),
    mb_per_s: rate(bytes, seconds),
    chunk
  }
  if (!result.match) {
    emit(result)
    throw new PeerError('echo_mismatch', `echo returned ${receivedBytes} bytes with sha256 ${recvSha}, sent ${bytes} with ${sentSha}`, 'echo')
  }
  return result
}

async function runSink (conn, bytes, { chunk, seed, signal }) {
  const block = pseudoRandom(Math.max(chunk, Math.min(SINK_BLOCK, bytes)), seed)
  const stream = await conn.newStream(SINK_PROTOCOL, { signal })
  const reply = []
  const t0 = performance.now()
  const done = readAll(stream, (buf) => { reply.push(buf) })
  const pieceAt = (off, left) => {
    const start = off % block.byteLength
    return block.subarray(start, start + Math.min(chunk, left, block.byteLength - start))
  }
  await Promise.all([sendAll(stream, bytes, pieceAt, signal), done])
  const seconds = (performance.now() - t0) / 1000
  const replyBytes = Buffer.concat(reply)
  if (replyBytes.byteLength !== 8) {
    throw new PeerError('sink_mismatch', `sink replied ${replyBytes.byteLength} bytes, expected an 8-byte count`, 'sink')
  }
  const counted = Number(replyBytes.readBigUInt64BE(0))
  if (counted !== bytes) {
    throw new PeerError('sink_mismatch', `sink counted ${counted} bytes, sent ${bytes}`, 'sink')
  }
  return { event: 'sink', bytes, acked_bytes: counted, seconds: round(seconds, 4), mb_per_s: rate(bytes, seconds), chunk }
}

async function runPing (node, conn, count, signal) {
  const rtt = []
  const wall = []
  for (let i = 0; i < count; i++) {
    const t0 = performance.now()
    rtt.push(await node.services.ping.ping(conn.remotePeer, { signal }))
    wall.push(round(performance.now() - t0, 3))
  }
  const avg = wall.reduce((a, b) => a + b, 0) / Math.max(1, wall.length)
  return {
    event: 'ping',
    count,
    rtt_ms: rtt,
    wall_ms: wall,
    min_wall_ms: count > 0 ? Math.min(...wall) : null,
    avg_wall_ms: count > 0 ? round(avg, 3) : null,
    max_wall_ms: count > 0 ? Math.max(...wall) : null
  }
}

function waitForIdentify (node, conn, results, timeoutMs) {
  const have = results.get(conn.id)
  if (have != null) return Promise.resolve(have)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      node.removeEventListener('peer:identify', onIdentify)
      reject(new PeerError('identify_timeout', `no identify result within ${timeoutMs} ms`, 'identify'))
    }, timeoutMs)
    const onIdentify = (evt) => {
      if (evt.detail.connection?.id !== conn.id) return
      clearTimeout(timer)
      node.removeEventListener('peer:identify', onIdentify)
      resolve(evt.detail)
    }
    node.addEventListener('peer:identify', onIdentify)
  })
}

async function cmdDial (args) {
  const { values, positionals } = parseArgs({
    args,
    options: {
      ping: { type: 'string', default: '0' },
      echo: { type: 'string' },
      sink: { type: 'string' },
      key: { type: 'string' },
      chunk: { type: 'string', default: String(DEFAULT_CHUNK) },
      seed: { type: 'string', default: 'peerloom' },
      timeout: { type: 'string', default: '300' },
      'identify-timeout': { type: 'string', default: '10' },
      agent: { type: 'string' }
    },
    strict: true,
    allowPositionals: true
  })
  if (positionals.length !== 1) throw new PeerError('bad_args', 'dial takes exactly one MULTIADDR', 'args')
  let target
  let expected = null
  try {
    target = multiaddr(positionals[0])
    const p2p = target.getComponents().filter(c => c.name === 'p2p').pop()
    if (p2p != null) expected = peerIdFromString(p2p.value)
  } catch (err) {
    throw new PeerError('bad_args', `bad multiaddr ${positionals[0]}: ${errorText(err)}`, 'args')
  }
  const pings = parseCount(values.ping, '--ping')
  const echoBytes = values.echo != null ? parseBytes(values.echo, '--echo') : null
  const sinkBytes = values.sink != null ? parseBytes(values.sink, '--sink') : null
  const chunk = parseBytes(values.chunk, '--chunk')
  if (chunk < 1) throw new PeerError('bad_args', '--chunk must be at least 1 byte', 'args')
  const timeoutMs = parseSeconds(values.timeout, '--timeout') * 1000
  const identifyTimeoutMs = parseSeconds(values['identify-timeout'], '--identify-timeout') * 1000
  const privateKey = await loadKey(values.key)

  const started = performance.now()
  const signal = AbortSignal.timeout(timeoutMs)
  // a hard stop in case something ignores the signal
  setTimeout(() => fail(new PeerError('timeout', `gave up after ${timeoutMs / 1000} s`, 'dial'), 'dial'), timeoutMs + 2000).unref()

  let stage = 'start'
  let node
  try {
    node = await createNode({ privateKey, listen: [], agent: values.agent })
  } catch (err) {
    fail(err, stage)
  }
  try {
    // identify runs on its own as soon as the connection opens, possibly before dial()
    // returns: record every result by connection id from the start
    const identified = new Map()
    node.addEventListener('peer:identify', (evt) => {
      if (evt.detail.connection != null) identified.set(evt.detail.connection.id, evt.detail)
    })

    stage = 'dial'
    const conn = await node.dial(target, { signal })
    if (expected != null && !conn.remotePeer.equals(expected)) {
      throw new PeerError('peer_id_mismatch', `dialled ${expected} but the remote is ${conn.remotePeer}`, 'dial')
    }

    stage = 'identify'
    let info
    try {
      info = await waitForIdentify(node, conn, identified, identifyTimeoutMs)
    } catch (err) {
      // automatic identify failed silently (it only logs): run it once more to get a reason
      try {
        info = await node.services.identify.identify(conn, { signal: AbortSignal.any([signal, AbortSignal.timeout(identifyTimeoutMs)]) })
      } catch (err2) {
        throw new PeerError('identify_failed', `${err.message}; explicit identify: ${errorText(err2)}`, 'identify')
      }
    }
    emit({ event: 'identify', ...identifyJson(info), local_peer: node.peerId.toString() })

    if (pings > 0) {
      stage = 'ping'
      emit(await runPing(node, conn, pings, signal))
    }
    if (echoBytes != null) {
      stage = 'echo'
      emit(await runEcho(conn, echoBytes, { chunk, seed: values.seed, signal }))
    }
    if (sinkBytes != null) {
      stage = 'sink'
      emit(await runSink(conn, sinkBytes, { chunk, seed: values.seed, signal }))
    }
    stage = 'close'
    await conn.close({ signal: AbortSignal.timeout(STOP_GRACE_MS) }).catch(() => {})
    await stopNode(node)
    emit({ event: 'done', ok: true, seconds: round((performance.now() - started) / 1000, 4) })
    process.exit(0)
  } catch (err) {
    fail(err, stage)
  }
}

// ----------------------------------------------------------------------------------- keygen

async function cmdKeygen () {
  const key = await generateKeyPair('Ed25519')
  emit({ key: Buffer.from(privateKeyToProtobuf(key)).toString('hex'), peer_id: peerIdFromPrivateKey(key).toString() })
}

// ------------------------------------------------------------------------------------- main

const USAGE = 'usage: node peer.mjs listen [--port N] [--key HEX] | dial MULTIADDR [--ping N] [--echo BYTES] [--sink BYTES] | keygen'

async function main (argv) {
  const [cmd, ...rest] = argv
  if (cmd === 'listen') return cmdListen(rest)
  if (cmd === 'dial') return cmdDial(rest)
  if (cmd === 'keygen') return cmdKeygen()
  throw new PeerError('bad_args', USAGE, 'args')
}

let mode = null
process.on('unhandledRejection', (err) => {
  // a listener outlives one misbehaving remote: report and carry on; a dial run fails
  if (mode === 'listen') emit({ event: 'internal_error', error: errorText(err) })
  else fail(err, 'internal')
})

mode = process.argv[2] ?? null
main(process.argv.slice(2)).catch((err) => {
  if (err?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || err?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ||
      err?.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    fail(new PeerError('bad_args', err.message, 'args'), 'args')
  }
  fail(err, err?.stage ?? 'internal')
})
