// The conformance kit (docs/PROTOCOL.md): drives a Herald client through
// its stdio adapter against a real node and a real Redis, with a recording
// proxy in between, and checks what every client must do: the handshake,
// acks, resume without loss or repeats, token refresh over the open
// socket, backing off on 4029 and 1013, reconnecting at once on 1012, and
// stopping on 1008.
//
//   node --test --test-concurrency=1 conformance/      (the JS core)
//   HERALD_CONFORMANCE_CLIENT="./my-harness --flag" node --test --test-concurrency=1 conformance/

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ClientUnderTest, TokenSource } from './kit/client.mjs';
import { Environment, until } from './kit/environment.mjs';
import { Proxy } from './kit/proxy.mjs';

/** The least a client must wait before reconnecting after 4029 or 1013 (PROTOCOL.md says 5 s is recommended). */
const THROTTLED_FLOOR_MS = 1000;

let env;
let tokens;
const cleanup = [];
before(async () => {
  env = await new Environment().start();
  tokens = await new TokenSource((sub, ttl) => env.token(sub, ttl)).start();
});
after(async () => {
  for (const f of cleanup.splice(0)) await f();
  await tokens?.stop();
  await env?.stop();
});

let n = 0;
const uniqueUser = (p) => `${p}-${process.pid}-${++n}`;

/** A fresh proxy and client process; both are ended after the run. */
async function setup() {
  const proxy = await new Proxy(env.base).start();
  const client = new ClientUnderTest();
  cleanup.push(() => client.close(), () => proxy.stop());
  return { proxy, client };
}

/** Connects `user` through the proxy with a token source, and waits for hello. */
async function connected(proxy, client, user, { ttl = 3600, staticToken = false } = {}) {
  const auth = staticToken ? { token: env.token(user, ttl) } : { token_url: tokens.url(user, ttl) };
  client.connect(proxy.base, auth);
  await client.waitState('open');
  await until('hello through the proxy', () => proxy.current?.receivedOf('hello').length);
  return proxy.current;
}

test('handshake: one connection to /v1/ws with a valid token, hello first, state open', async () => {
  const { proxy, client } = await setup();
  const user = uniqueUser('hello');
  const conn = await connected(proxy, client, user, { staticToken: true });
  assert.equal(proxy.attempts.length, 1, 'one connection');
  const first = proxy.attempts[0];
  assert.equal(first.url.pathname, '/v1/ws');
  assert.ok(first.token, 'a token in ?token= or Authorization: Bearer');
  assert.equal(conn.received[0].t, 'hello', 'hello is the first frame');
  assert.equal(conn.received[0].user, user);
});

test('messages reach the app once; acks are sent as the app makes them, also those made offline', async () => {
  const { proxy, client } = await setup();
  const user = uniqueUser('ack');
  const conn = await connected(proxy, client, user);
  const id = await env.publish({ to: { users: [user] }, kind: 'modal', title: 'Hi', actions: [{ id: 'go', label: 'Go' }] });
  const msg = await client.waitMessage(id);
  assert.equal(msg.title, 'Hi');
  client.ack(id, 'displayed');
  client.ack(id, 'clicked', 'go');
  await until('the acks on the socket', () => conn.sentOf('ack').length >= 2);
  assert.deepEqual(
    conn.sentOf('ack').map((a) => [a.id, a.status, a.action]),
    [[id, 'displayed', undefined], [id, 'clicked', 'go']],
  );
  const recorded = await until('the node to record the click', async () =>
    (await env.events((r) => r.msg === id && r.user === user && r.type === 'clicked'))[0]);
  assert.equal(recorded.action, 'go');

  // Offline: the ack waits for the next connection, after its hello.
  const other = await env.publish({ to: { users: [user] }, kind: 'toast', title: 'Later' });
  await client.waitMessage(other);
  proxy.refusing = true;
  conn.kill();
  await until('the client to notice the drop', () => client.state !== 'open');
  client.ack(other, 'dismissed');
  proxy.refusing = false;
  await until('a new connection', () => proxy.current && proxy.current !== conn && proxy.current.receivedOf('hello').length);
  const next = proxy.current;
  await until('the offline ack on the new socket', () => next.sentOf('ack').some((a) => a.id === other && a.status === 'dismissed'));
  assert.equal(next.received[0].t, 'hello');
});

