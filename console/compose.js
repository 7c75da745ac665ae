// Compose: any kind of message, its audience (with the preview count and
// CEL errors as you type), send now or at a time; beside it the live preview
// drawn by the SDK's own renderer (renderPreview, the code apps run).

import { html, useEffect, useRef, useState } from './vendor/preact-htm.js';
import { renderPreview } from './sdk/herald-render.js';
import { NotAvailable, post } from './api.js';
import * as shapes from './shapes.js';
import { Card, Check, Outcome, Page, Segmented, Select, Text, fmt } from './ui.js';

export const KINDS = ['banner', 'modal', 'card', 'toast', 'tooltip', 'fullscreen', 'custom'].map((k) => [k, k[0].toUpperCase() + k.slice(1)]);
const PRIORITIES = ['low', 'normal', 'high', 'urgent'].map((p) => [p, p[0].toUpperCase() + p.slice(1)]);

/** `{{attrs.NAME}}` and `{{attrs.NAME|fallback}}` filled from `attrs`, as the node fills them. */
export function fill(text, attrs) {
  if (typeof text !== 'string') return text;
  return text.replace(/\{\{\s*attrs\.([A-Za-z0-9_]+)\s*(?:\|([^}]*))?\}\}/g, (_, name, fb) => {
    const v = attrs && attrs[name];
    return v == null || v === '' ? (fb ?? '') : String(v);
  });
}

/** What the recipient with `attrs` and `locale` would see: locale picked, placeholders filled. */
export function personalize(msg, attrs, locale) {
  const m = { ...msg };
  const loc = locale && m.locales && m.locales[locale];
  if (loc) {
    if (loc.title) m.title = loc.title;
    if (loc.body) m.body = loc.body;
    if (Array.isArray(loc.actions)) m.actions = (m.actions || []).map((a, i) => ({ ...a, ...(loc.actions[i] || {}) }));
  }
  delete m.locales;
  m.title = fill(m.title, attrs);
  m.body = fill(m.body, attrs);
  if (m.actions) m.actions = m.actions.map((a) => ({ ...a, label: fill(a.label, attrs) }));
  return m;
}

/** The SDK's renderer drawing `msg` into a sandboxed box. */
export function Preview({ msg, theme, width, height = 320, label = 'Message preview' }) {
  const ref = useRef(null);
  const inst = useRef(null);
  const last = useRef(msg);
  last.current = msg;
  useEffect(() => {
    inst.current = renderPreview(ref.current, last.current, { theme, width, height, label });
    return () => {
      inst.current.destroy();
      inst.current = null;
    };
  }, [theme, width, height]);
  const json = JSON.stringify(msg);
  useEffect(() => {
    if (inst.current) inst.current.update(last.current);
  }, [json]);
  return html`<div class="preview-frame" ref=${ref} data-theme=${theme || ''} style=${width ? `width:${width}px` : ''}></div>`;
}

export const emptyMessage = () => ({
  kind: 'modal',
  title: '',
  body: '',
  image_url: '',
  actions: [],
  position: '',
  anchor: '',
  locales: [],
  data: '',
  sticky: false,
  require_ack: false,
  dismissible: true,
  ttl_s: '',
  priority: 'normal',
  collapse_key: '',
});

/** The form's message fields → the envelope's (without `to`). Throws {field, reason} on a local mistake. */
export function toMessage(f) {
  const m = { kind: f.kind };
  if (f.title.trim()) m.title = f.title;
  if (f.body.trim()) m.body = f.body;
  if (f.image_url.trim()) m.image_url = f.image_url.trim();
  const actions = f.actions.filter((a) => a.id.trim() || a.label.trim());
  if (actions.length) m.actions = actions.map((a) => ({ id: a.id.trim(), label: a.label, ...(a.url.trim() ? { url: a.url.trim() } : {}) }));
  if (f.position) m.position = f.position;
  if (f.anchor.trim()) m.anchor = f.anchor.trim();
  const locales = f.locales.filter((l) => l.locale.trim());
  if (locales.length) m.locales = Object.fromEntries(locales.map((l) => [l.locale.trim(), { ...(l.title ? { title: l.title } : {}), ...(l.body ? { body: l.body } : {}) }]));
  if (f.data.trim()) {
    try {
      m.data = JSON.parse(f.data);
    } catch {
      throw { field: 'data', reason: 'data: not JSON' };
    }
  }
  if (f.sticky) m.sticky = true;
  if (f.require_ack) m.require_ack = true;
  if (!f.dismissible) m.dismissible = false;
  if (String(f.ttl_s).trim()) m.ttl_s = Number(f.ttl_s);
  if (f.priority && f.priority !== 'normal') m.priority = f.priority;
  if (f.collapse_key.trim()) m.collapse_key = f.collapse_key.trim();
  return m;
}

