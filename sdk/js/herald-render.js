// Herald SDK renderer: draws the messages a HeraldClient schedules as DOM
// overlays (banner, modal, card, toast, tooltip, fullscreen), and the same
// drawing, without a connection, as a preview inside a container
// (renderPreview, for the console). ES module, no build step, no
// dependencies. See README.md.
//
// Message text goes in with textContent only; links and images only through
// safeUrl; theme values only when CSS.supports them as colors.

import { isDismissible, safeUrl } from './herald-core.js';

const STYLE_ID = 'herald-style';

const DARK = `
  --_bg:var(--herald-bg,#1d2027);--_fg:var(--herald-fg,#eceef3);--_muted:var(--herald-muted,#aab1be);
  --_accent:var(--herald-accent,#7d9bff);--_accent-fg:var(--herald-accent-fg,#0d1020);
  --_border:var(--herald-border,rgba(255,255,255,.16));--_shadow:var(--herald-shadow,0 12px 32px rgba(0,0,0,.55));
  --_backdrop:var(--herald-backdrop,rgba(0,0,0,.65));--_focus:var(--herald-focus,#9bb3ff);--_page:#121418;
  --_toast-bg:var(--herald-toast-bg,#eceef3);--_toast-fg:var(--herald-toast-fg,#1b1d22);`;

