// The job types (GET /v1/tasks) with their parameters, and the submit form generated from a job
// type's JSON Schema (POST /v1/jobs).
import { api, canSubmit } from './api.js';
import { h, replace } from './dom.js';
import { schemaForm, describe } from './form.js';

/** tasksView renders the job types into main. */
export function tasksView(main, ctx) {
  replace(main, h('h1', {}, 'Job types'), h('p', { class: 'muted' }, 'Loading…'));
  api('GET', 'v1/tasks').then((r) => {
    replace(main, h('h1', {}, 'Job types'), r.tasks.map((t) => h('section', { class: 'task', dataset: { task: t.name } },
      h('h2', {}, t.name, ' ', canSubmit(ctx.me) ? h('a', { class: 'button', href: `#/submit/${t.name}` }, 'Submit…') : null),
      h('p', {}, t.description),
      h('p', { class: 'muted' }, `Arches: ${t.arches.join(', ')} · Steps: ${t.steps.join(' → ')}`),
      h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, ['Parameter', 'Type', 'Required', 'Default', 'Description'].map((c) => h('th', {}, c)))),
        h('tbody', {}, describe(t.schema).map((p) => h('tr', {},
          h('td', { class: 'mono' }, p.name), h('td', {}, p.type), h('td', {}, p.required ? 'yes' : ''),
          h('td', { class: 'mono' }, p.default === undefined ? '' : JSON.stringify(p.default)), h('td', {}, p.description)))))))));
  }, (err) => ctx.show(err, 'list the job types'));
}

/** submitView renders the submit form of job type name into main. */
export function submitView(main, ctx, name) {
  replace(main, h('h1', {}, `Submit ${name}`), h('p', { class: 'muted' }, 'Loading…'));
  if (!canSubmit(ctx.me)) {
    ctx.show(`Not allowed: ${ctx.me.user} is a ${ctx.me.role} and may not submit jobs.`);
    return;
  }
  api('GET', 'v1/tasks').then((r) => {
    const t = r.tasks.find((x) => x.name === name);
    if (!t) {
      ctx.show(`Not found: there is no job type “${name}”.`);
      return;
    }
    render(t);
  }, (err) => ctx.show(err, 'list the job types'));

  function render(t) {
    const own = ctx.me.services.filter((s) => s !== '*');
    const params = schemaForm(t.schema);
    // One key per form shown: a double click or a retry after a lost answer submits once.
    // A refused submission created nothing: the corrected one gets a new key.
    const newKey = () => [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
    let key = newKey();
    const row = (label, input, hint) => h('label', { class: 'row' }, h('span', {}, label), input, hint ? h('small', {}, hint) : null);
    const service = ctx.me.services.includes('*')
      ? h('input', { name: 'service', required: true, value: localStorage.getItem('omni.service') || '', autocomplete: 'off' })
      : h('select', { name: 'service' }, own.map((s) => h('option', { value: s }, s)));
    const arch = h('select', { name: 'arch' }, t.arches.map((a) => h('option', { value: a }, a)));
    const domain = h('input', { name: 'domain', autocomplete: 'off' });
    const cls = h('input', { name: 'class', placeholder: 'the service’s default', autocomplete: 'off' });
    const labels = h('textarea', { name: 'labels', rows: 2, placeholder: 'team=kernel' });
    const button = h('button', { type: 'submit' }, 'Submit');
    const form = h('form', { class: 'submit', id: 'submit', novalidate: true, onsubmit: send },
      h('fieldset', {}, h('legend', {}, 'Job'), row('Service', service), row('Arch', arch), row('Domain', domain, 'optional'),
        row('Priority class', cls, 'optional'), row('Labels', labels, 'one key=value per line')),
      h('fieldset', {}, h('legend', {}, 'Parameters'), params.element,
        t.schema.examples && t.schema.examples.length ? h('button', { type: 'button', onclick: () => params.fill(t.schema.examples[0]) }, 'Fill in the example') : null),
      button);
    replace(main, h('h1', {}, `Submit ${t.name}`), h('p', {}, t.description), form);

    async function send(e) {
      e.preventDefault();
      params.clearErrors();
      let parameters;
      try {
        parameters = params.value();
      } catch (err) {
        params.showError(err.field, err.message);
        return;
      }
      const lab = {};
      for (const line of labels.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
        const i = line.indexOf('=');
        if (i < 1) {
          ctx.show(`Labels: “${line}” is not key=value.`);
          return;
        }
        lab[line.slice(0, i).trim()] = line.slice(i + 1).trim();
      }
      const body = { service: service.value.trim(), task: t.name, arch: arch.value, parameters };
      if (domain.value.trim()) body.domain = domain.value.trim();
      if (cls.value.trim()) body.class = cls.value.trim();
      if (Object.keys(lab).length) body.labels = lab;
      button.disabled = true;
      try {
        const j = await api('POST', 'v1/jobs', { body, headers: { 'Idempotency-Key': key } });
        localStorage.setItem('omni.service', body.service);
        ctx.go(`#/jobs/${j.id}`);
      } catch (err) {
        ctx.show(err, `submit to ${body.service}`);
        if (err.status >= 400 && err.status < 500) key = newKey();
        const f = err.problem && err.problem.field;
        if (f && f.startsWith('parameters.')) params.showError(f.slice('parameters.'.length), err.problem.detail);
      } finally {
        button.disabled = false;
      }
    }
  }
}
