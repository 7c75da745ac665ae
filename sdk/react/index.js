// React bindings for Herald: <HeraldProvider> holds one connection (the SDK's
// core), hooks read its state and messages, and the app may draw any kind
// itself (a `renderers` map of components, or useHeraldMessages) while
// Herald's acks and lifecycle (displayed, clicked, dismissed, retract,
// expiry, collapse_key, priority queue) still apply. Kinds the app does not
// draw are drawn by the SDK's DOM renderer, unless render={false}.
// Plain ES module (React.createElement, no JSX): no build step. See README.md.

import { createContext, createElement, Fragment, useCallback, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { DomRenderer, HeraldClient, isDismissible, isExpired } from '@herald/sdk';

const HeraldContext = createContext(null);

const EMPTY = Object.freeze([]);

/**
 * What the provider keeps for React: the messages it draws (handed over by
 * the core's scheduler for drawn kinds, straight from `message` events for
 * kind custom), each as an item {message, dismissible, click, dismiss,
 * displayed}. A snapshot array, replaced on every change.
 */
class Store {
  constructor() {
    this.items = EMPTY;
    this.listeners = new Set();
    this.client = null;
    this.status = { state: 'idle' };
    this.customTimers = new Map();
  }
  subscribe = (fn) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };
  getItems = () => this.items;
  getStatus = () => this.status;
  notify() {
    for (const fn of [...this.listeners]) fn();
  }
  setItems(items) {
    this.items = Object.freeze(items);
    this.notify();
  }
  has(id) {
    return this.items.some((i) => i.message.id === id);
  }
  add(msg, custom) {
    const client = this.client;
    const id = msg.id;
    const item = Object.freeze({
      message: msg,
      kind: msg.kind,
      // May it show a close control (and close on Escape)? Not for require_ack
      // nor dismissible: false; dismiss() still acks a require_ack one (its OK).
      dismissible: isDismissible(msg) && !msg.require_ack,
      displayed: () => (custom ? this.customDisplayed(id) : client.displayed(id)),
      click: (actionId) => (custom ? this.customAck(id, 'clicked', actionId) : client.click(id, actionId)),
      dismiss: () => (custom ? isDismissible(msg) && this.customAck(id, 'dismissed') : client.dismiss(id)),
    });
    this.setItems([...this.items.filter((i) => i.message.id !== id), item]);
  }
  remove(id) {
    if (!this.has(id)) return;
    clearTimeout(this.customTimers.get(id));
    this.customTimers.delete(id);
    this.setItems(this.items.filter((i) => i.message.id !== id));
  }

  // kind custom never reaches the core's scheduler: its lifecycle is kept here.
  offerCustom(msg) {
    if (isExpired(msg)) return;
    if (msg.collapse_key != null) {
      for (const i of this.items) if (i.kind === 'custom' && i.message.collapse_key === msg.collapse_key) this.remove(i.message.id);
    }
    this.add(msg, true);
    if (typeof msg.expires_at === 'number') {
      const wait = Math.min(Math.max(0, msg.expires_at - Date.now()), 2147483647);
      this.customTimers.set(msg.id, setTimeout(() => this.remove(msg.id), wait));
    }
  }
  customDisplayed(id) {
    this.displayedCustom = this.displayedCustom || new Set();
    if (this.has(id) && !this.displayedCustom.has(id)) {
      this.displayedCustom.add(id);
      this.client.ack(id, 'displayed');
    }
  }
  customAck(id, status, action) {
    if (!this.has(id)) return false;
    this.client.ack(id, status, action);
    this.remove(id);
    return true;
  }
  destroy() {
    for (const t of this.customTimers.values()) clearTimeout(t);
    this.customTimers.clear();
  }
}

/**
 * The view given to the core: kinds in `renderers` (or every kind when
 * render is false or there is no DOM) go to the React store, the others to
 * the DOM renderer.
 */
function splitView(client, store, { renderers, ownKinds, render, container, labels, toastMs }) {
  const dom = render !== false && typeof document !== 'undefined' ? new DomRenderer(client, { container, labels, toastMs }) : null;
  const mine = (msg) => !dom || !!renderers[msg.kind] || ownKinds.includes(msg.kind);
  return {
    show(msg, slot) {
      if (mine(msg)) store.add(msg, false);
      else dom.show(msg, slot);
    },
    hide(msg, why) {
      if (store.has(msg.id)) store.remove(msg.id);
      else if (dom) dom.hide(msg, why);
    },
    settle() {
      if (dom) dom.settle();
    },
    destroy() {
      if (dom) dom.destroy();
      store.destroy();
    },
  };
}

/**
 * Connects to Herald for the components inside it. Props: every option of
 * Herald.connect (url, getToken or token, locale, shouldShow, navigate,
 * autoPageView, labels, toastMs, container, WebSocket, ...), plus
 * `renderers` ({kind: Component}) for the kinds the app draws with its own
 * components, `ownKinds` (kinds it draws with useHeraldMessages instead), and
 * `render={false}` to draw every kind itself. The
 * connection is made once, when the provider mounts; give it a new `key` to
 * connect again with other options.
 */
