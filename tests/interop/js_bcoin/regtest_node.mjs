// A bcoin 1.0.2 regtest full node in memory, listening on 127.0.0.1, for peerloom's Bitcoin interop tests.
//
//   node regtest_node.mjs PORT BLOCKS
//
// Starts the node (no DNS seeds, no discovery, no outbound peers of its own), mines BLOCKS blocks to a fixed
// regtest address through its RPC (generatetoaddress), then prints one JSON line per event on stdout:
//   {"event":"ready","port":P,"height":H,"hash":"<tip hash>"}       after mining
//   {"event":"peer","addr":"host:port","version":V,"agent":"..."}   when a peer completes the handshake
//   {"event":"mined","height":H,"hash":"<tip hash>"}               after each `mine N` line read on stdin
//   `txblocks N K`: mine N blocks, each after up to K new transactions of the script types bcoin makes (P2PKH,
//       P2SH 1-of-2 multisig, and once segwit is active P2WPKH, P2SH-P2WPKH, P2WSH 1-of-2 multisig), spending
//       the coins of the earlier ones; then prints "mined"
//   `utxos`: prints {"event":"utxos","coins":[[txid, index, value, script hex, height, coinbase], ...]} (txid in
//       display order) read from the chain database
//   `send`: makes one transaction, adds it to the mempool (bcoin relays it), prints {"event":"sent","txid":...}
//   `addpeer PORT` / `droppeers`: connect to another node on 127.0.0.1 / drop every peer
//   `mineto N SCRIPTHEX`: mine N blocks paying their coinbases to that output script (peerloom's wallet); "mined"
//   `mempool`: prints {"event":"mempool","txids":[...]} (display order)
// and keeps running until it gets SIGTERM or its stdin closes.
import bcoin from 'bcoin';
import layout from 'bcoin/lib/blockchain/layout.js';
import CoinEntry from 'bcoin/lib/coins/coinentry.js';

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
  httpHost: '127.0.0.1',
  httpPort: Number(process.argv[4] || 0),  // 0: any free port, so that two nodes can run side by side
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
  node.startSync();  // sync from the peers `addpeer` adds (the partition test)
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
      try {
        await command(line, address);
      } catch (err) {
        out({event: 'error', message: String(err && err.stack || err)});
      }
    }
  });
}

async function command(line, address) {
  let m;
  if ((m = /^mine (\d+)$/.exec(line))) {
    await mine(Number(m[1]), address);
    out({event: 'mined', height: node.chain.height, hash: node.chain.tip.rhash()});
  } else if ((m = /^txblocks (\d+) (\d+)$/.exec(line))) {
    for (let i = 0; i < Number(m[1]); i++) {
      for (let j = 0; j < Number(m[2]); j++)
        await makeTx();
      await mine(1, address);
    }
    out({event: 'mined', height: node.chain.height, hash: node.chain.tip.rhash()});
  } else if (line === 'utxos') {
    const items = await node.chain.db.db.range({gte: layout.c.min(), lte: layout.c.max()});
    const coins = items.map(({key, value}) => {
      const [hash, index] = layout.c.parse(key);
      const entry = CoinEntry.fromRaw(value);
      return [Buffer.from(hash, typeof hash === 'string' ? 'hex' : undefined).reverse().toString('hex'), index, entry.output.value,
        entry.output.script.toRaw().toString('hex'), entry.height, entry.coinbase];
    });
    out({event: 'utxos', coins});
  } else if (line === 'send') {
    const tx = await makeTx();
    out({event: 'sent', txid: tx ? tx.txid() : null});
  } else if ((m = /^mineto (\d+) ([0-9a-f]+)$/.exec(line))) {
    const to = bcoin.Address.fromScript(bcoin.Script.fromRaw(Buffer.from(m[2], 'hex'))).toString('regtest');
    await mine(Number(m[1]), to);
    out({event: 'mined', height: node.chain.height, hash: node.chain.tip.rhash()});
  } else if (line === 'mempool') {
    out({event: 'mempool', txids: [...node.mempool.map.values()].map((entry) => entry.tx.txid())});
  } else if ((m = /^addpeer (\d+)$/.exec(line))) {
    const addr = bcoin.net.NetAddress.fromHostname(`127.0.0.1:${m[1]}`, 'regtest');
    node.pool.peers.add(node.pool.createOutbound(addr));
    out({event: 'addpeer', port: Number(m[1])});
  } else if (line === 'droppeers') {
    for (let peer = node.pool.peers.head(); peer; peer = peer.next)
      peer.destroy();
    out({event: 'droppeers'});
  }
}

// Keys of every script type bcoin makes; the coins they own (confirmed or in the mempool) are spent in turn.
const priv = (i) => Buffer.alloc(32, i);
const rings = [];
{
  const p2pkh = bcoin.KeyRing.fromPrivate(priv(1));
  const multisig = bcoin.KeyRing.fromPrivate(priv(4));
  multisig.script = bcoin.Script.fromMultisig(1, 2, [multisig.publicKey, bcoin.KeyRing.fromPrivate(priv(5)).publicKey]);
  const p2wpkh = bcoin.KeyRing.fromPrivate(priv(2));
  p2wpkh.witness = true;
  const nested = bcoin.KeyRing.fromPrivate(priv(3));
  nested.witness = true;
  nested.nested = true;
  const p2wsh = bcoin.KeyRing.fromPrivate(priv(6));
  p2wsh.witness = true;
  p2wsh.script = bcoin.Script.fromMultisig(1, 2, [p2wsh.publicKey, bcoin.KeyRing.fromPrivate(priv(7)).publicKey]);
  rings.push(p2pkh, multisig, p2wpkh, nested, p2wsh);
}
const ringOf = new Map(rings.map((r) => [bcoin.Script.fromAddress(r.getAddress()).toRaw().toString('hex'), r]));
const pool = [];  // spendable coins: {coin, ring}
let scanned = 0;  // blocks whose coinbases are in the pool
let turn = 0;

async function scanCoinbases() {
  for (; scanned < node.chain.height; ) {
    scanned += 1;
    const block = await node.chain.getBlock(await node.chain.getHash(scanned));
    const cb = block.txs[0];
    const ring = ringOf.get(cb.outputs[0].script.toRaw().toString('hex'));
    if (ring)
      pool.push({coin: bcoin.Coin.fromTX(cb, 0, scanned), ring});
  }
}

async function makeTx() {
  await scanCoinbases();
  const segwit = node.chain.state.hasWitness();
  const next = node.chain.height + 1;
  const i = pool.findIndex(({coin, ring}) => (segwit || !ring.witness)
    && (!coin.coinbase || next - coin.height >= 100) && coin.value > 100000);
  if (i < 0)
    return null;
  const [{coin, ring}] = pool.splice(i, 1);
  const mtx = new bcoin.MTX();
  mtx.addCoin(coin);
  const a = rings[turn++ % rings.length];
  const b = rings[turn++ % rings.length];
  const half = Math.floor((coin.value - 10000) / 2);
  mtx.addOutput(a.getAddress(), half);
  mtx.addOutput(b.getAddress(), coin.value - 10000 - half);
  if (turn % 7 === 0)
    mtx.addOutput(bcoin.Script.fromNulldata(Buffer.from('peerloom')), 0);
  mtx.sign(ring);
  const tx = mtx.toTX();
  await node.mempool.addTX(tx);
  pool.push({coin: bcoin.Coin.fromTX(tx, 0, -1), ring: a}, {coin: bcoin.Coin.fromTX(tx, 1, -1), ring: b});
  return tx;
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
