// Herald browser SDK: one WebSocket to a Herald gateway, in-app messages
// rendered over the page, acks and events sent back. ES module, no build step,
// no dependencies. See sdk/js/README.md.
//
// The top of this file is pure (no DOM, no sockets, no timers): backoff,
// reconnect policy, dedupe LRU, the slot scheduler and URL checks. Node unit
// tests import those directly. HeraldClient below owns the socket and the DOM.

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
 * - 4008, 4029, 4000 (slow consumer, rate limited, abuse): a floor of 5 s
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
export function safeUrl(raw, origin) {
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
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
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

/** The `exp` claim (unix seconds) of a JWT, read without verifying; null if absent. */
export function jwtExp(token) {
  try {
    const part = String(token).split('.')[1];
    if (!part) return null;
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    return typeof json.exp === 'number' ? json.exp : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// The client: socket, protocol and rendering. Needs a WebSocket; rendering
// and automatic page views need a DOM.

const ACK_STATUSES = new Set(['displayed', 'clicked', 'dismissed', 'suppressed']);
const MAX_OUTBOX = 100; // frames kept while offline; the oldest go first
const STABLE_MS = 10000; // a connection up this long resets the backoff
const CONNECT_TIMEOUT_MS = 15000;
const LOCATION_EVENT = 'herald:locationchange';
const HISTORY_PATCHED = Symbol.for('herald.historyPatched');

const DEFAULT_LABELS = Object.freeze({ dismiss: 'Dismiss', ok: 'OK', message: 'Message' });

/** A connection to Herald. Create with Herald.connect(options). */
export class HeraldClient {
  constructor(options = {}) {
    const o = options;
    const hasLocation = typeof location !== 'undefined';
    this._base = o.url || (hasLocation ? location.origin : null);
    if (!this._base) throw new TypeError('herald: url is required');
    wsUrl(this._base); // throws early on a bad url
    if (!o.token && typeof o.getToken !== 'function') throw new TypeError('herald: token or getToken is required');
    this._token = o.token || null;
    this._getToken = typeof o.getToken === 'function' ? o.getToken : null;
    this._render = o.render !== false;
    this._autoPageView = o.autoPageView === undefined ? true : o.autoPageView;
    this._shouldShow = typeof o.shouldShow === 'function' ? o.shouldShow : null;
    this._locale = o.locale || null;
    this._navigate = typeof o.navigate === 'function' ? o.navigate : defaultNavigate;
    this._labels = { ...DEFAULT_LABELS, ...(o.labels || {}) };
    this._toastMs = o.toastMs === undefined ? 6000 : o.toastMs;
    this._WS = o.WebSocket || (typeof WebSocket !== 'undefined' ? WebSocket : null);
    if (!this._WS) throw new TypeError('herald: no WebSocket implementation available');
    this._random = o.random || Math.random;
    this._container = o.container || null;

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
    this._attempt = 0;
    this._openedAt = 0;
    this._lastPos = null;
    this._sid = null;
    this._user = null;
    this._heartbeatMs = 25000;
    this._lastSentAt = 0;
    this._pingSentAt = 0;
    this._timers = { reconnect: null, heartbeat: null, connect: null, expiry: null };
    this._lastPage = null;
    this._ui = null;
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

  /** Subscribes to 'message' | 'retract' | 'state' | 'error' | 'frame'; returns an unsubscribe function. */
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

  /** Takes a drawn message off screen as the user would (acked `dismissed`); a waiting one is dropped unacked. */
  dismiss(id) {
    const where = this._scheduler.find(id);
    if (!where) return false;
    if (where.state === 'shown') this.ack(id, 'dismissed');
    this._apply(this._scheduler.remove(id, 'closed'));
    return true;
  }

  /** Closes the connection for good and removes everything the SDK drew. */
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
    if (this._ui) this._ui.destroy();
    this._ui = null;
    this._setState('closed', { code: CLOSE.NORMAL, reason: 'client closed' });
  }

  // --- lifecycle ------------------------------------------------------------

  _start() {
    if (this._render && typeof document !== 'undefined') this._ui = new Renderer(this);
    if (this._autoPageView && typeof window !== 'undefined' && typeof location !== 'undefined') this._watchHistory();
    if (typeof window !== 'undefined' && window.addEventListener) {
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

  async _connect() {
    if (this._stopped) return;
    const gen = ++this._gen;
    this._ready = false;
    this._setState('connecting', { attempt: this._attempt });
    let token;
    try {
      token = this._getToken ? await this._getToken() : this._token;
      if (token && typeof token === 'object') token = token.token;
      if (typeof token !== 'string' || !token) throw new Error('getToken returned no token');
    } catch (err) {
      if (gen !== this._gen || this._stopped) return;
      this._emit('error', { code: 'token', message: String((err && err.message) || err) });
      return this._afterClose(CLOSE.ABNORMAL, 'token unavailable');
    }
    if (gen !== this._gen || this._stopped) return;
    if (!this._getToken) {
      const exp = jwtExp(token);
      if (exp !== null && exp * 1000 <= Date.now()) return this._finish(CLOSE.POLICY, 'token expired');
    }
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
    this._clearTimer('heartbeat');
    this._clearTimer('connect');
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
      case 'error':
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
    // The server's position at connect: a later resume from it recovers what
    // is published while this page is away, even before any message arrived.
    this._lastPos = nextPos(this._lastPos, frame.pos, 'hello');
    const info = { sid: this._sid, user: this._user };
    if (typeof frame.recovered === 'boolean') info.recovered = frame.recovered;
    this._setState('open', info);
    const queued = this._outbox.splice(0);
    for (const f of queued) this._send(f);
    this._startHeartbeat();
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
    if (!this._ui || msg.kind === 'custom' || !SLOT_OF[msg.kind]) return;
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
    for (const e of effects) {
      if (!this._ui) break;
      if (e.type === 'show') this._ui.show(e.msg);
      else if (e.type === 'hide') this._ui.hide(e.msg.id, e.why);
    }
    if (this._ui) this._ui.settle();
    this._armExpiry();
  }

  _armExpiry() {
    this._clearTimer('expiry');
    const next = this._scheduler.nextExpiry();
    if (next === null) return;
    const wait = Math.min(Math.max(0, next - Date.now()), 2147483647);
    this._setTimer('expiry', wait, () => this._apply(this._scheduler.expire(Date.now())));
  }

  /** Called by the renderer once a message is really visible. */
  _displayedNow(msg) {
    if (this._displayed.add(msg.id)) this.ack(msg.id, 'displayed');
  }

  _userClosed(msg) {
    this.ack(msg.id, 'dismissed');
    this._apply(this._scheduler.remove(msg.id, 'closed'));
  }

  _userClicked(msg, action) {
    this.ack(msg.id, 'clicked', action.id);
    this._apply(this._scheduler.remove(msg.id, 'clicked'));
    const href = action.url ? safeUrl(action.url, typeof location !== 'undefined' ? location.origin : null) : null;
    if (action.url && !href) console.warn('herald: ignoring unsafe action url', action.url);
    if (href) this._drain().then(() => this._navigate(href, { msg, action }));
  }

  _timedOut(msg) {
    this._apply(this._scheduler.remove(msg.id, 'timeout'));
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
  location.assign(href);
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

// ---------------------------------------------------------------------------
// Rendering. Message text goes in with textContent only; links and images
// only through safeUrl; theme values only when CSS.supports them as colors.

const STYLE_ID = 'herald-style';

const STYLESHEET = `
.herald-root{
  --_bg:var(--herald-bg,#ffffff);--_fg:var(--herald-fg,#1b1d22);--_muted:var(--herald-muted,#555d6b);
  --_accent:var(--herald-accent,#2f56d6);--_accent-fg:var(--herald-accent-fg,#ffffff);
  --_border:var(--herald-border,rgba(20,24,32,.14));--_radius:var(--herald-radius,12px);
  --_shadow:var(--herald-shadow,0 12px 32px rgba(10,14,22,.22));
  --_font:var(--herald-font,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif);
  --_backdrop:var(--herald-backdrop,rgba(12,14,20,.55));--_focus:var(--herald-focus,#2f56d6);
  --_info:var(--herald-info,#2f56d6);--_warning:var(--herald-warning,#a14a06);--_critical:var(--herald-critical,#b42318);
  --_z:var(--herald-z-index,2147483000);
}
@media (prefers-color-scheme:dark){.herald-root{
  --_bg:var(--herald-bg,#1d2027);--_fg:var(--herald-fg,#eceef3);--_muted:var(--herald-muted,#aab1be);
  --_accent:var(--herald-accent,#7d9bff);--_accent-fg:var(--herald-accent-fg,#0d1020);
  --_border:var(--herald-border,rgba(255,255,255,.16));--_shadow:var(--herald-shadow,0 12px 32px rgba(0,0,0,.55));
  --_backdrop:var(--herald-backdrop,rgba(0,0,0,.65));--_focus:var(--herald-focus,#9bb3ff);
}}
.herald-root .herald{box-sizing:border-box;font-family:var(--_font);font-size:15px;line-height:1.45;color:var(--_fg);
  animation:herald-in .16s ease-out}
.herald-root .herald *{box-sizing:border-box}
.herald-root .herald-title{font-weight:650;margin:0}
.herald-root .herald-body{margin:.2em 0 0;white-space:pre-line;color:var(--_muted)}
.herald-root .herald-image{display:block;max-width:100%;height:auto;border-radius:calc(var(--_radius) - 4px)}
.herald-root .herald-actions{display:flex;flex-wrap:wrap;gap:8px}
.herald-root .herald-action{font:inherit;font-weight:600;cursor:pointer;border-radius:8px;padding:7px 14px;
  border:1px solid var(--_border);background:transparent;color:inherit}
.herald-root .herald-action.herald-primary{background:var(--_accent);color:var(--_accent-fg);border-color:transparent}
.herald-root .herald-close{font:inherit;font-size:20px;line-height:1;cursor:pointer;border:0;background:transparent;
  color:inherit;opacity:.75;padding:4px 8px;border-radius:6px}
.herald-root .herald-close:hover{opacity:1}
.herald-root .herald button:focus-visible,.herald-root [tabindex="-1"]:focus-visible{outline:3px solid var(--_focus);outline-offset:2px}
.herald-root [tabindex="-1"]:focus{outline:none}
.herald-root .herald-banner{position:fixed;left:0;right:0;top:0;z-index:calc(var(--_z) + 1);display:flex;align-items:center;gap:12px;
  padding:10px 16px;background:var(--_accent);color:var(--_accent-fg);box-shadow:0 2px 10px rgba(0,0,0,.18)}
.herald-root .herald-banner.herald-pos-bottom{top:auto;bottom:0}
.herald-root .herald-banner .herald-content{flex:1;min-width:0}
.herald-root .herald-banner .herald-body{color:inherit;opacity:.92}
.herald-root .herald-banner .herald-image{max-height:40px;width:auto}
.herald-root .herald-banner .herald-action{border-color:currentColor;padding:4px 12px}
.herald-root .herald-banner .herald-action.herald-primary{background:var(--_accent-fg);color:var(--_accent)}
.herald-root .herald-banner.herald-sev-info{background:var(--_info);color:#fff}
.herald-root .herald-banner.herald-sev-warning{background:var(--_warning);color:#fff}
.herald-root .herald-banner.herald-sev-critical{background:var(--_critical);color:#fff}
.herald-root .herald-banner[class*=herald-sev-] .herald-action.herald-primary{background:#fff;color:#1b1d22}
.herald-root .herald-panel{background:var(--_bg);color:var(--_fg);border:1px solid var(--_border);border-radius:var(--_radius);
  box-shadow:var(--_shadow);padding:18px 20px;display:flex;flex-direction:column;gap:12px}
.herald-root .herald-head{display:flex;align-items:flex-start;gap:8px}
.herald-root .herald-head .herald-content{flex:1;min-width:0}
.herald-root .herald-head .herald-close{margin:-6px -10px 0 0}
.herald-root .herald-backdrop{position:fixed;inset:0;z-index:calc(var(--_z) + 3);background:var(--_backdrop);display:flex;
  align-items:center;justify-content:center;padding:16px}
.herald-root .herald-backdrop.herald-pos-top{align-items:flex-start;padding-top:10vh}
.herald-root .herald-backdrop.herald-pos-bottom{align-items:flex-end;padding-bottom:10vh}
.herald-root .herald-modal{width:min(480px,100%);max-height:calc(100vh - 32px);overflow:auto}
.herald-root .herald-modal .herald-title{font-size:1.2em}
.herald-root .herald-fullscreen{position:fixed;inset:0;z-index:calc(var(--_z) + 3);background:var(--_bg);color:var(--_fg);
  display:flex;align-items:center;justify-content:center;padding:32px;overflow:auto}
.herald-root .herald-fullscreen .herald-inner{width:min(640px,100%);display:flex;flex-direction:column;gap:18px;text-align:center;align-items:center}
.herald-root .herald-fullscreen .herald-title{font-size:2em;line-height:1.2}
.herald-root .herald-fullscreen .herald-body{font-size:1.1em}
.herald-root .herald-fullscreen .herald-actions{justify-content:center}
.herald-root .herald-fullscreen .herald-close{position:absolute;top:16px;right:16px;font-size:28px}
.herald-root .herald-card{position:fixed;right:16px;bottom:16px;width:min(360px,calc(100vw - 32px));z-index:calc(var(--_z) + 2)}
.herald-root .herald-card.herald-pos-top{bottom:auto;top:16px}
.herald-root .herald-card.herald-pos-center{bottom:auto;top:50%;transform:translateY(-50%)}
.herald-root .herald-toast{position:fixed;left:50%;bottom:24px;transform:translateX(-50%);width:max-content;
  max-width:min(480px,calc(100vw - 32px));z-index:calc(var(--_z) + 4);flex-direction:row;align-items:center;padding:12px 14px 12px 18px;
  background:var(--herald-toast-bg,#1f232b);color:var(--herald-toast-fg,#f3f4f7);border-color:transparent}
.herald-root .herald-toast.herald-pos-top{bottom:auto;top:24px}
.herald-root .herald-toast .herald-body{color:inherit;opacity:.85}
.herald-root .herald-toast .herald-action.herald-primary{background:var(--herald-toast-fg,#f3f4f7);color:var(--herald-toast-bg,#1f232b)}
.herald-root .herald-tooltip{position:fixed;z-index:calc(var(--_z) + 2);width:max-content;max-width:min(300px,calc(100vw - 16px));
  padding:12px 14px;gap:8px;font-size:14px}
.herald-root .herald-tooltip::before{content:"";position:absolute;left:var(--_arrow-x,50%);width:12px;height:12px;margin-left:-6px;
  background:var(--_bg);border:1px solid var(--_border);transform:rotate(45deg)}
.herald-root .herald-tooltip.herald-below::before{top:-7px;border-right:0;border-bottom:0}
.herald-root .herald-tooltip.herald-above::before{bottom:-7px;border-left:0;border-top:0}
.herald-root .herald-tooltip[hidden]{display:none}
@keyframes herald-in{from{opacity:0}to{opacity:1}}
@media (prefers-reduced-motion:reduce){.herald-root .herald{animation:none}}
`;

const FOCUSABLE = 'a[href],button:not([disabled]),input:not([disabled]),select:not([disabled]),textarea:not([disabled]),[tabindex]:not([tabindex="-1"])';

let idCounter = 0;

/** Draws the scheduler's decisions; one per client. */
class Renderer {
  constructor(client) {
    this.client = client;
    this.doc = document;
    this.root = null;
    this.entries = new Map(); // id -> {msg, el, focusEl, restore, ...}
    this.awaitingVisible = new Set();
    this.observer = null;
    this.rafPending = false;
    this.blocking = null; // {restore, overflow} while a modal or fullscreen is up
    this.onKeydown = (e) => this.keydown(e);
    this.onFocusIn = (e) => this.focusin(e);
    this.onReposition = () => this.schedulePlacement();
    this.onVisibility = () => this.visibility();
    this.doc.addEventListener('keydown', this.onKeydown, true);
    this.doc.addEventListener('focusin', this.onFocusIn, true);
    this.doc.addEventListener('visibilitychange', this.onVisibility);
    window.addEventListener('scroll', this.onReposition, { capture: true, passive: true });
    window.addEventListener('resize', this.onReposition, { passive: true });
  }

  destroy() {
    for (const id of [...this.entries.keys()]) this.hide(id, 'closed');
    this.settle();
    this.doc.removeEventListener('keydown', this.onKeydown, true);
    this.doc.removeEventListener('focusin', this.onFocusIn, true);
    this.doc.removeEventListener('visibilitychange', this.onVisibility);
    window.removeEventListener('scroll', this.onReposition, { capture: true });
    window.removeEventListener('resize', this.onReposition);
    if (this.observer) this.observer.disconnect();
    if (this.root) this.root.remove();
  }

  ensureRoot() {
    if (this.root && this.root.isConnected) return this.root;
    injectStyle(this.doc);
    const root = this.doc.createElement('div');
    root.className = 'herald-root';
    root.setAttribute('data-herald-root', '');
    (this.client._container || this.doc.body || this.doc.documentElement).appendChild(root);
    this.root = root;
    return root;
  }

  // --- building -------------------------------------------------------------

  show(msg) {
    const build = {
      banner: () => this.buildBanner(msg),
      modal: () => this.buildModal(msg),
      fullscreen: () => this.buildFullscreen(msg),
      card: () => this.buildPanel(msg, 'card'),
      toast: () => this.buildPanel(msg, 'toast'),
      tooltip: () => this.buildPanel(msg, 'tooltip'),
    }[msg.kind];
    if (!build) return;
    const entry = build();
    entry.msg = msg;
    entry.el.setAttribute('data-herald-id', msg.id);
    entry.el.setAttribute('data-herald-kind', msg.kind);
    if (msg.priority) entry.el.setAttribute('data-herald-priority', msg.priority);
    applyTheme(entry.el, msg.theme);
    this.entries.set(msg.id, entry);
    const active = this.doc.activeElement;
    const outside = active && active !== this.doc.body && !(this.root && this.root.contains(active)) ? active : null;
    if (msg.kind === 'tooltip') {
      entry.restore = outside;
      entry.anchorEl = null;
      this.ensureRoot().appendChild(entry.el);
      entry.el.hidden = true; // until its anchor is found
      this.watchAnchors();
      this.placeTooltips();
      return;
    }
    if (entry.blocking) {
      // One blocking session spans dialogs that replace each other; focus
      // goes back to what had it before the first one.
      if (!this.blocking) {
        this.blocking = { restore: outside, overflow: this.doc.documentElement.style.overflow };
        this.doc.documentElement.style.overflow = 'hidden';
      }
    } else {
      entry.restore = outside;
    }
    this.ensureRoot().appendChild(entry.el);
    if (entry.blocking) entry.focusEl.focus({ preventScroll: true });
    if (msg.kind === 'toast') this.armToastTimer(entry);
    this.visible(entry);
  }

  /** Title, body, image; ids for aria-labelledby/-describedby. */
  content(msg) {
    const n = ++idCounter;
    const wrap = this.doc.createElement('div');
    wrap.className = 'herald-content';
    const ids = {};
    if (msg.title) {
      const t = this.doc.createElement('div');
      t.className = 'herald-title';
      t.id = ids.title = `herald-${n}-title`;
      t.textContent = String(msg.title);
      wrap.appendChild(t);
    }
    if (msg.body) {
      const b = this.doc.createElement('div');
      b.className = 'herald-body';
      b.id = ids.body = `herald-${n}-body`;
      b.textContent = String(msg.body);
      wrap.appendChild(b);
    }
    return { wrap, ids };
  }

  image(msg) {
    const src = msg.image_url ? safeUrl(msg.image_url, location.origin) : null;
    if (!src) return null;
    const img = this.doc.createElement('img');
    img.className = 'herald-image';
    img.alt = '';
    img.decoding = 'async';
    img.addEventListener('error', () => img.remove()); // a broken picture is worse than none
    img.src = src;
    return img;
  }

  actions(msg) {
    const list = Array.isArray(msg.actions) ? msg.actions.slice(0, 3) : [];
    const wrap = this.doc.createElement('div');
    wrap.className = 'herald-actions';
    list.forEach((action, i) => {
      if (!action || typeof action.id !== 'string') return;
      const b = this.doc.createElement('button');
      b.type = 'button';
      b.className = i === 0 ? 'herald-action herald-primary' : 'herald-action';
      b.textContent = String(action.label ?? action.id);
      b.setAttribute('data-herald-action', action.id);
      b.addEventListener('click', () => this.client._userClicked(msg, action));
      wrap.appendChild(b);
    });
    if (!wrap.childNodes.length && msg.require_ack) {
      // A notice that must be acknowledged gets an explicit button.
      const b = this.doc.createElement('button');
      b.type = 'button';
      b.className = 'herald-action herald-primary';
      b.textContent = this.client._labels.ok;
      b.addEventListener('click', () => this.client._userClosed(msg));
      wrap.appendChild(b);
    }
    return wrap.childNodes.length ? wrap : null;
  }

  closeButton(msg) {
    if (msg.require_ack) return null;
    const b = this.doc.createElement('button');
    b.type = 'button';
    b.className = 'herald-close';
    b.setAttribute('aria-label', this.client._labels.dismiss);
    b.textContent = '\u00d7';
    b.addEventListener('click', () => this.client._userClosed(msg));
    return b;
  }

  label(el, msg, ids) {
    if (ids.title) el.setAttribute('aria-labelledby', ids.title);
    else el.setAttribute('aria-label', this.client._labels.message);
    if (ids.body) el.setAttribute('aria-describedby', ids.body);
  }

  buildBanner(msg) {
    const el = this.doc.createElement('div');
    const sev = msg.theme && typeof msg.theme.severity === 'string' ? msg.theme.severity : null;
    el.className = `herald herald-banner herald-pos-${msg.position === 'bottom' ? 'bottom' : 'top'}`;
    if (sev && /^(info|warning|critical)$/.test(sev)) el.classList.add(`herald-sev-${sev}`);
    const urgent = msg.priority === 'urgent' || sev === 'critical' || sev === 'warning';
    el.setAttribute('role', urgent ? 'alert' : 'status');
    const { wrap, ids } = this.content(msg);
    this.label(el, msg, ids);
    const img = this.image(msg);
    if (img) el.appendChild(img);
    el.appendChild(wrap);
    const acts = this.actions(msg);
    if (acts) el.appendChild(acts);
    const close = this.closeButton(msg);
    if (close) el.appendChild(close);
    return { el, focusEl: null, blocking: false };
  }

  buildModal(msg) {
    const backdrop = this.doc.createElement('div');
    backdrop.className = `herald herald-backdrop herald-pos-${msg.position || 'center'}`;
    const dialog = this.doc.createElement('div');
    dialog.className = 'herald-panel herald-modal';
    dialog.setAttribute('role', 'dialog');
    dialog.setAttribute('aria-modal', 'true');
    dialog.tabIndex = -1;
    const { wrap, ids } = this.content(msg);
    this.label(dialog, msg, ids);
    const img = this.image(msg);
    if (img) dialog.appendChild(img);
    const head = this.doc.createElement('div');
    head.className = 'herald-head';
    head.appendChild(wrap);
    const close = this.closeButton(msg);
    if (close) head.appendChild(close);
    dialog.appendChild(head);
    const acts = this.actions(msg);
    if (acts) dialog.appendChild(acts);
    backdrop.appendChild(dialog);
    backdrop.addEventListener('mousedown', (e) => {
      if (e.target === backdrop && !msg.require_ack) this.client._userClosed(msg);
    });
    return { el: backdrop, focusEl: dialog, trap: dialog, blocking: true };
  }

  buildFullscreen(msg) {
    const el = this.doc.createElement('div');
    el.className = 'herald herald-fullscreen';
    el.setAttribute('role', 'dialog');
    el.setAttribute('aria-modal', 'true');
    el.tabIndex = -1;
    const inner = this.doc.createElement('div');
    inner.className = 'herald-inner';
    const { wrap, ids } = this.content(msg);
    this.label(el, msg, ids);
    const img = this.image(msg);
    if (img) inner.appendChild(img);
    inner.appendChild(wrap);
    const acts = this.actions(msg);
    if (acts) inner.appendChild(acts);
    el.appendChild(inner);
    const close = this.closeButton(msg);
    if (close) el.appendChild(close);
    return { el, focusEl: el, trap: el, blocking: true };
  }

  /** card, toast and tooltip: a floating panel. */
  buildPanel(msg, kind) {
    const el = this.doc.createElement('div');
    el.className = `herald herald-panel herald-${kind}`;
    if (msg.position) el.classList.add(`herald-pos-${msg.position}`);
    const { wrap, ids } = this.content(msg);
    if (kind === 'toast') {
      el.setAttribute('role', msg.priority === 'urgent' ? 'alert' : 'status');
      el.setAttribute('aria-atomic', 'true');
    } else {
      el.setAttribute('role', kind === 'card' ? 'region' : 'dialog');
      this.label(el, msg, ids);
    }
    const img = this.image(msg);
    if (img) el.appendChild(img);
    const head = this.doc.createElement('div');
    head.className = 'herald-head';
    head.appendChild(wrap);
    const acts = this.actions(msg);
    if (kind === 'toast' && acts) head.appendChild(acts);
    const close = this.closeButton(msg);
    if (close) head.appendChild(close);
    el.appendChild(head);
    if (kind !== 'toast' && acts) el.appendChild(acts);
    return { el, focusEl: null, blocking: false };
  }

  // --- showing and hiding ---------------------------------------------------

  /** Acks `displayed` now, or when the tab becomes visible. */
  visible(entry) {
    if (this.doc.visibilityState === 'hidden') this.awaitingVisible.add(entry.msg.id);
    else this.client._displayedNow(entry.msg);
  }

  visibility() {
    if (this.doc.visibilityState === 'hidden') return;
    for (const id of this.awaitingVisible) {
      const entry = this.entries.get(id);
      if (entry && entry.el.isConnected && !entry.el.hidden) this.client._displayedNow(entry.msg);
    }
    this.awaitingVisible.clear();
  }

  armToastTimer(entry) {
    const ms = this.client._toastMs;
    if (!ms || entry.msg.require_ack || (Array.isArray(entry.msg.actions) && entry.msg.actions.length)) return;
    let timer = null;
    let paused = false;
    const start = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (!paused && this.entries.get(entry.msg.id) === entry) this.client._timedOut(entry.msg);
      }, ms);
    };
    const pause = () => {
      paused = true;
      clearTimeout(timer);
    };
    const resume = () => {
      if (entry.el.contains(this.doc.activeElement) || entry.el.matches(':hover')) return;
      paused = false;
      start();
    };
    entry.el.addEventListener('mouseenter', pause);
    entry.el.addEventListener('focusin', pause);
    entry.el.addEventListener('mouseleave', resume);
    entry.el.addEventListener('focusout', () => setTimeout(resume, 0));
    entry.cancelTimer = () => clearTimeout(timer);
    start();
  }

  hide(id, why) {
    const entry = this.entries.get(id);
    if (!entry) return;
    this.entries.delete(id);
    this.awaitingVisible.delete(id);
    if (entry.cancelTimer) entry.cancelTimer();
    const hadFocus = entry.el.contains(this.doc.activeElement);
    entry.el.remove();
    if (!entry.blocking && hadFocus) restoreFocus(entry.restore);
    if (![...this.entries.values()].some((e) => e.msg.kind === 'tooltip') && this.observer) {
      this.observer.disconnect();
      this.observer = null;
    }
  }

  /** After a batch of effects: if no dialog is left, give back scrolling and focus. */
  settle() {
    if (!this.blocking || this.blockingEntry()) return;
    const { restore, overflow } = this.blocking;
    this.blocking = null;
    this.doc.documentElement.style.overflow = overflow;
    const active = this.doc.activeElement;
    if (!active || active === this.doc.body || (this.root && this.root.contains(active))) restoreFocus(restore);
  }

  // --- keyboard -------------------------------------------------------------

  blockingEntry() {
    for (const e of this.entries.values()) if (e.blocking) return e;
    return null;
  }

  keydown(e) {
    const blocking = this.blockingEntry();
    if (e.key === 'Escape' || e.key === 'Esc') {
      let target = blocking;
      if (!target) {
        for (const entry of this.entries.values()) if (entry.el.contains(this.doc.activeElement)) target = entry;
      }
      if (target && !target.msg.require_ack) {
        e.preventDefault();
        e.stopPropagation();
        this.client._userClosed(target.msg);
      }
      return;
    }
    if (e.key !== 'Tab' || !blocking) return;
    const trap = blocking.trap;
    const items = [...trap.querySelectorAll(FOCUSABLE)].filter((el) => !el.hidden && el.getClientRects().length);
    e.preventDefault();
    if (!items.length) {
      trap.focus();
      return;
    }
    const active = this.doc.activeElement;
    const i = items.indexOf(active);
    let next;
    if (i < 0) next = e.shiftKey ? items[items.length - 1] : items[0];
    else next = items[(i + (e.shiftKey ? -1 : 1) + items.length) % items.length];
    next.focus();
  }

  focusin(e) {
    const blocking = this.blockingEntry();
    if (blocking && !blocking.trap.contains(e.target)) blocking.focusEl.focus({ preventScroll: true });
  }

  // --- tooltips -------------------------------------------------------------

  watchAnchors() {
    if (this.observer || typeof MutationObserver === 'undefined') return;
    this.observer = new MutationObserver((records) => {
      if (records.some((r) => !this.root || !this.root.contains(r.target))) this.schedulePlacement();
    });
    this.observer.observe(this.doc.documentElement, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: ['hidden', 'class', 'style'],
    });
  }

  schedulePlacement() {
    if (this.rafPending) return;
    if (![...this.entries.values()].some((e) => e.msg.kind === 'tooltip')) return;
    this.rafPending = true;
    const run = () => {
      this.rafPending = false;
      this.placeTooltips();
    };
    if (typeof requestAnimationFrame === 'function' && this.doc.visibilityState !== 'hidden') requestAnimationFrame(run);
    else setTimeout(run, 50);
  }

  /** Finds, follows or loses each tooltip's anchor. */
  placeTooltips() {
    for (const entry of [...this.entries.values()]) {
      if (entry.msg.kind !== 'tooltip') continue;
      let anchor = null;
      try {
        anchor = entry.msg.anchor ? this.doc.querySelector(entry.msg.anchor) : null;
      } catch {
        console.warn('herald: tooltip anchor is not a valid selector', entry.msg.anchor);
        this.client._apply(this.client._scheduler.remove(entry.msg.id, 'invalid'));
        continue;
      }
      const rect = anchor ? anchor.getBoundingClientRect() : null;
      if (!anchor || !rect || (rect.width === 0 && rect.height === 0)) {
        entry.el.hidden = true;
        entry.anchorEl = null;
        continue;
      }
      const first = entry.el.hidden;
      entry.anchorEl = anchor;
      entry.el.hidden = false;
      this.position(entry.el, rect, entry.msg.position);
      if (first) this.visible(entry);
    }
  }

  position(el, rect, pos) {
    const gap = 10;
    const vw = this.doc.documentElement.clientWidth || window.innerWidth;
    const vh = this.doc.documentElement.clientHeight || window.innerHeight;
    const w = el.offsetWidth;
    const h = el.offsetHeight;
    const below = pos === 'top' ? rect.top - h - gap < 0 : rect.bottom + gap + h <= vh || rect.top - h - gap < 0;
    const top = below ? rect.bottom + gap : rect.top - h - gap;
    const center = rect.left + rect.width / 2;
    const left = Math.max(8, Math.min(center - w / 2, vw - w - 8));
    el.style.top = `${Math.round(top)}px`;
    el.style.left = `${Math.round(left)}px`;
    el.style.setProperty('--_arrow-x', `${Math.round(Math.max(14, Math.min(w - 14, center - left)))}px`);
    el.classList.toggle('herald-below', below);
    el.classList.toggle('herald-above', !below);
  }
}

function restoreFocus(el) {
  if (el && el.isConnected && typeof el.focus === 'function' && el !== el.ownerDocument.body) {
    el.focus({ preventScroll: true });
  }
}

function injectStyle(doc) {
  if (doc.getElementById(STYLE_ID) || doc[Symbol.for('herald.style')]) return;
  if (typeof CSSStyleSheet === 'function' && 'adoptedStyleSheets' in doc) {
    try {
      // Constructed sheets also work under a CSP that forbids inline <style>.
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLESHEET);
      doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
      doc[Symbol.for('herald.style')] = sheet;
      return;
    } catch {
      /* fall back to a <style> element */
    }
  }
  const style = doc.createElement('style');
  style.id = STYLE_ID;
  style.textContent = STYLESHEET;
  (doc.head || doc.documentElement).appendChild(style);
}

/** theme.accent / background / color: colors only, set as custom properties. */
function applyTheme(el, theme) {
  const css = globalThis.CSS;
  if (!theme || typeof theme !== 'object' || !css || typeof css.supports !== 'function') return;
  const map = { accent: '--_accent', background: '--_bg', color: '--_fg' };
  for (const [key, prop] of Object.entries(map)) {
    const v = theme[key];
    if (typeof v === 'string' && css.supports('color', v)) el.style.setProperty(prop, v);
  }
}

/** Entry point: `Herald.connect(options)` returns a connected HeraldClient. */
export const Herald = Object.freeze({
  connect(options) {
    return new HeraldClient(options)._start();
  },
});

export default Herald;