export const STYLESHEET = `
.herald-root{--_page:#f3f4f6;container:herald/inline-size;
  --_toast-bg:var(--herald-toast-bg,#1f232b);--_toast-fg:var(--herald-toast-fg,#f3f4f7);
  --_bg:var(--herald-bg,#ffffff);--_fg:var(--herald-fg,#1b1d22);--_muted:var(--herald-muted,#555d6b);
  --_accent:var(--herald-accent,#2f56d6);--_accent-fg:var(--herald-accent-fg,#ffffff);
  --_border:var(--herald-border,rgba(20,24,32,.14));--_radius:var(--herald-radius,12px);
  --_shadow:var(--herald-shadow,0 12px 32px rgba(10,14,22,.22));
  --_font:var(--herald-font,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif);
  --_backdrop:var(--herald-backdrop,rgba(12,14,20,.55));--_focus:var(--herald-focus,#2f56d6);
  --_info:var(--herald-info,#2f56d6);--_warning:var(--herald-warning,#a14a06);--_critical:var(--herald-critical,#b42318);
  --_z:var(--herald-z-index,2147483000);
}
@media (prefers-color-scheme:dark){.herald-root:not(.herald-light){${DARK}}}
.herald-root.herald-dark{${DARK}}
.herald-root .herald{box-sizing:border-box;font-family:var(--_font);font-size:15px;line-height:1.45;color:var(--_fg);
  animation:herald-in .16s ease-out}
.herald-root .herald *{box-sizing:border-box}
.herald-root .herald-title{font-weight:650;margin:0}
.herald-root .herald-body{margin:.2em 0 0;white-space:pre-line;color:var(--_muted)}
.herald-root .herald-image{display:block;max-width:100%;height:auto;border-radius:calc(var(--_radius) - 4px)}
.herald-root .herald-actions{display:flex;flex-wrap:wrap;gap:8px}
.herald-root .herald-action{font:inherit;font-weight:600;cursor:pointer;border-radius:8px;padding:7px 14px;
  border:1px solid var(--_border);background:transparent;color:inherit}
.herald-root .herald-action.herald-primary{background:var(--_accent);color:var(--_accent-fg);border-color:transparent}
.herald-root .herald-close{font:inherit;font-size:20px;line-height:1;cursor:pointer;border:0;background:transparent;
  color:inherit;opacity:.75;padding:4px 8px;border-radius:6px}
.herald-root .herald-close:hover{opacity:1}
.herald-root .herald button:focus-visible,.herald-root [tabindex="-1"]:focus-visible{outline:3px solid var(--_focus);outline-offset:2px}
.herald-root [tabindex="-1"]:focus{outline:none}
.herald-root .herald-banner{position:fixed;left:0;right:0;top:0;z-index:calc(var(--_z) + 1);display:flex;align-items:center;gap:12px;
  padding:10px 16px;background:var(--_accent);color:var(--_accent-fg);box-shadow:0 2px 10px rgba(0,0,0,.18)}
.herald-root .herald-banner.herald-pos-bottom{top:auto;bottom:0}
.herald-root .herald-banner .herald-content{flex:1;min-width:0}
.herald-root .herald-banner .herald-body{color:inherit;opacity:.92}
.herald-root .herald-banner .herald-image{max-height:40px;width:auto}
.herald-root .herald-banner .herald-action{border-color:currentColor;padding:4px 12px}
.herald-root .herald-banner .herald-action.herald-primary{background:var(--_accent-fg);color:var(--_accent)}
.herald-root .herald-banner.herald-sev-info{background:var(--_info);color:#fff}
.herald-root .herald-banner.herald-sev-warning{background:var(--_warning);color:#fff}
.herald-root .herald-banner.herald-sev-critical{background:var(--_critical);color:#fff}
.herald-root .herald-banner[class*=herald-sev-] .herald-action.herald-primary{background:#fff;color:#1b1d22}
.herald-root .herald-panel{background:var(--_bg);color:var(--_fg);border:1px solid var(--_border);border-radius:var(--_radius);
  box-shadow:var(--_shadow);padding:18px 20px;display:flex;flex-direction:column;gap:12px}
.herald-root .herald-head{display:flex;align-items:flex-start;gap:8px}
.herald-root .herald-head .herald-content{flex:1;min-width:0}
.herald-root .herald-head .herald-close{margin:-6px -10px 0 0}
.herald-root .herald-backdrop{position:fixed;inset:0;z-index:calc(var(--_z) + 3);background:var(--_backdrop);display:flex;
  align-items:center;justify-content:center;padding:16px}
.herald-root .herald-backdrop.herald-pos-top{align-items:flex-start;padding-top:10vh}
.herald-root .herald-backdrop.herald-pos-bottom{align-items:flex-end;padding-bottom:10vh}
.herald-root .herald-modal{width:min(480px,100%);max-height:calc(100vh - 32px);overflow:auto}
.herald-root .herald-modal .herald-title{font-size:1.2em}
.herald-root .herald-fullscreen{position:fixed;inset:0;z-index:calc(var(--_z) + 3);background:var(--_bg);color:var(--_fg);
  display:flex;align-items:center;justify-content:center;padding:32px;overflow:auto}
.herald-root .herald-fullscreen .herald-inner{width:min(640px,100%);display:flex;flex-direction:column;gap:18px;text-align:center;align-items:center}
.herald-root .herald-fullscreen .herald-title{font-size:2em;line-height:1.2}
.herald-root .herald-fullscreen .herald-body{font-size:1.1em}
.herald-root .herald-fullscreen .herald-actions{justify-content:center}
.herald-root .herald-fullscreen .herald-action{padding:10px 22px;font-size:1.05em}
.herald-root .herald-fullscreen .herald-close{position:absolute;top:16px;right:16px;font-size:28px}
.herald-root .herald-card{position:fixed;right:16px;bottom:16px;width:min(360px,calc(100vw - 32px));z-index:calc(var(--_z) + 2)}
.herald-root .herald-card.herald-pos-top{bottom:auto;top:16px}
.herald-root .herald-card.herald-pos-center{bottom:auto;top:50%;transform:translateY(-50%)}
.herald-root .herald-toast{position:fixed;left:50%;bottom:24px;transform:translateX(-50%);width:max-content;
  max-width:min(480px,calc(100vw - 32px));z-index:calc(var(--_z) + 4);flex-direction:row;align-items:center;padding:12px 14px 12px 18px;
  background:var(--_toast-bg);color:var(--_toast-fg);border-color:transparent}
.herald-root .herald-toast.herald-pos-top{bottom:auto;top:24px}
.herald-root .herald-toast .herald-body{color:inherit;opacity:.85}
.herald-root .herald-toast .herald-action{border-color:currentColor;padding:5px 12px}
.herald-root .herald-toast .herald-action.herald-primary{background:var(--_toast-fg);color:var(--_toast-bg);border-color:transparent}
.herald-root .herald-tooltip{position:fixed;z-index:calc(var(--_z) + 2);width:max-content;max-width:min(300px,calc(100vw - 16px));
  padding:12px 14px;gap:8px;font-size:14px}
.herald-root .herald-tooltip::before{content:"";position:absolute;left:var(--_arrow-x,50%);width:12px;height:12px;margin-left:-6px;
  background:var(--_bg);border:1px solid var(--_border);transform:rotate(45deg)}
.herald-root .herald-tooltip.herald-below::before{top:-7px;border-right:0;border-bottom:0}
.herald-root .herald-tooltip.herald-above::before{bottom:-7px;border-left:0;border-top:0}
.herald-root .herald-tooltip[hidden]{display:none}
@keyframes herald-in{from{opacity:0}to{opacity:1}}
.herald-root.herald-preview{position:relative;overflow:hidden;contain:layout paint;width:100%;height:100%;min-height:220px;
  background:var(--_page);color-scheme:light}
.herald-root.herald-preview.herald-dark{color-scheme:dark}
.herald-preview .herald-modal{max-height:calc(100% - 32px)}
.herald-preview .herald-backdrop.herald-pos-top{padding-top:10%}
.herald-preview .herald-backdrop.herald-pos-bottom{padding-bottom:10%}
.herald-preview .herald-card{width:min(360px,calc(100% - 32px))}
.herald-preview .herald-toast{max-width:min(480px,calc(100% - 32px))}
.herald-preview .herald-tooltip{max-width:min(300px,calc(100% - 16px))}
.herald-preview .herald-preview-anchor{position:absolute;left:50%;top:24px;transform:translateX(-50%);padding:6px 12px;
  border:1px dashed var(--_muted);border-radius:8px;color:var(--_muted);font:13px/1.4 ui-monospace,monospace}
.herald-preview .herald-preview-custom{position:absolute;inset:16px;display:flex;align-items:center;justify-content:center;
  border:1px dashed var(--_muted);border-radius:var(--_radius);color:var(--_muted);font:14px/1.4 var(--_font);text-align:center;padding:16px}
@media (prefers-reduced-motion:reduce){.herald-root .herald{animation:none}}
@container herald (max-width:560px){
  .herald-root .herald-banner{flex-wrap:wrap;row-gap:8px;padding:10px 12px 12px 16px}
  .herald-root .herald-banner .herald-content{flex:1 1 calc(100% - 56px)}
  .herald-root .herald-banner .herald-close{order:1;align-self:flex-start}
  .herald-root .herald-banner .herald-actions{order:2;flex-basis:100%}
  .herald-root .herald-card{left:12px;right:12px;bottom:12px;width:auto}
  .herald-root .herald-card.herald-pos-top{top:12px}
  .herald-root .herald-toast{bottom:16px;max-width:calc(100% - 24px)}
  .herald-root .herald-backdrop{padding:12px}
  .herald-root .herald-modal{width:100%}
  .herald-root .herald-fullscreen{padding:24px 20px}
  .herald-root .herald-fullscreen .herald-title{font-size:1.6em}
}
`;

