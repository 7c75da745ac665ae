// The Redis transport against a node started with --redis on a redis-server
// of its own: what the node delivers of what the library PUBLISHed and XADDed.

import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { createClient } from 'redis';
import { InvalidMessage, Message, RedisClient, Unavailable } from '@herald/client';
import { Herald, RedisServer, freePort, unique, until } from './support.mjs';

let server;
let node;
let publisher;
before(async () => {
  server = await RedisServer.start();
  node = await Herald.start({ redis: server.url });
  publisher = await RedisClient.connect({ url: server.url });
});
afterEach(() => node.closeSessions());
after(async () => {
  await publisher?.close();
  await node?.stop();
  await server?.stop();
});

async function rejects(promise, type) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e?.stack ?? e}`);
    return e;
  }
  assert.fail(`expected ${type.name}, but it resolved`);
}

/** The positive control after a "nothing arrives": the next frame is a message published now. */
async function expectControl(session, user, via = publisher) {
  const sent = await via.publish(Message.toast('Control').toUsers(user));
  const f = await session.recvMsg();
  assert.deepEqual([f.id, f.title], [sent.id, 'Control']);
}

test('publish to users goes to their channels and says who is online', async () => {
  const [alice, bob] = [unique('alice'), unique('bob')];
  const session = await node.connect(alice);
  const sent = await publisher.publish(Message.card('Transfer sent').toUsers(alice, bob));
  const f = await session.recvMsg();
  assert.deepEqual([f.id, f.title, f.reason], [sent.id, 'Transfer sent', 'push']);
  assert.equal(f.pos, undefined, 'a plain PUBLISH is not recoverable');
  assert.deepEqual([sent.online, sent.offline], [[alice], [bob]]);
  assert.equal(sent.id.length, 26, 'the library gives it a ULID');
});

test('publish a broadcast: everyone', async () => {
  const session = await node.connect(unique());
  const sent = await publisher.publish(Message.banner('Payments degraded').toAll().theme({ severity: 'critical' }));
  const f = await session.recvMsg();
  assert.deepEqual([f.id, f.title, f.theme], [sent.id, 'Payments degraded', { severity: 'critical' }]);
  assert.deepEqual([sent.nodes, sent.online], [1, undefined]);
});

test('enqueue: published by the node, recoverable', async () => {
  const user = unique();
  const session = await node.connect(user);
  const queued = await publisher.enqueue(Message.toast('Export ready').toUsers(user).id(unique('export')));
  assert.ok(queued.entry && queued.id.startsWith('export-'));
  const f = await session.recvMsg();
  assert.deepEqual([f.id, f.title], [queued.id, 'Export ready']);
  assert.ok(f.pos, 'messages from the ingress stream carry a resume position');
});

test('resume recovers what was enqueued, not what was published', async () => {
  const user = unique();
  const first = await node.connect(user);
  const since = first.hello.pos;
  first.close();
  await until('the node to see the user leave', async () => Object.keys(await server.command('HGETALL', `herald:presence:${user}`)).length === 0);

  const lost = await publisher.publish(Message.toast('Published while away').toUsers(user));
  assert.deepEqual(lost.offline, [user]);
  const kept = await publisher.enqueue(Message.toast('Enqueued while away').toUsers(user));
  await until('the node to consume the ingress entry', async () => (await server.command('XLEN', 'herald:ingress')) === 0);

  const back = await node.connect(user, since);
  assert.equal(back.hello.recovered, true, JSON.stringify(back.hello));
  const f = await back.recvMsg();
  assert.deepEqual([f.id, f.reason], [kept.id, 'replay']);
  await expectControl(back, user); // and the published one never comes
});

test('retract goes through the ingress stream', async () => {
  const user = unique();
  const session = await node.connect(user);
  const queued = await publisher.enqueue(Message.banner('Terms updated').toUsers(user).sticky().ttl(300));
  assert.equal((await session.recvMsg()).id, queued.id);
  await publisher.retract(queued.id);
  assert.deepEqual(await session.recv(), { t: 'retract', id: queued.id });
  // Retracted by the node: out of the sticky set, so a new session gets nothing.
  await expectControl(await node.connect(user), user);
});

test('the builder refuses before anything reaches Redis', async () => {
  const user = unique();
  const session = await node.connect(user);
  const deadBefore = await server.command('XLEN', 'herald:dead');
  let e = await rejects(publisher.publish(Message.toast('No audience')), InvalidMessage);
  assert.equal(e.field, 'to');
  e = await rejects(publisher.enqueue({ to: { users: [user] }, kind: 'toast', title: 'x', ttl_s: 0 }), InvalidMessage);
  assert.equal(e.field, 'ttl_s');
  await expectControl(session, user);
  assert.equal(await server.command('XLEN', 'herald:dead'), deadBefore);
  assert.equal(await server.command('XLEN', 'herald:ingress'), 0);
});

test('unchecked, a refused envelope lands in the dead stream', async () => {
  const session = await node.connect(unique());
  const unchecked = new RedisClient(publisher.redis, { validate: false });
  const bad = await unchecked.publish({ to: 'all', kind: 'toast', title: 'x', titel: 'typo' });
  const record = await until('the refusal in the dead stream', async () => {
    const entries = await server.command('XREVRANGE', 'herald:dead', '+', '-', 'COUNT', '50');
    const records = entries.map(([, fields]) => Object.fromEntries(fields.reduce((kv, v, i) => (i % 2 ? kv.at(-1).push(v) : kv.push([v]), kv), [])));
    return records.find((r) => r.envelope?.includes(bad.id));
  });
  assert.match(record.reason, /^titel: unknown field/);
  const control = await unchecked.publish(Message.toast('Control').toAll());
  assert.equal((await session.recvMsg()).id, control.id); // the refused one never came
});

test('the prefix names the deployment', async () => {
  const other = await Herald.start({ redis: server.url, env: { HERALD_REDIS__PREFIX: 'acme' } });
  const acme = await RedisClient.connect({ url: server.url, prefix: 'acme' });
  try {
    const user = unique();
    const session = await other.connect(user);
    assert.deepEqual((await publisher.publish(Message.toast('Wrong prefix').toUsers(user))).offline, [user]);
    const sent = await acme.publish(Message.toast('Right prefix').toUsers(user));
    assert.deepEqual(sent.online, [user]);
    assert.equal((await session.recvMsg()).id, sent.id); // the next frame: the other never came
    const queued = await acme.enqueue(Message.toast('Durable').toUsers(user));
    assert.equal((await session.recvMsg()).id, queued.id);
  } finally {
    await acme.close();
    await other.stop();
  }
});

test('a borrowed node-redis client stays open', async () => {
  const user = unique();
  const session = await node.connect(user);
  const mine = await createClient({ url: server.url }).connect();
  const herald = new RedisClient(mine);
  await herald.publish(Message.toast('Borrowed').toUsers(user));
  await herald.close();
  assert.equal(await mine.ping(), 'PONG');
  assert.equal((await session.recvMsg()).title, 'Borrowed');
  mine.destroy();
});

test('an unreachable Redis is Unavailable, at connect and after', async () => {
  const e = await rejects(RedisClient.connect({ url: `redis://127.0.0.1:${await freePort()}` }), Unavailable);
  assert.match(e.message, /Redis/);

  const doomed = await RedisServer.start();
  const herald = await RedisClient.connect({ url: doomed.url });
  assert.equal((await herald.publish(Message.toast('Before').toAll())).nodes, 0);
  await doomed.stop();
  await rejects(herald.publish(Message.toast('After').toAll()), Unavailable);
  await rejects(herald.enqueue(Message.toast('After').toAll()), Unavailable);
  await herald.close();
});
