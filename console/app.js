// The Herald console (SPEC §10.6): the shell (sign-in, navigation, theme)
// and the Now, Incident and Messages views. Compose, Campaigns, Measure and
// Trace live in their own modules. Everything goes through the admin API.

import { html, render, useEffect, useRef, useState } from './vendor/preact-htm.js';
import { api, auth, del, enc, get, post, ApiError } from './api.js';
import * as shapes from './shapes.js';
import { Card, ErrorState, Outcome, Page, Segmented, Select, StateBox, Text, confirmDialog, fmt, useApi } from './ui.js';
import { Compose, Preview } from './compose.js';
import { Campaigns } from './campaigns.js';
import { Measure, Trace } from './measure.js';

const VIEWS = [
  ['now', 'Now', 'Live sessions and nodes'],
  ['incident', 'Incident banner', 'Raise, update, resolve'],
  ['compose', 'Compose', 'Send a message'],
  ['messages', 'Messages', 'Active and scheduled'],
  ['campaigns', 'Campaigns', 'Triggered messages'],
  ['measure', 'Measure', 'Counts and experiments'],
  ['trace', 'User trace', 'Why a user saw it, or not'],
];

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  return { view: VIEWS.some(([v]) => v === name) ? name : 'now', arg: rest.map(decodeURIComponent).join('/') };
}

