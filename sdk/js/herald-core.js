// Herald SDK core: one WebSocket to a Herald gateway, and the lifecycle of the
// messages it delivers (slots, priority queue, collapse_key, retract, expiry),
// acks and events sent back, token refresh. No DOM: it runs in browsers,
// workers, Node >= 20 (pass a WebSocket, e.g. the ws package) and React
// Native. Drawing is a view's job: herald-render.js draws DOM overlays, the
// React bindings draw components. ES module, no build step, no dependencies.
// See README.md.
//
// The top of this file is pure (no sockets, no timers): backoff, reconnect
// policy, dedupe LRU, the slot scheduler, URL and token helpers. Node unit
// tests import those directly. HeraldClient below owns the socket.

/** Message kinds of SPEC §4. `custom` is handed to the app, never rendered. */
export const KINDS = Object.freeze(['banner', 'modal', 'card', 'toast', 'tooltip', 'fullscreen', 'custom']);

/** Priorities, lowest first. */
export const PRIORITIES = Object.freeze(['low', 'normal', 'high', 'urgent']);

/** Close codes of SPEC §3 (plus 1001/1006, which browsers report). */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  ABUSE: 4000,
  SLOW_CONSUMER: 4008,
  RATE_LIMITED: 4029,
});

/** Which on-screen slot each rendered kind occupies: one message per slot. */
export const SLOT_OF = Object.freeze({
  banner: 'banner',
  modal: 'modal',
  fullscreen: 'modal', // both block the page, so they share one slot
  card: 'card',
  toast: 'toast',
  tooltip: 'tooltip',
});

/** Rank of a priority (low 0 … urgent 3); unknown values count as normal. */
export function priorityRank(p) {
  const i = PRIORITIES.indexOf(p);
  return i < 0 ? 1 : i;
}

/**
 * Exponential backoff with full jitter: a uniform delay in
 * [0, min(cap, base * 2^attempt)) milliseconds.
 */
export function backoffDelay(attempt, { base = 500, cap = 30000, random = Math.random } = {}) {
  const n = Math.max(0, Math.min(Number(attempt) || 0, 30));
  const ceiling = Math.min(cap, base * 2 ** n);
  return Math.floor(random() * ceiling);
}

/**
 * What to do after the socket closed with `code`, on the `attempt`-th
 * consecutive failure (0 for the first). Returns {reconnect, delay, why}.
 *
 * - 1012 (node draining): reconnect at once, with up to 1 s of jitter so a
 *   whole node's sessions do not land on the next one in the same instant.
 * - 4008, 4029, 4000, 1013 (slow consumer, rate limited, abuse, a proxy's
 *   "try again later"): a floor of 5 s
 *   plus full-jitter backoff on a 5 s base, capped at 2 min.
 * - 1008 (policy: token expired, disconnected by an operator): stop, unless a
 *   fresh token can be fetched (`canRefreshToken`).
 * - anything else (network loss, 1006, 1011, …): full-jitter backoff.
 */
export function reconnectPlan(code, attempt, { canRefreshToken = false, random = Math.random, base = 500, cap = 30000 } = {}) {
  switch (code) {
    case CLOSE.RESTART:
      return { reconnect: true, delay: Math.floor(random() * 1000), why: 'restart' };
    case CLOSE.SLOW_CONSUMER:
    case CLOSE.RATE_LIMITED:
    case CLOSE.ABUSE:
    case CLOSE.TRY_AGAIN_LATER:
      return { reconnect: true, delay: 5000 + backoffDelay(attempt, { base: 5000, cap: 120000, random }), why: 'throttled' };
    case CLOSE.POLICY:
      if (!canRefreshToken) return { reconnect: false, delay: 0, why: 'policy' };
      return { reconnect: true, delay: backoffDelay(attempt, { base, cap, random }), why: 'policy' };
    default:
      return { reconnect: true, delay: backoffDelay(attempt, { base, cap, random }), why: 'backoff' };
  }
}

/** A bounded set that forgets its oldest entries: the dedupe memory. */
export class LruSet {
  constructor(limit = 1000) {
    this.limit = Math.max(1, limit | 0);
    this._map = new Map();
  }
  get size() {
    return this._map.size;
  }
  has(key) {
    return this._map.has(key);
  }
  /** Adds `key`; true when it was not there (a new message), false for a duplicate. */
  add(key) {
    const known = this._map.delete(key);
    this._map.set(key, true);
    if (this._map.size > this.limit) this._map.delete(this._map.keys().next().value);
    return !known;
  }
  delete(key) {
    return this._map.delete(key);
  }
}