export function HeraldProvider(props) {
  const { children, renderers, ...options } = props;
  const store = useMemo(() => new Store(), []);
  const [client, setClient] = useState(null);
  const latest = useRef(props);
  latest.current = props;
  const pending = useRef([]);

  useEffect(() => {
    const o = latest.current;
    const own = o.renderers || {};
    const c = new HeraldClient({
      ...options,
      // The latest callbacks, so that re-renders need no reconnect.
      getToken: o.getToken ? () => latest.current.getToken() : undefined,
      shouldShow: o.shouldShow ? (m) => latest.current.shouldShow(m) : undefined,
      navigate: o.navigate ? (href, ctx) => latest.current.navigate(href, ctx) : undefined,
      view: (cl) => splitView(cl, store, { renderers: own, ownKinds: [].concat(o.ownKinds || []), render: o.render, container: o.container, labels: o.labels, toastMs: o.toastMs }),
    });
    store.client = c;
    const offState = c.on('state', (s) => {
      store.status = { ...s, sid: c.sid, user: c.user };
      store.notify();
    });
    const offMsg = c.on('message', (m) => {
      if (m.kind === 'custom') store.offerCustom(m);
    });
    const offRetract = c.on('retract', ({ id }) => store.remove(id));
    c._start();
    for (const f of pending.current.splice(0)) f(c);
    setClient(c);
    return () => {
      offState();
      offMsg();
      offRetract();
      c.close();
      store.setItems([]);
      store.client = null;
      setClient(null);
    };
    // Connects once per mount: see the doc comment.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const value = useMemo(() => ({ client, store, pending, renderers: renderers || {} }), [client, store, renderers]);
  return createElement(HeraldContext.Provider, { value }, children, createElement(Renderers, null));
}

function useCtx(name) {
  const ctx = useContext(HeraldContext);
  if (!ctx) throw new Error(`herald: ${name} must be used inside <HeraldProvider>`);
  return ctx;
}

/** Acks `displayed` for items once they are rendered and the tab is visible. */
function useDisplayed(items) {
  useEffect(() => {
    if (!items.length || typeof document === 'undefined') {
      for (const i of items) i.displayed();
      return undefined;
    }
    const ack = () => {
      if (document.visibilityState !== 'hidden') for (const i of items) i.displayed();
    };
    ack();
    document.addEventListener('visibilitychange', ack);
    return () => document.removeEventListener('visibilitychange', ack);
  }, [items]);
}

/** The provider's `renderers`: each drawn message as <Component message click dismiss dismissible />. */
function Renderers() {
  const { store, renderers } = useCtx('Renderers');
  const all = useSyncExternalStore(store.subscribe, store.getItems, store.getItems);
  const items = useMemo(() => all.filter((i) => renderers[i.kind]), [all, renderers]);
  useDisplayed(items);
  if (!items.length) return null;
  return createElement(
    Fragment,
    null,
    items.map((i) =>
      createElement(renderers[i.kind], { key: i.message.id, message: i.message, click: i.click, dismiss: i.dismiss, dismissible: i.dismissible }),
    ),
  );
}

/**
 * The messages the app draws itself that are on screen now (one per slot,
 * as the core schedules them; every active custom message): items
 * {message, kind, dismissible, click(actionId), dismiss(), displayed()}.
 * `kind` (a kind or an array of kinds) filters them; without it, the kinds
 * no component of `renderers` draws. Items returned are
 * acked `displayed` once rendered while the tab is visible.
 */
export function useHeraldMessages({ kind } = {}) {
  const { store, renderers } = useCtx('useHeraldMessages');
  const all = useSyncExternalStore(store.subscribe, store.getItems, store.getItems);
  const kinds = kind === undefined ? null : [].concat(kind).join(',');
  const items = useMemo(
    // Without a kind: what no component of `renderers` draws already.
    () => (kinds === null ? all.filter((i) => !renderers[i.kind]) : all.filter((i) => kinds.split(',').includes(i.kind))),
    [all, kinds, renderers],
  );
  useDisplayed(items);
  return items;
}

/** The connection's state: {state, code?, reason?, delay?, recovered?, sid, user}. */
export function useHeraldStatus() {
  const { store } = useCtx('useHeraldStatus');
  return useSyncExternalStore(store.subscribe, store.getStatus, store.getStatus);
}

/**
 * {client, track(name, props), ack(id, status, action?)}: `client` is null
 * until the provider has mounted; track and ack called before then are sent
 * once it has (and queued by the SDK while offline, as always).
 */
export function useHerald() {
  const { client, pending } = useCtx('useHerald');
  const later = useCallback(
    (f) => {
      if (client) f(client);
      else pending.current.push(f);
    },
    [client, pending],
  );
  const track = useCallback((name, props) => later((c) => c.track(name, props)), [later]);
  const ack = useCallback((id, status, action) => later((c) => c.ack(id, status, action)), [later]);
  return useMemo(() => ({ client, track, ack }), [client, track, ack]);
}
