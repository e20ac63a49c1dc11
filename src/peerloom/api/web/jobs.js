// The jobs view (volunteer computing): the node's jobs with their progress (done / validated / in flight, volunteers)
// and the volunteers it knows (reputation, votes won and lost, credit, flagged); a running job can be cancelled. Only
// through the API.

import { api } from './api.js';
import { el, poller, setText, showError } from './dom.js';

const POLL_MS = 2000;
const jobsBody = document.querySelector('#jobs-table tbody');
const volunteersBody = document.querySelector('#volunteers-table tbody');
const off = document.getElementById('compute-off');
const summary = document.getElementById('compute-status');

/** Starts polling the jobs once the page has its token. */
export const { start, stop } = poller(() => refresh(), POLL_MS);

async function refresh() {
  try {
    const [{ jobs }, { volunteers }, status] = await Promise.all([
      api('GET', 'compute/jobs'), api('GET', 'compute/volunteers'), api('GET', 'compute/status')]);
    off.hidden = true;
    renderJobs(jobs);
    renderVolunteers(volunteers);
    setText(summary, status.volunteering
      ? `Volunteering ${status.volunteer.slots} task slots: ${status.volunteer.ran} units run, `
        + `${Math.round(status.volunteer.cpu_seconds_left)} CPU seconds left today.`
      : 'Not volunteering (peerloom compute volunteer).');
  } catch (error) {
    if (error.status === 503) {
      off.hidden = false;
      stop();
    }
  }
}

function renderJobs(jobs) {
  jobsBody.replaceChildren(...jobs.slice().reverse().map((j) => {
    const done = j.validated + j.errors;
    const bar = el('progress', { max: String(j.units), value: String(done), 'aria-label': `job ${j.id} progress` });
    return el('tr', { 'data-job': j.id },
      el('td', {}, el('code', { text: j.id })),
      el('td', {}, bar, el('span', { class: 'num', text: ` ${done}/${j.units}` })),
      el('td', { class: 'validated num', text: String(j.validated) }),
      el('td', { class: 'errors num', text: String(j.errors) }),
      el('td', { class: 'in-flight num', text: String(j.in_flight) }),
      el('td', { class: 'num', text: String(j.available) }),
      el('td', { class: 'num', text: String(j.quorum) }),
      el('td', { class: 'state' }, j.cancelled ? 'cancelled' : j.finished ? 'finished' : 'running',
        j.finished ? '' : el('button', { type: 'button', class: 'cancel', text: 'Cancel', onclick: () => cancel(j.id) })));
  }));
  document.getElementById('no-jobs').hidden = jobs.length > 0;
}

async function cancel(id) {
  try {
    await api('POST', `compute/jobs/${id}/cancel`);
  } catch (error) {
    showError(error.message);
  }
  refresh();
}

function renderVolunteers(volunteers) {
  volunteersBody.replaceChildren(...volunteers.map((v) => el('tr', { class: v.flagged ? 'flagged' : false },
    el('td', {}, el('code', { text: v.peer_id })),
    el('td', { class: 'num', text: v.reputation.toFixed(3) }),
    el('td', { class: 'num', text: String(v.wins) }),
    el('td', { class: 'num', text: String(v.losses) }),
    el('td', { class: 'num', text: String(v.credit) }),
    el('td', { text: v.flagged ? 'flagged' : (v.connected ? 'connected' : 'gone') }))));
  document.getElementById('no-volunteers').hidden = volunteers.length > 0;
}
