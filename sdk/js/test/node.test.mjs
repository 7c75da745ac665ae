// The core in Node >= 20 against a real Herald node (spawned, embedded, dev
// mode), with the ws package as its WebSocket: what an app with no DOM (a
// worker, a server-side agent, React Native) gets from the core alone.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Herald, jwtExp } from '../herald-core.js';
import { HeraldNode, recordingWebSocket, uniqueUser, until } from '../test-helpers/herald-node.mjs';

let node;
const clients = [];
before(async () => {
  node = await new HeraldNode().start();
});
after(async () => {
  for (const c of clients) c.close();
  await node?.stop();
});

/** A core client for `user`, getToken minting from the node's /dev/token. */
function connect(user, options = {}, tokenQuery = {}) {
  const rec = recordingWebSocket();
  const tokens = [];
  const client = Herald.connect({
    url: node.base,
    WebSocket: rec.WebSocket,
    getToken: async () => {
      if (options.gate) await options.gate();
      const t = await node.token(user, tokenQuery);
      tokens.push(t);
      return t;
    },
    ...options,
  });
  clients.push(client);
  const seen = [];
  const states = [];
  client.on('message', (m) => seen.push(m));
  client.on('state', (s) => states.push(s));
  const opened = () => until(`${user} to be open`, () => client.state === 'open');
  return { client, rec, seen, states, tokens, opened };
}

/** A view as a UI toolkit would write one: it records what the core asks it to show and hide. */
function listView() {
  const view = { shown: new Map(), log: [] };
  view.show = (msg, slot) => {
    view.shown.set(msg.id, slot);
    view.log.push(`show:${msg.id}`);
  };
  view.hide = (msg, why) => {
    view.shown.delete(msg.id);
    view.log.push(`hide:${msg.id}:${why}`);
  };
  return view;
}

test('in Node with the ws package: hello, a published message, acks recorded by the server', async () => {
  const user = uniqueUser();
  const { client, rec, seen, opened } = connect(user);
  await opened();
  assert.equal(client.user, user);
  assert.equal(rec.sockets.length, 1);
  const id = await node.publish({ to: { users: [user] }, kind: 'custom', data: { widget: 'confetti' } });
  const msg = await until('the message', () => seen.find((m) => m.id === id));
  assert.deepEqual(msg.data, { widget: 'confetti' });
  assert.equal(msg.reason, 'push');
  client.ack(id, 'displayed');
  client.ack(id, 'clicked', 'open');
  const clicked = await node.waitEvent('the clicked ack', (r) => r.type === 'clicked' && r.msg === id && r.user === user);
  assert.equal(clicked.action, 'open');
  assert.ok((await node.events((r) => r.msg === id)).some((r) => r.type === 'displayed'));
});

test('a page_view event triggers a campaign', async () => {
  const user = uniqueUser('campaign');
  const campaign = `pricing-${user}`;
  await node.api('PUT', `/v1/campaigns/${campaign}`, {
    trigger: { event: 'page_view', where: 'props.path == "/pricing"' },
    audience: { where: `user == "${user}"` },
    message: { kind: 'card', title: 'Questions about plans?' },
  });
  try {
    const { client, seen, rec, opened } = connect(user);
    await opened();
    client.track('page_view', { path: '/pricing' });
    const msg = await until('the campaign message', () => seen.find((m) => m.campaign === campaign));
    assert.equal(msg.reason, 'trigger');
    assert.ok(rec.last().sent.some((f) => f.t === 'event' && f.name === 'page_view' && f.props.path === '/pricing'));
  } finally {
    await node.api('DELETE', `/v1/campaigns/${campaign}`);
  }
});

test('dropped by the node: reconnects with a fresh token and since, the missed message is replayed once, acks made offline are sent after hello', async () => {
  const user = uniqueUser('resume');
  const to = { users: [user] };
  let hold = null;
  const gate = () => hold && hold.promise;
  const { client, rec, seen, tokens, states, opened } = connect(user, { gate });
  await opened();
  const first = await node.publish({ to, kind: 'custom', data: { n: 1 } });
  await until('the first message', () => seen.find((m) => m.id === first));
  const pos = client.lastPos;
  assert.ok(pos, 'holds a resume position');

  let release;
  hold = { promise: new Promise((r) => (release = r)) };
  await node.disconnect(user);
  await until('the SDK to be between sockets', () => client.state !== 'open' && tokens.length === 1);
  const missed = await node.publish({ to, kind: 'custom', data: { n: 2 } });
  client.ack(first, 'dismissed'); // offline: queued
  assert.ok(!rec.sockets[0].sent.some((f) => f.t === 'ack' && f.status === 'dismissed'), 'not sent on the closed socket');
  hold = null;
  release();
  await opened();
  const second = rec.last();
  assert.notEqual(second, rec.sockets[0]);
  assert.equal(second.url.searchParams.get('since'), pos);
  assert.equal(tokens.length, 2, 'getToken was asked again');
  assert.equal(second.url.searchParams.get('token'), tokens[1], 'with the token getToken gave');
  assert.ok(states.some((s) => s.state === 'reconnecting' && s.code === 1008));
  const replayed = await until('the replay', () => seen.find((m) => m.id === missed));
  assert.equal(replayed.reason, 'replay');
  await node.waitEvent('the queued dismissal', (r) => r.type === 'dismissed' && r.msg === first && r.user === user);
  // Positive control for "once": a later message arrives, and each id reached the app once.
  const control = await node.publish({ to, kind: 'custom', data: { n: 3 } });
  await until('the control', () => seen.find((m) => m.id === control));
  assert.deepEqual(seen.map((m) => m.id), [first, missed, control]);
});

