// Type declarations for the Herald SDK core (herald-core.js, `@herald/sdk/core`):
// the connection and the messages' lifecycle, no DOM.

export type Kind = 'banner' | 'modal' | 'card' | 'toast' | 'tooltip' | 'fullscreen' | 'custom';
export type Priority = 'low' | 'normal' | 'high' | 'urgent';
export type AckStatus = 'displayed' | 'clicked' | 'dismissed' | 'suppressed';
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface Action {
  /** Sent back as `action` in the `clicked` ack. */
  id: string;
  label: string;
  /** Followed after the click when it is http(s) or a same-origin path. */
  url?: string;
}

/** A `msg` frame (SPEC §3): the envelope's fields minus to/op/fallback, plus pos and reason. */
export interface Message {
  t: 'msg';
  id: string;
  kind: Kind;
  priority: Priority;
  title?: string;
  body?: string;
  image_url?: string;
  actions?: Action[];
  position?: 'top' | 'bottom' | 'center';
  /** CSS selector of the element a tooltip points at. */
  anchor?: string;
  /** Styling hints; the SDK reads severity (info | warning | critical), accent, background, color. */
  theme?: { severity?: 'info' | 'warning' | 'critical'; accent?: string; background?: string; color?: string; [key: string]: unknown };
  data?: Record<string, unknown>;
  /** Unix milliseconds. */
  expires_at?: number;
  sticky?: boolean;
  collapse_key?: string;
  require_ack?: boolean;
  /** SPEC §10.1: false means no close control, no Escape or backdrop dismissal; only a click acknowledges it. Default true. */
  dismissible?: boolean;
  campaign?: string;
  /** Opaque resume position; the SDK passes the last one as `since` on reconnect. */
  pos?: string;
  reason: 'push' | 'sticky' | 'replay' | 'trigger';
  [field: string]: unknown;
}

export interface StateChange {
  state: ConnectionState;
  /** Close code that caused 'reconnecting' or 'closed' (1006 for network loss). */
  code?: number;
  reason?: string;
  /** Milliseconds until the next attempt ('reconnecting'). */
  delay?: number;
  /** Consecutive failed attempts so far. */
  attempt?: number;
  /** From hello when `since` was sent: false means the gap could not be filled. */
  recovered?: boolean;
  sid?: string | null;
  user?: string | null;
}

export interface HeraldError {
  /** Server error codes (bad_json, unknown_type, bad_field, too_big, rate_limited, …) or the SDK's own: token, socket, bad_frame. */
  code: string;
  message: string;
}

/** Every frame as it goes over the socket, for logs and debugging. */
export interface FrameEvent {
  dir: 'in' | 'out';
  frame: { t: string; [field: string]: unknown };
}

export type SlotName = 'banner' | 'modal' | 'card' | 'toast' | 'tooltip';
export type Effect =
  | { type: 'show'; msg: Message; slot: SlotName }
  | { type: 'hide'; msg: Message; slot: SlotName; why: string }
  | { type: 'drop'; msg: Message; slot: SlotName; why: string };

export interface Events {
  message: Message;
  retract: { id: string };
  state: StateChange;
  /** Code: server error codes (auth_failed among them) or the SDK's own. */
  error: HeraldError;
  frame: FrameEvent;
  /** The token was renewed over the open socket (SPEC §10.2); exp in unix seconds. */
  auth: { exp: number | null };
  /** What the scheduler changed on screen (after the view applied it). */
  change: Effect[];
}

/**
 * Draws what the client's scheduler decides. The DOM renderer is one
 * (herald-render.js); React bindings, React Native or a test can bring their
 * own. It reports back through the client: displayed, click, dismiss, hide.
 */
export interface View {
  /** Put `msg` on screen in `slot` (one message per slot). */
  show(msg: Message, slot: SlotName): void;
  /** Take it off: why is replaced | preempted | retracted | closed | clicked | expired | timeout | invalid. */
  hide(msg: Message, why: string): void;
  /** After each batch of shows and hides. */
  settle?(): void;
  /** The client was closed. */
  destroy?(): void;
}

export interface ConnectOptions {
  /** Herald's public base URL, http(s) or ws(s); default: the page's origin (required outside a browser). */
  url?: string;
  /** A token (JWT). With a static token the SDK stops after 1008 or once it has expired. */
  token?: string;
  /** Called before every connection attempt, and before each token refresh, for a fresh token. */
  getToken?: () => string | { token: string } | Promise<string | { token: string }>;
  /** Renew the token over the open socket before it expires (SPEC §10.2; needs getToken). Default true. */
  refreshToken?: boolean;
  /** Draws the scheduled messages: an object, or a function of the client returning one. Without one nothing is scheduled. */
  view?: View | ((client: HeraldClient) => View);
  /**
   * Send a page_view event for the current path at start and on every
   * pushState/replaceState/popstate (default true where there is a window
   * and history). A function maps the location to the event's props (return
   * null to skip).
   */
  autoPageView?: boolean | ((location: Location) => Record<string, unknown> | null | undefined);
  /** Veto hook before a message is scheduled: false (or a promise of false) suppresses it. */
  shouldShow?: (msg: Message) => boolean | Promise<boolean>;
  /** Sent as `locale` to pick the message's locale variant. */
  locale?: string;
  /** Follows an action's url; default location.assign where there is one. Single-page apps and React Native route here. */
  navigate?: (href: string, context: { msg: Message; action: Action }) => void;
  /** Message ids remembered to drop duplicates (default 1000). */
  dedupeSize?: number;
  /** Messages waiting per slot (default 20). */
  maxQueue?: number;
  /** A WebSocket implementation (default the global one; in Node 20, the ws package's). */
  WebSocket?: unknown;
  /** Random source for the reconnect and refresh jitter (tests). */
  random?: () => number;
}

