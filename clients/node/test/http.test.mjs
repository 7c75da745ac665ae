// The HTTP transport against a live embedded node started with an API key:
// what the node does with what the client sends, seen by real WebSocket
// sessions and through the node's own API.

import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { AuthError, HttpClient, InvalidMessage, Message, NotFound, Refused, Unavailable } from '@herald/client';
import { API_KEY, Herald, freePort, load, unique, until } from './support.mjs';

let node;
let herald;
before(async () => {
  node = await Herald.start();
  herald = new HttpClient({ url: node.api, apiKey: API_KEY });
});
afterEach(() => node.closeSessions());
after(() => node?.stop());

/** Rejects with an error of `type`; resolves to it. */
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
async function expectControl(session, user) {
  const sent = await herald.publish(Message.toast('Control').toUsers(user));
  const f = await session.recvMsg();
  assert.deepEqual([f.id, f.title], [sent.id, 'Control']);
}

test('publish to users reaches their sessions and says who was online', async () => {
  const [alice, bob] = [unique('alice'), unique('bob')];
  const session = await node.connect(alice);
  const sent = await herald.publish(Message.card('Your card was declined').toUsers(alice, bob).data({ invoice: 'inv_1' }));
  const f = await session.recvMsg();
  assert.deepEqual([f.id, f.title, f.kind, f.reason], [sent.id, 'Your card was declined', 'card', 'push']);
  assert.deepEqual(f.data, { invoice: 'inv_1' });
  assert.ok(f.pos, 'published through the API: recoverable');
  assert.deepEqual([sent.online, sent.offline], [[alice], [bob]]);
});

test('an envelope object, broadcast', async () => {
  const session = await node.connect(unique());
  const sent = await herald.publish({ to: 'all', kind: 'banner', title: 'Maintenance at noon' });
  assert.equal(sent.online, undefined);
  assert.deepEqual([(await session.recvMsg()).id], [sent.id]);
});

test('sticky is active until retracted', async () => {
  const user = unique();
  const msg = Message.banner('Payments degraded').where(`user == "${user}"`).sticky().ttl(300).id(unique('incident'));
  const sent = await herald.publish(msg);
  assert.equal(sent.id, msg.toJSON().id);
  assert.ok((await herald.active()).some((m) => m.id === sent.id));
  const late = await node.connect(user);
  const f = await late.recvMsg();
  assert.deepEqual([f.id, f.reason], [sent.id, 'sticky']);

  assert.equal(await herald.retract(sent.id), sent.id);
  assert.deepEqual(await late.recv(), { t: 'retract', id: sent.id });
  assert.ok(!(await herald.active()).some((m) => m.id === sent.id));
});

test("a node's refusal rejects with Refused and its reason", async () => {
  const user = unique();
  const session = await node.connect(user);
  const e = await rejects(herald.publish(Message.toast('Bad CEL').toUsers(user).where('attrs.plan ==')), Refused);
  assert.deepEqual([e.status, e.field], [400, 'to.where']);
  assert.match(e.reason, /^to\.where: /);
  await expectControl(session, user);
});

// Each envelope the library refuses, sent unchecked: the node refuses it too
// (400), naming the same field (or, where its parser names only "envelope"
// or the bare key, that one).
const unchecked = () => new HttpClient({ url: node.api, apiKey: API_KEY, validate: false });
for (const c of load('refusals.json')) {
  test(`the node refuses it too, naming ${c.node ?? c.field}`, async () => {
    const e = await rejects(unchecked().publish(c.envelope), Refused);
    assert.deepEqual([e.status, e.field], [400, c.node ?? c.field], e.reason);
  });
}

test('the builder refuses before sending', async () => {
  const user = unique();
  const session = await node.connect(user);
  let e = await rejects(herald.publish(Message.modal('Upgrade').toUsers(user).action('go', 'Go', 'javascript:alert(1)')), InvalidMessage);
  assert.equal(e.field, 'actions[0].url');
  e = await rejects(herald.publish({ to: { users: [user] }, kind: 'toast', titel: 'typo' }), InvalidMessage);
  assert.equal(e.field, 'titel');
  await expectControl(session, user);
});