const FOCUSABLE = 'a[href],button:not([disabled]),input:not([disabled]),select:not([disabled]),textarea:not([disabled]),[tabindex]:not([tabindex="-1"])';

let idCounter = 0;

const BLOCKING = { modal: true, fullscreen: true };
const DEFAULT_LABELS = Object.freeze({ dismiss: 'Dismiss', ok: 'OK', message: 'Message' });
/** A close control, Escape and the backdrop: not for require_ack nor dismissible: false. */
const closable = (msg) => !msg.require_ack && isDismissible(msg);

/**
 * The DOM view of a HeraldClient: draws what its scheduler decides, reports
 * back to `host` (the client: displayed, click, dismiss, hide). Options:
 * container, labels, toastMs, document; `preview` ({theme, width, height})
 * draws inside the container only, with no page-wide handlers.
 */
export class DomRenderer {
  constructor(host, options = {}) {
    this.host = host;
    this.doc = options.document || document;
    this.container = options.container || null;
    this.labels = { ...DEFAULT_LABELS, ...(options.labels || {}) };
    this.toastMs = options.toastMs === undefined ? 6000 : options.toastMs;
    this.preview = options.preview || null;
    this.root = null;
    this.entries = new Map(); // id -> {msg, el, focusEl, restore, ...}
    this.awaitingVisible = new Set();
    this.observer = null;
    this.rafPending = false;
    this.blocking = null; // {restore, overflow} while a modal or fullscreen is up
    this.onKeydown = (e) => this.keydown(e);
    this.onFocusIn = (e) => this.focusin(e);
    this.onReposition = () => this.schedulePlacement();
    this.onVisibility = () => this.visibility();
    if (this.preview) return; // a preview listens to nothing outside its container
    this.doc.addEventListener('keydown', this.onKeydown, true);
    this.doc.addEventListener('focusin', this.onFocusIn, true);
    this.doc.addEventListener('visibilitychange', this.onVisibility);
    window.addEventListener('scroll', this.onReposition, { capture: true, passive: true });
    window.addEventListener('resize', this.onReposition, { passive: true });
  }

