// The build queue (GET /v1/queue): the waiting jobs in dispatch order with their positions and
// reasons, and the slots of every engine instance; refreshed live.
import { api } from './api.js';
import { h, replace, when, poller } from './dom.js';

/** queueView renders the queue into main; it returns its cleanup. */
export function queueView(main, ctx) {
  const waiting = h('tbody');
  const instances = h('tbody');
  const note = h('p', { class: 'muted' });
  replace(main, h('h1', {}, 'Queue'),
    h('h2', {}, 'Engine instances'),
    h('div', { class: 'scroll' }, h('table', { id: 'instances' }, h('thead', {}, h('tr', {}, ['Instance', 'Arch', 'Slots in use', 'Free', 'Capacity'].map((c) => h('th', {}, c)))), instances)),
    h('h2', {}, 'Waiting jobs'),
    h('div', { class: 'scroll' }, h('table', { id: 'waiting' }, h('thead', {}, h('tr', {}, ['#', 'Job', 'Service', 'Task', 'Arch', 'Class', 'Slots', 'Waiting since', 'Why'].map((c) => h('th', {}, c)))), waiting)),
    note);

  async function refresh() {
    try {
      const q = await api('GET', 'v1/queue');
      ctx.show(null);
      replace(instances, (q.instances || []).map((i) => h('tr', {},
        h('td', {}, i.name), h('td', {}, i.arch), h('td', {}, i.inUse),
        h('td', {}, i.unlimited ? 'unlimited' : i.free),
        h('td', {}, i.unlimited ? 'unlimited' : i.capacity,
          i.unlimited ? null : h('meter', { min: 0, max: i.capacity, value: i.inUse, title: `${i.inUse} of ${i.capacity} slots in use` })))));
      const w = q.waiting || [];
      replace(waiting, w.length ? w.map((j) => h('tr', { dataset: { id: j.id } },
        h('td', {}, j.position), h('td', {}, h('a', { href: `#/jobs/${j.id}`, class: 'mono' }, j.id)),
        h('td', {}, j.service), h('td', {}, j.task), h('td', {}, j.arch), h('td', {}, j.class),
        h('td', {}, j.slots), h('td', {}, when(j.createdAt)), h('td', {}, j.reason || '')))
        : h('tr', {}, h('td', { colSpan: 9, class: 'muted' }, 'No job is waiting.')));
      note.textContent = q.hidden ? `${q.hidden} more waiting job${q.hidden === 1 ? '' : 's'} of services you may not see.` : '';
    } catch (err) {
      ctx.show(err, 'see the queue');
    }
  }

  const p = poller(refresh, 3000);
  return () => p.stop();
}
