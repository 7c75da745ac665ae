// The console's one way to the node: the public admin HTTP API, with the API
// key typed at sign-in (kept in sessionStorage: this browser tab only).

const KEY = 'herald-console-key';

export const auth = {
  get key() {
    return sessionStorage.getItem(KEY) || '';
  },
  set key(v) {
    if (v) sessionStorage.setItem(KEY, v);
    else sessionStorage.removeItem(KEY);
  },
};

/** A 4xx/5xx answer: `status`, the API's one-line `reason`, and the `field` it names. */
export class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
    this.reason = reason;
    this.field = fieldOf(reason);
  }
}

/** The route does not exist on this node (404 "no such route", or 405): an older or newer build. */
export class NotAvailable extends ApiError {}

/**
 * "to.where: undeclared reference to 'atrs'" names `to.where`; serde's
 * "unknown field `titel`" names `titel`.
 */
export function fieldOf(reason) {
  const m = /^(?:campaign |envelope )?([A-Za-z_][\w.[\]]*): /.exec(reason || '');
  if (m) return m[1];
  const s = /field `([^`]+)`/.exec(reason || '');
  return s ? s[1] : null;
}

/** Calls the API; resolves to the parsed JSON, or throws ApiError / NotAvailable. */
export async function api(method, path, body, { key = auth.key, signal } = {}) {
  const headers = { accept: 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'the node did not answer (is it running?)');
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (res.ok) return json;
  const reason = (json && json.error) || text.trim() || res.statusText;
  if (res.status === 405 || (res.status === 404 && reason === 'no such route')) throw new NotAvailable(res.status, reason);
  throw new ApiError(res.status, reason);
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);
export const put = (path, body, opts) => api('PUT', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);
export const enc = encodeURIComponent;
