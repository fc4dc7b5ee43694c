// The console's shell: who is signed in, the banner for errors, and the views by URL fragment
// (#/jobs, #/jobs/<id>, #/queue, #/tasks, #/submit/<task>).
import { api, explain } from './api.js';
import { replace } from './dom.js';
import { jobsView } from './jobs.js';
import { jobView } from './job.js';
import { queueView } from './queue.js';
import { tasksView, submitView } from './tasks.js';

const main = document.getElementById('main');
const banner = document.getElementById('banner');

/** The page's context, handed to every view. */
const ctx = {
  me: null,
  /** show puts an error (or null: nothing) in the banner. */
  show(err, what) {
    banner.hidden = !err;
    banner.textContent = err ? (typeof err === 'string' ? err : explain(err, what)) : '';
  },
  go(hash) { location.hash = hash; },
};

let cleanup = null;

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  ctx.show(null);
  const [path, qs] = (location.hash.replace(/^#/, '') || '/jobs').split('?');
  const params = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean);
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === (parts[0] === 'submit' ? 'tasks' : parts[0]));
  }
  replace(main);
  let view;
  switch (parts[0]) {
    case 'jobs': view = parts[1] ? jobView(main, ctx, decodeURIComponent(parts[1]), params) : jobsView(main, ctx, params); break;
    case 'queue': view = queueView(main, ctx); break;
    case 'tasks': view = tasksView(main, ctx); break;
    case 'submit': view = submitView(main, ctx, decodeURIComponent(parts[1] || '')); break;
    default: ctx.go('#/jobs'); return;
  }
  cleanup = view;
}

async function start() {
  try {
    ctx.me = await api('GET', 'v1/me');
    document.getElementById('me').textContent = `${ctx.me.user} · ${ctx.me.role} of ${ctx.me.services.join(', ')}`;
  } catch (err) {
    ctx.show(err);
    replace(main);
    return;
  }
  window.addEventListener('hashchange', route);
  route();
}

start();