  destroy() {
    for (const id of [...this.entries.keys()]) this.hide(id, 'closed');
    this.settle();
    if (this.observer) this.observer.disconnect();
    if (this.root) this.root.remove();
    if (this.preview) return;
    this.doc.removeEventListener('keydown', this.onKeydown, true);
    this.doc.removeEventListener('focusin', this.onFocusIn, true);
    this.doc.removeEventListener('visibilitychange', this.onVisibility);
    window.removeEventListener('scroll', this.onReposition, { capture: true });
    window.removeEventListener('resize', this.onReposition);
  }

  ensureRoot() {
    if (this.root && this.root.isConnected) return this.root;
    injectStyle(this.doc);
    const root = this.doc.createElement('div');
    root.className = 'herald-root';
    root.setAttribute('data-herald-root', '');
    const p = this.preview;
    if (p) {
      root.classList.add('herald-preview');
      root.setAttribute('role', 'group');
      root.setAttribute('aria-label', p.label || 'Message preview');
      if (p.theme === 'light' || p.theme === 'dark') root.classList.add(`herald-${p.theme}`);
      if (p.width) root.style.width = `${p.width}px`;
      if (p.height) root.style.height = `${p.height}px`;
    }
    (this.container || this.doc.body || this.doc.documentElement).appendChild(root);
    this.root = root;
    return root;
  }

  // --- building -------------------------------------------------------------

  show(msg) {
    if (this.entries.has(msg.id)) this.hide(msg, 'replaced');
    const build = {
      banner: () => this.buildBanner(msg),
      modal: () => this.buildModal(msg),
      fullscreen: () => this.buildFullscreen(msg),
      card: () => this.buildPanel(msg, 'card'),
      toast: () => this.buildPanel(msg, 'toast'),
      tooltip: () => this.buildPanel(msg, 'tooltip'),
    }[msg.kind];
    if (!build) return;
    const entry = build();
    entry.msg = msg;
    if (this.preview) {
      // No focus moves, no scroll lock, no trap; and for assistive technology
      // neither a modal that hides the host page nor a live region that
      // announces every redraw.
      entry.blocking = false;
      for (const el of [entry.el, ...entry.el.querySelectorAll('[role]')]) {
        el.removeAttribute('aria-modal');
        if (/^(alert|status)$/.test(el.getAttribute('role') || '')) el.setAttribute('aria-live', 'off');
      }
    }
    entry.el.setAttribute('data-herald-id', msg.id);
    entry.el.setAttribute('data-herald-kind', msg.kind);
    if (msg.priority) entry.el.setAttribute('data-herald-priority', msg.priority);
    applyTheme(entry.el, msg.theme);
    this.entries.set(msg.id, entry);
    const active = this.doc.activeElement;
    const outside = active && active !== this.doc.body && !(this.root && this.root.contains(active)) ? active : null;
    if (msg.kind === 'tooltip') {
      entry.restore = outside;
      entry.anchorEl = null;
      this.ensureRoot().appendChild(entry.el);
      entry.el.hidden = true; // until its anchor is found
      if (this.preview) {
        // No page to point at: a stand-in anchor, labelled with the selector.
        const a = this.doc.createElement('div');
        a.className = 'herald-preview-anchor';
        a.textContent = msg.anchor ? String(msg.anchor) : 'anchor';
        this.root.insertBefore(a, entry.el);
        entry.previewAnchor = a;
      }
      this.watchAnchors();
      this.placeTooltips();
      return;
    }
    if (entry.blocking) {
      // One blocking session spans dialogs that replace each other; focus
      // goes back to what had it before the first one.
      if (!this.blocking) {
        this.blocking = { restore: outside, overflow: this.doc.documentElement.style.overflow };
        this.doc.documentElement.style.overflow = 'hidden';
      }
    } else {
      entry.restore = outside;
    }
    this.ensureRoot().appendChild(entry.el);
    if (entry.blocking) entry.focusEl.focus({ preventScroll: true });
    if (msg.kind === 'toast') this.armToastTimer(entry);
    this.visible(entry);
  }

