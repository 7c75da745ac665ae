/**
 * The envelope builder: `Message.banner('Payments degraded').toAll().sticky().ttl(1800)`.
 *
 * A `Message` is immutable: every method returns a new one, so a partly
 * built message serves as a template. Nothing is checked until it is
 * validated (`validate()`, `toJSONString()`, or a client's `publish`): then
 * the whole envelope is checked against the bundled schema, and what the
 * node would refuse throws `InvalidMessage` naming the field.
 */

import { randomBytes } from 'node:crypto';
import type { Action, CheckOptions, Envelope, Kind, LocaleVariant, Position, Priority } from './types.js';
import { checkEnvelope, MAX_ENVELOPE_BYTES } from './validation.js';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A fresh time-ordered id (a ULID, like the ids the node assigns). */
export function newId(now = Date.now()): string {
  let n = (BigInt(now) << 80n) | BigInt(`0x${randomBytes(10).toString('hex')}`);
  let out = '';
  for (let i = 0; i < 26; i++, n >>= 5n) out = CROCKFORD[Number(n & 31n)] + out;
  return out;
}

type Texts = { title?: string; body?: string };
type Fields = Omit<Envelope, 'kind'>;
type Names = string | Iterable<string>;

const names = (list: Names[]) => list.flatMap((n) => (typeof n === 'string' ? [n] : [...n]));

export class Message {
  readonly #fields: Envelope;

  constructor(fields: Envelope = {}) {
    this.#fields = structuredClone(fields);
  }

  /** A message of `kind`; `fields` are any other envelope fields. */
  static of(kind: Kind, title?: string, body?: string, fields: Fields = {}): Message {
    const texts: Texts = {};
    if (title !== undefined) texts.title = title;
    if (body !== undefined) texts.body = body;
    return new Message({ kind, ...texts, ...fields });
  }
  static banner(title?: string, body?: string, fields?: Fields): Message {
    return Message.of('banner', title, body, fields);
  }
  static modal(title?: string, body?: string, fields?: Fields): Message {
    return Message.of('modal', title, body, fields);
  }
  static card(title?: string, body?: string, fields?: Fields): Message {
    return Message.of('card', title, body, fields);
  }
  static toast(title?: string, body?: string, fields?: Fields): Message {
    return Message.of('toast', title, body, fields);
  }
  static fullscreen(title?: string, body?: string, fields?: Fields): Message {
    return Message.of('fullscreen', title, body, fields);
  }
  /** A tooltip pointing at `anchor` (a CSS selector or view id). */
  static tooltip(anchor: string, title?: string, body?: string, fields?: Fields): Message {
    return Message.of('tooltip', title, body, { ...fields, anchor });
  }
  /** Drawn by the app, not the SDK: `data` is handed over untouched. */
  static custom(data: Record<string, unknown> = {}, fields?: Fields): Message {
    return Message.of('custom', undefined, undefined, { ...fields, data });
  }
  /** An envelope written by hand (or read from a file), to check or extend. */
  static from(envelope: Envelope): Message {
    return new Message(envelope);
  }

  #with(changes: Partial<Envelope>): Message {
    return new Message({ ...this.#fields, ...changes });
  }

  #audience(part: { users?: string[]; segments?: string[]; where?: string }): Message {
    const to = typeof this.#fields.to === 'object' ? this.#fields.to : {};
    return this.#with({ to: { ...to, ...part } });
  }

  // Audience. Users, segments and where combine: all must hold.

  /** Every session. */
  toAll(): Message {
    return this.#with({ to: 'all' });
  }
  /** These users (the token's `sub`): `toUsers('a', 'b')` or `toUsers(ids)`. */
  toUsers(...users: Names[]): Message {
    return this.#audience({ users: names(users) });
  }
  /** Sessions in any of these segments. */
  toSegments(...segments: Names[]): Message {
    return this.#audience({ segments: names(segments) });
  }
  /** Sessions for which this CEL expression over `user`, `segments` and `attrs` holds. */
  where(expression: string): Message {
    return this.#audience({ where: expression });
  }

  // Content.

