// A job's page: status, parameters, labels, the steps on a timeline with durations, exit codes
// and reasons, the earlier attempts (lost to the infrastructure), the log of the chosen step following live, and cancel and rerun for submitters
// of the job's service. The job is read again every second or two until it has ended.
import { api, canSubmit } from './api.js';
import { h, replace, update, setText, badge, when, duration, poller, terminal } from './dom.js';
import { logView } from './log.js';

const refreshMs = 1500;

/** jobView renders job id into main; params.step names the step whose log is shown. */
export function jobView(main, ctx, id, params) {
  const head = h('div', { class: 'jobhead' });
  const actions = h('div', { class: 'actions' });
  const facts = h('dl', { class: 'facts' });
  const timeline = h('div', { class: 'timeline', id: 'steps' });
  const logEl = h('section', { class: 'logsection' });
  const details = h('div', { class: 'details' });
  replace(main, head, actions, facts, h('h2', {}, 'Steps'), timeline, logEl, details);

  let job = null;
  let step = params.get('step') || '';
  let attempt = Number(params.get('attempt')) || 0; // an earlier attempt's log, or 0: the current
  let stopLog = null;
  let p = null;

  function chooseStep(j) {
    if (step && j.steps.some((s) => s.name === step)) return step;
    const by = (st) => j.steps.find((s) => s.status === st);
    const ran = j.steps.filter((s) => s.startedAt);
    const s = by('running') || by('failed') || ran[ran.length - 1] || j.steps[0];
    return s ? s.name : '';
  }

  function showLog(name, n = 0) {
    if (stopLog) stopLog();
    stopLog = null;
    step = name;
    attempt = n;
    history.replaceState(null, '', `#/jobs/${id}?step=${encodeURIComponent(name)}${n ? `&attempt=${n}` : ''}`);
    if (!name) {
      replace(logEl, h('p', { class: 'muted' }, 'This job has no steps.'));
      return;
    }
    stopLog = logView(logEl, id, name, (err) => ctx.show(err, 'read this log'), n);
    if (job) renderSteps(job);
  }

  async function act(what, method, path) {
    try {
      const r = await api(method, path);
      ctx.show(null);
      if (what === 'rerun') ctx.go(`#/jobs/${r.id}`);
      else await refresh();
    } catch (err) {
      ctx.show(err, what === 'rerun' ? 'rerun this job' : 'cancel this job');
    }
  }

  function render(j) {
    update(head, h('h1', {}, h('span', { class: 'mono' }, j.id), ' ', h('span', { id: 'status' }, badge(j.status))),
      j.reason || j.message ? h('p', { class: 'reason', id: 'reason' }, [j.reason, j.message].filter(Boolean).join(': ')) : null);
    const mayAct = canSubmit(ctx.me, j.service);
    update(actions,
      mayAct && !terminal.has(j.status) ? h('button', { id: 'cancel', class: 'danger', type: 'button',
        onclick: () => { if (confirm(`Cancel job ${j.id}?`)) act('cancel', 'DELETE', `v1/jobs/${j.id}`); } }, j.cancelRequested ? 'Cancelling…' : 'Cancel') : null,
      mayAct ? h('button', { id: 'rerun', type: 'button', onclick: () => act('rerun', 'POST', `v1/jobs/${j.id}:rerun`) }, 'Rerun') : null,
      h('a', { class: 'button', href: `#/jobs?service=${encodeURIComponent(j.service)}` }, `All jobs of ${j.service}`));
    const fact = (k, v) => (v ? [h('dt', {}, k), h('dd', {}, v)] : []);
    const q = j.queue || {};
    update(facts,
      fact('Service', j.service), fact('Task', j.task), fact('Arch', j.arch), fact('Domain', j.domain),
      fact('Cluster', j.cluster), fact('Created', when(j.createdAt)), fact('Started', when(j.startedAt)),
      fact('Finished', when(j.finishedAt)), fact('Took', duration(j.startedAt, j.finishedAt)),
      fact('Attempt', j.attempt > 1 ? `${j.attempt} (the infrastructure stopped the earlier ones)` : ''),
      fact('Class', q.class), fact('Queue position', j.status === 'queued' && q.position ? `${q.position}${q.reason ? ` — ${q.reason}` : ''}` : ''),
      fact('Rerun of', j.rerunOf ? h('a', { href: `#/jobs/${j.rerunOf}`, class: 'mono' }, j.rerunOf) : ''),
      fact('Reruns', j.reruns && j.reruns.length ? j.reruns.map((r) => h('a', { href: `#/jobs/${r}`, class: 'mono' }, r, ' ')) : ''));
    renderSteps(j);
    const labels = Object.entries(j.labels || {});
    const attempts = j.attempts || [];
    update(details,
      attempts.length ? [h('h2', {}, 'Earlier attempts'), h('div', { class: 'scroll' }, h('table', { id: 'attempts' },
        h('thead', {}, h('tr', {}, ['#', 'Status', 'Cluster', 'Started', 'Took', 'Why', 'Steps'].map((c) => h('th', {}, c)))),
        h('tbody', {}, attempts.map((a) => h('tr', {},
          h('td', {}, a.number), h('td', {}, badge(a.status)), h('td', {}, a.cluster || ''), h('td', {}, when(a.startedAt)),
          h('td', {}, duration(a.startedAt, a.finishedAt)), h('td', {}, [a.reason, a.message].filter(Boolean).join(': ')),
          h('td', {}, (a.steps || []).map((s) => h('button', { type: 'button', class: 'link', dataset: { attempt: a.number, step: s.name },
            title: 'Show this step’s log', onclick: () => showLog(s.name, a.number) },
          `${s.name} ${s.status}${s.exitCode !== undefined && s.exitCode !== null ? ` (exit ${s.exitCode})` : ''}`))))))))] : null,
      h('h2', {}, 'Parameters'), h('pre', { class: 'params', id: 'parameters' }, JSON.stringify(j.parameters || {}, null, 2)),
      h('h2', {}, 'Labels'), labels.length ? h('p', { id: 'labels' }, labels.map(([k, v]) => h('span', { class: 'chip' }, `${k}=${v}`))) : h('p', { class: 'muted' }, 'None.'));
  }

  // Each step's button is built once and then updated in place, so that a refresh never
  // replaces the button a reader is clicking (the running step's duration changes every time).
  const stepEls = new Map();
  function renderSteps(j) {
    // The timeline spans from the first step's start to the last end (or now).
    const starts = j.steps.map((s) => s.startedAt).filter(Boolean).map((t) => new Date(t));
    const t0 = starts.length ? Math.min(...starts) : 0;
    const ends = j.steps.map((s) => (s.finishedAt ? new Date(s.finishedAt) : s.startedAt ? new Date() : 0));
    const span = Math.max(1, Math.max(0, ...ends) - t0);
    const buttons = j.steps.map((s) => {
      let e = stepEls.get(s.name);
      if (!e) {
        e = { badge: badge(''), dur: h('span', { class: 'sdur' }), exit: h('span', { class: 'sexit' }),
          reason: h('span', { class: 'sreason' }), fill: h('span') };
        e.button = h('button', { type: 'button', dataset: { step: s.name }, onclick: () => showLog(s.name) },
          h('span', { class: 'sname' }, s.name), e.badge, e.dur, e.exit, e.reason, h('span', { class: 'bar' }, e.fill));
        stepEls.set(s.name, e);
      }
      const a = s.startedAt ? new Date(s.startedAt) - t0 : 0;
      const b = s.startedAt ? (s.finishedAt ? new Date(s.finishedAt) : new Date()) - t0 : 0;
      e.button.className = `step${s.name === step && !attempt ? ' chosen' : ''}`;
      e.button.dataset.status = s.status;
      if (e.status !== s.status) {
        const nb = badge(s.status);
        e.badge.replaceWith(nb);
        e.badge = nb;
        e.status = s.status;
      }
      setText(e.dur, duration(s.startedAt, s.finishedAt));
      setText(e.exit, s.exitCode !== undefined && s.exitCode !== null ? `exit ${s.exitCode}` : '');
      setText(e.reason, [s.reason, s.message].filter(Boolean).join(': '));
      e.fill.className = `fill s-${s.status}`;
      e.fill.style.marginLeft = `${(100 * a / span).toFixed(2)}%`;
      e.fill.style.width = `${Math.max(0.5, 100 * (b - a) / span).toFixed(2)}%`;
      return e.button;
    });
    const shown = [...timeline.children];
    if (buttons.length !== shown.length || buttons.some((b, i) => shown[i] !== b)) replace(timeline, buttons);
  }

  async function refresh() {
    try {
      job = await api('GET', `v1/jobs/${encodeURIComponent(id)}`);
      ctx.show(null);
    } catch (err) {
      ctx.show(err, 'see this job');
      if (err.status === 404 || err.status === 401) {
        p.stop();
        update(head, h('h1', {}, 'Job ', h('span', { class: 'mono' }, id)));
      }
      return;
    }
    render(job);
    if (!stopLog) {
      if (attempt && (job.attempts || []).some((a) => a.number === attempt)) showLog(step, attempt);
      else showLog(chooseStep(job));
    }
    if (terminal.has(job.status) && !job.steps.some((s) => s.status === 'running')) p.stop();
  }

  p = poller(refresh, refreshMs);
  return () => {
    p.stop();
    if (stopLog) stopLog();
  };
}