function useRoute() {
  const [r, setR] = useState(route());
  useEffect(() => {
    const on = () => setR(route());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return r;
}

// ---- theme ----------------------------------------------------------------

const THEME = 'herald-console-theme';
function applyTheme(t) {
  const dark = t === 'dark' || (t !== 'light' && matchMedia('(prefers-color-scheme: dark)').matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
}
applyTheme(localStorage.getItem(THEME) || 'system');
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => applyTheme(localStorage.getItem(THEME) || 'system'));

function ThemeSwitch() {
  const [t, setT] = useState(localStorage.getItem(THEME) || 'system');
  const set = (v) => {
    setT(v);
    localStorage.setItem(THEME, v);
    applyTheme(v);
  };
  return html`<div class="theme-switch">
    <label for="theme">Theme</label>
    <select id="theme" value=${t} onChange=${(e) => set(e.currentTarget.value)}>
      <option value="system" selected=${t === 'system'}>System theme</option>
      <option value="light" selected=${t === 'light'}>Light theme</option>
      <option value="dark" selected=${t === 'dark'}>Dark theme</option>
    </select>
  </div>`;
}

// ---- sign-in --------------------------------------------------------------

function SignIn({ onIn }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    if (!key.trim()) return setError('Enter an API key (one of auth.api_keys).');
    setBusy(true);
    try {
      await get('/v1/stats', { key: key.trim() });
      auth.key = key.trim();
      onIn();
    } catch (err) {
      setError(err.status === 401 ? 'This key was refused: it is not one of the node’s auth.api_keys.' : err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin" id="main">
    <form class="signin-card" onSubmit=${submit} novalidate>
      <div class="brand brand-lg"><span class="logo" aria-hidden="true"></span> Herald console</div>
      <h1>Sign in</h1>
      <p class="sub">This node requires an API key. It is kept for this browser tab only and sent with every API call.</p>
      <${Text} label="API key" type="password" value=${key} onInput=${(v) => (setKey(v), setError(null))} error=${error} autocomplete="current-password" autofocus mono />
      <button class="btn btn-primary btn-block" type="submit" disabled=${busy}>${busy ? 'Checking…' : 'Sign in'}</button>
    </form>
  </main>`;
}

// ---- Now ------------------------------------------------------------------

function Spark({ values, label }) {
  const w = 160;
  const h = 36;
  if (values.length < 2) return html`<svg class="spark" width=${w} height=${h} role="img" aria-label=${label}></svg>`;
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${((i / (values.length - 1)) * w).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`).join(' ');
  return html`<svg class="spark" width=${w} height=${h} viewBox=${`0 0 ${w} ${h}`} role="img" aria-label=${label}>
    <polyline points=${pts} fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round" />
  </svg>`;
}

function Now() {
  const [hist, setHist] = useState([]);
  const last = useRef(null);
  const { data, error, reload } = useApi(
    async () => {
      const s = shapes.stats(await get('/v1/stats'));
      const now = performance.now();
      if (last.current) {
        const dt = (now - last.current.t) / 1000;
        const rate = Math.max(0, (s.deliveries - last.current.d) / dt);
        setHist((h) => [...h.slice(-59), rate]);
      }
      last.current = { t: now, d: s.deliveries };
      return s;
    },
    [],
    2000,
  );
  const rate = hist.length ? hist[hist.length - 1] : null;
  return html`<${Page} title="Now" sub="The whole cluster, refreshed every 2 seconds.">
    ${error && !data ? html`<${ErrorState} error=${error} what="Stats" retry=${reload} />` : null}
    ${!data && !error ? html`<${StateBox} kind="loading" title="Loading the cluster’s figures…" />` : null}
    ${data
      ? html`
        ${error ? html`<div class="inline-warn" role="alert">Refresh failed: ${error.message}. Showing the last figures.</div>` : null}
        <div class="tiles">
          <div class="tile"><p class="tile-label">Sessions online</p><p class="tile-value" data-stat="sessions">${fmt.n(data.sessions)}</p></div>
          <div class="tile"><p class="tile-label">Users online</p><p class="tile-value" data-stat="users">${fmt.n(data.users)}</p>${data.nodes.length > 1 ? html`<p class="tile-foot">summed over nodes: a user on two counts twice</p>` : null}</div>
          <div class="tile">
            <p class="tile-label">Deliveries per second</p>
            <p class="tile-value" data-stat="rate">${rate == null ? '–' : rate < 10 ? rate.toFixed(1) : fmt.n(Math.round(rate))}</p>
            <${Spark} values=${hist} label="Deliveries per second, last two minutes" />
          </div>
          <div class="tile"><p class="tile-label">Nodes</p><p class="tile-value" data-stat="nodes">${data.nodes.length}</p><p class="tile-foot">${data.mode === 'redis' ? 'Redis bus' : 'Embedded (one node)'}</p></div>
        </div>
        ${data.clusterError ? html`<div class="inline-warn" role="alert">Cluster figures unavailable: ${data.clusterError}. Showing this node only.</div>` : null}
        <${Card} title="Nodes" sub=${`${fmt.n(data.deliveries)} messages delivered since each node started`}>
          <div class="table-wrap" tabindex="0"><table class="table" aria-label="Nodes">
            <thead><tr><th scope="col">Node</th><th scope="col">State</th><th scope="col" class="num">Sessions</th><th scope="col" class="num">Users</th><th scope="col" class="num">Delivered</th></tr></thead>
            <tbody>
              ${data.nodes.map(
                (n) => html`<tr data-node=${n.id}>
                  <td><span class="mono">${n.id}</span>${n.self ? html` <span class="tag">this node</span>` : null}</td>
                  <td><span class=${`pill pill-${n.state === 'ready' || n.state === 'live' ? 'ok' : 'warn'}`}>${n.state}</span></td>
                  <td class="num">${fmt.n(n.sessions)}</td><td class="num">${fmt.n(n.users)}</td><td class="num">${fmt.n(n.deliveries)}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>
        </${Card}>`
      : null}
  </${Page}>`;
}

// ---- Incident banner ------------------------------------------------------

const TTLS = [
  ['1800', '30 minutes'],
  ['7200', '2 hours'],
  ['28800', '8 hours'],
  ['86400', '24 hours'],
  ['', 'Never (until resolved)'],
];

const SEVERITIES = [
  ['info', 'Info'],
  ['warning', 'Warning'],
  ['critical', 'Critical'],
];

/** The time a ULID id was made (Herald's generated ids), or null. */
export function ulidTime(id) {
  if (!/^[0-9A-HJKMNP-TV-Z]{26}$/.test(id || '')) return null;
  const A = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  let t = 0;
  for (const c of id.slice(0, 10)) t = t * 32 + A.indexOf(c);
  return t;
}

function Incident() {
  // A fresh key per incident: raising never replaces another incident's banner.
  const fresh = () => ({ title: '', body: '', severity: 'warning', ttl: '7200', key: `incident-${new Date().toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', '-')}` });
  const [form, setForm] = useState(fresh);
  const [errors, setErrors] = useState({});
  const [outcome, setOutcome] = useState(null);
  const [busy, setBusy] = useState(false);
  const active = useApi(async () => (await get('/v1/messages/active')).messages || [], [], 5000);
  const incidents = (active.data || []).filter((m) => m.kind === 'banner' && m.sticky);
  const live = incidents.find((m) => m.collapse_key === form.key);
  const set = (k) => (v) => {
    setForm((f) => ({ ...f, [k]: v }));
    setErrors((e) => ({ ...e, [k]: null }));
  };
  const envelope = () => ({
    to: 'all',
    kind: 'banner',
    position: 'top',
    sticky: true,
    collapse_key: form.key.trim(),
    priority: form.severity === 'critical' ? 'urgent' : 'high',
    theme: { severity: form.severity },
    ...(form.ttl ? { ttl_s: Number(form.ttl) } : {}),
    ...(form.title.trim() ? { title: form.title.trim() } : {}),
    ...(form.body.trim() ? { body: form.body.trim() } : {}),
  });
  const submit = async (e) => {
    e.preventDefault();
    const errs = {};
    if (!form.title.trim() && !form.body.trim()) errs.title = 'Give the banner a title (or a body).';
    if (!form.key.trim()) errs.key = 'An incident key is needed to update the banner later.';
    setErrors(errs);
    if (Object.keys(errs).length) return;
    setBusy(true);
    try {
      const r = await post('/v1/messages', envelope());
      setOutcome({ ok: true, text: `${live ? 'Banner updated in place' : 'Banner raised'} for everyone online and everyone who connects (id ${r.id}).` });
      active.reload();
    } catch (err) {
      if (err.field) setErrors({ [err.field === 'collapse_key' ? 'key' : err.field]: err.reason });
      setOutcome({ ok: false, text: `Not sent: ${err.message}` });
    } finally {
      setBusy(false);
    }
  };
  const resolve = async (m) => {
    const ok = await confirmDialog({
      title: 'Resolve this incident?',
      body: `“${m.title || m.body}” is taken off every screen now and no longer shown to anyone who connects.`,
      confirm: 'Resolve and retract',
    });
    if (!ok) return;
    try {
      await del(`/v1/messages/${enc(m.id)}`);
      setOutcome({ ok: true, text: `Resolved: “${m.title || m.body}” retracted everywhere.` });
      if (m.collapse_key === form.key) setForm(fresh());
      active.reload();
    } catch (err) {
      setOutcome({ ok: false, text: `Not retracted: ${err.message}` });
    }
  };
  const edit = (m) => {
    setForm({ title: m.title || '', body: m.body || '', severity: (m.theme && m.theme.severity) || 'warning', ttl: m.expires_at ? '7200' : '', key: m.collapse_key || '' });
    setErrors({});
    document.getElementById('inc-title')?.focus();
  };
  return html`<${Page} title="Incident banner" sub="A banner on every screen: everyone online sees it now, everyone who connects sees it until it is resolved.">
    <div class="split">
      <${Card} title=${live ? 'Update the banner' : 'Raise a banner'} sub=${live ? 'Same incident key: the banner on screen is replaced in place.' : 'Sent to all users, sticky, at high priority.'}>
        <form onSubmit=${submit} novalidate class="stack">
          <${Segmented} legend="Severity" value=${form.severity} onChange=${set('severity')} options=${SEVERITIES} name="severity" />
          <${Text} id="inc-title" label="Title" value=${form.title} onInput=${set('title')} error=${errors.title} placeholder="Payments are delayed" required />
          <${Text} label="Details" multiline value=${form.body} onInput=${set('body')} error=${errors.body} placeholder="We are on it. Next update at 14:30 UTC." />
          <${Select} label="Goes away by itself after" value=${form.ttl} onChange=${set('ttl')} options=${TTLS} hint="A forgotten banner expires; resolve it as soon as the incident is over." />
          <${Text} label="Incident key" value=${form.key} onInput=${set('key')} error=${errors.key} mono hint="A banner with the same key replaces the one on screen (collapse_key)." />
          <div class="row">
            <button class="btn btn-primary" type="submit" disabled=${busy}>${busy ? 'Sending…' : live ? 'Update banner' : 'Raise banner'}</button>
            ${live ? html`<button class="btn btn-quiet" type="button" onClick=${() => setForm(fresh())}>New incident</button>` : null}
          </div>
          <${Outcome} outcome=${outcome} />
        </form>
      </${Card}>
      <div class="stack-lg">
      <${Card} title="What users see" sub="Drawn by the SDK, as on their screens.">
        <${Preview} msg=${{ ...envelope(), title: envelope().title || (envelope().body ? undefined : 'Your title') }} height=${120} label="Incident banner preview" />
      </${Card}>
      <${Card} title="Active incidents" sub="Sticky banners on screen now.">
        ${active.error && !active.data ? html`<${ErrorState} error=${active.error} what="The active set" retry=${active.reload} />` : null}
        ${!active.data && !active.error ? html`<${StateBox} kind="loading" title="Loading…" />` : null}
        ${active.data && !incidents.length ? html`<${StateBox} kind="empty" title="No active incident">All clear. A banner you raise appears here.</${StateBox}>` : null}
        <ul class="list" aria-label="Active incidents">
          ${incidents.map(
            (m) => html`<li class="list-item" data-id=${m.id}>
              <div class="list-main">
                <p class="list-title"><span class=${`sev sev-${(m.theme && m.theme.severity) || 'info'}`}>${(m.theme && m.theme.severity) || 'info'}</span> ${m.title || m.body}</p>
                ${m.title && m.body ? html`<p class="list-sub">${m.body}</p>` : null}
                <p class="list-meta mono">key ${m.collapse_key || '–'} · ${ulidTime(m.id) ? fmt.ago(ulidTime(m.id)) : m.id}</p>
              </div>
              <div class="list-actions">
                <button class="btn btn-quiet" onClick=${() => edit(m)} aria-label=${`Update “${m.title || m.body}”`}>Update</button>
                <button class="btn btn-danger-quiet" onClick=${() => resolve(m)} aria-label=${`Resolve “${m.title || m.body}”`}>Resolve</button>
              </div>
            </li>`,
          )}
        </ul>
      </${Card}>
      </div>
    </div>
  </${Page}>`;
}

// ---- Messages: active and scheduled ---------------------------------------

function audienceText(to) {
  if (to === 'all') return 'everyone';
  if (!to || typeof to !== 'object') return String(to);
  const parts = [];
  if (to.users) parts.push(`users ${to.users.join(', ')}`);
  if (to.segments) parts.push(`segments ${to.segments.join(', ')}`);
  if (to.where) parts.push(`where ${to.where}`);
  return parts.join(' and ');
}

function Messages() {
  const active = useApi(async () => (await get('/v1/messages/active')).messages || [], [], 5000);
  const sched = useApi(async () => shapes.scheduled(await get('/v1/messages/scheduled')), [], 10000);
  const [outcome, setOutcome] = useState(null);
  const retract = async (m, scheduled) => {
    const what = m.title || m.body || m.id;
    const ok = await confirmDialog({
      title: scheduled ? 'Cancel this scheduled message?' : 'Retract this message?',
      body: scheduled ? `“${what}” will not be sent.` : `“${what}” is taken off every screen now and no longer shown to anyone who connects.`,
      confirm: scheduled ? 'Cancel message' : 'Retract',
    });
    if (!ok) return;
    try {
      await del(`/v1/messages/${enc(m.id)}`);
      setOutcome({ ok: true, text: `${scheduled ? 'Cancelled' : 'Retracted'}: ${what}` });
      active.reload();
      sched.reload();
    } catch (err) {
      setOutcome({ ok: false, text: `Failed: ${err.message}` });
    }
  };
  const row = (m, scheduled, at) => html`<tr data-id=${m.id}>
    <td><span class="tag">${m.kind}</span></td>
    <td><p class="cell-title">${m.title || m.body || '(custom)'}</p><p class="cell-sub mono">${m.id}</p></td>
    <td data-label="Audience">${audienceText(m.to)}</td>
    <td data-label=${scheduled ? 'Sends at' : 'Stays'}>${scheduled ? fmt.time(at) : m.require_ack ? 'until acknowledged' : 'sticky'}</td>
    <td class="actions-cell">
      <a class="btn btn-quiet" href=${`#/measure/message/${enc(m.id)}`}>Counts</a>
      <button class="btn btn-danger-quiet" onClick=${() => retract(m, scheduled)} aria-label=${`${scheduled ? 'Cancel' : 'Retract'} ${m.title || m.id}`}>${scheduled ? 'Cancel' : 'Retract'}</button>
    </td>
  </tr>`;
  const table = (label, head, rows) => html`<div class="table-wrap" tabindex="0"><table class="table table-stack" aria-label=${label}>
      <thead><tr><th scope="col">Kind</th><th scope="col">Message</th><th scope="col">Audience</th><th scope="col">${head}</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${rows}</tbody></table></div>`;
  return html`<${Page} title="Messages" sub="What is on screens now, and what is waiting to be sent.">
    <${Outcome} outcome=${outcome} />
    <${Card} title="Active" sub="Sticky and must-acknowledge messages to everyone or to segments: shown to everyone in their audience who connects. Those to named users are kept per user and not listed here.">
      ${active.error && !active.data ? html`<${ErrorState} error=${active.error} what="The active set" retry=${active.reload} />` : null}
      ${!active.data && !active.error ? html`<${StateBox} kind="loading" title="Loading…" />` : null}
      ${active.data && !active.data.length ? html`<${StateBox} kind="empty" title="Nothing active">Sticky messages and messages that require an acknowledgement appear here.</${StateBox}>` : null}
      ${active.data && active.data.length ? table('Active messages', 'Stays', active.data.map((m) => row(m, false))) : null}
    </${Card}>
    <${Card} title="Scheduled" sub="Held until their send time (send_at), then published once for the whole cluster.">
      ${sched.error ? html`<${ErrorState} error=${sched.error} what="Scheduling" retry=${sched.reload} />` : null}
      ${!sched.data && !sched.error ? html`<${StateBox} kind="loading" title="Loading…" />` : null}
      ${sched.data && !sched.error && !sched.data.length ? html`<${StateBox} kind="empty" title="Nothing scheduled">Pick “Schedule” in Compose to send a message later.</${StateBox}>` : null}
      ${sched.data && !sched.error && sched.data.length ? table('Scheduled messages', 'Sends at', sched.data.map((s) => row({ ...s.envelope, id: s.id }, true, s.sendAt))) : null}
    </${Card}>
  </${Page}>`;
}

// ---- shell ----------------------------------------------------------------

function Shell({ keyless, onOut }) {
  const r = useRoute();
  const first = useRef(true);
  useEffect(() => {
    // Keyboard and screen reader users land on the new view's heading.
    if (first.current) first.current = false;
    else document.getElementById('page-title')?.focus();
    // On a phone the navigation scrolls sideways: keep the current view in sight.
    const on = document.querySelector('.side nav a.on');
    const list = on && on.closest('ul');
    if (list && list.scrollWidth > list.clientWidth) list.scrollLeft = on.offsetLeft - (list.clientWidth - on.offsetWidth) / 2;
  }, [r.view]);
  const View = { now: Now, incident: Incident, compose: Compose, messages: Messages, campaigns: Campaigns, measure: Measure, trace: Trace }[r.view];
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${(e) => (e.preventDefault(), document.getElementById('page-title')?.focus())}>Skip to content</a>
    <aside class="side">
      <div class="brand"><span class="logo" aria-hidden="true"></span> Herald</div>
      <nav aria-label="Console">
        <ul>
          ${VIEWS.map(
            ([v, label, hint]) => html`<li><a href=${`#/${v}`} class=${r.view === v ? 'on' : ''} aria-current=${r.view === v ? 'page' : undefined}>
              <span class="nav-label">${label}</span><span class="nav-hint">${hint}</span></a></li>`,
          )}
        </ul>
      </nav>
      <div class="side-foot">
        ${keyless
          ? html`<p class="auth-note" data-auth="keyless"><span class="dot dot-warn" aria-hidden="true"></span> No API keys on this node: the admin listener is loopback-only, so anyone on this machine can use the console.</p>`
          : html`<p class="auth-note" data-auth="key"><span class="dot dot-ok" aria-hidden="true"></span> Signed in with an API key.</p>
              <button class="btn btn-quiet btn-block" onClick=${onOut}>Sign out</button>`}
        <${ThemeSwitch} />
      </div>
    </aside>
    <main class="main" id="main">
      <${View} arg=${r.arg} key=${r.view} />
    </main>
  </div>`;
}

function App() {
  const [state, setState] = useState({ phase: 'probing' });
  const probe = async () => {
    try {
      await get('/v1/stats', { key: '' });
      setState({ phase: 'open', keyless: true });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        if (!auth.key) return setState({ phase: 'signin' });
        try {
          await get('/v1/stats');
          setState({ phase: 'open', keyless: false });
        } catch {
          auth.key = '';
          setState({ phase: 'signin' });
        }
      } else setState({ phase: 'down', error: err });
    }
  };
  useEffect(() => {
    probe();
  }, []);
  if (state.phase === 'probing') return html`<main id="main" class="signin"><${StateBox} kind="loading" title="Connecting to the node…" /></main>`;
  if (state.phase === 'down')
    return html`<main id="main" class="signin"><div class="signin-card"><h1>Herald console</h1><${StateBox} kind="error" title="The node did not answer" retry=${probe}>${state.error.message}</${StateBox}></div></main>`;
  if (state.phase === 'signin') return html`<${SignIn} onIn=${() => setState({ phase: 'open', keyless: false })} />`;
  return html`<${Shell} keyless=${state.keyless} onOut=${() => ((auth.key = ''), setState({ phase: 'signin' }))} />`;
}

export { api };
render(html`<${App} />`, document.getElementById('app'));
