// Small DOM helpers: elements are built with h(), never from HTML strings, so text from the API
// is always text.

/** h creates an element: attrs set properties (on…: listeners, class, dataset, style as an object, hidden…), children are nodes or text. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v); // CSSOM: allowed by the console's CSP
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** replace empties el and fills it with children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * update is replace for what a poller redraws: it builds children, and changes el only when
 * their markup differs from what el shows. A refresh that changes nothing then leaves the nodes a
 * reader may be clicking in place (a click whose press and release land on different nodes is
 * lost). Listeners are not compared: the same markup is built from the same job.
 */
export function update(el, ...children) {
  const next = document.createElement(el.tagName);
  append(next, children);
  if (next.innerHTML !== el.innerHTML) el.replaceChildren(...next.childNodes);
  return el;
}

/** setText sets el's text only when it differs (no needless mutation of a node in use). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** badge shows a job or step status. */
export function badge(status) {
  return h('span', { class: `badge s-${status || 'unknown'}` }, status || 'unknown');
}

/** when formats a time for a table cell (local time, shorter for today). */
export function when(t) {
  if (!t) return '';
  const d = new Date(t);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

/** duration formats the time from a to b (b unset: now) as 1h2m, 3m4s or 5.6s. */
export function duration(a, b) {
  if (!a) return '';
  const ms = (b ? new Date(b) : new Date()) - new Date(a);
  if (ms < 0) return '';
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${Math.floor(s % 60)}s`;
  return `${Math.floor(m / 60)}h${m % 60}m`;
}

/** poller calls fn now and then every ms while the page is visible, until stopped. */
export function poller(fn, ms) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch { /* fn shows its own errors */ }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

/** Terminal job statuses (shared/jobs). */
export const terminal = new Set(['succeeded', 'failed', 'cancelled', 'lost']);

/** The job statuses, in the order of a job's life. */
export const statuses = ['queued', 'pending', 'running', 'succeeded', 'failed', 'cancelled', 'lost'];
