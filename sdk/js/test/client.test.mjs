// The client's protocol side, without a DOM: a fake WebSocket stands in for
// the server, timers are mocked. Rendering is covered by tests/browser.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { Herald } from '../herald.js';

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.readyState = 0;
    this.sent = [];
    this.bufferedAmount = 0;
    this.closedBy = null;
    FakeSocket.all.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000) {
    this.readyState = 3;
    this.closedBy = code;
  }
  // What the server does:
  accept(hello = {}) {
    this.readyState = 1;
    this.onopen?.({});
    this.recv({ t: 'hello', sid: 's1', user: 'u1', heartbeat_s: 25, ...hello });
  }
  recv(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop(code, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  frames(t) {
    return this.sent.filter((f) => f.t === t);
  }
}

const last = () => FakeSocket.all.at(-1);
const settle = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

let clients = [];
function connect(options) {
  const c = Herald.connect({ url: 'http://herald.test', WebSocket: FakeSocket, random: () => 0.5, ...options });
  clients.push(c);
  const states = [];
  c.on('state', (s) => states.push(s));
  return { c, states };
}

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
});

afterEach(() => {
  for (const c of clients) c.close();
  clients = [];
  mock.timers.reset();
});

test('connects to /v1/ws with the token and sends what was queued after hello', async () => {
  const { c, states } = connect({ token: 'tok', locale: 'fr' });
  c.track('purchase', { amount: 24 });
  await settle();
  const ws = last();
  assert.equal(ws.url.href, 'ws://herald.test/v1/ws?token=tok&locale=fr');
  assert.equal(ws.sent.length, 0, 'nothing before hello');
  ws.accept();
  assert.deepEqual(ws.sent, [{ t: 'event', name: 'purchase', props: { amount: 24 } }]);
  assert.equal(c.state, 'open');
  assert.equal(c.user, 'u1');
  assert.deepEqual(states.map((s) => s.state), ['connecting', 'open']);
});

test('track and ack validate their input', async () => {
  const { c } = connect({ token: 'tok' });
  assert.throws(() => c.track(''), /event name/);
  assert.throws(() => c.track('x', 'nope'), /props/);
  assert.throws(() => c.ack('m1', 'loved'), /unknown ack status/);
  assert.throws(() => c.ack('m1', 'clicked'), /action id/);
  await settle();
  last().accept();
  c.ack('m1', 'clicked', 'buy');
  c.ack('m2', 'dismissed');
  assert.deepEqual(last().frames('ack'), [
    { t: 'ack', id: 'm1', status: 'clicked', action: 'buy' },
    { t: 'ack', id: 'm2', status: 'dismissed' },
  ]);
});

test('messages reach the app once per id; retracts too', async () => {
  const { c } = connect({ token: 'tok' });
  const seen = [];
  const retracted = [];
  c.on('message', (m) => seen.push(m.id));
  c.on('retract', (r) => retracted.push(r.id));
  await settle();
  const ws = last();
  ws.accept();
  ws.recv({ t: 'msg', id: 'a', kind: 'custom', data: { x: 1 }, pos: 'p1', reason: 'push' });
  ws.recv({ t: 'msg', id: 'a', kind: 'custom', pos: 'p2', reason: 'replay' });
  ws.recv({ t: 'msg', id: 'b', kind: 'banner', title: 'hi', reason: 'push' });
  ws.recv({ t: 'retract', id: 'b' });
  ws.recv({ t: 'msg', id: 'b', kind: 'banner', title: 'hi', reason: 'sticky' });
  assert.deepEqual(seen, ['a', 'b']);
  assert.deepEqual(retracted, ['b']);
  assert.equal(c.lastPos, 'p2', 'the resume position follows every msg, even duplicates');
});

