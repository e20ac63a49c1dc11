// A bcoin 1.0.2 regtest full node in memory, listening on 127.0.0.1, for peerloom's Bitcoin interop tests.
//
//   node regtest_node.mjs PORT BLOCKS
//
// Starts the node (no DNS seeds, no discovery, no outbound peers of its own), mines BLOCKS blocks to a fixed
// regtest address through its RPC (generatetoaddress), then prints one JSON line per event on stdout:
//   {"event":"ready","port":P,"height":H,"hash":"<tip hash>"}       after mining
//   {"event":"peer","addr":"host:port","version":V,"agent":"..."}   when a peer completes the handshake
//   {"event":"mined","height":H,"hash":"<tip hash>"}               after each `mine N` line read on stdin
// and keeps running until it gets SIGTERM or its stdin closes.
import bcoin from 'bcoin';

const port = Number(process.argv[2]);
const blocks = Number(process.argv[3] || 0);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const node = new bcoin.FullNode({
  network: 'regtest',
  memory: true,
  workers: false,
  listen: true,
  host: '127.0.0.1',
  port,
  publicHost: '127.0.0.1',
  maxOutbound: 1,
  discover: false,
  noDiscover: true,
  seeds: [],
  onlyNodes: [],
  logLevel: 'error',
});

async function main() {
  await node.open();
  await node.connect();
  node.pool.on('peer open', (peer) => {
    out({event: 'peer', addr: peer.hostname(), version: peer.version, agent: peer.agent});
  });
  // A regtest P2PKH address of a fixed key: the coinbase outputs only need somewhere to go.
  const key = bcoin.KeyRing.fromPrivate(Buffer.alloc(32, 1));
  const address = key.getAddress('base58', 'regtest');
  await mine(blocks, address);
  out({event: 'ready', port, height: node.chain.height, hash: node.chain.tip.rhash()});
  let pending = '';
  process.stdin.on('data', async (chunk) => {
    pending += chunk.toString();
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      const m = /^mine (\d+)$/.exec(line);
      if (m) {
        await mine(Number(m[1]), address);
        out({event: 'mined', height: node.chain.height, hash: node.chain.tip.rhash()});
      }
    }
  });
}

async function mine(count, address) {
  let left = count;
  while (left > 0) {
    const n = Math.min(left, 100);
    await node.rpc.execute({method: 'generatetoaddress', params: [n, address]});
    left -= n;
  }
}

async function stop() {
  try { await node.close(); } finally { process.exit(0); }
}

process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
main().catch((err) => { out({event: 'error', message: String(err && err.stack || err)}); process.exit(1); });
