// The Bitcoin view: the tip, peers and mempool of the node `peerloom btc node` runs on the daemon's home (or the
// stored tip when none runs), and the balance of the home's wallet. Only through the API (GET btc/status,
// btc/wallet), polled.

import { api } from './api.js';
import { el, poller, setText, showError } from './dom.js';

const POLL_MS = 3000;
const facts = document.getElementById('btc-tip');
const peersBody = document.querySelector('#btc-peers tbody');
const mempoolBody = document.querySelector('#btc-mempool tbody');
const noPeers = document.getElementById('btc-no-peers');
const noMempool = document.getElementById('btc-no-mempool');

export const { start, stop } = poller(() => refresh(), POLL_MS);

async function refresh() {
  let status;
  try {
    status = await api('GET', 'btc/status');
  } catch (err) {
    showError(err.message);
    return;
  }
  facts.replaceChildren(
    el('dt', {}, 'Network'), el('dd', {}, status.network),
    el('dt', {}, 'Height'), el('dd', {}, String(status.height)),
    el('dt', {}, 'Tip'), el('dd', { class: 'hash' }, status.hash),
    el('dt', {}, 'Node'), el('dd', {}, status.running ? 'running' : 'not running (stored tip)'),
  );
  peersBody.replaceChildren(...status.peers.map((p) => el('tr', {},
    el('td', {}, p.address), el('td', {}, p.outbound ? 'out' : 'in'), el('td', {}, p.user_agent),
    el('td', {}, String(p.start_height)))));
  mempoolBody.replaceChildren(...status.mempool.map((t) => el('tr', {},
    el('td', { class: 'hash' }, t.txid), el('td', {}, String(t.fee)), el('td', {}, String(t.vsize)))));
  noPeers.hidden = status.peers.length > 0;
  noMempool.hidden = status.mempool.length > 0;
  setText(document.getElementById('btc-title'), `Bitcoin (${status.network})`);
  await refreshWallet();
}

async function refreshWallet() {
  const wallet = document.getElementById('btc-wallet');
  let balance = null;
  try {
    balance = await api('GET', 'btc/wallet');
  } catch (err) {
    if (err.status !== 404) showError(err.message);
  }
  document.getElementById('btc-no-wallet').hidden = balance !== null;
  wallet.replaceChildren(...(balance === null ? [] : [
    el('dt', {}, 'Confirmed'), el('dd', {}, `${balance.confirmed} sat`),
    el('dt', {}, 'Immature'), el('dd', {}, `${balance.immature} sat`),
    el('dt', {}, 'Unconfirmed'), el('dd', {}, `${balance.unconfirmed} sat`),
  ]));
}
