// The topics view (pub/sub): the node's topics with their peer and mesh counts, the selected topic's peers and
// messages (live from `pubsub.message` events), and forms to subscribe and to publish. Only through the API.

import { api } from './api.js';
import { el, poller, setText, showError } from './dom.js';

const POLL_MS = 2000;
const KEEP = 50; // messages shown per topic, as the daemon keeps
const body = document.querySelector('#topics-table tbody');
const empty = document.getElementById('no-topics');
const off = document.getElementById('pubsub-off');
const subscribeForm = document.getElementById('subscribe-form');
const publishForm = document.getElementById('publish-form');
const publishResult = document.getElementById('publish-result');
const view = document.getElementById('topic-view');
const peersBody = document.querySelector('#topic-peers tbody');
const messagesList = document.getElementById('topic-messages');
const messages = new Map(); // topic -> [{...message, at}], oldest first
let selected = null;

const path = (topic) => encodeURIComponent(topic);

/** Starts polling the topics (and the selected topic's peers) once the page has its token. */
export const { start, stop } = poller(() => refresh(), POLL_MS);

/** A `pubsub.message` event from the event stream. */
export function message(event) {
  const msg = { ...event };
  delete msg.type;
  remember(msg.topic, [{ ...msg, at: new Date() }]);
  if (msg.topic === selected) renderMessages();
}

function remember(topic, list) {
  const kept = (messages.get(topic) || []).concat(list);
  messages.set(topic, kept.slice(-KEEP));
}

async function refresh() {
  try {
    const { topics } = await api('GET', 'pubsub/topics');
    off.hidden = true;
    renderTopics(topics);
    if (selected) await refreshPeers();
  } catch (error) {
    if (error.status === 503) {
      off.hidden = false;
      stop();
    }
  }
}

function renderTopics(topics) {
  const rows = topics.map((t) => {
    const name = el('button', { type: 'button', class: 'name link', text: t.topic, onclick: () => select(t.topic) });
    const leave = t.daemon
      ? el('button', { type: 'button', class: 'unsubscribe', text: 'Unsubscribe', onclick: () => unsubscribe(t.topic) })
      : el('span', { class: 'muted', text: 'not through the API' });
    return el('tr', { 'data-topic': t.topic, class: t.topic === selected ? 'selected' : false },
      el('td', {}, name), el('td', { class: 'peers num', text: String(t.peers) }),
      el('td', { class: 'mesh num', text: String(t.mesh) }), el('td', { class: 'actions' }, leave));
  });
  body.replaceChildren(...rows);
  empty.hidden = topics.length > 0;
}

async function select(topic) {
  selected = topic;
  view.hidden = false;
  setText(document.getElementById('topic-title'), topic);
  publishForm.elements.topic.value = topic;
  for (const row of body.rows) row.classList.toggle('selected', row.dataset.topic === topic);
  try {
    const recent = await api('GET', `pubsub/topics/${path(topic)}/messages`);
    const known = new Set((messages.get(topic) || []).map((m) => m.msg_id));
    remember(topic, recent.messages.filter((m) => !known.has(m.msg_id)).map((m) => ({ ...m, at: null })));
  } catch (error) {
    if (error.status !== 404) showError(error.message); // 404: another part of the node subscribes, not the daemon
  }
  renderMessages();
  await refreshPeers();
}

async function refreshPeers() {
  const topic = selected;
  const { peers } = await api('GET', `pubsub/topics/${path(topic)}/peers`);
  if (topic !== selected) return;
  peersBody.replaceChildren(...peers.map((p) => el('tr', {},
    el('td', {}, el('code', { text: p.peer_id })), el('td', { class: 'mesh', text: p.mesh ? 'yes' : 'no' }),
    el('td', { class: 'score num', text: p.score.toFixed(2) }), el('td', { text: p.protocol || '?' }))));
  document.getElementById('no-topic-peers').hidden = peers.length > 0;
}

function renderMessages() {
  const list = messages.get(selected) || [];
  messagesList.replaceChildren(...list.slice().reverse().map((m) => el('li', {},
    el('span', { class: 'from', title: m.from, text: m.self ? 'this node' : `…${m.from.slice(-8)}` }),
    el('span', { class: 'at', text: m.at ? m.at.toLocaleTimeString() : '' }),
    el('span', { class: m.base64 ? 'data base64' : 'data', text: m.base64 ? `(base64) ${m.data}` : m.data }))));
  document.getElementById('no-topic-messages').hidden = list.length > 0;
}

async function unsubscribe(topic) {
  try {
    await api('DELETE', `pubsub/subscriptions/${path(topic)}`);
    await refresh();
  } catch (error) {
    showError(error.message);
  }
}

subscribeForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const topic = subscribeForm.elements.topic.value.trim();
  if (!topic) {
    showError('Give a topic name first.');
    return;
  }
  try {
    await api('POST', `pubsub/subscriptions/${path(topic)}`);
    subscribeForm.elements.topic.value = '';
    await refresh();
    await select(topic);
  } catch (error) {
    showError(error.message);
  }
});

publishForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const topic = publishForm.elements.topic.value.trim();
  const data = publishForm.elements.data.value;
  if (!topic) {
    showError('Give the topic to publish on.');
    return;
  }
  setText(publishResult, 'publishing…');
  try {
    const result = await api('POST', `pubsub/topics/${path(topic)}/messages`, { data, wait: 2 });
    setText(publishResult, result.peers
      ? `sent to ${result.peers} peer${result.peers === 1 ? '' : 's'} (id …${result.msg_id.slice(-16)})`
      : 'nobody got it: no peer of this topic is connected');
    publishResult.classList.toggle('bad', !result.peers);
    if (result.peers) publishForm.elements.data.value = '';
    if (messages.has(topic)) { // a node never receives its own messages: show what it sent among them
      remember(topic, [{ topic, from: '', self: true, msg_id: result.msg_id, data, base64: false, at: new Date() }]);
      if (topic === selected) renderMessages();
    }
  } catch (error) {
    setText(publishResult, '');
    showError(error.message);
  }
});