test('since is the newest pos seen, never a sticky redelivery\'s older one', async () => {
  const { c } = connect({ getToken: async () => 'tok' });
  await settle();
  const first = last();
  first.accept();
  // A fresh session gets an old sticky banner first: no position from it.
  first.recv({ t: 'msg', id: 's', kind: 'custom', pos: 'ep.100-1', reason: 'sticky' });
  assert.equal(c.lastPos, null);
  first.recv({ t: 'msg', id: 'a', kind: 'custom', pos: 'ep.300-5', reason: 'push' });
  first.drop(1006);
  mock.timers.tick(250);
  await settle();
  const second = last();
  assert.equal(second.url.searchParams.get('since'), 'ep.300-5');
  second.accept({ recovered: true });
  // Replayed, then the sticky banner and a require_ack notice sent again with their old positions.
  second.recv({ t: 'msg', id: 'b', kind: 'custom', pos: 'ep.400-6', reason: 'replay' });
  second.recv({ t: 'msg', id: 's', kind: 'custom', pos: 'ep.100-1', reason: 'sticky' });
  second.recv({ t: 'msg', id: 'r', kind: 'custom', pos: 'ep.200-3', reason: 'sticky' });
  // A live duplicate that raced the replay carries an older position.
  second.recv({ t: 'msg', id: 'a', kind: 'custom', pos: 'ep.300-5', reason: 'push' });
  assert.equal(c.lastPos, 'ep.400-6');
  second.drop(1006);
  mock.timers.tick(500); // the second failure in a row
  await settle();
  assert.notEqual(last(), second);
  assert.equal(last().url.searchParams.get('since'), 'ep.400-6');
});

test('reconnects with backoff, a fresh token and since = the last pos', async () => {
  let n = 0;
  const { c, states } = connect({ getToken: async () => `tok${++n}` });
  await settle();
  const first = last();
  first.accept();
  first.recv({ t: 'msg', id: 'a', kind: 'custom', pos: '42-0', reason: 'push' });
  first.drop(1006);
  const waiting = states.at(-1);
  assert.equal(waiting.state, 'reconnecting');
  assert.equal(waiting.delay, 250); // 0.5 * 500 ms, first attempt
  mock.timers.tick(249);
  await settle();
  assert.equal(FakeSocket.all.length, 1);
  mock.timers.tick(1);
  await settle();
  const second = last();
  assert.notEqual(second, first);
  assert.equal(second.url.searchParams.get('token'), 'tok2');
  assert.equal(second.url.searchParams.get('since'), '42-0');
  // A second failure in a row waits longer.
  second.drop(1006);
  assert.equal(states.at(-1).delay, 500);
  mock.timers.tick(500);
  await settle();
  last().accept({ recovered: true });
  assert.equal(c.state, 'open');
  assert.equal(states.at(-1).recovered, true);
});

test('a connection that was up for a while starts its backoff over', async () => {
  const { states } = connect({ token: 'tok' });
  await settle();
  last().drop(1006);
  mock.timers.tick(250);
  await settle();
  last().drop(1006);
  assert.equal(states.at(-1).delay, 500);
  mock.timers.tick(500);
  await settle();
  last().accept();
  mock.timers.tick(60_000);
  last().drop(1006);
  assert.equal(states.at(-1).delay, 250);
});

test('1012: back within a second; 4029 and 4008: after at least 5 s', async () => {
  const { states } = connect({ token: 'tok' });
  await settle();
  last().accept();
  last().drop(1012, 'node draining');
  assert.equal(states.at(-1).delay, 500);
  mock.timers.tick(500);
  await settle();
  last().accept();
  last().drop(4029, 'rate limited');
  assert.ok(states.at(-1).delay >= 5000);
  const before = FakeSocket.all.length;
  mock.timers.tick(4999);
  await settle();
  assert.equal(FakeSocket.all.length, before);
  mock.timers.tick(states.at(-1).delay);
  await settle();
  assert.equal(FakeSocket.all.length, before + 1);
  last().accept();
  last().drop(4008, 'slow consumer');
  assert.ok(states.at(-1).delay >= 5000);
});

test('1008 without getToken: stays closed', async () => {
  const { c, states } = connect({ token: 'tok' });
  await settle();
  last().accept();
  last().drop(1008, 'token expired');
  assert.equal(c.state, 'closed');
  assert.deepEqual(states.at(-1), { state: 'closed', code: 1008, reason: 'token expired' });
  mock.timers.tick(600_000);
  await settle();
  assert.equal(FakeSocket.all.length, 1);
});

test('1008 with getToken: reconnects with a new token', async () => {
  let n = 0;
  const { c } = connect({ getToken: () => `tok${++n}` });
  await settle();
  last().accept();
  last().drop(1008, 'disconnected by an operator');
  assert.equal(c.state, 'reconnecting');
  mock.timers.tick(1000);
  await settle();
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(last().url.searchParams.get('token'), 'tok2');
});

