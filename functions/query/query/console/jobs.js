// The jobs list: filters (service, task, arch, status, time) kept in the URL, refreshed live by
// polling GET /v1/jobs. The API filters by service, task, status and time; arch is filtered
// here, on the jobs of the pages read.
import { api } from './api.js';
import { h, replace, setText, badge, when, duration, poller, statuses } from './dom.js';

const pageSize = 100;
const refreshMs = 2000;

/** jobsView renders the list into main; it returns its cleanup. */
export function jobsView(main, ctx, params) {
  const me = ctx.me;
  const own = me.services.filter((s) => s !== '*');
  const f = {
    service: params.get('service') || localStorage.getItem('omni.service') || (own.length ? own[0] : ''),
    task: params.get('task') || '',
    arch: params.get('arch') || '',
    status: params.get('status') || '',
    since: params.get('since') || '',
    until: params.get('until') || '',
  };

  const field = (name, input) => h('label', {}, h('span', {}, name), input);
  const service = h('input', { name: 'service', value: f.service, list: 'services', placeholder: 'service', required: true, autocomplete: 'off' });
  const task = h('select', { name: 'task' }, h('option', { value: '' }, 'any'));
  const arch = h('select', { name: 'arch' }, ['', 'x86_64', 'aarch64'].map((a) => h('option', { value: a, selected: a === f.arch }, a || 'any')));
  const status = h('select', { name: 'status' }, ['', ...statuses].map((s) => h('option', { value: s, selected: s === f.status }, s || 'any')));
  const since = h('input', { name: 'since', type: 'datetime-local', value: localInput(f.since) });
  const until = h('input', { name: 'until', type: 'datetime-local', value: localInput(f.until) });
  const form = h('form', { class: 'filters', id: 'filters', onchange: apply, onsubmit: (e) => { e.preventDefault(); apply(); } },
    field('Service', service), h('datalist', { id: 'services' }, own.map((s) => h('option', { value: s }))),
    field('Task', task), field('Arch', arch), field('Status', status), field('Since', since), field('Until', until));
  const body = h('tbody');
  const table = h('table', { class: 'jobs', id: 'jobs' },
    h('thead', {}, h('tr', {}, ['Job', 'Task', 'Arch', 'Status', 'Created', 'Took', 'Reason'].map((c, i) => h('th', { class: `c${i}` }, c)))),
    body);
  const more = h('button', { type: 'button', hidden: true, onclick: older }, 'Older jobs');
  const note = h('p', { class: 'muted' });
  replace(main, h('h1', {}, 'Jobs'), form, h('div', { class: 'scroll' }, table), note, more);

  api('GET', 'v1/tasks').then((r) => {
    for (const t of r.tasks) task.append(h('option', { value: t.name, selected: t.name === f.task }, t.name));
  }).catch(() => {});

  function apply() {
    const q = new URLSearchParams();
    const v = { service: service.value.trim(), task: task.value, arch: arch.value, status: status.value,
      since: isoOf(since.value), until: isoOf(until.value) };
    for (const [k, val] of Object.entries(v)) if (val) q.set(k, val);
    if (v.service) localStorage.setItem('omni.service', v.service);
    ctx.go(`#/jobs?${q}`);
  }

  // The jobs seen, by id: the first page is read again at every refresh, older pages once.
  const seen = new Map();
  let next = '';
  const query = () => ({ service: f.service, task: f.task, status: f.status, since: f.since, until: f.until, limit: pageSize });

  async function refresh() {
    if (!f.service) {
      note.textContent = 'Name a service to list its jobs.';
      return;
    }
    try {
      const page = await api('GET', 'v1/jobs', { query: query() });
      for (const j of page.jobs) seen.set(j.id, j);
      if (seen.size === page.jobs.length) next = page.nextPageToken || '';
      ctx.show(null);
      render();
    } catch (err) {
      ctx.show(err, 'list these jobs');
    }
  }

  async function older() {
    try {
      const page = await api('GET', 'v1/jobs', { query: { ...query(), page_token: next } });
      for (const j of page.jobs) seen.set(j.id, j);
      next = page.nextPageToken || '';
      render();
    } catch (err) {
      ctx.show(err, 'list these jobs');
    }
  }

  // A job's row is built once and then updated cell by cell: a refresh never replaces the link
  // a reader is clicking (a click whose press and release land on different nodes is lost).
  const rowsByID = new Map();
  function rowOf(j) {
    let r = rowsByID.get(j.id);
    if (!r) {
      const cells = [0, 1, 2, 3, 4, 5, 6].map((i) => h('td', { class: `c${i}` }));
      cells[0].append(h('a', { href: `#/jobs/${j.id}`, class: 'mono' }, j.id));
      r = { tr: h('tr', { dataset: { id: j.id } }, cells), cells, status: null };
      rowsByID.set(j.id, r);
    }
    r.tr.dataset.status = j.status;
    if (r.status !== j.status) {
      r.cells[3].replaceChildren(badge(j.status));
      r.status = j.status;
    }
    setText(r.cells[1], j.task);
    setText(r.cells[2], j.arch);
    setText(r.cells[4], when(j.createdAt));
    setText(r.cells[5], duration(j.startedAt, j.finishedAt));
    setText(r.cells[6], j.reason || '');
    return r.tr;
  }

  function render() {
    const rows = [...seen.values()]
      .filter((j) => !f.arch || j.arch === f.arch)
      .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
    const trs = rows.map(rowOf);
    if (trs.length !== body.children.length || trs.some((tr, i) => body.children[i] !== tr)) replace(body, trs);
    note.textContent = rows.length ? `${rows.length} job${rows.length === 1 ? '' : 's'} of ${f.service}; refreshed ${new Date().toLocaleTimeString()}.`
      : `No jobs of ${f.service} match.`;
    more.hidden = !next;
  }

  const p = poller(refresh, refreshMs);
  return () => p.stop();
}

/** localInput turns an RFC 3339 time into the value of a datetime-local input (local time). */
function localInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return '';
  return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

/** isoOf turns a datetime-local value (local time) into RFC 3339 (UTC). */
function isoOf(local) {
  if (!local) return '';
  const d = new Date(local);
  return isNaN(d) ? '' : d.toISOString();
}