  /** Title, body, image; ids for aria-labelledby/-describedby. */
  content(msg) {
    const n = ++idCounter;
    const wrap = this.doc.createElement('div');
    wrap.className = 'herald-content';
    const ids = {};
    if (msg.title) {
      const t = this.doc.createElement('div');
      t.className = 'herald-title';
      t.id = ids.title = `herald-${n}-title`;
      t.textContent = String(msg.title);
      wrap.appendChild(t);
    }
    if (msg.body) {
      const b = this.doc.createElement('div');
      b.className = 'herald-body';
      b.id = ids.body = `herald-${n}-body`;
      b.textContent = String(msg.body);
      wrap.appendChild(b);
    }
    return { wrap, ids };
  }

  image(msg) {
    const src = msg.image_url ? safeUrl(msg.image_url, typeof location !== 'undefined' ? location.origin : null) : null;
    if (!src) return null;
    const img = this.doc.createElement('img');
    img.className = 'herald-image';
    img.alt = '';
    img.decoding = 'async';
    img.addEventListener('error', () => img.remove()); // a broken picture is worse than none
    img.src = src;
    return img;
  }

  actions(msg) {
    const list = Array.isArray(msg.actions) ? msg.actions.slice(0, 3) : [];
    const wrap = this.doc.createElement('div');
    wrap.className = 'herald-actions';
    list.forEach((action, i) => {
      if (!action || typeof action.id !== 'string') return;
      const b = this.doc.createElement('button');
      b.type = 'button';
      b.className = i === 0 ? 'herald-action herald-primary' : 'herald-action';
      b.textContent = String(action.label ?? action.id);
      b.setAttribute('data-herald-action', action.id);
      b.addEventListener('click', () => this.host.click(msg.id, action.id));
      wrap.appendChild(b);
    });
    const dismissible = isDismissible(msg);
    if (!wrap.childNodes.length && (msg.require_ack || (!dismissible && BLOCKING[msg.kind]))) {
      // A notice that must be acknowledged, or a dialog that cannot be
      // dismissed, gets an explicit button: "dismissed" for the first,
      // "clicked" (action "ok") for the second, which only a click may ack.
      const b = this.doc.createElement('button');
      b.type = 'button';
      b.className = 'herald-action herald-primary';
      b.textContent = this.labels.ok;
      b.setAttribute('data-herald-action', dismissible ? '' : 'ok');
      b.addEventListener('click', () => (dismissible ? this.host.dismiss(msg.id) : this.host.click(msg.id, 'ok')));
      wrap.appendChild(b);
    }
    return wrap.childNodes.length ? wrap : null;
  }

  closeButton(msg) {
    if (!closable(msg)) return null;
    const b = this.doc.createElement('button');
    b.type = 'button';
    b.className = 'herald-close';
    b.setAttribute('aria-label', this.labels.dismiss);
    b.textContent = '\u00d7';
    b.addEventListener('click', () => this.host.dismiss(msg.id));
    return b;
  }

  label(el, msg, ids) {
    if (ids.title) el.setAttribute('aria-labelledby', ids.title);
    else el.setAttribute('aria-label', this.labels.message);
    if (ids.body) el.setAttribute('aria-describedby', ids.body);
  }

  buildBanner(msg) {
    const el = this.doc.createElement('div');
    const sev = msg.theme && typeof msg.theme.severity === 'string' ? msg.theme.severity : null;
    el.className = `herald herald-banner herald-pos-${msg.position === 'bottom' ? 'bottom' : 'top'}`;
    if (sev && /^(info|warning|critical)$/.test(sev)) el.classList.add(`herald-sev-${sev}`);
    const urgent = msg.priority === 'urgent' || sev === 'critical' || sev === 'warning';
    el.setAttribute('role', urgent ? 'alert' : 'status');
    const { wrap, ids } = this.content(msg);
    this.label(el, msg, ids);
    const img = this.image(msg);
    if (img) el.appendChild(img);
    el.appendChild(wrap);
    const acts = this.actions(msg);
    if (acts) el.appendChild(acts);
    const close = this.closeButton(msg);
    if (close) el.appendChild(close);
    return { el, focusEl: null, blocking: false };
  }