/** An envelope's (or a campaign message's) fields → the form's. */
export function fromMessage(m = {}) {
  const f = emptyMessage();
  for (const k of ['kind', 'title', 'body', 'image_url', 'position', 'anchor', 'priority', 'collapse_key']) if (m[k] != null) f[k] = String(m[k]);
  f.actions = (m.actions || []).map((a) => ({ id: a.id || '', label: a.label || '', url: a.url || '' }));
  f.locales = Object.entries(m.locales || {}).map(([locale, l]) => ({ locale, title: l.title || '', body: l.body || '' }));
  if (m.data !== undefined) f.data = JSON.stringify(m.data, null, 2);
  f.sticky = !!m.sticky;
  f.require_ack = !!m.require_ack;
  f.dismissible = m.dismissible !== false;
  if (m.ttl_s != null) f.ttl_s = String(m.ttl_s);
  return f;
}

/** Which form field an API field names: "message.actions[0].label" → "actions". */
export function formField(field) {
  if (!field) return null;
  const f = field.replace(/^(message|variants\[\d+\]\.message)\./, '').split(/[.[]/)[0];
  return f === 'expires_at' ? 'ttl_s' : f;
}

/** The fields of a message: kind, content, actions, image, locales, delivery options. */
export function MessageFields({ value: f, onChange, errors = {}, compact }) {
  const set = (k) => (v) => onChange({ ...f, [k]: v });
  const setAction = (i, k) => (v) => onChange({ ...f, actions: f.actions.map((a, j) => (j === i ? { ...a, [k]: v } : a)) });
  const setLocale = (i, k) => (v) => onChange({ ...f, locales: f.locales.map((a, j) => (j === i ? { ...a, [k]: v } : a)) });
  return html`<div class="stack">
    <${Select} label="Kind" value=${f.kind} onChange=${set('kind')} options=${KINDS} error=${errors.kind}
      hint=${f.kind === 'custom' ? 'Handed to the app untouched (its data): the app draws it.' : null} />
    <${Text} label="Title" value=${f.title} onInput=${set('title')} error=${errors.title} hint="Personalize with {{attrs.name}} or {{attrs.name|there}}." />
    <${Text} label="Body" multiline value=${f.body} onInput=${set('body')} error=${errors.body} />
    <fieldset class="group">
      <legend>Buttons <span class="muted">(up to 3)</span></legend>
      ${errors.actions ? html`<p class="error" role="alert">${errors.actions}</p>` : null}
      ${f.actions.map(
        (a, i) => html`<div class="action-row">
          <${Text} label=${`Button ${i + 1} label`} value=${a.label} onInput=${setAction(i, 'label')} />
          <${Text} label=${`Button ${i + 1} id`} value=${a.id} onInput=${setAction(i, 'id')} mono />
          <${Text} label=${`Button ${i + 1} link`} value=${a.url} onInput=${setAction(i, 'url')} placeholder="/billing" />
          <button type="button" class="btn btn-quiet btn-icon" aria-label=${`Remove button ${i + 1}`} onClick=${() => onChange({ ...f, actions: f.actions.filter((_, j) => j !== i) })}>×</button>
        </div>`,
      )}
      ${f.actions.length < 3
        ? html`<button type="button" class="btn btn-quiet" onClick=${() => onChange({ ...f, actions: [...f.actions, { id: f.actions.length ? `action${f.actions.length + 1}` : 'ok', label: '', url: '' }] })}>+ Add button</button>`
        : null}
    </fieldset>
    <${Text} label="Image URL" type="url" value=${f.image_url} onInput=${set('image_url')} error=${errors.image_url} placeholder="https://…" />
    <div class="grid-2">
      <${Select} label="Position" value=${f.position} onChange=${set('position')} error=${errors.position} options=${[['', 'Default for the kind'], ['top', 'Top'], ['bottom', 'Bottom'], ['center', 'Center']]} />
      ${f.kind === 'tooltip' ? html`<${Text} label="Anchor" value=${f.anchor} onInput=${set('anchor')} error=${errors.anchor} mono placeholder="#export-button" hint="CSS selector or view id." />` : html`<div></div>`}
    </div>
    ${f.kind === 'custom' || f.data ? html`<${Text} label="Data (JSON for the app)" multiline mono value=${f.data} onInput=${set('data')} error=${errors.data} />` : null}
    <fieldset class="group">
      <legend>Translations</legend>
      ${errors.locales ? html`<p class="error" role="alert">${errors.locales}</p>` : null}
      ${f.locales.map(
        (l, i) => html`<div class="locale-row">
          <${Text} label=${`Locale ${i + 1}`} value=${l.locale} onInput=${setLocale(i, 'locale')} mono placeholder="fr" />
          <${Text} label=${`Title (${l.locale || 'locale'})`} value=${l.title} onInput=${setLocale(i, 'title')} />
          <${Text} label=${`Body (${l.locale || 'locale'})`} value=${l.body} onInput=${setLocale(i, 'body')} />
          <button type="button" class="btn btn-quiet btn-icon" aria-label=${`Remove locale ${i + 1}`} onClick=${() => onChange({ ...f, locales: f.locales.filter((_, j) => j !== i) })}>×</button>
        </div>`,
      )}
      <button type="button" class="btn btn-quiet" onClick=${() => onChange({ ...f, locales: [...f.locales, { locale: '', title: '', body: '' }] })}>+ Add translation</button>
    </fieldset>
    <fieldset class="group">
      <legend>Delivery</legend>
      <div class="grid-2">
        ${compact ? html`<div></div>` : html`<${Select} label="Priority" value=${f.priority} onChange=${set('priority')} options=${PRIORITIES} error=${errors.priority} hint="Urgent bypasses the per-user cap." />`}
        <${Text} label="Expires after (seconds)" type="number" min="1" value=${f.ttl_s} onInput=${set('ttl_s')} error=${errors.ttl_s} placeholder="never" />
      </div>
      <${Text} label="Collapse key" value=${f.collapse_key} onInput=${set('collapse_key')} error=${errors.collapse_key} mono hint="A later message with the same key replaces this one." />
      <div class="checks">
        <${Check} label="Sticky" checked=${f.sticky} onChange=${set('sticky')} hint="Also shown to those who connect later, until it expires or is retracted." />
        <${Check} label="Require acknowledgement" checked=${f.require_ack} onChange=${set('require_ack')} hint="Shown on every load until clicked or dismissed." />
        <${Check} label="Dismissible" checked=${f.dismissible} onChange=${set('dismissible')} hint="Off: no close control; only a button acknowledges it." />
      </div>
    </fieldset>
  </div>`;
}

const splitList = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

export const emptyAudience = () => ({ mode: 'all', users: '', segments: '', where: '' });

export function toAudience(a) {
  if (a.mode === 'all') return 'all';
  const to = {};
  if (splitList(a.users).length) to.users = splitList(a.users);
  if (splitList(a.segments).length) to.segments = splitList(a.segments);
  if (a.where.trim()) to.where = a.where.trim();
  return Object.keys(to).length ? to : null;
}

export function fromAudience(to) {
  if (!to || to === 'all') return emptyAudience();
  return { mode: 'some', users: (to.users || []).join(', '), segments: (to.segments || []).join(', '), where: to.where || '' };
}

/** Debounced: `fn(signal)` 350 ms after `key` last changed. */
function useDebounced(key, fn) {
  useEffect(() => {
    const ctl = new AbortController();
    const t = setTimeout(() => fn(ctl.signal), 350);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
  }, [key]);
}

/**
 * The audience builder: everyone, or users, segments and a CEL `where`
 * (all that are filled in must hold). Checks the expression through
 * POST /v1/validate and counts who is online through POST /v1/audience/preview
 * as you type. `check` is what /v1/validate gets beside `to`.
 */
export function AudienceBuilder({ value: a, onChange, errors = {}, campaign }) {
  const [count, setCount] = useState({ state: 'idle' });
  const [celError, setCelError] = useState(null);
  const to = toAudience(a);
  const key = JSON.stringify(to);
  const set = (k) => (v) => onChange({ ...a, [k]: v });
  useDebounced(key, async (signal) => {
    setCelError(null);
    if (!to) return setCount({ state: 'idle' });
    if (to !== 'all' && to.where) {
      try {
        const probe = campaign ? { id: 'audience-check', trigger: { connect: true }, audience: to, message: { kind: 'toast', title: 'x' } } : { to, kind: 'toast', title: 'x' };
        await post('/v1/validate', probe, { signal });
      } catch (err) {
        if (err.name === 'AbortError') return;
        if (err.status === 400) {
          setCelError(err.reason.replace(/^(campaign )?(to|audience)\.where: /, ''));
          return setCount({ state: 'idle' });
        }
      }
    }
    setCount({ state: 'loading' });
    try {
      const p = shapes.preview(await post('/v1/audience/preview', { to }, { signal }));
      setCount({ state: 'ok', ...p });
    } catch (err) {
      if (err.name === 'AbortError') return;
      setCount(err instanceof NotAvailable ? { state: 'na' } : { state: 'error', message: err.message });
    }
  });
  const whereError = celError || errors.where;
  return html`<div class="stack audience">
    <${Segmented} legend="Audience" value=${a.mode} onChange=${set('mode')} options=${[['all', 'Everyone'], ['some', 'Narrow down']]} name=${campaign ? 'camp-audience' : 'audience'} />
    ${a.mode === 'some'
      ? html`<p class="hint">Everything you fill in must hold.</p>
        <${Text} label="Users" value=${a.users} onInput=${set('users')} error=${errors.users} placeholder="u1, u2" hint="User ids, comma-separated." />
        <${Text} label="Segments" value=${a.segments} onInput=${set('segments')} error=${errors.segments} placeholder="beta, staff" hint="Sessions in any of these segments." />
        <${Text} label="Where (CEL)" value=${a.where} onInput=${set('where')} error=${whereError} mono placeholder='attrs.plan == "free" && attrs.level >= 3' hint="Over user, segments and attrs." />`
      : null}
    <div class="count" data-count=${count.state} aria-live="polite">
      ${count.state === 'loading' ? html`<span class="spinner spinner-sm" aria-hidden="true"></span> Counting who is online…` : null}
      ${count.state === 'ok'
        ? html`<strong data-sessions=${count.sessions}>${fmt.n(count.sessions)}</strong> sessions · <strong data-users=${count.users}>${fmt.n(count.users)}</strong> users online now in this audience${count.sample.length ? html`<span class="muted"> (e.g. ${count.sample.slice(0, 5).join(', ')})</span>` : null}`
        : null}
      ${count.state === 'na' ? html`<span class="muted">The audience preview count is not available on this node.</span>` : null}
      ${count.state === 'error' ? html`<span class="muted">No count: ${count.message}</span>` : null}
      ${count.state === 'idle' && !whereError && a.mode === 'some' && !to ? html`<span class="muted">Fill in users, segments or an expression.</span>` : null}
    </div>
  </div>`;
}

/** Preview controls (theme, width, sample user) and the preview itself. */
export function PreviewPanel({ msg, locales = [] }) {
  const [theme, setTheme] = useState(document.documentElement.dataset.theme === 'dark' ? 'dark' : 'light');
  const [device, setDevice] = useState('desktop');
  const [attrs, setAttrs] = useState('{"name": "Ada", "plan": "free", "level": 3}');
  const [locale, setLocale] = useState('');
  let sample = {};
  let attrsError = null;
  try {
    sample = JSON.parse(attrs || '{}');
  } catch {
    attrsError = 'Not JSON: placeholders stay unfilled.';
  }
  const shown = personalize(msg, sample, locale);
  return html`<div class="preview-panel">
    <div class="preview-controls">
      <${Segmented} legend="Theme" value=${theme} onChange=${setTheme} options=${[['light', 'Light'], ['dark', 'Dark']]} name="pv-theme" />
      <${Segmented} legend="Width" value=${device} onChange=${setDevice} options=${[['desktop', 'Desktop'], ['phone', 'Phone']]} name="pv-width" />
    </div>
    <div class="preview-stage">
      <${Preview} msg=${shown} theme=${theme} width=${device === 'phone' ? 375 : undefined} height=${device === 'phone' ? 560 : 380} />
    </div>
    <details class="sample">
      <summary>Sample user</summary>
      <div class="stack">
        <${Text} label="Attributes (JSON)" multiline mono rows="3" value=${attrs} onInput=${setAttrs} error=${attrsError} hint="Fills {{attrs.…}} in the preview." />
        <${Select} label="Locale" value=${locale} onChange=${setLocale} options=${[['', 'Base text'], ...locales.filter(Boolean).map((l) => [l, l])]} />
      </div>
    </details>
  </div>`;
}

/** datetime-local value (the browser's local time) → unix ms. */
const localToMs = (v) => (v ? new Date(v).getTime() : NaN);

export function Compose() {
  const [f, setF] = useState(() => ({ ...emptyMessage(), title: 'Hi {{attrs.name|there}}, exports are here', body: 'Export any report as CSV or PDF.', actions: [{ id: 'try', label: 'Try it', url: '' }] }));
  const [aud, setAud] = useState(emptyAudience());
  const [when, setWhen] = useState('now');
  const [at, setAt] = useState('');
  const [errors, setErrors] = useState({});
  const [outcome, setOutcome] = useState(null);
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  let msg = {};
  try {
    msg = toMessage(f);
  } catch {
    msg = { kind: f.kind, title: f.title, body: f.body };
  }
  const send = async (e) => {
    e.preventDefault();
    setErrors({});
    setResult(null);
    const to = toAudience(aud);
    if (!to) return setErrors({ users: 'Name users, segments or an expression, or pick Everyone.' });
    let env;
    try {
      env = { to, ...toMessage(f) };
    } catch (err) {
      return setErrors({ [err.field]: err.reason });
    }
    if (when === 'later') {
      const ms = localToMs(at);
      if (!Number.isFinite(ms)) return setErrors({ send_at: 'Pick a date and time.' });
      env.send_at = ms;
    }
    setBusy(true);
    try {
      const r = shapes.published(await post('/v1/messages', env));
      setResult(r);
      setOutcome({ ok: true, text: r.sendAt ? `Scheduled for ${fmt.time(r.sendAt)}.` : 'Sent.' });
    } catch (err) {
      const field = formField(err.field);
      const where = err.field && err.field.startsWith('to') ? (err.field === 'to.where' ? 'where' : 'users') : field;
      if (where) setErrors({ [where]: err.reason });
      setOutcome({ ok: false, text: `Not sent: ${err.message}` });
    } finally {
      setBusy(false);
    }
  };
  return html`<${Page} title="Compose" sub="Write a message, pick who gets it, and send it now or later. The preview is drawn by the SDK that draws it in your apps.">
    <form class="compose" onSubmit=${send} novalidate>
      <div class="compose-form">
        <${Card} title="Message"><${MessageFields} value=${f} onChange=${setF} errors=${errors} /></${Card}>
        <${Card} title="Audience"><${AudienceBuilder} value=${aud} onChange=${setAud} errors=${errors} /></${Card}>
        <${Card} title="Send">
          <div class="stack">
            <${Segmented} legend="When" value=${when} onChange=${setWhen} options=${[['now', 'Send now'], ['later', 'Schedule']]} name="when" />
            ${when === 'later' ? html`<${Text} label="Send at (your local time)" type="datetime-local" step="1" value=${at} onInput=${setAt} error=${errors.send_at} hint="Up to 30 days ahead. Expiry counts from this time." />` : null}
            <div class="row">
              <button class="btn btn-primary" type="submit" disabled=${busy}>${busy ? 'Sending…' : when === 'later' ? 'Schedule message' : 'Send message'}</button>
            </div>
            <${Outcome} outcome=${outcome} />
            ${result
              ? html`<dl class="result" aria-label="Publish result">
                  <div><dt>Message id</dt><dd class="mono" data-result="id">${result.id}</dd></div>
                  ${result.sendAt ? html`<div><dt>Sends at</dt><dd data-result="send_at">${fmt.time(result.sendAt)}</dd></div>` : null}
                  ${result.online ? html`<div><dt>Online</dt><dd data-result="online">${result.online.length ? result.online.join(', ') : 'nobody'}</dd></div>` : null}
                  ${result.offline ? html`<div><dt>Offline</dt><dd data-result="offline">${result.offline.length ? result.offline.join(', ') : 'nobody'}</dd></div>` : null}
                  <div><dt>Counts</dt><dd><a href=${`#/measure/message/${encodeURIComponent(result.id)}`}>See how it does</a></dd></div>
                </dl>`
              : null}
          </div>
        </${Card}>
      </div>
      <div class="compose-preview">
        <${Card} title="Preview" class="sticky-card"><${PreviewPanel} msg=${msg} locales=${f.locales.map((l) => l.locale.trim())} /></${Card}>
      </div>
    </form>
  </${Page}>`;
}
