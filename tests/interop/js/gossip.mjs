#!/usr/bin/env node
// js-libp2p GossipSub peer for peerloom's pub/sub interop tests.
//
//   node gossip.mjs [--port 0] [--host 127.0.0.1] [--key HEX] [--trace] [--ignore-prefix HEX]
//
// A libp2p node (TCP + Noise + yamux + identify) running @libp2p/gossipsub with its defaults
// except allowPublishToZeroTopicPeers (so a test can publish before the mesh forms) and emitSelf
// false (the default, written out). It is driven by JSON-line commands on stdin and reports
// JSON lines on stdout (formats in README.md, a stable interface for tests/support/jsgossip.py).
// Closing stdin, SIGTERM or SIGINT stop it. libp2p debug output (DEBUG=libp2p:gossipsub*) goes
// to stderr.
//
// --trace reports every RPC the router receives and sends (messages with js's own message id,
// IHAVE, IWANT, IDONTWANT, GRAFT, PRUNE) as `rpc_in` / `rpc_out` lines. It wraps three methods
// of the router instance and calls them unchanged: observation only, the protocol is untouched.
import './node20-compat.mjs'

import { createInterface } from 'node:readline'
import process from 'node:process'
import { parseArgs } from 'node:util'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { gossipsub, TopicValidatorResult } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import * as Digest from 'multiformats/hashes/digest'

const STOP_GRACE_MS = 5000

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function errorText (err) {
  if (err == null) return 'unknown error'
  const name = err.name != null && err.name !== 'Error' ? `${err.name}: ` : ''
  let text = `${name}${err.message ?? String(err)}`
  if (Array.isArray(err.errors) && err.errors.length > 0) text += ` (${errorText(err.errors[0])})`
  return text
}

const hex = (bytes) => (bytes == null ? null : Buffer.from(bytes).toString('hex'))
const unhex = (text) => (text == null ? undefined : new Uint8Array(Buffer.from(text, 'hex')))
const b64ToHex = (text) => Buffer.from(text, 'base64').toString('hex')

// ------------------------------------------------------------------------------ the node

async function createNode ({ privateKey, listen }) {
  const node = await createLibp2p({
    privateKey,
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(), // gossipsub declares it as a dependency
      pubsub: gossipsub({
        // spec defaults everywhere else (D=6, heartbeat 1 s, floodPublish on, doPX off,
        // StrictSign, idontwantMinDataSize 512)
        allowPublishToZeroTopicPeers: true,
        emitSelf: false
      })
    },
    connectionMonitor: { enabled: false },
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128'] },
    start: false
  })
  await node.start()
  return node
}

// --ignore-prefix: a validator answering IGNORE for data starting with the prefix, set on every
// topic this peer subscribes to. js then neither delivers nor forwards such a message, but it
// has already sent IDONTWANT for it (it does so before validation).
function ignoreValidator (prefixHex) {
  const prefix = Buffer.from(prefixHex, 'hex')
  return (_peer, msg) =>
    Buffer.from(msg.data).subarray(0, prefix.length).equals(prefix) ? TopicValidatorResult.Ignore : TopicValidatorResult.Accept
}

// The message id js's router uses for a raw (wire) message, computed by the router's own
// msgIdFn on the validated form it builds (StrictSign: from's public key + seqno).
async function jsMessageId (gs, raw) {
  try {
    const from = peerIdFromMultihash(Digest.decode(raw.from))
    const key = from.publicKey
    const msg = { type: 'signed', from, topic: raw.topic, data: raw.data ?? new Uint8Array(), sequenceNumber: BigInt('0x' + hex(raw.seqno)), signature: raw.signature, key }
    return hex(await gs.msgIdFn(msg))
  } catch {
    return null
  }
}

async function rpcJson (gs, rpc) {
  const out = {}
  if (rpc.subscriptions?.length > 0) out.subscriptions = rpc.subscriptions.map(s => ({ topic: s.topic, subscribe: s.subscribe }))
  if (rpc.messages?.length > 0) {
    out.messages = await Promise.all(rpc.messages.map(async m => ({
      topic: m.topic,
      from: hex(m.from),
      seqno: hex(m.seqno),
      data: hex(m.data ?? new Uint8Array()),
      signature: hex(m.signature),
      key: hex(m.key),
      msg_id: await jsMessageId(gs, m)
    })))
  }
  const c = rpc.control
  if (c != null) {
    if (c.ihave?.length > 0) out.ihave = c.ihave.map(i => ({ topic: i.topicID, ids: (i.messageIDs ?? []).map(hex) }))
    if (c.iwant?.length > 0) out.iwant = c.iwant.flatMap(i => (i.messageIDs ?? []).map(hex))
    if (c.idontwant?.length > 0) out.idontwant = c.idontwant.flatMap(i => (i.messageIDs ?? []).map(hex))
    if (c.graft?.length > 0) out.graft = c.graft.map(g => g.topicID)
    if (c.prune?.length > 0) out.prune = c.prune.map(p => ({ topic: p.topicID, backoff: p.backoff == null ? null : Number(p.backoff) }))
  }
  return out
}