  buildModal(msg) {
    const backdrop = this.doc.createElement('div');
    backdrop.className = `herald herald-backdrop herald-pos-${msg.position || 'center'}`;
    const dialog = this.doc.createElement('div');
    dialog.className = 'herald-panel herald-modal';
    dialog.setAttribute('role', 'dialog');
    dialog.setAttribute('aria-modal', 'true');
    dialog.tabIndex = -1;
    const { wrap, ids } = this.content(msg);
    this.label(dialog, msg, ids);
    const img = this.image(msg);
    if (img) dialog.appendChild(img);
    const head = this.doc.createElement('div');
    head.className = 'herald-head';
    head.appendChild(wrap);
    const close = this.closeButton(msg);
    if (close) head.appendChild(close);
    dialog.appendChild(head);
    const acts = this.actions(msg);
    if (acts) dialog.appendChild(acts);
    backdrop.appendChild(dialog);
    backdrop.addEventListener('mousedown', (e) => {
      if (e.target === backdrop && closable(msg)) this.host.dismiss(msg.id);
    });
    return { el: backdrop, focusEl: dialog, trap: dialog, blocking: true };
  }

  buildFullscreen(msg) {
    const el = this.doc.createElement('div');
    el.className = 'herald herald-fullscreen';
    el.setAttribute('role', 'dialog');
    el.setAttribute('aria-modal', 'true');
    el.tabIndex = -1;
    const inner = this.doc.createElement('div');
    inner.className = 'herald-inner';
    const { wrap, ids } = this.content(msg);
    this.label(el, msg, ids);
    const img = this.image(msg);
    if (img) inner.appendChild(img);
    inner.appendChild(wrap);
    const acts = this.actions(msg);
    if (acts) inner.appendChild(acts);
    el.appendChild(inner);
    const close = this.closeButton(msg);
    if (close) el.appendChild(close);
    return { el, focusEl: el, trap: el, blocking: true };
  }

  /** card, toast and tooltip: a floating panel. */
  buildPanel(msg, kind) {
    const el = this.doc.createElement('div');
    el.className = `herald herald-panel herald-${kind}`;
    if (msg.position) el.classList.add(`herald-pos-${msg.position}`);
    const { wrap, ids } = this.content(msg);
    if (kind === 'toast') {
      el.setAttribute('role', msg.priority === 'urgent' ? 'alert' : 'status');
      el.setAttribute('aria-atomic', 'true');
    } else {
      el.setAttribute('role', kind === 'card' ? 'region' : 'dialog');
      this.label(el, msg, ids);
    }
    const img = this.image(msg);
    if (img) el.appendChild(img);
    const head = this.doc.createElement('div');
    head.className = 'herald-head';
    head.appendChild(wrap);
    const acts = this.actions(msg);
    if (kind === 'toast' && acts) head.appendChild(acts);
    const close = this.closeButton(msg);
    if (close) head.appendChild(close);
    el.appendChild(head);
    if (kind !== 'toast' && acts) el.appendChild(acts);
    return { el, focusEl: null, blocking: false };
  }

  // --- showing and hiding ---------------------------------------------------

  /** Acks `displayed` now, or when the tab becomes visible. */
  visible(entry) {
    if (this.doc.visibilityState === 'hidden') this.awaitingVisible.add(entry.msg.id);
    else this.host.displayed(entry.msg.id);
  }

  visibility() {
    if (this.doc.visibilityState === 'hidden') return;
    for (const id of this.awaitingVisible) {
      const entry = this.entries.get(id);
      if (entry && entry.el.isConnected && !entry.el.hidden) this.host.displayed(id);
    }
    this.awaitingVisible.clear();
  }