  /** A fixed id: to retract it by name; a repeat within the dedupe window is delivered once. */
  id(id: string): Message {
    return this.#with({ id });
  }
  title(title: string): Message {
    return this.#with({ title });
  }
  body(body: string): Message {
    return this.#with({ body });
  }
  image(url: string): Message {
    return this.#with({ image_url: url });
  }
  /** Adds a button (at most 3); `clicked` acks carry its `id`. */
  action(id: string, label: string, url?: string): Message {
    const button: Action = url === undefined ? { id, label } : { id, label, url };
    return this.#with({ actions: [...(this.#fields.actions ?? []), button] });
  }
  position(position: Position): Message {
    return this.#with({ position });
  }
  anchor(anchor: string): Message {
    return this.#with({ anchor });
  }
  /** Styling hints, e.g. `theme({ severity: 'critical', accent: '#d33' })`. */
  theme(hints: Record<string, unknown>): Message {
    return this.#with({ theme: { ...this.#fields.theme, ...hints } });
  }
  /** Free-form payload for the app. */
  data(values: Record<string, unknown>): Message {
    return this.#with({ data: { ...this.#fields.data, ...values } });
  }
  /** A variant for recipients whose locale is `tag` (`fr`, `pt-BR`). */
  locale(tag: string, variant: LocaleVariant): Message {
    return this.#with({ locales: { ...this.#fields.locales, [tag]: variant } });
  }

  // Delivery.

  priority(priority: Priority): Message {
    return this.#with({ priority });
  }
  /** Lifetime from publishing, in seconds. */
  ttl(seconds: number): Message {
    return this.#with({ ttl_s: seconds });
  }
  /** An absolute expiry: a `Date`, or unix milliseconds. */
  expiresAt(at: Date | number): Message {
    return this.#with({ expires_at: typeof at === 'number' ? at : at.getTime() });
  }
  /**
   * Publish at this time instead of now (a `Date`, or unix milliseconds; at
   * most 30 days ahead): Herald holds it and publishes it once for the
   * cluster. Through the HTTP API or `enqueue`; a plain Redis `publish` is
   * delivered at once.
   */
  sendAt(at: Date | number): Message {
    return this.#with({ send_at: typeof at === 'number' ? at : at.getTime() });
  }
  /** Stays active until it expires or is retracted: sessions that connect meanwhile receive it. */
  sticky(on = true): Message {
    return this.#with({ sticky: on });
  }
  /** Replaces the active message with the same key. */
  collapseKey(key: string): Message {
    return this.#with({ collapse_key: key });
  }
  /** Sent again on each connect until the user clicks or dismisses it. */
  requireAck(on = true): Message {
    return this.#with({ require_ack: on });
  }
  /** Users audiences: offline recipients go to the `undelivered` stream. */
  fallback(on = true): Message {
    return this.#with({ fallback: on });
  }
  /** Groups its events for analytics. */
  campaign(name: string): Message {
    return this.#with({ campaign: name });
  }

  // Output.

  /** The envelope as built, unchecked (a copy); also what `JSON.stringify` writes. */
  toJSON(): Envelope {
    return structuredClone(this.#fields);
  }
  /** Throws `InvalidMessage` if the node would refuse it; returns this. */
  validate({ maxBytes = MAX_ENVELOPE_BYTES } = {}): this {
    checkEnvelope(this.#fields, { maxBytes });
    return this;
  }
  /** The checked envelope as JSON text. */
  toJSONString({ maxBytes = MAX_ENVELOPE_BYTES } = {}): string {
    return checkEnvelope(this.#fields, { maxBytes });
  }
}

/** A `Message` or an envelope object. */
export type Publishable = Message | Envelope;

/** The envelope as JSON, checked unless `validate` is false. */
export function envelopeJSON(message: Publishable, { validate = true, maxEnvelopeBytes = MAX_ENVELOPE_BYTES }: CheckOptions): string {
  const fields = message instanceof Message ? message.toJSON() : message;
  return validate ? checkEnvelope(fields, { maxBytes: maxEnvelopeBytes }) : JSON.stringify(fields);
}
