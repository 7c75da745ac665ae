/**
 * What every client throws. `HeraldError` is the root; what to do about each:
 *
 * - `InvalidMessage`: refused by the library before anything was sent; fix `field`.
 * - `Refused`: the node answered 4xx with a reason (a 400 names the field,
 *   like `"to.where: …"`); `NotFound` is its 404.
 * - `AuthError`: the API key (or the Redis credentials) are missing or wrong.
 * - `Unavailable`: Herald or Redis could not be reached, timed out, or
 *   answered 5xx (503 while its bus is down or it drains); retrying later may work.
 */

const FIELD_REASON = /^([A-Za-z_][\w.[\]-]*): ([\s\S]+)$/;

/** The field a reason such as `"actions[0].url: must be …"` names, if any. */
export function fieldOf(reason: string): string | undefined {
  return FIELD_REASON.exec(reason)?.[1];
}

export class HeraldError extends Error {
  override name = 'HeraldError';
}

/** Refused by the library before sending: `field` says which, `reason` why. */
export class InvalidMessage extends HeraldError {
  override name = 'InvalidMessage';
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

/** The node refused the request (4xx) with `reason`, naming `field` when it does. */
export class Refused extends HeraldError {
  override name = 'Refused';
  readonly field: string | undefined;
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {
    super(`Herald answered ${status}: ${reason}`);
    this.field = fieldOf(reason);
  }
}

/** 404: no such campaign, stream or route. */
export class NotFound extends Refused {
  override name = 'NotFound';
}

/** 401/403 from the node, or Redis refusing the credentials (`status` undefined). */
export class AuthError extends HeraldError {
  override name = 'AuthError';
  constructor(
    readonly reason: string,
    readonly status?: number,
  ) {
    super(status ? `Herald answered ${status}: ${reason}` : reason);
  }
}

/** Herald or Redis could not be reached or answered 5xx (`status`, when there was one). */
export class Unavailable extends HeraldError {
  override name = 'Unavailable';
  constructor(
    readonly reason: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(status ? `Herald answered ${status}: ${reason}` : reason, options);
  }
}