  armToastTimer(entry) {
    const ms = this.toastMs;
    if (!ms || entry.msg.require_ack || (Array.isArray(entry.msg.actions) && entry.msg.actions.length)) return;
    let timer = null;
    let paused = false;
    const start = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (!paused && this.entries.get(entry.msg.id) === entry) this.host.hide(entry.msg.id, 'timeout');
      }, ms);
    };
    const pause = () => {
      paused = true;
      clearTimeout(timer);
    };
    const resume = () => {
      if (entry.el.contains(this.doc.activeElement) || entry.el.matches(':hover')) return;
      paused = false;
      start();
    };
    entry.el.addEventListener('mouseenter', pause);
    entry.el.addEventListener('focusin', pause);
    entry.el.addEventListener('mouseleave', resume);
    entry.el.addEventListener('focusout', () => setTimeout(resume, 0));
    entry.cancelTimer = () => clearTimeout(timer);
    start();
  }

  /** Takes a message (or an id) off screen. */
  hide(m, why) {
    const id = typeof m === 'string' ? m : m.id;
    const entry = this.entries.get(id);
    if (!entry) return;
    if (entry.previewAnchor) entry.previewAnchor.remove();
    this.entries.delete(id);
    this.awaitingVisible.delete(id);
    if (entry.cancelTimer) entry.cancelTimer();
    const hadFocus = entry.el.contains(this.doc.activeElement);
    entry.el.remove();
    if (!entry.blocking && hadFocus) restoreFocus(entry.restore);
    if (![...this.entries.values()].some((e) => e.msg.kind === 'tooltip') && this.observer) {
      this.observer.disconnect();
      this.observer = null;
    }
  }

  /** After a batch of effects: if no dialog is left, give back scrolling and focus. */
  settle() {
    if (!this.blocking || this.blockingEntry()) return;
    const { restore, overflow } = this.blocking;
    this.blocking = null;
    this.doc.documentElement.style.overflow = overflow;
    const active = this.doc.activeElement;
    if (!active || active === this.doc.body || (this.root && this.root.contains(active))) restoreFocus(restore);
  }

  // --- keyboard -------------------------------------------------------------

  blockingEntry() {
    for (const e of this.entries.values()) if (e.blocking) return e;
    return null;
  }

  keydown(e) {
    const blocking = this.blockingEntry();
    if (e.key === 'Escape' || e.key === 'Esc') {
      let target = blocking;
      if (!target) {
        for (const entry of this.entries.values()) if (entry.el.contains(this.doc.activeElement)) target = entry;
      }
      if (target && closable(target.msg)) {
        e.preventDefault();
        e.stopPropagation();
        this.host.dismiss(target.msg.id);
      }
      return;
    }
    if (e.key !== 'Tab' || !blocking) return;
    const trap = blocking.trap;
    const items = [...trap.querySelectorAll(FOCUSABLE)].filter((el) => !el.hidden && el.getClientRects().length);
    e.preventDefault();
    if (!items.length) {
      trap.focus();
      return;
    }
    const active = this.doc.activeElement;
    const i = items.indexOf(active);
    let next;
    if (i < 0) next = e.shiftKey ? items[items.length - 1] : items[0];
    else next = items[(i + (e.shiftKey ? -1 : 1) + items.length) % items.length];
    next.focus();
  }

  focusin(e) {
    const blocking = this.blockingEntry();
    if (blocking && !blocking.trap.contains(e.target)) blocking.focusEl.focus({ preventScroll: true });
  }

  // --- tooltips -------------------------------------------------------------

  watchAnchors() {
    if (this.preview || this.observer || typeof MutationObserver === 'undefined') return;
    this.observer = new MutationObserver((records) => {
      if (records.some((r) => !this.root || !this.root.contains(r.target))) this.schedulePlacement();
    });
    this.observer.observe(this.doc.documentElement, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: ['hidden', 'class', 'style'],
    });
  }

  schedulePlacement() {
    if (this.rafPending) return;
    if (![...this.entries.values()].some((e) => e.msg.kind === 'tooltip')) return;
    this.rafPending = true;
    const run = () => {
      this.rafPending = false;
      this.placeTooltips();
    };
    if (typeof requestAnimationFrame === 'function' && this.doc.visibilityState !== 'hidden') requestAnimationFrame(run);
    else setTimeout(run, 50);
  }

  /** Finds, follows or loses each tooltip's anchor. */
  placeTooltips() {
    for (const entry of [...this.entries.values()]) {
      if (entry.msg.kind !== 'tooltip') continue;
      let anchor = entry.previewAnchor || null;
      try {
        if (!anchor) anchor = entry.msg.anchor ? this.doc.querySelector(entry.msg.anchor) : null;
      } catch {
        console.warn('herald: tooltip anchor is not a valid selector', entry.msg.anchor);
        this.host.hide(entry.msg.id, 'invalid');
        continue;
      }
      let rect = anchor ? anchor.getBoundingClientRect() : null;
      if (rect && this.preview) {
        // Fixed inside a preview means relative to its root (CSS containment).
        const r = this.root.getBoundingClientRect();
        rect = { top: rect.top - r.top, bottom: rect.bottom - r.top, left: rect.left - r.left, width: rect.width, height: rect.height };
      }
      if (!anchor || !rect || (rect.width === 0 && rect.height === 0)) {
        entry.el.hidden = true;
        entry.anchorEl = null;
        continue;
      }
      const first = entry.el.hidden;
      entry.anchorEl = anchor;
      entry.el.hidden = false;
      this.position(entry.el, rect, entry.msg.position);
      if (first) this.visible(entry);
    }
  }

  position(el, rect, pos) {
    const gap = 10;
    const box = this.preview ? this.root : this.doc.documentElement;
    const vw = box.clientWidth || window.innerWidth;
    const vh = box.clientHeight || window.innerHeight;
    const w = el.offsetWidth;
    const h = el.offsetHeight;
    const below = pos === 'top' ? rect.top - h - gap < 0 : rect.bottom + gap + h <= vh || rect.top - h - gap < 0;
    const top = below ? rect.bottom + gap : rect.top - h - gap;
    const center = rect.left + rect.width / 2;
    const left = Math.max(8, Math.min(center - w / 2, vw - w - 8));
    el.style.top = `${Math.round(top)}px`;
    el.style.left = `${Math.round(left)}px`;
    el.style.setProperty('--_arrow-x', `${Math.round(Math.max(14, Math.min(w - 14, center - left)))}px`);
    el.classList.toggle('herald-below', below);
    el.classList.toggle('herald-above', !below);
  }
}

