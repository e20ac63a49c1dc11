// The connections view: the node's secure-layer connections (direct or relayed, when the daemon lists them), the
// exit (its policy, connections through it, bytes per peer) and the SOCKS proxies that go out through another node's
// exit. Only through the API: GET connections (with the relay), else the connected peers of GET peers (a node
// without relaying has direct connections only), GET exit, GET exit/traffic.

import { api } from './api.js';
import { el, poller, setText, showError } from './dom.js';
import * as fmt from './format.js';

const POLL_MS = 2000;
const policyText = document.getElementById('exit-policy');
const socksList = document.getElementById('socks-servers');
const connBody = document.querySelector('#connections-table tbody');
const noConnections = document.getElementById('no-connections');
const trafficBody = document.querySelector('#exit-traffic tbody');
const noTraffic = document.getElementById('no-exit-traffic');
let hasConnectionsRoute = true; // GET /connections comes with the relay; without it, the peer store's connected

export const { start, stop } = poller(() => refresh(), POLL_MS);

async function refresh() {
  try {
    const [exit, traffic] = await Promise.all([api('GET', 'exit'), api('GET', 'exit/traffic')]);
    let connections = null;
    if (hasConnectionsRoute) {
      try {
        connections = (await api('GET', 'connections')).connections;
      } catch (error) {
        if (error.status !== 404) throw error;
        hasConnectionsRoute = false;
      }
    }
    if (connections === null) {
      const { peers } = await api('GET', 'peers');
      connections = peers.filter((p) => p.connected).map((p) => ({ peer_id: p.peer_id, kind: 'direct' }));
    }
    render(exit, traffic, connections);
  } catch (error) {
    if (error.status !== 401) showError(error.message);
  }
}

function describePolicy(policy) {
  if (!policy.serving) return 'Not an exit: no peer may use this node to reach the internet.';
  const ports = policy.ports.length ? `ports ${policy.ports.join(', ')}` : 'every port';
  const rate = policy.rate ? `${fmt.rate(policy.rate)} per peer and direction` : 'no rate limit';
  const where = policy.allow_private ? 'private destinations allowed' : 'public destinations only';
  return `Exit for ${policy.allowed_peers.length} peer(s): ${ports}; ${rate}; ${where}.`;
}

function render(exit, traffic, connections) {
  const refused = exit.policy.serving ? ` Destinations refused since start: ${exit.refused}.` : '';
  setText(policyText, describePolicy(exit.policy) + refused);
  socksList.replaceChildren(...exit.socks.map((s) => el('li', {
    text: `SOCKS5 on ${s.listen} through ${s.via}: ${s.clients} open, ${s.connections} since start, ` +
      `${s.failures} failed`,
  })));
  if (!exit.socks.length) socksList.replaceChildren(el('li', { text: 'No SOCKS proxy runs in the daemon.' }));
  // one row per peer: how the node is connected to it, and whether exit traffic goes through it right now
  const viaExit = new Map(); // peer -> {served, used}
  for (const c of exit.active) {
    const entry = viaExit.get(c.peer) || { served: 0, used: 0 };
    entry[c.role] += 1;
    viaExit.set(c.peer, entry);
  }
  const rows = new Map(connections.map((c) => [c.peer_id, c]));
  for (const peer of viaExit.keys()) if (!rows.has(peer)) rows.set(peer, { peer_id: peer });
  connBody.replaceChildren(...[...rows.values()].map((c) => {
    const exitUse = viaExit.get(c.peer_id);
    const exitText = !exitUse ? '—'
      : [exitUse.used && `via its exit (${exitUse.used})`, exitUse.served && `its exit traffic (${exitUse.served})`]
        .filter(Boolean).join(', ');
    const kind = c.kind ? (c.kind === 'relayed' && c.relay ? `relayed by ${c.relay}` : c.kind) : '?';
    return el('tr', { 'data-peer': c.peer_id },
      el('td', {}, el('code', { text: c.peer_id })),
      el('td', { text: kind }),
      el('td', { text: c.direction || '' }),
      el('td', { text: c.address || '' }),
      el('td', { text: exitText }));
  }));
  noConnections.hidden = rows.size > 0;
  const trafficRows = [];
  for (const role of ['used', 'served']) {
    for (const [peer, t] of Object.entries(traffic[role] || {})) {
      trafficRows.push(el('tr', { 'data-peer': peer, 'data-role': role },
        el('td', { text: role === 'used' ? 'through its exit' : 'through this node' }),
        el('td', {}, el('code', { text: peer })),
        el('td', { text: fmt.bytes(t.to_destination) }),
        el('td', { text: fmt.bytes(t.from_destination) }),
        el('td', { text: String(t.connections) })));
    }
  }
  trafficBody.replaceChildren(...trafficRows);
  noTraffic.hidden = trafficRows.length > 0;
}