export declare class HeraldClient {
  constructor(options: ConnectOptions);
  readonly state: ConnectionState;
  readonly sid: string | null;
  readonly user: string | null;
  /** The last resume position seen; sent as `since` on reconnect. */
  readonly lastPos: string | null;
  /** The exp (unix seconds) of the token the session runs on, when known. */
  readonly tokenExp: number | null;
  /** Subscribes; returns a function that unsubscribes. */
  on<K extends keyof Events>(type: K, fn: (payload: Events[K]) => void): () => void;
  off<K extends keyof Events>(type: K, fn: (payload: Events[K]) => void): void;
  /** Reports something the user did: {"t":"event","name":…,"props":…}. Queued while offline. */
  track(name: string, props?: Record<string, unknown>): void;
  /** Acknowledges a message; `action` is required for 'clicked'. */
  ack(id: string, status: AckStatus, action?: string): void;
  /** Takes a drawn message off screen as the user would (acks 'dismissed'); false for a dismissible: false one, which stays. */
  dismiss(id: string): boolean;
  /** The user pressed action `actionId`: acks 'clicked', takes it off screen, follows the action's url. */
  click(id: string, actionId: string): boolean;
  /** The message is really visible now: acks 'displayed' once. */
  displayed(id: string): void;
  /** Takes it off screen without an ack (a toast that timed out). */
  hide(id: string, why?: string): void;
  /** The messages on screen now, one per slot. */
  shown(): Message[];
  /** Closes the connection for good and removes everything the SDK drew. */
  close(): void;
}

/** The core's connect: draws nothing unless given a view. */
export declare const Herald: {
  connect(options: ConnectOptions): HeraldClient;
};
export default Herald;

// Pure parts, exported for tests and for apps that draw their own UI.

export declare const KINDS: readonly Kind[];
export declare const PRIORITIES: readonly Priority[];
export declare const SLOT_OF: Readonly<Record<Exclude<Kind, 'custom'>, 'banner' | 'modal' | 'card' | 'toast' | 'tooltip'>>;
export declare const CLOSE: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  ABNORMAL: 1006;
  POLICY: 1008;
  TOO_BIG: 1009;
  INTERNAL: 1011;
  RESTART: 1012;
  TRY_AGAIN_LATER: 1013;
  ABUSE: 4000;
  SLOW_CONSUMER: 4008;
  RATE_LIMITED: 4029;
}>;

export declare function priorityRank(p: Priority | string | undefined): number;

export interface BackoffOptions {
  base?: number;
  cap?: number;
  random?: () => number;
}
/** Full jitter: uniform in [0, min(cap, base * 2^attempt)) ms. Defaults: base 500, cap 30000. */
export declare function backoffDelay(attempt: number, options?: BackoffOptions): number;

export interface ReconnectPlan {
  reconnect: boolean;
  delay: number;
  why: 'restart' | 'throttled' | 'policy' | 'backoff';
}
export declare function reconnectPlan(code: number, attempt: number, options?: BackoffOptions & { canRefreshToken?: boolean }): ReconnectPlan;

export declare class LruSet<K = string> {
  constructor(limit?: number);
  readonly limit: number;
  readonly size: number;
  has(key: K): boolean;
  /** true when new, false for a duplicate (which becomes the most recent). */
  add(key: K): boolean;
  delete(key: K): boolean;
}

/** One message on screen per slot, the rest in a priority queue; returns effects to apply. */
export declare class Scheduler {
  constructor(options?: { maxQueue?: number });
  offer(msg: Message, now?: number): Effect[];
  remove(id: string, why?: string, now?: number): Effect[];
  expire(now?: number): Effect[];
  nextExpiry(): number | null;
  current(slot: SlotName): Message | null;
  /** The active (shown or waiting) message with this id. */
  get(id: string): Message | null;
  queued(slot: SlotName): Message[];
  find(id: string): { slot: SlotName; state: 'shown' | 'queued' } | null;
}

export declare function isExpired(msg: { expires_at?: number }, now?: number): boolean;
export declare function wsUrl(base: string, params?: { token?: string; since?: string | null; locale?: string | null }): string;
/** http(s) URLs, same-origin paths, and app links whose scheme is in `schemes` (hello's `link_schemes`), as absolute URLs; null for anything else (javascript: and data: always). */
export declare function safeUrl(raw: unknown, origin: string | null | undefined, schemes?: readonly string[]): string | null;
/** hello's `link_schemes` normalized: lowercase names, never javascript or data. */
export declare function linkSchemes(list: unknown): string[];
export declare function jwtExp(token: string): number | null;
/** The claims of a JWT, read without verifying; null when it is not one. */
export declare function jwtClaims(token: string): Record<string, unknown> | null;
/** When to refresh a token living `lifetimeMs` more: 80% of it or 60 s before exp, whichever is sooner, never before half, less up to 10% jitter. */
export declare function refreshDelay(lifetimeMs: number, random?: () => number): number;
/** False only for dismissible: false. */
export declare function isDismissible(msg: { dismissible?: boolean } | null | undefined): boolean;
/** A resume position `{epoch}.{ms}-{seq}` split into its parts; null for anything else. */
export declare function parsePos(pos: unknown): { epoch: string; ms: number; seq: number } | null;
/** The position to keep after a message at `pos` with `reason`: never a sticky message's, never backwards within an epoch. */
export declare function nextPos(current: string | null, pos: string | null | undefined, reason?: string): string | null;
