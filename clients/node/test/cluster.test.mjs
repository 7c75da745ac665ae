// The Redis transport on a Redis Cluster (three masters): user channels are
// sharded there, so the library must SPUBLISH them; a node started with
// HERALD_REDIS__CLUSTER=true listens to them with SSUBSCRIBE.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Message, RedisClient } from '@herald/client';
import { Herald, RedisCluster, unique } from './support.mjs';

let cluster;
let node;
before(async () => {
  cluster = await RedisCluster.start();
  node = await Herald.start({ redis: cluster.url, env: { HERALD_REDIS__CLUSTER: 'true' } });
});
after(async () => {
  await node?.stop();
  await cluster?.stop();
});

test('user channels are SPUBLISHed, broadcasts PUBLISHed, ingress XADDed', async () => {
  // Enough users that their channels hash to different masters.
  const users = Array.from({ length: 6 }, () => unique('c'));
  const sessions = await Promise.all(users.map((u) => node.connect(u)));
  const herald = await RedisClient.connect({ url: cluster.url, cluster: true });
  try {
    assert.equal(herald.cluster, true);
    const nobody = unique('nobody');
    const sent = await herald.publish(Message.toast('Sharded').toUsers(users, [nobody]));
    assert.deepEqual([sent.online, sent.offline], [users, [nobody]]);
    for (const s of sessions) assert.equal((await s.recvMsg()).id, sent.id);

    const everyone = await herald.publish(Message.banner('Cluster-wide').toAll());
    assert.equal(everyone.nodes, undefined, "a cluster's PUBLISH reply counts one Redis node's subscribers");
    for (const s of sessions) assert.equal((await s.recvMsg()).id, everyone.id);

    const queued = await herald.enqueue(Message.toast('Durable').toUsers(users[0]));
    const f = await sessions[0].recvMsg();
    assert.deepEqual([f.id, f.title], [queued.id, 'Durable']);
    assert.ok(f.pos);
  } finally {
    await herald.close();
    node.closeSessions();
  }
});