test('a failing getToken is retried with backoff', async () => {
  let calls = 0;
  const errors = [];
  const { c } = connect({
    getToken: async () => {
      if (++calls === 1) throw new Error('backend down');
      return 'tok';
    },
  });
  c.on('error', (e) => errors.push(e.code));
  await settle();
  assert.equal(FakeSocket.all.length, 0);
  assert.equal(c.state, 'reconnecting');
  assert.deepEqual(errors, ['token']);
  mock.timers.tick(250);
  await settle();
  assert.equal(FakeSocket.all.length, 1);
});

test('an expired static token is not even tried', async () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const token = `${b64({ alg: 'HS256' })}.${b64({ sub: 'u', exp: 999 })}.sig`; // Date.now() is 1_000_000 ms
  const { c } = connect({ token });
  await settle();
  assert.equal(FakeSocket.all.length, 0);
  assert.equal(c.state, 'closed');
});

test('pings when idle for heartbeat_s, and gives up on a silent server', async () => {
  const { c } = connect({ token: 'tok' });
  await settle();
  const ws = last();
  ws.accept({ heartbeat_s: 2 });
  mock.timers.tick(1500);
  c.track('feature_used', {}); // traffic resets the idle clock
  mock.timers.tick(1500);
  assert.equal(ws.frames('ping').length, 0);
  mock.timers.tick(1000);
  assert.equal(ws.frames('ping').length, 1);
  ws.recv({ t: 'pong' });
  mock.timers.tick(2000);
  assert.equal(ws.frames('ping').length, 2);
  // No answer for a whole interval: the socket is dead, reconnect.
  mock.timers.tick(2000);
  assert.equal(c.state, 'reconnecting');
  assert.equal(ws.closedBy, 1000);
});

test('a connection that never says hello is abandoned', async () => {
  const { c } = connect({ token: 'tok' });
  await settle();
  mock.timers.tick(15_000);
  assert.equal(c.state, 'reconnecting');
});

test('close() stops everything', async () => {
  const { c, states } = connect({ token: 'tok' });
  await settle();
  const ws = last();
  ws.accept();
  c.close();
  assert.equal(ws.closedBy, 1000);
  assert.equal(c.state, 'closed');
  ws.drop(1000); // the late close event changes nothing
  mock.timers.tick(600_000);
  await settle();
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(states.at(-1).state, 'closed');
});

test('the url may be ws(s) and is required outside a browser, as is a token', () => {
  assert.throws(() => Herald.connect({ token: 't', WebSocket: FakeSocket }), /url is required/);
  assert.throws(() => Herald.connect({ url: 'http://h', WebSocket: FakeSocket }), /token or getToken/);
  assert.throws(() => Herald.connect({ url: 'ftp://h', token: 't', WebSocket: FakeSocket }), /http\(s\) or ws\(s\)/);
});

// --- token refresh (SPEC §10.2) ----------------------------------------------

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
/** A JWT-shaped token for user u expiring at `exp` (unix seconds); not signed. */
const jwt = (exp, n = 0) => `${b64({ alg: 'HS256' })}.${b64({ sub: 'u1', exp, n })}.sig`;

test('refreshes the token over the open socket before it expires, and again after the answer', async () => {
  // Date.now() is 1_000_000 ms (1000 s): tokens live 100 s.
  let n = 0;
  const { c, states } = connect({ getToken: async () => jwt(Math.floor(Date.now() / 1000) + 100, ++n) });
  const renewed = [];
  c.on('auth', (a) => renewed.push(a.exp));
  await settle();
  const ws = last();
  ws.accept();
  // 100 s of life: at half of it at the earliest (60 s before exp is sooner than 80%), less up to 10% of jitter.
  mock.timers.tick(44_999);
  await settle();
  assert.equal(ws.frames('auth').length, 0, 'not yet');
  mock.timers.tick(1);
  await settle();
  assert.deepEqual(ws.frames('auth'), [{ t: 'auth', token: jwt(1145, 2) }]);
  ws.recv({ t: 'auth', exp: 1345 });
  assert.deepEqual(renewed, [1345]);
  assert.equal(c.tokenExp, 1345);
  // The next one: 300 s from now, at 80% less jitter (0.5 * 10%): 225 s.
  mock.timers.tick(224_999);
  await settle();
  assert.equal(ws.frames('auth').length, 1);
  mock.timers.tick(1);
  await settle();
  assert.equal(ws.frames('auth').length, 2);
  assert.equal(FakeSocket.all.length, 1, 'never a new socket');
  assert.deepEqual(states.map((s) => s.state), ['connecting', 'open']);
});

