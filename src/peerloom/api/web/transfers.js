// The transfers table: one row per torrent, updated in place from snapshots, events and polls.

import { api } from './api.js';
import { el, setText, showError } from './dom.js';
import * as fmt from './format.js';

const body = document.querySelector('#transfers tbody');
const empty = document.getElementById('no-transfers');
const removeDialog = document.getElementById('remove-dialog');
const rows = new Map(); // torrent id -> <tr>
let selectHandler = () => {};
let removedHandler = () => {};

/** Registers what a click on a row does (open its details) and what follows a removal. */
export function onSelect(handler) {
  selectHandler = handler;
}

export function onRemoved(handler) {
  removedHandler = handler;
}

async function act(promise) {
  try {
    const data = await promise;
    if (data.torrent) upsert(data.torrent);
  } catch (error) {
    showError(error.message);
  }
}

async function askRemove(torrent) {
  removeDialog.querySelector('.name').textContent = torrent.name;
  // a shared path's files are the user's own, not a download: the UI never deletes them (the CLI can, when asked)
  removeDialog.querySelector('button[value="delete"]').hidden = torrent.shared;
  removeDialog.returnValue = 'cancel';
  removeDialog.showModal();
  await new Promise((resolve) => removeDialog.addEventListener('close', resolve, { once: true }));
  if (removeDialog.returnValue === 'cancel') return;
  const query = removeDialog.returnValue === 'delete' ? '?delete_data=1' : '';
  try {
    await api('DELETE', `torrents/${torrent.id}${query}`);
    remove(torrent.id);
  } catch (error) {
    showError(error.message);
  }
}

function createRow(id) {
  const bar = el('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 },
    el('div', { class: 'fill' }), el('span', { class: 'label' }));
  const toggle = el('button', { type: 'button', class: 'toggle' });
  const removeButton = el('button', { type: 'button', class: 'remove', text: 'Remove' });
  const name = el('button', { type: 'button', class: 'name link' });
  const row = el('tr', { 'data-id': id },
    el('td', {}, name), el('td', { class: 'size num' }), el('td', {}, bar), el('td', { class: 'state' }),
    el('td', { class: 'down num' }), el('td', { class: 'up num' }), el('td', { class: 'peers num' }),
    el('td', { class: 'eta num' }), el('td', { class: 'actions' }, toggle, removeButton));
  row.addEventListener('click', (event) => {
    if (!event.target.closest('.actions')) selectHandler(id);
  });
  toggle.addEventListener('click', () => {
    const action = row.torrent.paused ? 'resume' : 'pause';
    act(api('POST', `torrents/${id}/${action}`));
  });
  removeButton.addEventListener('click', () => askRemove(row.torrent));
  body.append(row);
  rows.set(id, row);
  empty.hidden = true;
  return row;
}

/** Adds or updates the row of one torrent summary. */
export function upsert(torrent) {
  const row = rows.get(torrent.id) || createRow(torrent.id);
  row.torrent = torrent;
  const pct = fmt.percent(torrent.progress);
  const bar = row.querySelector('.progress');
  bar.dataset.progress = pct;
  bar.setAttribute('aria-valuenow', pct);
  bar.setAttribute('aria-label', `${torrent.name}: ${pct} %`);
  bar.querySelector('.fill').style.width = `${pct}%`;
  setText(bar.querySelector('.label'), `${pct} %`);
  row.classList.toggle('error', torrent.state === 'error');
  setText(row.querySelector('.name'), torrent.name);
  setText(row.querySelector('.size'), fmt.bytes(torrent.size));
  setState(torrent.id, torrent.state, torrent.error);
  setText(row.querySelector('.down'), fmt.rate(torrent.download_rate));
  setText(row.querySelector('.up'), fmt.rate(torrent.upload_rate));
  setText(row.querySelector('.peers'), `${torrent.peers} (${torrent.seeds})`);
  setText(row.querySelector('.eta'), torrent.progress >= 1 ? '' : fmt.duration(torrent.eta));
  setText(row.querySelector('.toggle'), torrent.paused ? 'Resume' : 'Pause');
}

/** Shows a torrent's new state (from a `state` event, before the next snapshot). */
export function setState(id, state, error) {
  const cell = rows.get(id)?.querySelector('.state');
  if (!cell) return;
  setText(cell, state);
  cell.title = error || '';
}

export function remove(id) {
  rows.get(id)?.remove();
  rows.delete(id);
  empty.hidden = rows.size > 0;
  removedHandler(id);
}

/** Makes the table show exactly these torrents. */
export function replaceAll(torrents) {
  const seen = new Set(torrents.map((t) => t.id));
  for (const id of [...rows.keys()]) if (!seen.has(id)) remove(id);
  for (const torrent of torrents) upsert(torrent);
}