/**
 * Decides what is on screen: one message per slot, the rest waiting in a
 * priority queue (higher priority first, then arrival order). Sans-I/O: every
 * method returns a list of effects for the renderer to apply:
 *   {type: 'show', msg, slot}
 *   {type: 'hide', msg, slot, why}  why: replaced | preempted | retracted | closed | expired | <caller's>
 *   {type: 'drop', msg, slot, why}  a waiting message removed without being shown
 *
 * Rules: a message whose collapse_key matches an active one (on screen or
 * waiting) replaces it, taking its place on screen at once when both use the
 * same slot. An urgent message preempts a lower-priority one on screen; the
 * preempted one goes back to the queue. Expired messages never show.
 */
export class Scheduler {
  constructor({ maxQueue = 20 } = {}) {
    this.maxQueue = maxQueue;
    this._slots = new Map(); // slot -> {current: entry|null, queue: entry[]}
    this._seq = 0;
  }

  _slot(name) {
    let s = this._slots.get(name);
    if (!s) {
      s = { current: null, queue: [] };
      this._slots.set(name, s);
    }
    return s;
  }

  /** The message on screen in `slot`, or null. */
  current(slot) {
    const s = this._slots.get(slot);
    return s && s.current ? s.current.msg : null;
  }

  /** Messages waiting for `slot`, in the order they will show. */
  queued(slot) {
    const s = this._slots.get(slot);
    return s ? s.queue.map((e) => e.msg) : [];
  }

  /** The active (shown or waiting) message `id`, or null. */
  get(id) {
    for (const s of this._slots.values()) {
      for (const e of s.current ? [s.current, ...s.queue] : s.queue) if (e.msg.id === id) return e.msg;
    }
    return null;
  }

  /** Where message `id` is: {slot, state: 'shown'|'queued'} or null. */
  find(id) {
    for (const [slot, s] of this._slots) {
      if (s.current && s.current.msg.id === id) return { slot, state: 'shown' };
      if (s.queue.some((e) => e.msg.id === id)) return { slot, state: 'queued' };
    }
    return null;
  }

  offer(msg, now = Date.now()) {
    const slot = SLOT_OF[msg.kind];
    if (!slot) return [];
    if (isExpired(msg, now)) return [{ type: 'drop', msg, slot, why: 'expired' }];
    const effects = [];
    const entry = { msg, seq: this._seq++ };
    const s = this._slot(slot);

    if (msg.collapse_key != null) {
      for (const [name, other] of this._slots) {
        if (other.current && other.current.msg.collapse_key === msg.collapse_key) {
          const old = other.current;
          effects.push({ type: 'hide', msg: old.msg, slot: name, why: 'replaced' });
          other.current = null;
          if (name === slot) {
            // Takes the replaced one's place on screen, whatever its priority.
            s.current = entry;
            effects.push({ type: 'show', msg, slot });
            return effects;
          }
          effects.push(...this._promote(name, now));
        }
        const before = other.queue.length;
        const kept = other.queue.filter((e) => e.msg.collapse_key !== msg.collapse_key);
        if (kept.length !== before) {
          for (const e of other.queue) {
            if (e.msg.collapse_key === msg.collapse_key) effects.push({ type: 'drop', msg: e.msg, slot: name, why: 'replaced' });
          }
          other.queue = kept;
        }
      }
    }

    if (!s.current) {
      s.current = entry;
      effects.push({ type: 'show', msg, slot });
      return effects;
    }
    if (msg.priority === 'urgent' && priorityRank(s.current.msg.priority) < priorityRank('urgent')) {
      const old = s.current;
      effects.push({ type: 'hide', msg: old.msg, slot, why: 'preempted' });
      this._enqueue(s, old, slot, effects);
      s.current = entry;
      effects.push({ type: 'show', msg, slot });
      return effects;
    }
    this._enqueue(s, entry, slot, effects);
    return effects;
  }

  _enqueue(s, entry, slot, effects) {
    s.queue.push(entry);
    s.queue.sort((a, b) => priorityRank(b.msg.priority) - priorityRank(a.msg.priority) || a.seq - b.seq);
    while (s.queue.length > this.maxQueue) {
      const dropped = s.queue.pop();
      effects.push({ type: 'drop', msg: dropped.msg, slot, why: 'overflow' });
    }
  }

  _promote(slot, now) {
    const s = this._slot(slot);
    const effects = [];
    while (!s.current && s.queue.length) {
      const next = s.queue.shift();
      if (isExpired(next.msg, now)) {
        effects.push({ type: 'drop', msg: next.msg, slot, why: 'expired' });
        continue;
      }
      s.current = next;
      effects.push({ type: 'show', msg: next.msg, slot });
    }
    return effects;
  }

