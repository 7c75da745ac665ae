/** The publish envelope (SPEC §4) and what the clients answer. */

export type Kind = 'banner' | 'modal' | 'card' | 'toast' | 'tooltip' | 'fullscreen' | 'custom';
export type Priority = 'low' | 'normal' | 'high' | 'urgent';
export type Position = 'top' | 'bottom' | 'center';

export interface Action {
  id: string;
  label: string;
  url?: string;
}

export interface LocaleVariant {
  title?: string;
  body?: string;
  actions?: Action[];
}

/** `"all"`, or users, segments and/or a CEL `where`, all of which must hold. */
export type Audience = 'all' | { users?: string[]; segments?: string[]; where?: string };

export interface Envelope {
  op?: 'publish' | 'retract';
  id?: string;
  to?: Audience;
  kind?: Kind;
  priority?: Priority;
  title?: string;
  body?: string;
  image_url?: string;
  actions?: Action[];
  position?: Position;
  anchor?: string;
  theme?: Record<string, unknown>;
  data?: Record<string, unknown>;
  locales?: Record<string, LocaleVariant>;
  ttl_s?: number;
  expires_at?: number;
  /** Unix milliseconds: held by Herald and published then (at most 30 days ahead). */
  send_at?: number;
  sticky?: boolean;
  collapse_key?: string;
  require_ack?: boolean;
  fallback?: boolean;
  campaign?: string;
}

/** A campaign (SPEC §5), as stored with `PUT /v1/campaigns/{id}`. */
export type Campaign = { id?: string; trigger: Record<string, unknown>; message?: Envelope } & Record<string, unknown>;

/**
 * A message handed to Herald. `online`/`offline`: for audiences naming users,
 * who had a live session at publish time. `nodes`: for a broadcast by Redis
 * `PUBLISH`, how many Herald nodes Redis counted (not on a Redis Cluster).
 */
export interface Published {
  id: string;
  online?: string[];
  offline?: string[];
  nodes?: number;
}

/**
 * An envelope added to the durable ingress stream: `id` is the message's,
 * `entry` the stream entry's. A node publishes it when it reads it.
 */
export interface Enqueued {
  id: string;
  entry: string;
}

/** A user's live sessions across the cluster. */
export interface Presence {
  user: string;
  online: boolean;
  sessions: number;
}

export type StreamName = 'events' | 'undelivered' | 'dead';

/** Options every client takes. */
export interface CheckOptions {
  /** Check envelopes and campaigns against the bundled schema first (default true). */
  validate?: boolean;
  /** The node's `limits.max_envelope_bytes` (default 65536). */
  maxEnvelopeBytes?: number;
}