function installTrace (gs) {
  // Wrap the instance's methods (the prototype's stay as they are); each wrapper calls the
  // original with the same arguments and reports afterwards, so sendRpc's piggybacked control
  // and gossip are included.
  const traceQueue = []
  let draining = Promise.resolve()
  const report = (event, peer, rpc) => {
    // rpcJson is async (message ids); keep the lines in call order
    traceQueue.push(rpcJson(gs, rpc).then(body => ({ event, peer, ...body })))
    draining = draining.then(async () => { emit(await traceQueue.shift()) }).catch(() => {})
  }
  const handleReceivedRpc = gs.handleReceivedRpc.bind(gs)
  gs.handleReceivedRpc = (from, rpc) => {
    report('rpc_in', from.toString(), rpc)
    return handleReceivedRpc(from, rpc)
  }
  const sendRpc = gs.sendRpc.bind(gs)
  gs.sendRpc = (id, rpc) => {
    const sent = sendRpc(id, rpc)
    if (sent) report('rpc_out', id, rpc)
    return sent
  }
  const sendRpcInBatch = gs.sendRpcInBatch.bind(gs)
  gs.sendRpcInBatch = (tosend, rpc) => {
    sendRpcInBatch(tosend, rpc) // removes the peers it could not send to
    for (const id of tosend) report('rpc_out', id, rpc)
  }
}

// --------------------------------------------------------------------------- commands

async function handle (node, cmd, validator) {
  const gs = node.services.pubsub
  switch (cmd.cmd) {
    case 'connect': {
      const conn = await node.dial(multiaddr(cmd.addr))
      return { peer: conn.remotePeer.toString(), remote_addr: conn.remoteAddr.toString() }
    }
    case 'subscribe':
      if (validator != null) gs.topicValidators.set(cmd.topic, validator)
      gs.subscribe(cmd.topic)
      return { topics: gs.getTopics() }
    case 'unsubscribe':
      gs.unsubscribe(cmd.topic)
      return { topics: gs.getTopics() }
    case 'publish': {
      const res = await gs.publish(cmd.topic, unhex(cmd.data) ?? new Uint8Array())
      return { recipients: res.recipients.map(p => p.toString()) }
    }
    case 'peers':
      return {
        peers: gs.getPeers().map(p => p.toString()),
        connections: node.getConnections().map(c => c.remotePeer.toString()),
        subscribers: cmd.topic == null ? [] : gs.getSubscribers(cmd.topic).map(p => p.toString()),
        mesh: cmd.topic == null ? [] : gs.getMeshPeers(cmd.topic)
      }
    case 'score':
      return { score: gs.getScore(cmd.peer) }
    case 'inject': {
      // Send one raw message, as given, to one peer (a test harness's forged or replayed
      // message): an RPC with just that message, through the router's own stream to the peer.
      const m = cmd.message
      const raw = { from: unhex(m.from), data: unhex(m.data), seqno: unhex(m.seqno), topic: m.topic, signature: unhex(m.signature), key: unhex(m.key) }
      const sent = gs.sendRpc(cmd.peer, { subscriptions: [], messages: [raw] })
      if (!sent) throw new Error(`no gossipsub stream to ${cmd.peer}`)
      return { sent }
    }
    case 'stop':
      return { stopping: true }
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`)
  }
}

// ------------------------------------------------------------------------------- main

async function main () {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      key: { type: 'string' },
      trace: { type: 'boolean', default: false },
      'ignore-prefix': { type: 'string' }
    },
    strict: true,
    allowPositionals: false
  })
  const family = values.host.includes(':') ? 'ip6' : 'ip4'
  const privateKey = values.key != null ? privateKeyFromProtobuf(unhex(values.key)) : await generateKeyPair('Ed25519')
  const node = await createNode({
    privateKey,
    listen: [`/${family}/${values.host}/tcp/${Number(values.port)}`]
  })
  const validator = values['ignore-prefix'] != null ? ignoreValidator(values['ignore-prefix']) : null
  const gs = node.services.pubsub
  if (values.trace) installTrace(gs)

  gs.addEventListener('gossipsub:message', (evt) => {
    const { propagationSource, msgId, msg } = evt.detail
    emit({
      event: 'message',
      topic: msg.topic,
      from: msg.from?.toString() ?? null,
      seqno: msg.sequenceNumber == null ? null : msg.sequenceNumber.toString(16).padStart(16, '0'),
      data: hex(msg.data),
      msg_id: b64ToHex(msgId),
      received_from: propagationSource.toString()
    })
  })
  gs.addEventListener('gossipsub:graft', (evt) => emit({ event: 'graft', ...evt.detail }))
  gs.addEventListener('gossipsub:prune', (evt) => emit({ event: 'prune', ...evt.detail }))
  node.addEventListener('connection:open', (evt) => {
    emit({ event: 'connection', peer: evt.detail.remotePeer.toString(), direction: evt.detail.direction })
  })
  node.addEventListener('connection:close', (evt) => {
    emit({ event: 'disconnect', peer: evt.detail.remotePeer.toString() })
  })

  emit({
    event: 'ready',
    peer_id: node.peerId.toString(),
    addrs: node.getMultiaddrs().map(a => a.toString()),
    protocols: [...node.getProtocols()].sort()
  })

  let stopping = false
  const shutdown = async (why) => {
    if (stopping) return
    stopping = true
    await Promise.race([node.stop().catch(() => {}), new Promise(resolve => setTimeout(resolve, STOP_GRACE_MS).unref())])
    emit({ event: 'stopped', reason: why })
    process.exit(0)
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  process.on('SIGINT', () => { shutdown('SIGINT') })

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
  lines.on('line', (line) => {
    if (line.trim() === '') return
    let cmd
    try {
      cmd = JSON.parse(line)
    } catch (err) {
      emit({ event: 'reply', id: null, ok: false, error: `not JSON: ${errorText(err)}` })
      return
    }
    handle(node, cmd, validator).then(
      (result) => {
        emit({ event: 'reply', id: cmd.id ?? null, ok: true, ...result })
        if (cmd.cmd === 'stop') shutdown('stop command')
      },
      (err) => emit({ event: 'reply', id: cmd.id ?? null, ok: false, error: errorText(err) })
    )
  })
  lines.on('close', () => { shutdown('stdin closed') })
}

main().catch((err) => {
  emit({ event: 'error', error: errorText(err) })
  process.exit(1)
})
