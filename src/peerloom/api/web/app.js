// Entry point: the token, the live connection (WebSocket events, else polling), adding torrents, the topics view,
// the jobs view.

import { api, clearToken, eventsUrl, loadToken, onUnauthorized, saveToken } from './api.js';
import * as connections from './connections.js';
import * as btc from './btc.js';
import * as detail from './detail.js';
import * as jobs from './jobs.js';
import * as nat from './nat.js';
import * as docs from './docs.js';
import { clearError, showError } from './dom.js';
import * as node from './node.js';
import * as topics from './topics.js';
import * as transfers from './transfers.js';

const POLL_MS = 2000;
const MAX_BACKOFF_MS = 30000;
const status = document.getElementById('connection');
const tokenDialog = document.getElementById('token-dialog');
const addForm = document.getElementById('add-form');
const magnetInput = document.getElementById('magnet-input');
const savePath = document.getElementById('save-path');
const fileInput = document.getElementById('torrent-file');

let socket = null;
let pollTimer = null;
let reconnectTimer = null;
let backoff = 1000;
let running = false;

function setStatus(text) {
  status.textContent = text;
}

function start() {
  running = true;
  connect();
  topics.start();
  jobs.start();
  connections.start();
  nat.start();
  docs.start();
  btc.start();
}

function stop() {
  running = false;
  topics.stop();
  jobs.stop();
  connections.stop();
  nat.stop();
  docs.stop();
  btc.stop();
  clearTimeout(reconnectTimer);
  stopPolling();
  if (socket) {
    socket.onclose = null;
    socket.close();
    socket = null;
  }
}

function connect() {
  if (!pollTimer) setStatus('connecting…');
  socket = new WebSocket(eventsUrl());
  socket.onopen = () => {
    backoff = 1000;
    stopPolling();
    setStatus('live');
  };
  socket.onmessage = (event) => handleEvent(JSON.parse(event.data));
  socket.onclose = () => {
    socket = null;
    if (!running) return;
    startPolling();
    reconnectTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  };
}

function handleEvent(message) {
  if (message.type === 'snapshot') {
    transfers.replaceAll(message.torrents);
    node.update(message.node);
  } else if (message.type === 'added') {
    transfers.upsert(message.torrent);
  } else if (message.type === 'removed') {
    transfers.remove(message.id);
  } else if (message.type === 'state') {
    transfers.setState(message.id, message.state);
  } else if (message.type === 'pubsub.message') {
    topics.message(message);
  }
}

function startPolling() {
  if (pollTimer) return;
  poll();
  pollTimer = setInterval(poll, POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

async function poll() {
  try {
    const [list, info] = await Promise.all([api('GET', 'torrents'), api('GET', 'node')]);
    transfers.replaceAll(list.torrents);
    node.update(info);
    setStatus('polling');
  } catch (error) {
    if (error.status !== 401) setStatus('offline');
  }
}

function askToken() {
  stop();
  clearToken();
  setStatus('no token');
  if (!tokenDialog.open) tokenDialog.showModal();
}

tokenDialog.addEventListener('cancel', (event) => event.preventDefault());
tokenDialog.querySelector('form').addEventListener('submit', () => {
  const input = document.getElementById('token-input');
  saveToken(input.value.trim());
  input.value = '';
  clearError();
  start();
});
onUnauthorized(() => {
  if (running) showError('The daemon rejected the API token; enter it again.');
  askToken();
});

async function add(body) {
  try {
    const { torrent } = await api('POST', 'torrents', body);
    transfers.upsert(torrent);
    clearError();
    return true;
  } catch (error) {
    showError(error.message);
    return false;
  }
}

async function uploadTorrents(files) {
  for (const file of files) {
    const form = new FormData();
    form.append('torrent', file, file.name);
    if (savePath.value.trim()) form.append('save_path', savePath.value.trim());
    await add(form);
  }
}

addForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const magnet = magnetInput.value.trim();
  if (!magnet) {
    showError('Paste a magnet link first.');
    return;
  }
  const body = { magnet };
  if (savePath.value.trim()) body.save_path = savePath.value.trim();
  if (await add(body)) magnetInput.value = '';
});

fileInput.addEventListener('change', async () => {
  await uploadTorrents([...fileInput.files]);
  fileInput.value = '';
});

document.addEventListener('dragover', (event) => {
  if (!event.dataTransfer.types.includes('Files')) return;
  event.preventDefault();
  document.body.classList.add('dropping');
});
document.addEventListener('dragleave', (event) => {
  if (!event.relatedTarget) document.body.classList.remove('dropping');
});
document.addEventListener('drop', (event) => {
  event.preventDefault();
  document.body.classList.remove('dropping');
  const files = [...event.dataTransfer.files];
  const torrents = files.filter((f) => f.name.toLowerCase().endsWith('.torrent'));
  if (torrents.length < files.length) showError('Only .torrent files can be dropped here.');
  uploadTorrents(torrents);
});

transfers.onSelect(detail.open);
transfers.onRemoved(detail.forget);

if (loadToken()) start();
else askToken();
