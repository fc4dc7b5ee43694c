// The /v1 API as the signed-in user: the browser sends the basic-auth credentials it was given
// for /ui/ with every request of the page, fetch and EventSource alike.

/** The API's base URL: the console is served at <base>/ui/, the API at <base>/v1/. */
export const base = new URL('../', import.meta.url);

/** The URL of an API path such as "v1/jobs". */
export function url(path, query) {
  const u = new URL(path, base);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  }
  return u.toString();
}

/** APIError is a failed call: status (0 when the server was not reached) and its problem document. */
export class APIError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** api calls the API and returns the decoded JSON body, or throws an APIError. */
export async function api(method, path, { query, body, headers } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let resp;
  try {
    resp = await fetch(url(path, query), init);
  } catch (e) {
    throw new APIError(0, { title: 'Network error', detail: `the server cannot be reached (${e.message})` });
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text.trim() }; }
  }
  if (!resp.ok) throw new APIError(resp.status, data || { title: resp.statusText });
  return data;
}

/** explain turns an error into one sentence for the reader; what is what was tried ("cancel this job"). */
export function explain(err, what = 'do this') {
  if (!(err instanceof APIError)) return `Something went wrong: ${err && err.message ? err.message : err}`;
  const detail = err.problem.detail || err.problem.title || '';
  switch (err.status) {
    case 0: return `Network error: ${detail}. The page retries by itself.`;
    case 401: return 'You are not signed in, or your credentials were refused. Reload the page to sign in again.';
    case 403: return `Not allowed: you may not ${what} (${detail}).`;
    case 404: return `Not found: ${detail}. It does not exist, or it belongs to a service you may not see.`;
    case 400: return `Invalid request${err.problem.field ? ` — field “${err.problem.field}”` : ''}: ${detail}`;
    case 409: return `Conflict: ${detail}`;
    case 429: return `Too many requests: ${detail}. Try again in a moment.`;
    default: return `The server answered ${err.status}: ${detail}`;
  }
}

/** The roles, in increasing order (shared/auth). */
const roles = ['none', 'viewer', 'submitter', 'admin'];

/** canSubmit reports whether me (GET /v1/me) may submit, cancel and rerun jobs of service. */
export function canSubmit(me, service) {
  if (!me || roles.indexOf(me.role) < roles.indexOf('submitter')) return false;
  return me.services.includes('*') || service === undefined || me.services.includes(service);
}
