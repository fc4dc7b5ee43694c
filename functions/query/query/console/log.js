// The log of one step, following live: an EventSource on GET /v1/jobs/{id}/logs?follow=true.
// The server numbers the lines the same live and archived and switches from the cluster to the
// archive itself, so the pane just appends; a line whose number was shown is never shown again.
// The browser reconnects by itself with Last-Event-ID; when it gives up (an error status), the
// stream is opened again with the last cursor as `after`.
import { api, url } from './api.js';
import { h, replace } from './dom.js';

/** logView shows the log of step of job id in el (of an earlier attempt when attempt is set),
 * and errors that stop it with onError; it returns its cleanup. */
export function logView(el, job, step, onError, attempt) {
  const which = attempt ? { attempt } : {};
  const state = h('span', { class: 'badge', id: 'log-state' }, 'connecting');
  const search = h('input', { type: 'search', id: 'log-search', placeholder: 'Search the log', oninput: mark, onkeydown: (e) => { if (e.key === 'Enter') { e.preventDefault(); nextHit(); } } });
  const only = h('input', { type: 'checkbox', id: 'log-only', onchange: () => pane.classList.toggle('only', only.checked) });
  const hits = h('span', { class: 'muted', id: 'log-hits' });
  const download = h('a', { id: 'log-download', class: 'button disabled', href: url(`v1/jobs/${job}/logs/${encodeURIComponent(step)}:download`, which),
    download: `${job}-${step}${attempt ? `@${attempt}` : ''}.log`, title: 'Available once the step is archived (after the job ends)', 'aria-disabled': 'true' }, 'Download');
  const follow = h('button', { type: 'button', id: 'log-follow', hidden: true, onclick: () => { stick = true; toBottom(); } }, '↓ Follow');
  const pane = h('div', { class: 'log', id: 'log', tabindex: '0', onscroll: () => {
    stick = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
    follow.hidden = stick;
  } });
  const empty = h('div', { class: 'muted log-empty' }, 'No lines yet.');
  pane.append(empty);
  replace(el, h('div', { class: 'logbar' }, h('strong', {}, step, attempt ? ` (attempt ${attempt})` : ''), state, search, h('label', { class: 'only' }, only, 'only matches'), hits, follow, download), pane);

  let stick = true; // follow the end until the reader scrolls up
  let last = 0; // the number of the last line shown
  let cursor = ''; // the cursor after it
  let ended = false;
  let es = null;
  let retry = 1000;
  let timer = null;

  function toBottom() {
    pane.scrollTop = pane.scrollHeight;
    follow.hidden = true;
  }

  function setState(s) {
    state.textContent = s;
    state.className = `badge l-${s}`;
    if (s === 'archive' || s === 'complete' || s === 'incomplete') {
      download.classList.remove('disabled');
      download.removeAttribute('aria-disabled');
      download.title = 'The whole log as text';
    }
  }

  function add(lines) {
    const frag = document.createDocumentFragment();
    const q = search.value.toLowerCase();
    for (const l of lines) {
      if (l.n <= last) continue; // already shown (a resume may overlap)
      last = l.n;
      const row = h('div', { class: 'line', dataset: { n: l.n } }, h('span', { class: 'n' }, l.n), h('span', { class: 't' }, l.text));
      if (q && l.text.toLowerCase().includes(q)) row.classList.add('hit');
      frag.append(row);
    }
    if (!frag.childNodes.length) return;
    empty.remove();
    pane.append(frag);
    if (q) count();
    if (stick) toBottom();
  }

  function mark() {
    const q = search.value.toLowerCase();
    for (const row of pane.querySelectorAll('.line')) {
      row.classList.toggle('hit', !!q && row.lastChild.textContent.toLowerCase().includes(q));
      row.classList.remove('current');
    }
    count();
  }

  function count() {
    const n = pane.querySelectorAll('.line.hit').length;
    hits.textContent = search.value ? `${n} match${n === 1 ? '' : 'es'}` : '';
  }

  function nextHit() {
    const all = [...pane.querySelectorAll('.line.hit')];
    if (!all.length) return;
    const cur = pane.querySelector('.line.current');
    const i = cur ? (all.indexOf(cur) + 1) % all.length : 0;
    if (cur) cur.classList.remove('current');
    all[i].classList.add('current');
    stick = false;
    follow.hidden = false;
    all[i].scrollIntoView({ block: 'center' });
  }

  function open() {
    const q = { step, follow: 'true', ...which };
    if (cursor) q.after = cursor;
    es = new EventSource(url(`v1/jobs/${job}/logs`, q), { withCredentials: true });
    es.addEventListener('open', () => { retry = 1000; });
    es.addEventListener('state', (e) => setState(JSON.parse(e.data).state));
    es.addEventListener('lines', (e) => {
      add(JSON.parse(e.data).lines);
      cursor = e.lastEventId || cursor;
    });
    es.addEventListener('end', (e) => {
      const end = JSON.parse(e.data);
      ended = true;
      es.close();
      setState(end.incomplete ? 'incomplete' : 'complete');
      if (end.incomplete && end.reason) pane.append(h('div', { class: 'muted' }, `The log is incomplete: ${end.reason}`));
      if (last === 0) empty.textContent = 'This step wrote no lines.';
    });
    es.addEventListener('error', (e) => {
      if (e.data) { // the server's own error event (a problem document): the stream ends
        let p = {};
        try { p = JSON.parse(e.data); } catch { /* keep {} */ }
        state.textContent = `error: ${p.detail || p.title || 'stream failed'}`;
      }
      if (ended) return;
      if (es.readyState === EventSource.CONNECTING) {
        state.textContent = 'reconnecting';
        return;
      }
      // The browser gave up (an error status, or the stream ended with an error). A page read
      // tells why: a refusal (401, 403, 404, 400) stops here; anything else (429, 5xx, the
      // network) opens the stream again from the last cursor, backing off.
      es.close();
      state.textContent = 'reconnecting';
      api('GET', `v1/jobs/${job}/logs`, { query: { step, after: cursor, limit: 1, ...which } }).then(again, (err) => {
        if (err.status >= 400 && err.status < 500 && err.status !== 429) {
          state.textContent = 'stopped';
          onError(err);
          return;
        }
        again();
      });
    });
  }

  function again() {
    if (ended) return;
    timer = setTimeout(open, retry);
    retry = Math.min(retry * 2, 30000);
  }

  open();
  return () => {
    ended = true;
    clearTimeout(timer);
    if (es) es.close();
  };
}