test('auth_failed: retried with backoff while the old token lives, then the 1008 reconnect takes over', async () => {
  let n = 0;
  const errors = [];
  const { c } = connect({ getToken: async () => jwt(1100, ++n) }); // always the same exp: 100 s from the start
  c.on('error', (e) => errors.push(e.code));
  await settle();
  const ws = last();
  ws.accept();
  mock.timers.tick(45_000);
  await settle();
  assert.equal(ws.frames('auth').length, 1);
  ws.recv({ t: 'error', code: 'auth_failed', message: 'bad token' });
  assert.deepEqual(errors, ['auth_failed']);
  mock.timers.tick(999);
  await settle();
  assert.equal(ws.frames('auth').length, 1);
  mock.timers.tick(1); // backoff: 0.5 * 2 s
  await settle();
  assert.equal(ws.frames('auth').length, 2, 'tried again');
  // No answer at all: the attempt times out after 10 s and is retried later.
  mock.timers.tick(10_000);
  await settle();
  mock.timers.tick(2_000);
  await settle();
  assert.equal(ws.frames('auth').length, 3);
  ws.recv({ t: 'error', code: 'auth_failed', message: 'bad token' });
  // The old token expires: the server closes with 1008, and the normal reconnect fetches a token.
  mock.timers.tick(60_000);
  await settle();
  last().drop(1008, 'token expired');
  assert.equal(c.state, 'reconnecting');
  mock.timers.tick(1000);
  await settle();
  assert.equal(FakeSocket.all.length, 2);
});

test('a server without the auth frame (unknown_type) is not asked again; a static token is never refreshed', async () => {
  const { c } = connect({ getToken: async () => jwt(1100) });
  await settle();
  const ws = last();
  ws.accept();
  mock.timers.tick(45_000);
  await settle();
  assert.equal(ws.frames('auth').length, 1);
  ws.recv({ t: 'error', code: 'unknown_type', message: 'unknown frame type "auth"' });
  mock.timers.tick(50_000);
  await settle();
  assert.equal(ws.frames('auth').length, 1);
  assert.equal(c.state, 'open');

  connect({ token: jwt(1100) });
  await settle();
  const other = last();
  other.accept();
  mock.timers.tick(99_000);
  await settle();
  assert.equal(other.frames('auth').length, 0, 'a static token cannot be renewed');
});

// --- a view, and dismissible: false (SPEC §10.1) -----------------------------

test('with a view: dismissible: false refuses dismiss(), a click acks it; a retract hides it without an ack', async () => {
  const log = [];
  const view = { show: (m) => log.push(`show:${m.id}`), hide: (m, why) => log.push(`hide:${m.id}:${why}`) };
  const { c } = connect({ token: 'tok', view });
  await settle();
  const ws = last();
  ws.accept();
  ws.recv({ t: 'msg', id: 'm', kind: 'modal', title: 'Confirm', dismissible: false, actions: [{ id: 'yes', label: 'Yes' }], reason: 'push' });
  ws.recv({ t: 'msg', id: 'b', kind: 'banner', title: 'Gone soon', reason: 'push' });
  assert.deepEqual(log, ['show:m', 'show:b']);
  assert.equal(c.dismiss('m'), false);
  assert.equal(c.click('m', 'yes'), true);
  ws.recv({ t: 'retract', id: 'b' });
  assert.deepEqual(log, ['show:m', 'show:b', 'hide:m:clicked', 'hide:b:retracted']);
  assert.deepEqual(ws.frames('ack'), [{ t: 'ack', id: 'm', status: 'clicked', action: 'yes' }]);
  // Positive control: an ordinary message is dismissed.
  ws.recv({ t: 'msg', id: 'd', kind: 'card', title: 'Dismiss me', reason: 'push' });
  assert.equal(c.dismiss('d'), true);
  assert.deepEqual(ws.frames('ack').at(-1), { t: 'ack', id: 'd', status: 'dismissed' });
});