  /** Takes message `id` off screen (the next waiting one shows) or out of the queue. */
  remove(id, why = 'closed', now = Date.now()) {
    for (const [slot, s] of this._slots) {
      if (s.current && s.current.msg.id === id) {
        const old = s.current;
        s.current = null;
        return [{ type: 'hide', msg: old.msg, slot, why }, ...this._promote(slot, now)];
      }
      const i = s.queue.findIndex((e) => e.msg.id === id);
      if (i >= 0) {
        const [old] = s.queue.splice(i, 1);
        return [{ type: 'drop', msg: old.msg, slot, why }];
      }
    }
    return [];
  }

  /** Removes every message expired at `now`. */
  expire(now = Date.now()) {
    const effects = [];
    for (const [slot, s] of this._slots) {
      const kept = [];
      for (const e of s.queue) {
        if (isExpired(e.msg, now)) effects.push({ type: 'drop', msg: e.msg, slot, why: 'expired' });
        else kept.push(e);
      }
      s.queue = kept;
      if (s.current && isExpired(s.current.msg, now)) {
        const old = s.current;
        s.current = null;
        effects.push({ type: 'hide', msg: old.msg, slot, why: 'expired' });
        effects.push(...this._promote(slot, now));
      }
    }
    return effects;
  }

  /** The earliest expires_at (unix ms) among active messages, or null. */
  nextExpiry() {
    let next = null;
    for (const s of this._slots.values()) {
      for (const e of s.current ? [s.current, ...s.queue] : s.queue) {
        const at = e.msg.expires_at;
        if (typeof at === 'number' && (next === null || at < next)) next = at;
      }
    }
    return next;
  }
}

/** True when `msg.expires_at` (unix ms) has passed. */
export function isExpired(msg, now = Date.now()) {
  return typeof msg.expires_at === 'number' && msg.expires_at <= now;
}

/**
 * The WebSocket URL for a base URL (http, https, ws or wss, with or without a
 * path prefix): `${base}/v1/ws?token=…&since=…&locale=…`.
 */
export function wsUrl(base, { token, since, locale } = {}) {
  const u = new URL(base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`herald: url must be http(s) or ws(s), got ${u.protocol}`);
  const path = u.pathname.replace(/\/+$/, '');
  u.pathname = path.endsWith('/v1/ws') ? path : `${path}/v1/ws`;
  u.search = '';
  u.hash = '';
  if (token) u.searchParams.set('token', token);
  if (since) u.searchParams.set('since', since);
  if (locale) u.searchParams.set('locale', locale);
  return u.toString();
}

/**
 * A link a message may open: an absolute http(s) URL, or a same-origin path
 * ("/billing"). Returns the absolute URL, or null for anything else
 * (javascript:, data:, protocol-relative "//host", …).
 */
export function safeUrl(raw, origin, schemes) {
  if (typeof raw !== 'string') return null;
  const s = raw.trim();
  if (!s) return null;
  try {
    if (s.startsWith('/')) {
      if (s.startsWith('//') || s.startsWith('/\\')) return null;
      if (!origin || origin === 'null') return null;
      const base = new URL(origin);
      const u = new URL(s, base);
      return u.origin === base.origin ? u.href : null;
    }
    const u = new URL(s);
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.href;
    // App links (myapp://…): only schemes the node lists in hello, and
    // never one that runs code or smuggles content.
    const scheme = u.protocol.slice(0, -1);
    if (NEVER_SCHEMES.includes(scheme)) return null;
    return Array.isArray(schemes) && schemes.includes(scheme) ? u.href : null;
  } catch {
    return null;
  }
}

/** Schemes no list can allow (the node refuses them too). */
const NEVER_SCHEMES = ['javascript', 'data', 'vbscript'];

/** hello's link_schemes, normalized (lowercase, no ':' or '://'), never a NEVER one. */
export function linkSchemes(list) {
  if (!Array.isArray(list)) return [];
  return list
    .filter((x) => typeof x === 'string')
    .map((x) => x.trim().toLowerCase().replace(/:(\/\/)?$/, ''))
    .filter((x) => /^[a-z][a-z0-9+.-]*$/.test(x) && !NEVER_SCHEMES.includes(x));
}

/**
 * A resume position `{epoch}.{ms}-{seq}` split into its parts, or null for
 * anything else (positions are otherwise opaque to the SDK).
 */
export function parsePos(pos) {
  if (typeof pos !== 'string') return null;
  const dot = pos.lastIndexOf('.');
  if (dot <= 0) return null;
  const m = /^([0-9]{1,15})-([0-9]{1,15})$/.exec(pos.slice(dot + 1));
  if (!m) return null;
  return { epoch: pos.slice(0, dot), ms: Number(m[1]), seq: Number(m[2]) };
}