test('the API key is required; a wrong one is an AuthError', async () => {
  const user = unique();
  const session = await node.connect(user);
  for (const apiKey of ['not-the-key', undefined]) {
    const wrong = new HttpClient({ url: node.api, apiKey });
    const e = await rejects(wrong.publish(Message.toast('Sneaky').toUsers(user)), AuthError);
    assert.equal(e.status, 401);
    assert.match(e.reason, /API key/);
  }
  await expectControl(session, user);
});

test('an unreachable node is Unavailable', async () => {
  const nowhere = new HttpClient({ url: `http://127.0.0.1:${await freePort()}`, timeoutMs: 2000 });
  const e = await rejects(nowhere.stats(), Unavailable);
  assert.match(e.message, /cannot reach Herald/);
});

test('presence, stats and disconnect', async () => {
  const user = unique();
  assert.equal((await herald.presence(user)).online, false);
  const session = await node.connect(user);
  await node.connect(user);
  const p = await until('two sessions in presence', async () => {
    const p = await herald.presence(user);
    return p.sessions === 2 && p;
  });
  assert.deepEqual([p.user, p.online], [user, true]);
  const stats = await herald.stats();
  assert.equal(stats.mode, 'embedded');
  assert.ok(stats.sessions >= 2);

  await herald.disconnect(user);
  assert.equal(await session.closed(), 1008);
  await until('no sessions left', async () => !(await herald.presence(user)).online);
});

test('campaigns: stored, listed, fired, refused, deleted', async () => {
  const [user, id] = [unique(), unique('welcome')];
  const campaign = {
    id,
    trigger: { connect: true },
    audience: { where: `user == "${user}"` },
    message: { kind: 'toast', title: 'Welcome back' },
  };
  const stored = await herald.putCampaign(campaign);
  assert.deepEqual([stored.id, stored.active], [id, true]);
  assert.equal((await herald.getCampaign(id)).message.title, 'Welcome back');
  assert.ok((await herald.campaigns()).some((c) => c.id === id));
  const f = await (await node.connect(user)).recvMsg();
  assert.deepEqual([f.title, f.reason, f.campaign], ['Welcome back', 'trigger', id]);

  const e = await rejects(herald.putCampaign({ ...campaign, trigger: { event: 'x', where: 'props.n >' } }), Refused);
  assert.deepEqual([e.status, e.field], [400, 'trigger.where']);
  const invalid = await rejects(herald.putCampaign({ ...campaign, frequency: { max: 1, until: 'forever' } }), InvalidMessage);
  assert.equal(invalid.field, 'frequency.until');

  await herald.deleteCampaign(id);
  await rejects(herald.getCampaign(id), NotFound);
  await rejects(herald.deleteCampaign(id), NotFound);
  // Deleted: a new session of the same user gets nothing on connect.
  await expectControl(await node.connect(user), user);
});

test('the events stream records the delivery', async () => {
  const user = unique();
  const session = await node.connect(user);
  const sent = await herald.publish(Message.toast('Tracked').toUsers(user));
  await session.recvMsg();
  const record = await until('the delivery in the events stream', async () =>
    (await herald.stream('events', 500)).find((r) => r.msg === sent.id && r.user === user));
  assert.equal(record.type, 'delivered');
  await rejects(herald.stream('nope'), TypeError);
});

test('fromEnv reads HERALD_API_URL and HERALD_API_KEY', async () => {
  const saved = { ...process.env };
  Object.assign(process.env, { HERALD_API_URL: node.api, HERALD_API_KEY: API_KEY });
  try {
    assert.equal((await HttpClient.fromEnv().stats()).mode, 'embedded');
  } finally {
    process.env = saved;
  }
});
