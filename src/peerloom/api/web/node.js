// The node panel: identity, ports, DHT, global limits and a graph of the last five minutes of total rates.

import { api } from './api.js';
import { el, fillLimits, readLimits, showError } from './dom.js';
import * as fmt from './format.js';

const WINDOW_S = 300;
const info = document.getElementById('node-info');
const addrs = document.getElementById('listen-addrs');
const limitsForm = document.getElementById('global-limits');
const canvas = document.getElementById('speed');
const samples = []; // {t: seconds, down: B/s, up: B/s}, oldest first

/** Shows a node object (from a snapshot or GET /node) and adds its rates to the graph. */
export function update(node) {
  const facts = [
    ['Peer ID', node.peer_id],
    ['Version', node.version],
    ['BitTorrent port', node.port],
    ['Secure port', node.secure_port ?? 'off'],
    ['DHT port', node.dht_port ?? 'off'],
    ['DHT nodes', node.dht_nodes],
    ['Torrents', node.torrents],
    ['Down / up', `${fmt.rate(node.download_rate)} / ${fmt.rate(node.upload_rate)}`],
    ['Downloaded / uploaded', `${fmt.bytes(node.downloaded)} / ${fmt.bytes(node.uploaded)}`],
  ];
  info.replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: String(v) })]));
  addrs.replaceChildren(...node.listen_addrs.map((a) => el('li', {}, el('code', { text: a }))));
  fillLimits(limitsForm, node.limits);
  const now = Date.now() / 1000;
  samples.push({ t: now, down: node.download_rate, up: node.upload_rate });
  while (samples.length && samples[0].t < now - WINDOW_S) samples.shift();
  drawGraph(now);
}

function drawGraph(now) {
  const width = canvas.clientWidth || canvas.width;
  if (canvas.width !== width) canvas.width = width;
  const { height } = canvas;
  const ctx = canvas.getContext('2d');
  const styles = getComputedStyle(canvas);
  ctx.clearRect(0, 0, width, height);
  const top = Math.max(1024, ...samples.map((s) => Math.max(s.down, s.up)));
  const x = (t) => width - ((now - t) / WINDOW_S) * width;
  const y = (v) => height - 1 - (v / top) * (height - 16);
  for (const [key, color] of [['down', '--down'], ['up', '--up']]) {
    ctx.strokeStyle = styles.getPropertyValue(color).trim();
    ctx.lineWidth = 2;
    ctx.beginPath();
    samples.forEach((s, i) => (i ? ctx.lineTo(x(s.t), y(s[key])) : ctx.moveTo(x(s.t), y(s[key]))));
    ctx.stroke();
  }
  ctx.fillStyle = styles.getPropertyValue('color').trim();
  ctx.font = '12px sans-serif';
  ctx.fillText(`max ${fmt.rate(top)}`, 4, 12);
  const last = samples[samples.length - 1];
  canvas.setAttribute('aria-label', `speed graph: now ${fmt.rate(last.down)} down, ${fmt.rate(last.up)} up`);
}

limitsForm.addEventListener('input', () => { limitsForm.dataset.dirty = '1'; });
limitsForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const { limits } = await api('PUT', 'limits', readLimits(limitsForm));
    fillLimits(limitsForm, limits);
  } catch (error) {
    showError(error.message);
  }
});
