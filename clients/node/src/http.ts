/**
 * Publishing and administration through a node's admin HTTP API (global
 * `fetch`). Messages published this way carry a resume position: a client
 * that reconnects within the resume window recovers them, on any node. The
 * answer comes once the node has published (or refused) the message, with
 * who was online for audiences naming users.
 */

import { AuthError, InvalidMessage, NotFound, Refused, Unavailable } from './errors.js';
import { type Publishable, envelopeJSON } from './message.js';
import type { Campaign, CheckOptions, Envelope, Presence, Published, StreamName } from './types.js';
import { checkCampaign } from './validation.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:9090';
const STREAMS: readonly StreamName[] = ['events', 'undelivered', 'dead'];

export interface HttpClientOptions extends CheckOptions {
  /** The node's admin listener (default http://127.0.0.1:9090). */
  url?: string;
  /** Sent as `Authorization: Bearer <key>` when set. */
  apiKey?: string;
  /** Per request, in milliseconds (default 10000). */
  timeoutMs?: number;
}

const segment = encodeURIComponent;

export class HttpClient {
  readonly url: string;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #check: CheckOptions;

  constructor({ url = DEFAULT_API_URL, apiKey, timeoutMs = 10_000, ...check }: HttpClientOptions = {}) {
    this.url = url.replace(/\/+$/, '');
    this.#headers = { accept: 'application/json', 'user-agent': 'herald-client-node/0.1.0' };
    if (apiKey) this.#headers.authorization = `Bearer ${apiKey}`;
    this.#timeoutMs = timeoutMs;
    this.#check = check;
  }

  /** `HERALD_API_URL` (default http://127.0.0.1:9090) and `HERALD_API_KEY`, as the CLI reads them. */
  static fromEnv(options: Omit<HttpClientOptions, 'url' | 'apiKey'> = {}): HttpClient {
    return new HttpClient({ ...options, url: process.env.HERALD_API_URL || DEFAULT_API_URL, apiKey: process.env.HERALD_API_KEY });
  }

  async #send<T>(method: string, path: string, body?: string): Promise<T> {
    const headers = body === undefined ? this.#headers : { ...this.#headers, 'content-type': 'application/json' };
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.url + path, { method, headers, body, signal: AbortSignal.timeout(this.#timeoutMs) });
      text = await res.text();
    } catch (e) {
      const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
      throw new Unavailable(`cannot reach Herald at ${this.url}: ${cause}`, undefined, { cause: e });
    }
    let data: unknown;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      data = undefined;
    }
    if (res.ok) return data as T;
    const error = (data as { error?: unknown } | undefined)?.error;
    const reason = typeof error === 'string' ? error : text.trim() || `HTTP ${res.status}`;
    if (res.status === 401 || res.status === 403) throw new AuthError(reason, res.status);
    if (res.status === 404) throw new NotFound(res.status, reason);
    if (res.status >= 500) throw new Unavailable(reason, res.status);
    throw new Refused(res.status, reason);
  }

  /** `POST /v1/messages`: a `Message` or an envelope object. */
  async publish(message: Publishable): Promise<Published> {
    return this.#send('POST', '/v1/messages', envelopeJSON(message, this.#check));
  }

  /** `DELETE /v1/messages/{id}`: takes the message off every screen; resolves to the id. */
  async retract(id: string): Promise<string> {
    return (await this.#send<{ id: string }>('DELETE', `/v1/messages/${segment(id)}`)).id;
  }

  /** The sticky set: active sticky and `require_ack` envelopes. */
  async active(): Promise<Envelope[]> {
    return (await this.#send<{ messages: Envelope[] }>('GET', '/v1/messages/active')).messages;
  }

  async presence(user: string): Promise<Presence> {
    return this.#send('GET', `/v1/presence/${segment(user)}`);
  }

  /** This node's sessions, users and delivery counters (and the cluster's). */
  async stats(): Promise<Record<string, unknown>> {
    return this.#send('GET', '/v1/stats');
  }

  /** Creates or replaces a campaign (its `id`, or `id` here); resolves to it as stored. */
  async putCampaign(campaign: Campaign, id: string | undefined = campaign.id): Promise<Campaign> {
    if (!id) throw new InvalidMessage('id', 'required: give the campaign an id');
    if (this.#check.validate !== false) checkCampaign(campaign);
    return this.#send('PUT', `/v1/campaigns/${segment(id)}`, JSON.stringify(campaign));
  }

  async campaigns(): Promise<Campaign[]> {
    return (await this.#send<{ campaigns: Campaign[] }>('GET', '/v1/campaigns')).campaigns;
  }

  /** Rejects with `NotFound` for an unknown id. */
  async getCampaign(id: string): Promise<Campaign> {
    return this.#send('GET', `/v1/campaigns/${segment(id)}`);
  }

  /** Rejects with `NotFound` for an unknown id. */
  async deleteCampaign(id: string): Promise<void> {
    await this.#send('DELETE', `/v1/campaigns/${segment(id)}`);
  }

  /** Closes every session of `user`, on every node (close code 1008). */
  async disconnect(user: string): Promise<void> {
    await this.#send('POST', `/v1/users/${segment(user)}/disconnect`);
  }

  /** The newest records of `events`, `undelivered` or `dead`, newest first. */
  async stream(name: StreamName, count = 100): Promise<Record<string, string>[]> {
    if (!STREAMS.includes(name)) throw new TypeError(`stream: one of ${STREAMS.join(', ')}, not ${JSON.stringify(name)}`);
    return (await this.#send<{ records: Record<string, string>[] }>('GET', `/v1/streams/${name}?count=${count}`)).records;
  }
}
