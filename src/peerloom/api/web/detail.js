// The detail panel of one torrent: pieces map, files and their priorities, limits, peers, trackers.

import { api } from './api.js';
import { el, fillLimits, readLimits, setText, showError } from './dom.js';
import * as fmt from './format.js';

const REFRESH_MS = 2000;
const panel = document.getElementById('detail');
const title = document.getElementById('detail-title');
const info = document.getElementById('detail-info');
const canvas = document.getElementById('pieces');
const filesBody = document.querySelector('#files tbody');
const peersBody = document.querySelector('#peers tbody');
const trackers = document.getElementById('trackers');
const limitsForm = document.getElementById('torrent-limits');
let openId = null;
let timer = null;

/** Opens the panel for a torrent and keeps it fresh until closed. */
export function open(id) {
  if (openId !== id) {
    openId = id;
    filesBody.replaceChildren();
    peersBody.replaceChildren();
    delete limitsForm.dataset.dirty;
  }
  panel.hidden = false;
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
  refresh();
  panel.scrollIntoView({ block: 'nearest' });
}

function close() {
  openId = null;
  clearInterval(timer);
  panel.hidden = true;
}

/** Closes the panel if it shows this torrent (it was removed). */
export function forget(id) {
  if (openId === id) close();
}

async function refresh() {
  const id = openId;
  try {
    const [detail, peers] = await Promise.all([api('GET', `torrents/${id}`), api('GET', `torrents/${id}/peers`)]);
    if (id !== openId) return;
    render(detail);
    renderPeers(peers.peers);
  } catch (error) {
    if (id !== openId) return;
    if (error.status === 404) close();
    else if (error.status !== 401) showError(error.message);
  }
}

function render(detail) {
  const t = detail.torrent;
  setText(title, t.name);
  const facts = [
    ['State', t.error ? `${t.state}: ${t.error}` : t.state],
    ['Progress', `${fmt.percent(t.progress)} % of ${fmt.bytes(t.size)}`],
    ['Downloaded / uploaded', `${fmt.bytes(t.downloaded)} / ${fmt.bytes(t.uploaded)}`],
    ['Save path', t.save_path],
    ['Info-hash v1', detail.info_hash_v1 || '—'],
    ['Info-hash v2', detail.info_hash_v2 || '—'],
    ['Pieces', detail.piece_length ? `${detail.pieces.count} × ${fmt.bytes(detail.piece_length)}` : '—'],
  ];
  info.replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  drawPieces(detail.pieces);
  renderFiles(t.id, detail.files);
  fillLimits(limitsForm, t.limits);
  trackers.replaceChildren(...detail.trackers.map((tr) => el('li', { text: `${tr.url} (tier ${tr.tier})` })));
  if (!detail.trackers.length) trackers.append(el('li', { class: 'empty', text: 'No trackers.' }));
}

const hasPiece = (bits, i) => (bits[i >> 3] >> (7 - (i & 7))) & 1;

/** Draws which pieces are verified: one column per piece, or the share of verified pieces per pixel column. */
function drawPieces(pieces) {
  const width = canvas.clientWidth || canvas.width;
  if (canvas.width !== width) canvas.width = width;
  const ctx = canvas.getContext('2d');
  const styles = getComputedStyle(canvas);
  ctx.fillStyle = styles.getPropertyValue('--missing').trim();
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const bits = Uint8Array.from(atob(pieces.have || ''), (c) => c.charCodeAt(0));
  ctx.fillStyle = styles.getPropertyValue('--have').trim();
  for (let x = 0; x < canvas.width && pieces.count > 0; x++) {
    const start = Math.floor((x * pieces.count) / canvas.width);
    const end = Math.max(start + 1, Math.floor(((x + 1) * pieces.count) / canvas.width));
    let have = 0;
    for (let i = start; i < end; i++) have += hasPiece(bits, i);
    ctx.globalAlpha = have / (end - start);
    ctx.fillRect(x, 0, 1, canvas.height);
  }
  ctx.globalAlpha = 1;
  let verified = 0;
  for (let i = 0; i < pieces.count; i++) verified += hasPiece(bits, i);
  canvas.setAttribute('aria-label', `pieces map: ${verified} of ${pieces.count} pieces verified`);
}

function renderFiles(id, files) {
  if (filesBody.children.length !== files.length) {
    filesBody.replaceChildren(...files.map((f) => fileRow(id, f)));
  }
  files.forEach((f, i) => {
    const row = filesBody.children[i];
    setText(row.querySelector('.progress-text'), `${fmt.percent(f.progress)} %`);
    const select = row.querySelector('select');
    if (document.activeElement !== select) select.value = String(f.priority > 0 ? 1 : 0);
  });
}

function fileRow(id, file) {
  const select = el('select', { 'aria-label': `Priority of ${file.path}` },
    el('option', { value: '1', text: 'download' }), el('option', { value: '0', text: 'skip' }));
  select.addEventListener('change', () => setPriorities(id));
  return el('tr', { 'data-index': file.index },
    el('td', { class: 'path', text: file.path }), el('td', { class: 'num', text: fmt.bytes(file.size) }),
    el('td', { class: 'num progress-text' }), el('td', {}, select));
}

async function setPriorities(id) {
  const priorities = [...filesBody.querySelectorAll('select')].map((s) => Number(s.value));
  try {
    render(await api('PUT', `torrents/${id}/files`, { priorities }));
  } catch (error) {
    showError(error.message);
  }
}

function renderPeers(peers) {
  peersBody.replaceChildren(...peers.map((p) => el('tr', {},
    el('td', { text: p.address }), el('td', { text: p.client || '' }),
    el('td', { class: 'num', text: `${fmt.percent(p.progress)} %` }),
    el('td', { class: 'num', text: fmt.rate(p.download_rate) }), el('td', { class: 'num', text: fmt.rate(p.upload_rate) }),
    el('td', { text: [p.seed ? 'seed' : '', p.secure ? 'secure' : '', p.flags].filter(Boolean).join(' ') })),
  ));
  if (!peers.length) peersBody.append(el('tr', {}, el('td', { colspan: 6, class: 'empty', text: 'No peers.' })));
}

document.getElementById('detail-close').addEventListener('click', close);
limitsForm.addEventListener('input', () => { limitsForm.dataset.dirty = '1'; });
limitsForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    await api('PUT', `torrents/${openId}/limits`, readLimits(limitsForm));
    refresh();
  } catch (error) {
    showError(error.message);
  }
});
