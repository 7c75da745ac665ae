// Type declarations for the Herald browser SDK (herald.js).

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

export interface Events {
  message: Message;
  retract: { id: string };
  state: StateChange;
  error: HeraldError;
  frame: FrameEvent;
}

export interface Labels {
  /** aria-label of the close button. Default "Dismiss". */
  dismiss?: string;
  /** The button of a require_ack message without actions. Default "OK". */
  ok?: string;
  /** Accessible name of a message without a title. Default "Message". */
  message?: string;
}

export interface ConnectOptions {
  /** Herald's public base URL, http(s) or ws(s); default: the page's origin. */
  url?: string;
  /** A token (JWT). With a static token the SDK stops after 1008 or once it has expired. */
  token?: string;
  /** Called before every connection attempt for a fresh token. */
  getToken?: () => string | { token: string } | Promise<string | { token: string }>;
  /** Draw messages (default true). false: the app draws them and calls ack(). */
  render?: boolean;
  /**
   * Send a page_view event for the current path at start and on every
   * pushState/replaceState/popstate (default true). A function maps the
   * location to the event's props (return null to skip).
   */
  autoPageView?: boolean | ((location: Location) => Record<string, unknown> | null | undefined);
  /** Veto hook before a message is drawn: false (or a promise of false) suppresses it. */
  shouldShow?: (msg: Message) => boolean | Promise<boolean>;
  /** Sent as `locale` to pick the message's locale variant. */
  locale?: string;
  /** Follows an action's url; default location.assign. Single-page apps route here. */
  navigate?: (href: string, context: { msg: Message; action: Action }) => void;
  labels?: Labels;
  /** How long a toast without actions stays (ms, default 6000; 0: until closed). */
  toastMs?: number;
  /** Where the SDK's overlay root goes (default document.body). */
  container?: Element;
  /** Message ids remembered to drop duplicates (default 1000). */
  dedupeSize?: number;
  /** Messages waiting per slot (default 20). */
  maxQueue?: number;
  /** A WebSocket implementation (default the global one). */
  WebSocket?: typeof WebSocket;
  /** Random source for the reconnect jitter (tests). */
  random?: () => number;
}

export declare class HeraldClient {
  constructor(options: ConnectOptions);
  readonly state: ConnectionState;
  readonly sid: string | null;
  readonly user: string | null;
  /** The last resume position seen; sent as `since` on reconnect. */
  readonly lastPos: string | null;
  /** Subscribes; returns a function that unsubscribes. */
  on<K extends keyof Events>(type: K, fn: (payload: Events[K]) => void): () => void;
  off<K extends keyof Events>(type: K, fn: (payload: Events[K]) => void): void;
  /** Reports something the user did: {"t":"event","name":…,"props":…}. Queued while offline. */
  track(name: string, props?: Record<string, unknown>): void;
  /** Acknowledges a message; `action` is required for 'clicked'. */
  ack(id: string, status: AckStatus, action?: string): void;
  /** Takes a drawn message off screen as the user would (acks 'dismissed'). */
  dismiss(id: string): boolean;
  /** Closes the connection for good and removes everything the SDK drew. */
  close(): void;
}

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

export type SlotName = 'banner' | 'modal' | 'card' | 'toast' | 'tooltip';
export type Effect =
  | { type: 'show'; msg: Message; slot: SlotName }
  | { type: 'hide'; msg: Message; slot: SlotName; why: string }
  | { type: 'drop'; msg: Message; slot: SlotName; why: string };

/** One message on screen per slot, the rest in a priority queue; returns effects to apply. */
export declare class Scheduler {
  constructor(options?: { maxQueue?: number });
  offer(msg: Message, now?: number): Effect[];
  remove(id: string, why?: string, now?: number): Effect[];
  expire(now?: number): Effect[];
  nextExpiry(): number | null;
  current(slot: SlotName): Message | null;
  queued(slot: SlotName): Message[];
  find(id: string): { slot: SlotName; state: 'shown' | 'queued' } | null;
}

export declare function isExpired(msg: { expires_at?: number }, now?: number): boolean;
export declare function wsUrl(base: string, params?: { token?: string; since?: string | null; locale?: string | null }): string;
/** http(s) URLs and same-origin paths, as absolute URLs; null for anything else. */
export declare function safeUrl(raw: unknown, origin: string | null | undefined): string | null;
export declare function jwtExp(token: string): number | null;
/** A resume position `{epoch}.{ms}-{seq}` split into its parts; null for anything else. */
export declare function parsePos(pos: unknown): { epoch: string; ms: number; seq: number } | null;
/** The position to keep after a message at `pos` with `reason`: never a sticky message's, never backwards within an epoch. */
export declare function nextPos(current: string | null, pos: string | null | undefined, reason?: string): string | null;
