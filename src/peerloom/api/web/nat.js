// The NAT view: whether this node is reachable from outside (the AutoNAT verdict, each server's answer), the
// addresses peers observe and the ones AutoNAT confirmed, the AutoNAT server's counts and the port mappings
// (NAT-PMP / UPnP-IGD). A probe asks AutoNAT servers now, optionally dialling one first. Only through the API
// (GET nat, POST nat/probe), polled.

import { api } from './api.js';
import { el, poller, showError } from './dom.js';

const POLL_MS = 5000;
const facts = document.getElementById('nat-facts');
const off = document.getElementById('nat-off');
const answersBody = document.querySelector('#nat-answers tbody');
const noAnswers = document.getElementById('nat-no-answers');
const observed = document.getElementById('nat-observed');
const confirmed = document.getElementById('nat-confirmed');
const mapping = document.getElementById('nat-mapping');
const mappingsBody = document.querySelector('#nat-mappings tbody');
const mappingsBox = document.getElementById('nat-mappings-box');
const probeForm = document.getElementById('nat-probe');

export const { start, stop } = poller(() => refresh(), POLL_MS);

async function refresh() {
  let status;
  try {
    status = await api('GET', 'nat');
  } catch (err) {
    if (err.status === 503) {
      show(null);
      return;
    }
    showError(err.message);
    return;
  }
  show(status);
}

function addressList(list, addrs, none) {
  list.replaceChildren(...(addrs.length ? addrs.map((a) => el('li', { class: 'hash' }, a)) : [el('li', {}, none)]));
}

function show(status) {
  off.hidden = status !== null;
  probeForm.hidden = status === null || !status.autonat;
  if (status === null) {
    facts.replaceChildren();
    answersBody.replaceChildren();
    observed.replaceChildren();
    confirmed.replaceChildren();
    mapping.replaceChildren();
    mappingsBody.replaceChildren();
    mappingsBox.hidden = true;
    return;
  }
  const served = status.autonat_server
    ? Object.entries(status.autonat_server).filter(([, n]) => n > 0).map(([name, n]) => `${name} ${n}`)
      .join(', ') || 'no request yet'
    : 'off';
  facts.replaceChildren(
    el('dt', {}, 'Reachability'), el('dd', { 'data-reachability': status.reachability }, status.reachability),
    el('dt', {}, 'Confidence'), el('dd', {}, `${Math.round(status.confidence * 100)} %`),
    el('dt', {}, 'AutoNAT client'), el('dd', {}, status.autonat ? 'on' : 'off'),
    el('dt', {}, 'AutoNAT server'), el('dd', { id: 'nat-served' }, served),
  );
  answersBody.replaceChildren(...status.answers.map((a) => el('tr', { 'data-server': a.server },
    el('td', { class: 'hash' }, a.server), el('td', {}, a.reachable ? 'dialled us back' : 'could not dial us'),
    el('td', { class: 'hash' }, a.addr || ''), el('td', {}, `${Math.round(a.age)} s ago`))));
  noAnswers.hidden = status.answers.length > 0;
  addressList(observed, status.observed, 'none yet');
  addressList(confirmed, status.confirmed, 'none');
  const pm = status.port_mapping;
  if (pm === null) {
    mapping.replaceChildren(el('dt', {}, 'Port mapping'), el('dd', {}, 'off'));
    mappingsBody.replaceChildren();
    mappingsBox.hidden = true;
    return;
  }
  mapping.replaceChildren(
    el('dt', {}, 'Port mapping'), el('dd', {}, pm.protocol || 'no protocol worked'),
    el('dt', {}, 'Gateway'), el('dd', {}, pm.gateway || '?'),
    el('dt', {}, 'External IP'), el('dd', {}, pm.external_ip || '?'),
    ...(pm.error ? [el('dt', {}, 'Error'), el('dd', {}, pm.error)] : []),
  );
  mappingsBody.replaceChildren(
    ...(pm.mappings || []).map((m) => el('tr', {},
      el('td', {}, m.protocol), el('td', {}, String(m.internal_port)), el('td', {}, String(m.external_port)),
      el('td', {}, m.lifetime ? `${m.lifetime} s` : 'permanent'), el('td', {}, m.via || ''))),
    ...(pm.failures || []).map((f) => el('tr', { class: 'failed' },
      el('td', {}, f.protocol), el('td', {}, String(f.internal_port)), el('td', { colspan: 3 }, f.reason))),
  );
  mappingsBox.hidden = mappingsBody.children.length === 0;
}

probeForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const addr = probeForm.elements.peer.value.trim();
  const button = probeForm.querySelector('button');
  button.disabled = true;
  try {
    show(await api('POST', 'nat/probe', addr ? { peers: [addr] } : {}));
    probeForm.elements.peer.value = '';
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
  }
});