/**
 * The resume position to keep after a message at `pos` arrived with
 * `reason`, when `current` is the one held so far.
 *
 * - A `sticky` message (sticky or require_ack, sent again on connect) carries
 *   the position it was published at, which can be far older than what this
 *   session has seen, or older than the session itself: it never moves the
 *   position, or a later resume would replay what came before it.
 * - Otherwise the position only moves forward within one epoch; a position of
 *   another epoch (the server lost its history) or one the SDK cannot parse
 *   replaces the current one.
 */
export function nextPos(current, pos, reason) {
  if (typeof pos !== 'string' || !pos) return current;
  if (reason === 'sticky') return current;
  if (!current) return pos;
  const a = parsePos(current);
  const b = parsePos(pos);
  if (!a || !b || a.epoch !== b.epoch) return pos;
  return b.ms > a.ms || (b.ms === a.ms && b.seq > a.seq) ? pos : current;
}

/** The claims of a JWT, read without verifying; null when it is not one. */
export function jwtClaims(token) {
  try {
    const part = String(token).split('.')[1];
    if (!part) return null;
    const json = JSON.parse(b64decode(part));
    return json && typeof json === 'object' ? json : null;
  } catch {
    return null;
  }
}

/** The `exp` claim (unix seconds) of a JWT, read without verifying; null if absent. */
export function jwtExp(token) {
  const c = jwtClaims(token);
  return c && typeof c.exp === 'number' ? c.exp : null;
}

// base64url to a binary string; atob is missing in some React Native engines.
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
function b64decode(s) {
  s = s.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  if (typeof atob === 'function') return atob(s + '='.repeat((4 - (s.length % 4)) % 4));
  let out = '';
  let bits = 0;
  let acc = 0;
  for (const ch of s) {
    const v = B64.indexOf(ch);
    if (v < 0) throw new Error('bad base64');
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += String.fromCharCode((acc >> bits) & 255);
    }
  }
  return out;
}

/**
 * When to refresh a token that lives `lifetime` ms from now (SPEC §10.2):
 * at 80% of its lifetime or 60 s before it expires, whichever is sooner, but
 * never before half of it, less up to 10% of jitter. In ms from now.
 */
export function refreshDelay(lifetime, random = Math.random) {
  if (!(lifetime > 0)) return 0;
  const at = Math.max(lifetime / 2, Math.min(lifetime * 0.8, lifetime - 60000));
  return Math.max(0, Math.floor(at - random() * lifetime * 0.1));
}

// ---------------------------------------------------------------------------
// The client: socket and protocol. Needs a WebSocket (the global one, or
// options.WebSocket); automatic page views need window, history and location.

const ACK_STATUSES = new Set(['displayed', 'clicked', 'dismissed', 'suppressed']);
const MAX_OUTBOX = 100; // frames kept while offline; the oldest go first
const STABLE_MS = 10000; // a connection up this long resets the backoff
const CONNECT_TIMEOUT_MS = 15000;
const AUTH_TIMEOUT_MS = 10000; // an auth frame unanswered this long failed
const LOCATION_EVENT = 'herald:locationchange';
const HISTORY_PATCHED = Symbol.for('herald.historyPatched');

/** False only for `dismissible: false` (SPEC §10.1): no close control, only a click acknowledges it. */
export function isDismissible(msg) {
  return !!msg && msg.dismissible !== false;
}

/**
 * A connection to Herald. Create with Herald.connect(options).
 *
 * A view (options.view: an object, or a function of the client returning
 * one) draws what the scheduler decides: `show(msg, slot)`, `hide(msg, why)`,
 * `settle()` after each batch, `destroy()` on close. It reports back with
 * `displayed(id)`, `click(id, actionId)`, `dismiss(id)` and `hide(id)`.
 * Without a view nothing is scheduled: the app listens to `message`.
 */