test('resume: after a drop, reconnects with since = the last pos, and what was missed arrives once, nothing twice', async () => {
  const { proxy, client } = await setup();
  const user = uniqueUser('resume');
  const to = { users: [user] };
  const conn = await connected(proxy, client, user);
  const m1 = await env.publish({ to, kind: 'toast', title: 'one' });
  await client.waitMessage(m1);
  const lastPos = conn.receivedOf('msg').find((f) => f.id === m1).pos;
  assert.ok(lastPos, 'the node gave a resume position');

  // The network goes away and the node is unreachable for a while.
  proxy.refusing = true;
  conn.kill();
  await until('the client to notice the drop', () => client.state !== 'open');
  const m2 = await env.publish({ to, kind: 'toast', title: 'two' });
  const m3 = await env.publish({ to, kind: 'toast', title: 'three' });
  proxy.refusing = false;

  await until('a new connection with hello', () => proxy.current !== conn && proxy.current?.receivedOf('hello').length);
  const again = proxy.current;
  const attempt = proxy.attempts.findLast((a) => a.conn === again);
  assert.equal(attempt.url.searchParams.get('since'), lastPos, 'since is the last pos received');
  assert.equal(again.receivedOf('hello')[0].recovered, true);
  await client.waitMessage(m2);
  await client.waitMessage(m3);

  // A repeat on the wire (a frame seen before) is not handed to the app again.
  again.inject(conn.receivedOf('msg').find((f) => f.id === m1));
  const m4 = await env.publish({ to, kind: 'toast', title: 'four' });
  await client.waitMessage(m4);
  const ids = client.messages().map((m) => m.id);
  assert.deepEqual(ids, [m1, m2, m3, m4], 'no loss, no repeat, in order');
});

test('token refresh: a short-lived token is refreshed over the open socket, which outlives it', async () => {
  const { proxy, client } = await setup();
  const user = uniqueUser('refresh');
  const ttl = 6;
  const conn = await connected(proxy, client, user, { ttl });
  const firstExp = Math.floor(Date.now() / 1000) + ttl;
  await until('an auth frame with a new token', () => conn.sentOf('auth').length, { timeout: ttl * 1000 });
  const auth = conn.sentOf('auth')[0];
  assert.notEqual(auth.token, proxy.attempts[0].token, 'a new token, not the same one');
  await until("the node's answer", () => conn.receivedOf('auth').length);
  assert.ok(conn.receivedOf('auth')[0].exp > firstExp - 1);
  // Past the first token's expiry (the node would close with 1008 at it).
  await until('the first token to have expired', () => Date.now() > (firstExp + 1) * 1000, { timeout: (ttl + 5) * 1000 });
  assert.ok(conn.open, `the socket is still open: ${JSON.stringify(conn.closed)}`);
  assert.equal(proxy.attempts.length, 1, 'no reconnect was needed');
  const id = await env.publish({ to: { users: [user] }, kind: 'toast', title: 'still here' });
  await client.waitMessage(id);
});

for (const [code, reason] of [[4029, 'rate limited'], [1013, 'try again later']]) {
  test(`${code}: backs off at least ${THROTTLED_FLOOR_MS} ms before reconnecting, then reconnects`, async () => {
    const { proxy, client } = await setup();
    const user = uniqueUser(`throttled-${code}`);
    const conn = await connected(proxy, client, user);
    const closedAt = Date.now();
    conn.closeWith(code, reason);
    await until('the reconnection', () => proxy.attempts.length >= 2, { timeout: 130000 });
    const waited = proxy.attempts[1].at - closedAt;
    assert.ok(waited >= THROTTLED_FLOOR_MS, `reconnected ${waited} ms after ${code}`);
    await client.waitState('open', 'open again');
  });
}

test('1012: reconnects (the node is draining), with since', async () => {
  const { proxy, client } = await setup();
  const user = uniqueUser('restart');
  const conn = await connected(proxy, client, user);
  conn.closeWith(1012, 'node draining: reconnect elsewhere');
  await until('the reconnection', () => proxy.attempts.length >= 2 && proxy.current !== conn && proxy.current?.receivedOf('hello').length);
  assert.ok(proxy.attempts[1].url.searchParams.get('since'), 'resumes from where it was');
});

test('1008: a client with a fixed token stops for good; one with a token source only ever comes back with a new token', async () => {
  const { proxy, client } = await setup();
  const user = uniqueUser('policy');
  await connected(proxy, client, user, { staticToken: true });
  // The same user on a second client, with a token source: the positive
  // control that the proxy and node take reconnections.
  const sourced = await setup();
  const control = await connected(sourced.proxy, sourced.client, user);
  const controlToken = sourced.proxy.attempts[0].token;

  await env.disconnect(user); // the node closes every session of the user with 1008
  await client.waitState('closed', 'closed for good');
  assert.equal(client.states().at(-1).code, 1008);
  await until('the control client to be dropped too', () => !control.open);
  // Either it stays closed, or it comes back, never with the token the node dropped.
  await until('the control client to settle', () =>
    sourced.client.state === 'closed' || (sourced.proxy.attempts.length >= 2 && sourced.client.state === 'open'));
  for (const a of sourced.proxy.attempts.slice(1)) assert.notEqual(a.token, controlToken, 'never the same token again');
  // The fixed-token client made no attempt while the control settled.
  assert.equal(proxy.attempts.length, 1, 'no reconnection after 1008 with a fixed token');
});
