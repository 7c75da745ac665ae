/**
 * Publishing straight into the Redis that Herald nodes share (SPEC §7), with
 * node-redis. Two ways, with different guarantees:
 *
 * - `publish`: `PUBLISH` on the user channels `{prefix}:user:{id}` for
 *   audiences naming users (`SPUBLISH` on a Redis Cluster, where they are
 *   sharded), else on `{prefix}:broadcast`. At most once, to the sessions
 *   online right now; not recoverable (no resume position), `fallback` is not
 *   recorded, and a node that refuses the envelope writes it to the `dead`
 *   stream instead of answering. The replies tell who was online.
 * - `enqueue`: `XADD {prefix}:ingress * e <envelope>`, the durable path. A
 *   node consumes it, publishes it as the HTTP API would (recoverable, sticky
 *   set, `fallback`), then acknowledges it; an entry added while every node
 *   is down is published when one comes back.
 *
 * Every envelope gets an `id` here when it has none, so that every node, and
 * a redelivered ingress entry, agree on it.
 */

import { AuthError, HeraldError, Unavailable } from './errors.js';
import { Message, type Publishable, envelopeJSON, newId } from './message.js';
import type { CheckOptions, Enqueued, Envelope, Published } from './types.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** What the client needs of a node-redis client or cluster (v5 or later). */
export interface RedisConnection {
  publish(channel: string, message: string): Promise<number>;
  sPublish(channel: string, message: string): Promise<number>;
  xAdd(key: string, id: string, message: Record<string, string>): Promise<string>;
  close(): Promise<unknown>;
}

export interface RedisClientOptions extends CheckOptions {
  /** The nodes' `redis.prefix` (default `herald`). */
  prefix?: string;
  /** A Redis Cluster: user channels are `SPUBLISH`ed. Default: told by the client (node-redis clusters have `masters`). */
  cluster?: boolean;
}

export interface RedisConnectOptions extends Omit<RedisClientOptions, 'cluster'> {
  /** A Redis URL; with `cluster`, seed nodes, comma-separated. */
  url?: string;
  cluster?: boolean;
  /** More options for node-redis's `createClient` (or `createCluster`'s `defaults`). */
  redis?: Record<string, unknown>;
}

function redisError(e: unknown): HeraldError {
  const message = e instanceof Error ? e.message : String(e);
  if (/^(NOAUTH|WRONGPASS|NOPERM)\b/.test(message)) return new AuthError(`Redis refused the credentials: ${message}`);
  return new Unavailable(`Redis: ${message || (e as Error).name}`, undefined, { cause: e });
}

function usersOf(to: Envelope['to']): string[] | undefined {
  return typeof to === 'object' && Array.isArray(to.users) ? [...new Set(to.users)] : undefined;
}

export class RedisClient {
  readonly redis: RedisConnection;
  readonly prefix: string;
  readonly cluster: boolean;
  readonly #check: CheckOptions;
  readonly #owned: boolean;

  /** Borrows a connected node-redis client or cluster; `close()` leaves it open. */
  constructor(redis: RedisConnection, { prefix = 'herald', cluster, ...check }: RedisClientOptions = {}, owned = false) {
    this.redis = redis;
    this.prefix = prefix;
    this.cluster = cluster ?? 'masters' in redis;
    this.#check = check;
    this.#owned = owned;
  }

  /**
   * Connects its own node-redis client (or cluster) and owns it. The first
   * connection fails fast (`Unavailable`); later drops reconnect with backoff,
   * and commands issued meanwhile are refused rather than queued.
   */
  static async connect({ url = DEFAULT_REDIS_URL, cluster = false, redis = {}, ...options }: RedisConnectOptions = {}): Promise<RedisClient> {
    let nodeRedis: typeof import('redis');
    try {
      nodeRedis = await import('redis');
    } catch (e) {
      throw new Error(`RedisClient.connect needs node-redis: npm install redis (${(e as Error).message})`);
    }
    let connected = false;
    const defaults = {
      disableOfflineQueue: true,
      socket: {
        connectTimeout: 5000,
        reconnectStrategy: (retries: number, cause: Error) => (connected ? Math.min(50 * 2 ** retries, 5000) : retries >= 2 ? cause : 100),
      },
      ...redis,
    };
    const client = cluster
      ? nodeRedis.createCluster({ rootNodes: url.split(',').map((u) => ({ url: u.trim() })), defaults })
      : nodeRedis.createClient({ url, ...defaults });
    // Errors surface as rejected commands; without a listener node-redis would crash the process.
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (e) {
      throw redisError(e);
    }
    connected = true;
    return new RedisClient(client as unknown as RedisConnection, { ...options, cluster }, true);
  }

  #envelope(message: Publishable): { id: string; payload: string; to: Envelope['to'] } {
    const fields = message instanceof Message ? message.toJSON() : { ...message };
    fields.id ??= newId();
    return { id: fields.id, payload: envelopeJSON(fields, this.#check), to: fields.to };
  }

  /** Plain `PUBLISH`/`SPUBLISH`: at most once, not recoverable. */
  async publish(message: Publishable): Promise<Published> {
    const { id, payload, to } = this.#envelope(message);
    const users = usersOf(to);
    try {
      if (users) {
        // Issued in one tick, node-redis pipelines them (per slot on a cluster).
        const counts = await Promise.all(
          users.map((u) => {
            const channel = `${this.prefix}:user:${u}`;
            return this.cluster ? this.redis.sPublish(channel, payload) : this.redis.publish(channel, payload);
          }),
        );
        const online = users.filter((_, i) => counts[i]! > 0);
        return { id, online, offline: users.filter((_, i) => counts[i] === 0) };
      }
      const nodes = await this.redis.publish(`${this.prefix}:broadcast`, payload);
      return this.cluster ? { id } : { id, nodes };
    } catch (e) {
      throw redisError(e);
    }
  }

  /** `XADD` to the ingress stream: durable and recoverable. */
  async enqueue(message: Publishable): Promise<Enqueued> {
    const { id, payload } = this.#envelope(message);
    try {
      return { id, entry: await this.redis.xAdd(`${this.prefix}:ingress`, '*', { e: payload }) };
    } catch (e) {
      throw redisError(e);
    }
  }

  /** Retracts through the ingress stream, so the node also takes it out of the sticky set and the history. */
  retract(id: string): Promise<Enqueued> {
    return this.enqueue({ op: 'retract', id });
  }

  /** Closes the connection if `connect` made it. */
  async close(): Promise<void> {
    if (this.#owned) await this.redis.close();
  }
}
