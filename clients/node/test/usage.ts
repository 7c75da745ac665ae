// Type-checked, never run (`npm run typecheck`): the package's types as a
// TypeScript user meets them, through the published entry point.

import { createClient, createCluster } from 'redis';
import {
  type Envelope,
  HeraldError,
  HttpClient,
  InvalidMessage,
  Message,
  type Presence,
  type Published,
  RedisClient,
  Refused,
} from '@herald/client';

export async function usage(): Promise<void> {
  const herald = new HttpClient({ url: 'http://127.0.0.1:9090', apiKey: 'k' });
  const sent: Published = await herald.publish(Message.toast('Payment received').toUsers('u_123').ttl(60));
  const online: string[] | undefined = sent.online;
  const raw: Envelope = { to: { users: ['u_1'] }, kind: 'card', title: 'Hi', actions: [{ id: 'ok', label: 'OK' }] };
  await herald.publish(raw);
  const presence: Presence = await herald.presence('u_123');
  await herald.putCampaign({ id: 'c', trigger: { connect: true }, message: { kind: 'toast', title: 'Hi' } });

  // A borrowed node-redis client or cluster fits RedisClient as it is.
  const client = await createClient().connect();
  const viaRedis = new RedisClient(client, { prefix: 'herald' });
  await viaRedis.publish(Message.banner('Degraded').toAll());
  const cluster = await createCluster({ rootNodes: [{ url: 'redis://127.0.0.1:7000' }] }).connect();
  const { entry } = await new RedisClient(cluster).enqueue(raw);
  const owned = await RedisClient.connect({ url: 'redis://127.0.0.1:6379' });
  await owned.retract(sent.id);

  try {
    Message.banner().toAll().validate();
  } catch (e) {
    if (e instanceof InvalidMessage) console.log(e.field, e.reason);
    else if (e instanceof Refused) console.log(e.status, e.field);
    else if (e instanceof HeraldError) throw e;
  }
  // @ts-expect-error: kinds are checked at compile time too
  await herald.publish({ to: 'all', kind: 'popup', title: 'x' });
  console.log(online, presence.sessions, entry);
}