function restoreFocus(el) {
  if (el && el.isConnected && typeof el.focus === 'function' && el !== el.ownerDocument.body) {
    el.focus({ preventScroll: true });
  }
}

function injectStyle(doc) {
  if (doc.getElementById(STYLE_ID) || doc[Symbol.for('herald.style')]) return;
  if (typeof CSSStyleSheet === 'function' && 'adoptedStyleSheets' in doc) {
    try {
      // Constructed sheets also work under a CSP that forbids inline <style>.
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLESHEET);
      doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
      doc[Symbol.for('herald.style')] = sheet;
      return;
    } catch {
      /* fall back to a <style> element */
    }
  }
  const style = doc.createElement('style');
  style.id = STYLE_ID;
  style.textContent = STYLESHEET;
  (doc.head || doc.documentElement).appendChild(style);
}

/** theme.accent / background / color: colors only, set as custom properties. */
function applyTheme(el, theme) {
  const css = globalThis.CSS;
  if (!theme || typeof theme !== 'object' || !css || typeof css.supports !== 'function') return;
  const map = { accent: '--_accent', background: '--_bg', color: '--_fg' };
  for (const [key, prop] of Object.entries(map)) {
    const v = theme[key];
    if (typeof v === 'string' && css.supports('color', v)) el.style.setProperty(prop, v);
  }
}

/**
 * Draws one message into `container` without any connection, with the very
 * code that draws live messages (SPEC §10.6: the console's live preview).
 * Sandboxed: positioned inside the container (CSS containment), no focus
 * moved or trapped, no page-wide listeners, no acks. Options: theme
 * ('light' | 'dark', default: the page's prefers-color-scheme), width and
 * height (px, default: the container's), labels, label (the preview's
 * accessible name, default "Message preview"), onAction(action, msg),
 * onDismiss(msg). Returns {root, update(msg), destroy()}.
 */
export function renderPreview(container, msg, options = {}) {
  if (!container || typeof container.appendChild !== 'function') throw new TypeError('herald: renderPreview needs a container element');
  let current = null;
  const host = {
    displayed() {},
    hide() {},
    click(id, actionId) {
      const action = ((current && current.actions) || []).find((a) => a && a.id === actionId) || { id: actionId };
      if (options.onAction) options.onAction(action, current);
    },
    dismiss() {
      if (options.onDismiss) options.onDismiss(current);
    },
  };
  const view = new DomRenderer(host, {
    container,
    document: container.ownerDocument,
    labels: options.labels,
    toastMs: 0,
    preview: { theme: options.theme, width: options.width, height: options.height, label: options.label },
  });
  const root = view.ensureRoot();
  let placeholder = null;
  const draw = (m) => {
    if (current) view.hide(current, 'replaced');
    if (placeholder) placeholder.remove();
    placeholder = null;
    current = { id: 'preview', priority: 'normal', ...m };
    current.id = String(current.id);
    if (current.kind === 'custom' || !BUILDERS.has(current.kind)) {
      // Never drawn by the SDK: the app draws custom messages.
      placeholder = root.ownerDocument.createElement('div');
      placeholder.className = 'herald-preview-custom';
      placeholder.setAttribute('data-herald-kind', String(current.kind));
      placeholder.textContent = `kind "${current.kind}": drawn by the app`;
      root.appendChild(placeholder);
    } else view.show(current);
    view.settle();
  };
  draw(msg);
  return { root, update: draw, destroy: () => view.destroy() };
}

const BUILDERS = new Set(['banner', 'modal', 'fullscreen', 'card', 'toast', 'tooltip']);
