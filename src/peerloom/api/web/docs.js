// The documents view: the documents the node holds (title, id, rights, peers) with their share links, and forms
// to create one and to open one by link. Only through the API (/api/v1/docs); editing is the editor page's.

import { api } from './api.js';
import { el, showError } from './dom.js';

const POLL_MS = 2000;
const body = document.querySelector('#docs-table tbody');
const empty = document.getElementById('no-docs');
const createForm = document.getElementById('doc-create-form');
const openForm = document.getElementById('doc-open-form');
let timer = null;

/** Starts polling the documents once the page has its token. */
export function start() {
  if (timer) return;
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

export function stop() {
  clearInterval(timer);
  timer = null;
}

async function refresh() {
  try {
    const { docs } = await api('GET', 'docs');
    render(docs);
  } catch (error) {
    if (error.status !== 401) stop();
  }
}

function linkField(label, value) {
  return el('label', { class: 'link-field' }, label,
    el('input', { type: 'text', readonly: true, value, spellcheck: 'false', onfocus: (e) => e.target.select() }));
}

function render(docs) {
  const rows = docs.map((d) => {
    const rights = d.writable ? 'write' : d.readable ? 'read' : 'relay';
    const links = el('td', { class: 'links' }, linkField('Share', d.share_link));
    if (d.writable) links.append(linkField('Read only', d.read_link));
    return el('tr', { 'data-doc': d.id },
      el('td', { class: 'name', text: d.title || '(untitled)' }), el('td', { class: 'mono', text: d.id.slice(0, 16) }),
      el('td', { class: 'rights', text: rights }), el('td', { class: 'peers num', text: String(d.peers) }), links);
  });
  body.replaceChildren(...rows);
  empty.hidden = docs.length > 0;
}

createForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const title = createForm.elements.title.value.trim();
  try {
    await api('POST', 'docs', title ? { title } : {});
    createForm.reset();
    refresh();
  } catch (error) {
    showError(`Cannot create the document: ${error.message}`);
  }
});

openForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    await api('POST', 'docs/open', { link: openForm.elements.link.value.trim() });
    openForm.reset();
    refresh();
  } catch (error) {
    showError(`Cannot open the document: ${error.message}`);
  }
});