export class HeraldClient {
  constructor(options = {}) {
    const o = options;
    const hasLocation = typeof location !== 'undefined';
    this.options = o;
    this._base = o.url || (hasLocation && location.origin && location.origin !== 'null' ? location.origin : null);
    if (!this._base) throw new TypeError('herald: url is required');
    wsUrl(this._base); // throws early on a bad url
    if (!o.token && typeof o.getToken !== 'function') throw new TypeError('herald: token or getToken is required');
    this._token = o.token || null;
    this._getToken = typeof o.getToken === 'function' ? o.getToken : null;
    this._autoPageView = o.autoPageView === undefined ? true : o.autoPageView;
    this._shouldShow = typeof o.shouldShow === 'function' ? o.shouldShow : null;
    this._locale = o.locale || null;
    this._navigate = typeof o.navigate === 'function' ? o.navigate : defaultNavigate;
    this._WS = o.WebSocket || (typeof WebSocket !== 'undefined' ? WebSocket : null);
    if (!this._WS) throw new TypeError('herald: no WebSocket implementation available; pass options.WebSocket');
    this._random = o.random || Math.random;
    this._refresh = o.refreshToken !== false && !!this._getToken;

    this._listeners = new Map();
    this._seen = new LruSet(o.dedupeSize || 1000);
    this._displayed = new LruSet(o.dedupeSize || 1000);
    this._scheduler = new Scheduler({ maxQueue: o.maxQueue || 20 });
    this._pending = new Map(); // id -> {cancelled} while shouldShow decides
    this._outbox = [];
    this._state = 'idle';
    this._closed = false; // close() was called
    this._stopped = false; // no more connection attempts
    this._ws = null;
    this._gen = 0;
    this._ready = false; // hello received on the current socket
    this._linkSchemes = []; // app schemes from hello (sdk.allowed_link_schemes)
    this._attempt = 0;
    this._openedAt = 0;
    this._lastPos = null;
    this._sid = null;
    this._user = null;
    this._heartbeatMs = 25000;
    this._lastSentAt = 0;
    this._pingSentAt = 0;
    this._tokenExp = null; // unix seconds of the token the session runs on
    this._authing = null; // {since} while an auth frame waits for its answer
    this._authFails = 0;
    this._timers = { reconnect: null, heartbeat: null, connect: null, expiry: null, refresh: null, authWait: null };
    this._lastPage = null;
    this._view = null;
    this._cleanups = [];
  }

  // --- public API -----------------------------------------------------------

  /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
  get state() {
    return this._state;
  }
  get sid() {
    return this._sid;
  }
  get user() {
    return this._user;
  }
  /** The last resume position seen; sent as `since` on reconnect. */
  get lastPos() {
    return this._lastPos;
  }
  /** The `exp` (unix seconds) of the token the session runs on, when known. */
  get tokenExp() {
    return this._tokenExp;
  }

  /** Subscribes to 'message' | 'retract' | 'state' | 'error' | 'frame' | 'auth' | 'change'; returns an unsubscribe function. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  /** Reports something the user did; campaigns trigger on these. */
  track(name, props = {}) {
    if (typeof name !== 'string' || !name || name.length > 128) throw new TypeError('herald: event name must be 1 to 128 characters');
    if (props === null || typeof props !== 'object' || Array.isArray(props)) throw new TypeError('herald: event props must be an object');
    this._send({ t: 'event', name, props });
  }

  /** Acknowledges a message (for apps that render themselves, render: false, or kind custom). */
  ack(id, status, action) {
    if (!ACK_STATUSES.has(status)) throw new TypeError(`herald: unknown ack status ${status}`);
    if (status === 'clicked' && !action) throw new TypeError('herald: a clicked ack needs the action id');
    const frame = { t: 'ack', id: String(id), status };
    if (action) frame.action = String(action);
    this._send(frame);
  }

  /**
   * Takes a drawn message off screen as the user would (acked `dismissed`); a
   * waiting one is dropped unacked. A `dismissible: false` message stays
   * (only a click acknowledges it): false.
   */
  dismiss(id) {
    const where = this._scheduler.find(id);
    if (!where || !isDismissible(this._scheduler.get(id))) return false;
    if (where.state === 'shown') this.ack(id, 'dismissed');
    this._apply(this._scheduler.remove(id, 'closed'));
    return true;
  }

  /** The user pressed action `actionId` of message `id`: acked `clicked`, taken off, its url followed. */
  click(id, actionId) {
    const msg = this._scheduler.get(id);
    if (!msg) return false;
    const action = (Array.isArray(msg.actions) ? msg.actions : []).find((a) => a && a.id === actionId) || { id: String(actionId) };
    this.ack(id, 'clicked', action.id);
    this._apply(this._scheduler.remove(id, 'clicked'));
    const href = action.url ? safeUrl(action.url, typeof location !== 'undefined' ? location.origin : null, this._linkSchemes) : null;
    if (action.url && !href) console.warn('herald: ignoring unsafe action url', action.url);
    if (href) this._drain().then(() => this._navigate(href, { msg, action }));
    return true;
  }

  /** Message `id` is really visible now: acked `displayed`, once. */
  displayed(id) {
    if (this._scheduler.find(id) && this._displayed.add(id)) this.ack(id, 'displayed');
  }

  /** Takes message `id` off screen without an ack (a toast that timed out). */
  hide(id, why = 'timeout') {
    this._apply(this._scheduler.remove(id, why));
  }

  /** The messages on screen now, one per slot. */
  shown() {
    const out = [];
    for (const slot of new Set(Object.values(SLOT_OF))) {
      const m = this._scheduler.current(slot);
      if (m) out.push(m);
    }
    return out;
  }