test('a view without a DOM: one message per slot, priority queue, collapse_key, retract and expiry, acks from the view', async () => {
  const user = uniqueUser('view');
  const to = { users: [user] };
  const view = listView();
  const { client, rec, seen, opened } = connect(user, { view });
  await opened();
  const stay = [{ id: 'ok', label: 'OK' }];
  const a = await node.publish({ to, kind: 'toast', title: 'a', actions: stay });
  await until('a shown', () => view.shown.has(a));
  const b = await node.publish({ to, kind: 'toast', title: 'b', priority: 'high', actions: stay });
  const c = await node.publish({ to, kind: 'toast', title: 'c', actions: stay });
  await until('c received', () => seen.find((m) => m.id === c));
  assert.deepEqual([...view.shown.keys()], [a], 'the toast slot holds one; b and c wait');
  client.displayed(a);
  client.displayed(a);
  assert.ok(client.click(a, 'ok'));
  await until('b shown (high first)', () => view.shown.has(b));
  await node.retract(b);
  await until('c shown after the retraction', () => view.shown.has(c));
  assert.ok(view.log.includes(`hide:${b}:retracted`));
  assert.ok(client.dismiss(c));

  const v1 = await node.publish({ to, kind: 'banner', title: 'Investigating', collapse_key: `incident-${user}` });
  await until('v1 shown', () => view.shown.has(v1));
  const v2 = await node.publish({ to, kind: 'banner', title: 'Resolved', collapse_key: `incident-${user}`, ttl_s: 1 });
  await until('v2 replaces v1', () => view.shown.has(v2) && !view.shown.has(v1));
  await until('v2 expires', () => view.log.includes(`hide:${v2}:expired`), { timeout: 5000 });

  const acks = rec.last().sent.filter((f) => f.t === 'ack').map((f) => `${f.id === a ? 'a' : f.id === c ? 'c' : f.id}:${f.status}`);
  assert.deepEqual(acks, ['a:displayed', 'a:clicked', 'c:dismissed']);
  const clicked = await node.waitEvent('the click', (r) => r.type === 'clicked' && r.msg === a);
  assert.equal(clicked.action, 'ok');
  assert.equal(rec.last().sent.some((f) => f.t === 'ack' && f.id === b), false, 'a retraction is not acked');
});

// The same behaviour against a stand-in socket: client.test.mjs.
test('a dismissible: false message is not dismissed; a click acknowledges it', async () => {
  const user = uniqueUser('nodismiss');
  const to = { users: [user] };
  const view = listView();
  const { client, rec, opened } = connect(user, { view });
  await opened();
  const id = await node.publish({ to, kind: 'modal', title: 'Confirm your email', dismissible: false, actions: [{ id: 'confirm', label: 'Confirm' }] });
  await until('shown', () => view.shown.has(id));
  assert.equal(client.dismiss(id), false);
  assert.ok(view.shown.has(id), 'still shown');
  assert.ok(client.click(id, 'confirm'));
  await node.waitEvent('the click', (r) => r.type === 'clicked' && r.msg === id && r.action === 'confirm');
  assert.equal(rec.last().sent.some((f) => f.t === 'ack' && f.id === id && f.status === 'dismissed'), false);
});

// SPEC §10.2: the auth frame, against the real node.
test('token refresh: a 20 s token is renewed over the open socket (auth frame) and the session outlives it', async () => {
  const user = uniqueUser('refresh');
  const { client, rec, seen, tokens, states, opened } = connect(user, {}, { ttl: '20s' });
  const renewed = [];
  client.on('auth', (a) => renewed.push(a));
  const errors = [];
  client.on('error', (e) => errors.push(e));
  await opened();
  const firstExp = jwtExp(tokens[0]);
  assert.ok(firstExp * 1000 - Date.now() <= 20000);
  // Refreshed between 50% and 80% of its life, over the same socket.
  const auth = await until('the auth frame', () => rec.sockets[0].sent.find((f) => f.t === 'auth'), { timeout: 19000 });
  assert.equal(auth.token, tokens[1]);
  const answer = await until('the auth answer', () => rec.sockets[0].received.find((f) => f.t === 'auth'), { timeout: 5000 });
  assert.ok(answer.exp > firstExp, `the new exp ${answer.exp} is later than ${firstExp}: ${JSON.stringify(errors)}`);
  assert.deepEqual(renewed.map((a) => a.exp), [answer.exp]);
  // Past the first token's expiry: still the same socket, and it delivers.
  await until('the first token to expire', () => Date.now() > firstExp * 1000 + 1500, { timeout: 25000, every: 250 });
  const id = await node.publish({ to: { users: [user] }, kind: 'custom', data: { after: 'exp' } });
  await until('a message after the first exp', () => seen.find((m) => m.id === id));
  assert.equal(rec.sockets.length, 1, 'no reconnect');
  assert.equal(rec.sockets[0].closed, null);
  assert.deepEqual(states.map((s) => s.state), ['connecting', 'open']);
});
