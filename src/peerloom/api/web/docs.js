// The documents view: the documents the node holds (title, id, rights, peers, share links), forms to create one and
// to open one by its link, and the editor of the one picked (docs-editor.js, loaded on first use) with the other
// editors' cursors and names. The list goes through the API (/api/v1/docs); the editor talks to the daemon over the
// document's WebSocket bridge (/api/v1/docs/{id}/ws).

import { api, socketUrl } from './api.js';
import { el, setText, showError } from './dom.js';

const POLL_MS = 2000;
const NAME_KEY = 'peerloom-docs-name';
const COLORS = ['#d9482b', '#2f8f4e', '#2f6fde', '#a23cc9', '#c47a00', '#128a8a', '#c2185b', '#5d6b00'];
const STATES = { connecting: 'connecting…', saving: 'saving…', saved: 'saved', offline: 'offline: reconnecting…' };
const body = document.querySelector('#docs-table tbody');
const empty = document.getElementById('no-docs');
const off = document.getElementById('docs-off');
const createForm = document.getElementById('doc-create-form');
const openForm = document.getElementById('doc-open-form');
const view = document.getElementById('doc-view');
const stateLabel = document.getElementById('doc-state');
const nameInput = document.getElementById('doc-user');
let timer = null;
let selected = null; // the open document's id
let editor = null;
let opening = 0; // a later open wins over one still loading

function userName() {
  let name = localStorage.getItem(NAME_KEY);
  if (!name) {
    name = `editor-${Math.random().toString(16).slice(2, 6)}`;
    localStorage.setItem(NAME_KEY, name);
  }
  return name;
}

function user() {
  const name = userName();
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return { name, color: COLORS[hash % COLORS.length] };
}

/** Starts polling the list once the page has its token. */
export function start() {
  if (timer) return;
  nameInput.value = userName();
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

export function stop() {
  clearInterval(timer);
  timer = null;
  close();
}

async function refresh() {
  try {
    const { docs } = await api('GET', 'docs');
    off.hidden = true;
    render(docs);
  } catch (error) {
    if (error.status === 503) {
      off.hidden = false;
      clearInterval(timer);
    }
  }
}

function rights(doc) {
  if (doc.writable) return 'write';
  return doc.readable ? 'read' : 'relay';
}

function linkField(label, value) {
  return el('label', { class: 'link-field' }, label,
    el('input', { type: 'text', readonly: true, value, spellcheck: 'false', onfocus: (e) => e.target.select() }));
}

function render(docs) {
  body.replaceChildren(...docs.map((d) => {
    const links = el('td', { class: 'links' }, linkField('Share', d.share_link));
    if (d.writable) links.append(linkField('Read only', d.read_link));
    return el('tr', { 'data-doc': d.id, class: d.id === selected ? 'selected' : false },
      el('td', {}, el('button', {
        type: 'button', class: 'name link', text: d.title || '(untitled)', title: d.readable ? 'edit' : 'relay only',
        disabled: !d.readable, onclick: () => select(d.id),
      })),
      el('td', { class: 'mono', text: d.id.slice(0, 16) }), el('td', { class: 'rights', text: rights(d) }),
      el('td', { class: 'peers num', text: String(d.peers) }), links);
  }));
  empty.hidden = docs.length > 0;
}

function showState(state, reason) {
  stateLabel.dataset.state = state;
  setText(stateLabel, state === 'refused' ? `refused: ${reason}` : STATES[state] || state);
  stateLabel.classList.toggle('bad', state === 'refused' || state === 'offline');
}

function close() {
  opening += 1;
  if (editor) editor.destroy();
  editor = null;
  selected = null;
  view.hidden = true;
  showState('connecting', null); // until the next document's editor says otherwise
  for (const row of body.rows) row.classList.remove('selected');
}

/** Opens document `id` in the editor (closing the one open). */
async function select(id) {
  close();
  const ticket = opening;
  try {
    const [doc, { openEditor }] = await Promise.all([api('GET', `docs/${id}`), import('./docs-editor.js')]);
    if (ticket !== opening) return;
    selected = id;
    for (const row of body.rows) row.classList.toggle('selected', row.dataset.doc === id);
    setText(document.getElementById('doc-name'), doc.title || '(untitled)');
    setText(document.getElementById('doc-access'), doc.writable ? 'read & write' : 'read only');
    view.hidden = false;
    const parent = document.getElementById('doc-editor');
    parent.replaceChildren();
    editor = openEditor({
      parent, url: socketUrl(`docs/${id}/ws`), field: 'text', readOnly: !doc.writable, user: user(), onState: showState,
    });
  } catch (error) {
    showError(error.message);
  }
}

async function submit(form, request) {
  try {
    const doc = await request();
    form.reset();
    await refresh();
    await select(doc.id);
  } catch (error) {
    showError(error.message);
  }
}

createForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const title = createForm.elements.title.value.trim();
  submit(createForm, () => api('POST', 'docs', title ? { title } : {}));
});

openForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const link = openForm.elements.link.value.trim();
  if (!link) {
    showError('Paste a document link first.');
    return;
  }
  submit(openForm, () => api('POST', 'docs/open', { link }));
});

document.getElementById('doc-user-form').addEventListener('submit', (event) => event.preventDefault());
nameInput.addEventListener('change', () => {
  const name = nameInput.value.trim().slice(0, 40);
  if (!name) return;
  localStorage.setItem(NAME_KEY, name);
  if (editor) editor.setUser(user());
});

document.getElementById('doc-close').addEventListener('click', close);