  /** Closes the connection for good and removes everything the view drew. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._stopped = true;
    for (const k of Object.keys(this._timers)) this._clearTimer(k);
    for (const undo of this._cleanups.splice(0)) undo();
    const ws = this._ws;
    this._ws = null;
    this._gen++;
    if (ws) {
      try {
        ws.close(CLOSE.NORMAL, 'client closed');
      } catch {
        /* already closed */
      }
    }
    if (this._view && this._view.destroy) this._view.destroy();
    this._view = null;
    this._setState('closed', { code: CLOSE.NORMAL, reason: 'client closed' });
  }

  // --- lifecycle ------------------------------------------------------------

  _start() {
    const v = this.options.view;
    if (v) this._view = typeof v === 'function' ? v(this) : v;
    const hasWindow = typeof window !== 'undefined' && typeof window.addEventListener === 'function';
    if (this._autoPageView && hasWindow && typeof location !== 'undefined' && typeof history !== 'undefined') this._watchHistory();
    if (hasWindow) {
      const online = () => {
        if (this._state === 'reconnecting') {
          this._clearTimer('reconnect');
          this._connect();
        }
      };
      window.addEventListener('online', online);
      this._cleanups.push(() => window.removeEventListener('online', online));
    }
    // Deferred, so listeners added right after connect() see 'connecting'.
    Promise.resolve().then(() => this._connect());
    return this;
  }

  /** getToken (or the static token), as a string; throws when there is none. */
  async _fetchToken() {
    let token = this._getToken ? await this._getToken() : this._token;
    if (token && typeof token === 'object') token = token.token;
    if (typeof token !== 'string' || !token) throw new Error('getToken returned no token');
    return token;
  }

  async _connect() {
    if (this._stopped) return;
    const gen = ++this._gen;
    this._ready = false;
    this._setState('connecting', { attempt: this._attempt });
    let token;
    try {
      token = await this._fetchToken();
    } catch (err) {
      if (gen !== this._gen || this._stopped) return;
      this._emit('error', { code: 'token', message: String((err && err.message) || err) });
      return this._afterClose(CLOSE.ABNORMAL, 'token unavailable');
    }
    if (gen !== this._gen || this._stopped) return;
    const exp = jwtExp(token);
    if (!this._getToken && exp !== null && exp * 1000 <= Date.now()) return this._finish(CLOSE.POLICY, 'token expired');
    this._tokenExp = exp;
    let ws;
    try {
      ws = new this._WS(wsUrl(this._base, { token, since: this._lastPos, locale: this._locale }));
    } catch (err) {
      this._emit('error', { code: 'socket', message: String((err && err.message) || err) });
      return this._afterClose(CLOSE.ABNORMAL, 'socket failed');
    }
    this._ws = ws;
    this._openedAt = 0;
    ws.onopen = () => {
      if (gen === this._gen) this._openedAt = Date.now();
    };
    ws.onmessage = (ev) => {
      if (gen === this._gen) this._onText(ev.data);
    };
    ws.onclose = (ev) => {
      if (gen === this._gen) this._onSocketClosed(ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event follows
    this._setTimer('connect', CONNECT_TIMEOUT_MS, () => {
      if (gen === this._gen && !this._ready) this._abandon('connect timeout');
    });
  }

  /** Drops the current socket without waiting for its close handshake. */
  _abandon(reason) {
    const ws = this._ws;
    this._ws = null;
    this._gen++;
    if (ws) {
      try {
        ws.close();
      } catch {
        /* ignore */
      }
    }
    this._afterClose(CLOSE.ABNORMAL, reason);
  }

  _onSocketClosed(code, reason) {
    this._ws = null;
    this._gen++;
    this._afterClose(code || CLOSE.ABNORMAL, reason || '');
  }

  _afterClose(code, reason) {
    this._ready = false;
    this._authing = null;
    for (const k of ['heartbeat', 'connect', 'refresh', 'authWait']) this._clearTimer(k);
    if (this._stopped) return;
    if (this._openedAt && Date.now() - this._openedAt >= STABLE_MS) this._attempt = 0;
    this._openedAt = 0;
    const plan = reconnectPlan(code, this._attempt, { canRefreshToken: !!this._getToken, random: this._random });
    if (!plan.reconnect) return this._finish(code, reason);
    if (plan.why !== 'restart') this._attempt++;
    this._setState('reconnecting', { code, reason, delay: plan.delay, attempt: this._attempt });
    this._setTimer('reconnect', plan.delay, () => this._connect());
  }

  /** The server refused us for good (1008 without getToken, expired token). */
  _finish(code, reason) {
    this._stopped = true;
    for (const k of Object.keys(this._timers)) if (k !== 'expiry') this._clearTimer(k);
    this._setState('closed', { code, reason });
  }

  _onText(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this._emit('error', { code: 'bad_frame', message: 'server sent invalid JSON' });
      return;
    }
    if (!frame || typeof frame !== 'object') return;
    this._pingSentAt = 0;
    this._emit('frame', { dir: 'in', frame });
    switch (frame.t) {
      case 'hello':
        return this._onHello(frame);
      case 'msg':
        return this._onMessage(frame);
      case 'retract':
        return this._onRetract(frame.id);
      case 'auth':
        return this._onAuth(frame);
      case 'error':
        if (this._authing && (frame.code === 'auth_failed' || frame.code === 'unknown_type')) this._authFailed(frame.code);
        return this._emit('error', { code: frame.code, message: frame.message });
      default:
        return; // pong, and frame types this SDK does not know yet
    }
  }

  _onHello(frame) {
    this._clearTimer('connect');
    this._ready = true;
    this._sid = frame.sid || null;
    this._user = frame.user || null;
    const hb = Number(frame.heartbeat_s);
    this._heartbeatMs = hb > 0 ? hb * 1000 : 25000;
    this._lastSentAt = Date.now();
    this._pingSentAt = 0;
    this._authFails = 0;
    // App schemes action links may open (sdk.allowed_link_schemes).
    this._linkSchemes = linkSchemes(frame.link_schemes);
    // The server's position at connect: a later resume from it recovers what
    // is published while this page is away, even before any message arrived.
    this._lastPos = nextPos(this._lastPos, frame.pos, 'hello');
    const info = { sid: this._sid, user: this._user };
    if (typeof frame.recovered === 'boolean') info.recovered = frame.recovered;
    this._setState('open', info);
    const queued = this._outbox.splice(0);
    for (const f of queued) this._send(f);
    this._startHeartbeat();
    this._scheduleRefresh();
  }

  // --- token refresh (SPEC §10.2) -------------------------------------------

  /** Arms the refresh of the session's token before its exp. */
  _scheduleRefresh(delay) {
    this._clearTimer('refresh');
    if (!this._refresh || !this._ready || this._tokenExp === null) return;
    if (delay === undefined) delay = refreshDelay(this._tokenExp * 1000 - Date.now(), this._random);
    this._setTimer('refresh', Math.min(delay, 2147483647), () => this._sendAuth());
  }

  async _sendAuth() {
    const gen = this._gen;
    let token;
    try {
      token = await this._fetchToken();
    } catch (err) {
      if (gen !== this._gen || !this._ready) return;
      this._emit('error', { code: 'token', message: String((err && err.message) || err) });
      return this._authFailed('token');
    }
    if (gen !== this._gen || !this._ready) return;
    this._authing = { exp: jwtExp(token) };
    this._setTimer('authWait', AUTH_TIMEOUT_MS, () => this._authFailed('timeout'));
    if (!this._send({ t: 'auth', token }, false)) this._authFailed('send');
  }

  _onAuth(frame) {
    if (!this._authing) return;
    this._clearTimer('authWait');
    const exp = Number(frame.exp) || this._authing.exp;
    this._authing = null;
    this._authFails = 0;
    this._tokenExp = exp || null;
    this._emit('auth', { exp: this._tokenExp });
    this._scheduleRefresh();
  }

  /**
   * The refresh failed: try again with backoff while the old token lives.
   * Once it expires the server closes with 1008 and the reconnect fetches a
   * new token. A server without the auth frame (unknown_type) is not asked again.
   */
  _authFailed(why) {
    this._clearTimer('authWait');
    this._authing = null;
    if (why === 'unknown_type') return this._clearTimer('refresh');
    const left = this._tokenExp * 1000 - Date.now();
    const delay = Math.max(1000, backoffDelay(this._authFails++, { base: 2000, cap: 60000, random: this._random }));
    if (left > delay) this._scheduleRefresh(delay);
  }

  _startHeartbeat() {
    this._clearTimer('heartbeat');
    const every = Math.max(250, Math.min(5000, this._heartbeatMs / 4));
    const tick = () => {
      if (!this._ready) return;
      const now = Date.now();
      if (this._pingSentAt && now - this._pingSentAt >= this._heartbeatMs) {
        this._abandon('heartbeat timeout');
        return;
      }
      if (!this._pingSentAt && now - this._lastSentAt >= this._heartbeatMs) {
        if (this._send({ t: 'ping' }, false)) this._pingSentAt = now;
      }
      this._setTimer('heartbeat', every, tick);
    };
    this._setTimer('heartbeat', every, tick);
  }

  /** Sends a frame now, or queues it (bounded) until the next hello. */
  _send(frame, queue = true) {
    const ws = this._ws;
    if (ws && this._ready && ws.readyState === 1) {
      try {
        ws.send(JSON.stringify(frame));
        this._lastSentAt = Date.now();
        this._emit('frame', { dir: 'out', frame });
        return true;
      } catch {
        /* fall through to the queue */
      }
    }
    if (queue) {
      this._outbox.push(frame);
      if (this._outbox.length > MAX_OUTBOX) this._outbox.shift();
    }
    return false;
  }

  // --- messages -------------------------------------------------------------

  _onMessage(msg) {
    if (typeof msg.id !== 'string' || !msg.id) return;
    this._lastPos = nextPos(this._lastPos, msg.pos, msg.reason);
    if (!this._seen.add(msg.id)) return; // replayed or redelivered
    this._emit('message', msg);
    if (!this._view || !SLOT_OF[msg.kind]) return;
    if (isExpired(msg)) return;
    if (!this._shouldShow) return this._offer(msg);
    const pending = { cancelled: false };
    this._pending.set(msg.id, pending);
    Promise.resolve()
      .then(() => this._shouldShow(msg))
      .then(
        (ok) => ok,
        (err) => {
          console.error('herald: shouldShow threw; showing the message', err);
          return true;
        },
      )
      .then((ok) => {
        this._pending.delete(msg.id);
        if (pending.cancelled || this._closed) return;
        if (ok === false) this.ack(msg.id, 'suppressed');
        else this._offer(msg);
      });
  }

  _onRetract(id) {
    if (typeof id !== 'string') return;
    this._seen.add(id); // a late replay of it must not show
    this._emit('retract', { id });
    const pending = this._pending.get(id);
    if (pending) pending.cancelled = true;
    this._apply(this._scheduler.remove(id, 'retracted'));
  }

  _offer(msg) {
    this._apply(this._scheduler.offer(msg));
  }

  _apply(effects) {
    const view = this._view;
    for (const e of effects) {
      if (!view) break;
      if (e.type === 'show') view.show(e.msg, e.slot);
      else if (e.type === 'hide') view.hide(e.msg, e.why);
    }
    if (view && view.settle) view.settle();
    if (effects.length) this._emit('change', effects);
    this._armExpiry();
  }

  _armExpiry() {
    this._clearTimer('expiry');
    const next = this._scheduler.nextExpiry();
    if (next === null) return;
    const wait = Math.min(Math.max(0, next - Date.now()), 2147483647);
    this._setTimer('expiry', wait, () => this._apply(this._scheduler.expire(Date.now())));
  }

  /** Waits (up to 1 s) for queued socket bytes to leave, so an ack survives navigation. */
  _drain() {
    return new Promise((resolve) => {
      const started = Date.now();
      const check = () => {
        const ws = this._ws;
        if (!ws || !ws.bufferedAmount || Date.now() - started > 1000) resolve();
        else setTimeout(check, 20);
      };
      check();
    });
  }

  // --- page views -----------------------------------------------------------

  _watchHistory() {
    patchHistory();
    const report = () => {
      let props;
      if (typeof this._autoPageView === 'function') props = this._autoPageView(location);
      else props = { path: location.pathname };
      if (!props) return;
      const key = JSON.stringify(props);
      if (key === this._lastPage) return;
      this._lastPage = key;
      this.track('page_view', props);
    };
    window.addEventListener(LOCATION_EVENT, report);
    window.addEventListener('popstate', report);
    this._cleanups.push(() => {
      window.removeEventListener(LOCATION_EVENT, report);
      window.removeEventListener('popstate', report);
    });
    report();
  }

  // --- plumbing -------------------------------------------------------------

  _emit(type, payload) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (err) {
        console.error(`herald: '${type}' listener threw`, err);
      }
    }
  }

  _setState(state, info = {}) {
    this._state = state;
    this._emit('state', { state, ...info });
  }

  _setTimer(name, ms, fn) {
    this._clearTimer(name);
    this._timers[name] = setTimeout(() => {
      this._timers[name] = null;
      fn();
    }, ms);
  }

  _clearTimer(name) {
    if (this._timers[name] !== null) clearTimeout(this._timers[name]);
    this._timers[name] = null;
  }
}

function defaultNavigate(href) {
  if (typeof location !== 'undefined' && location.assign) location.assign(href);
}

/** Makes pushState/replaceState observable (once per page, shared by clients). */
function patchHistory() {
  if (typeof history === 'undefined' || history[HISTORY_PATCHED]) return;
  for (const name of ['pushState', 'replaceState']) {
    const original = history[name];
    history[name] = function patched(...args) {
      const result = original.apply(this, args);
      window.dispatchEvent(new Event(LOCATION_EVENT));
      return result;
    };
  }
  history[HISTORY_PATCHED] = true;
}

/** `Herald.connect(options)` returns a connected HeraldClient; this core one draws nothing unless given a view. */
export const Herald = Object.freeze({
  connect(options) {
    return new HeraldClient(options)._start();
  },
});

export default Herald;
