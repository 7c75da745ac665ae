/**
 * Publish in-app messages to Herald, through its admin HTTP API or Redis.
 *
 * ```ts
 * import { HttpClient, Message } from '@herald/client';
 * const herald = new HttpClient({ url: 'http://127.0.0.1:9090', apiKey: process.env.HERALD_API_KEY });
 * const sent = await herald.publish(Message.toast('Payment received').toUsers('u_123'));
 * ```
 *
 * `RedisClient.connect` needs node-redis (`npm install redis`), an optional peer dependency.
 */

export { AuthError, HeraldError, InvalidMessage, NotFound, Refused, Unavailable } from './errors.js';
export { DEFAULT_API_URL, HttpClient, type HttpClientOptions } from './http.js';
export { Message, newId, type Publishable } from './message.js';
export {
  DEFAULT_REDIS_URL,
  RedisClient,
  type RedisClientOptions,
  type RedisConnectOptions,
  type RedisConnection,
} from './redis.js';
export type * from './types.js';
export { checkCampaign, checkEnvelope, MAX_ENVELOPE_BYTES } from './validation.js';
