// Campaigns: list, create, edit, activate / deactivate, delete. Saving is a
// PUT /v1/campaigns/{id}: the node validates, and its 400 reason is shown
// next to the field it names.

import { html, useEffect, useState } from './vendor/preact-htm.js';
import { del, enc, get, post, put } from './api.js';
import { AudienceBuilder, MessageFields, PreviewPanel, emptyAudience, emptyMessage, formField, fromAudience, fromMessage, toAudience, toMessage } from './compose.js';
import { Card, Check, ErrorState, Outcome, Page, Segmented, Select, StateBox, Text, confirmDialog, useApi } from './ui.js';

const PERIODS = [
  ['', 'ever'],
  ['3600', 'hour'],
  ['86400', 'day'],
  ['604800', 'week'],
  ['2592000', '30 days'],
];

const msToLocal = (ms) => {
  if (!ms) return '';
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
};

function triggerText(t = {}) {
  if (t.event) return `event “${t.event}”${t.where ? ` where ${t.where}` : ''}`;
  if (t.connect) return 'on connect';
  if (t.idle_s) return `idle ${t.idle_s} s`;
  return '–';
}

function audienceText(to) {
  if (!to || to === 'all') return 'everyone';
  return [to.users && `users ${to.users.join(', ')}`, to.segments && `segments ${to.segments.join(', ')}`, to.where && to.where].filter(Boolean).join(' and ');
}

const blank = () => ({
  id: '',
  active: true,
  trigger: 'event',
  event: '',
  eventWhere: '',
  idle_s: '',
  audience: emptyAudience(),
  content: 'one',
  message: { ...emptyMessage(), kind: 'modal' },
  variants: [
    { id: 'a', weight: '50', message: { ...emptyMessage(), kind: 'modal' } },
    { id: 'b', weight: '50', message: { ...emptyMessage(), kind: 'modal' } },
  ],
  holdout_pct: '',
  priority: 'normal',
  delay_s: '',
  fmax: '',
  fper: '',
  funtil: '',
  starts_at: '',
  ends_at: '',
  quiet: false,
  quiet_from: '22:00',
  quiet_to: '08:00',
  goal: false,
  goal_event: '',
  goal_hours: '24',
});

function fromCampaign(c) {
  const f = blank();
  f.id = c.id;
  f.active = c.active !== false;
  const t = c.trigger || {};
  f.trigger = t.event ? 'event' : t.connect ? 'connect' : 'idle';
  f.event = t.event || '';
  f.eventWhere = t.where || '';
  f.idle_s = t.idle_s ? String(t.idle_s) : '';
  f.audience = fromAudience(c.audience);
  if (Array.isArray(c.variants) && c.variants.length) {
    f.content = 'variants';
    f.variants = c.variants.map((v) => ({ id: v.id, weight: String(v.weight ?? ''), message: fromMessage(v.message) }));
  } else f.message = fromMessage(c.message);
  f.holdout_pct = c.holdout_pct ? String(c.holdout_pct) : '';
  f.priority = c.priority || 'normal';
  f.delay_s = c.delay_s ? String(c.delay_s) : '';
  if (c.frequency) {
    f.fmax = String(c.frequency.max ?? '');
    f.fper = c.frequency.per_s ? String(c.frequency.per_s) : '';
    f.funtil = c.frequency.until || '';
  }
  f.starts_at = msToLocal(c.starts_at);
  f.ends_at = msToLocal(c.ends_at);
  if (c.quiet_hours) Object.assign(f, { quiet: true, quiet_from: c.quiet_hours.from, quiet_to: c.quiet_hours.to });
  if (c.goal) Object.assign(f, { goal: true, goal_event: c.goal.event || '', goal_hours: c.goal.within_s ? String(c.goal.within_s / 3600) : '' });
  return f;
}

/** The form → the campaign JSON the API takes. Throws {field, reason} for what cannot be sent. */
function toCampaign(f) {
  const c = { id: f.id.trim(), active: f.active };
  c.trigger = f.trigger === 'event' ? { event: f.event.trim(), ...(f.eventWhere.trim() ? { where: f.eventWhere.trim() } : {}) } : f.trigger === 'connect' ? { connect: true } : { idle_s: Number(f.idle_s) };
  const to = toAudience(f.audience);
  if (to && to !== 'all') c.audience = to;
  const wrap = (field, fn) => {
    try {
      return fn();
    } catch (e) {
      throw { field: `${field}.${e.field}`, reason: e.reason };
    }
  };
  if (f.content === 'variants') {
    c.variants = f.variants.map((v, i) => ({ id: v.id.trim(), weight: Number(v.weight), message: wrap(`variants[${i}].message`, () => toMessage(v.message)) }));
    if (String(f.holdout_pct).trim()) c.holdout_pct = Number(f.holdout_pct);
  } else c.message = wrap('message', () => toMessage(f.message));
  if (f.priority !== 'normal') c.priority = f.priority;
  if (String(f.delay_s).trim()) c.delay_s = Number(f.delay_s);
  if (String(f.fmax).trim()) c.frequency = { max: Number(f.fmax), ...(f.fper ? { per_s: Number(f.fper) } : {}), ...(f.funtil ? { until: f.funtil } : {}) };
  if (f.starts_at) c.starts_at = new Date(f.starts_at).getTime();
  if (f.ends_at) c.ends_at = new Date(f.ends_at).getTime();
  if (f.quiet) c.quiet_hours = { from: f.quiet_from, to: f.quiet_to };
  if (f.goal) c.goal = { event: f.goal_event.trim(), within_s: Math.round(Number(f.goal_hours) * 3600) };
  return c;
}

/** The API's field path → where the editor shows it. */
function editorField(field) {
  if (!field) return 'form';
  if (field === 'trigger.where') return 'eventWhere';
  if (field.startsWith('trigger')) return f2(field) || 'trigger';
  if (field.startsWith('audience')) return field === 'audience.where' ? 'audience.where' : 'audience.users';
  if (field.startsWith('frequency')) return { 'frequency.per_s': 'fper', 'frequency.until': 'funtil' }[field] || 'fmax';
  if (field.startsWith('quiet_hours')) return field.endsWith('.to') ? 'quiet_to' : 'quiet_from';
  if (field.startsWith('goal')) return field.endsWith('within_s') ? 'goal_hours' : 'goal_event';
  const v = /^variants\[(\d+)\]\.?(\w*)/.exec(field);
  if (v) return v[2] === 'message' ? `v${v[1]}.${formField(field)}` : `v${v[1]}.${v[2] || 'id'}`;
  if (field.startsWith('message')) return `m.${formField(field)}`;
  return field;
}
const f2 = (field) => ({ 'trigger.event': 'event', 'trigger.idle_s': 'idle_s' })[field];

/** Errors for a nested part: sub('m') of {"m.title": …} is {title: …}. */
const sub = (errors, prefix) => Object.fromEntries(Object.entries(errors).filter(([k]) => k.startsWith(`${prefix}.`)).map(([k, v]) => [k.slice(prefix.length + 1), v]));

function Editor({ initial, editing, onDone }) {
  const [f, setF] = useState(initial);
  const [errors, setErrors] = useState({});
  const [outcome, setOutcome] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (v) => setF((x) => ({ ...x, [k]: v }));
  // The event filter is checked by the node as it is typed (POST /v1/validate).
  const [filterError, setFilterError] = useState(null);
  useEffect(() => {
    setFilterError(null);
    if (f.trigger !== 'event' || !f.eventWhere.trim()) return undefined;
    const ctl = new AbortController();
    const t = setTimeout(async () => {
      try {
        await post('/v1/validate', { id: 'filter-check', trigger: { event: f.event.trim() || 'event', where: f.eventWhere.trim() }, message: { kind: 'toast', title: 'x' } }, { signal: ctl.signal });
      } catch (err) {
        if (err.status === 400 && err.field === 'trigger.where') setFilterError(err.reason);
      }
    }, 350);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
  }, [f.trigger, f.event, f.eventWhere]);
  const save = async (e) => {
    e.preventDefault();
    setErrors({});
    if (!f.id.trim()) return setErrors({ id: 'id: give the campaign an id (letters, digits, -, _, .).' });
    let c;
    try {
      c = toCampaign(f);
    } catch (err) {
      return setErrors({ [editorField(err.field)]: err.reason });
    }
    setBusy(true);
    try {
      await put(`/v1/campaigns/${enc(c.id)}`, c);
      onDone(`Saved campaign ${c.id}: it applies on every node now.`);
    } catch (err) {
      const at = editorField(err.field);
      setErrors({ [at]: err.reason });
      setOutcome({ ok: false, text: `Not saved: ${err.message}` });
      setTimeout(() => document.querySelector('.campaign-editor [aria-invalid="true"]')?.focus(), 0);
    } finally {
      setBusy(false);
    }
  };
  const setVariant = (i, k) => (v) => setF((x) => ({ ...x, variants: x.variants.map((y, j) => (j === i ? { ...y, [k]: v } : y)) }));
  const shown = f.content === 'variants' ? f.variants[0] && f.variants[0].message : f.message;
  let previewMsg = {};
  try {
    previewMsg = toMessage(shown || emptyMessage());
  } catch {
    previewMsg = { kind: 'toast', title: '' };
  }
  const known = new Set(['id', 'event', 'eventWhere', 'idle_s', 'audience.where', 'audience.users', 'fmax', 'fper', 'funtil', 'delay_s', 'priority', 'starts_at', 'ends_at', 'quiet_from', 'quiet_to', 'goal_event', 'goal_hours', 'holdout_pct', 'variants']);
  const stray = Object.entries(errors).find(([k]) => !known.has(k) && !/^(m|v\d+)\./.test(k));
  return html`<form class="campaign-editor compose" onSubmit=${save} novalidate>
    <div class="compose-form">
      ${stray ? html`<div class="inline-warn" role="alert">${stray[1]}</div>` : null}
      <${Card} title="Rule" sub="A stored rule: when a user does this, show them that.">
        <div class="stack">
          <div class="grid-2">
            <${Text} label="Campaign id" value=${f.id} onInput=${set('id')} error=${errors.id} mono disabled=${editing} required placeholder="upsell-export" />
            <div class="check-cell"><${Check} label="Active" checked=${f.active} onChange=${set('active')} hint="Inactive campaigns are kept but never fire." /></div>
          </div>
          <${Segmented} legend="Trigger" value=${f.trigger} onChange=${set('trigger')} options=${[['event', 'An event'], ['connect', 'On connect'], ['idle', 'Idle']]} name="trigger" />
          ${f.trigger === 'event'
            ? html`<div class="grid-2">
                <${Text} label="Event name" value=${f.event} onInput=${set('event')} error=${errors.event} mono placeholder="feature_used" />
                <${Text} label="Event filter (CEL)" value=${f.eventWhere} onInput=${set('eventWhere')} error=${errors.eventWhere || filterError} mono placeholder='props.feature == "export"' hint="Over the event's props; empty: every such event." />
              </div>`
            : null}
          ${f.trigger === 'idle' ? html`<${Text} label="Idle for (seconds)" type="number" min="1" value=${f.idle_s} onInput=${set('idle_s')} error=${errors.idle_s} />` : null}
        </div>
      </${Card}>
      <${Card} title="Audience"><${AudienceBuilder} value=${f.audience} onChange=${set('audience')} errors=${sub(errors, 'audience')} campaign /></${Card}>
      <${Card} title="Content">
        <div class="stack">
          <${Segmented} legend="Content" value=${f.content} onChange=${set('content')} options=${[['one', 'One message'], ['variants', 'Experiment (variants)']]} name="content" />
          ${f.content === 'one'
            ? html`<${MessageFields} value=${f.message} onChange=${set('message')} errors=${sub(errors, 'm')} compact />`
            : html`${errors.variants ? html`<p class="error" role="alert">${errors.variants}</p>` : null}
              ${f.variants.map(
                (v, i) => html`<fieldset class="group variant">
                  <legend>Variant ${v.id || i + 1}</legend>
                  <div class="grid-3">
                    <${Text} label=${`Variant ${i + 1} id`} value=${v.id} onInput=${setVariant(i, 'id')} error=${errors[`v${i}.id`]} mono />
                    <${Text} label=${`Variant ${i + 1} weight`} type="number" min="0" value=${v.weight} onInput=${setVariant(i, 'weight')} error=${errors[`v${i}.weight`]} />
                    <button type="button" class="btn btn-quiet" disabled=${f.variants.length <= 1} onClick=${() => setF((x) => ({ ...x, variants: x.variants.filter((_, j) => j !== i) }))}>Remove variant ${i + 1}</button>
                  </div>
                  <${MessageFields} value=${v.message} onChange=${setVariant(i, 'message')} errors=${sub(errors, `v${i}`)} compact />
                </fieldset>`,
              )}
              <button type="button" class="btn btn-quiet" onClick=${() => setF((x) => ({ ...x, variants: [...x.variants, { id: String.fromCharCode(97 + x.variants.length), weight: '50', message: { ...emptyMessage() } }] }))}>+ Add variant</button>
              <${Text} label="Holdout (% of users shown nothing)" type="number" min="0" max="50" value=${f.holdout_pct} onInput=${set('holdout_pct')} error=${errors.holdout_pct} hint="0 to 50. Compared against the variants in Measure." />`}
        </div>
      </${Card}>
      <${Card} title="Rules">
        <div class="stack">
          <div class="grid-2">
            <${Select} label="Priority" value=${f.priority} onChange=${set('priority')} error=${errors.priority} options=${['low', 'normal', 'high', 'urgent'].map((p) => [p, p[0].toUpperCase() + p.slice(1)])} hint="The highest wins on one trigger; urgent skips the global cap." />
            <${Text} label="Delay (seconds)" type="number" min="0" max="86400" value=${f.delay_s} onInput=${set('delay_s')} error=${errors.delay_s} placeholder="0" />
          </div>
          <fieldset class="group">
            <legend>Frequency per user</legend>
            <div class="grid-3">
              <${Text} label="At most (displays)" type="number" min="1" value=${f.fmax} onInput=${set('fmax')} error=${errors.fmax} placeholder="no limit" />
              <${Select} label="Per" value=${f.fper} onChange=${set('fper')} error=${errors.fper} options=${PERIODS} />
              <${Select} label="Stop once the user has" value=${f.funtil} onChange=${set('funtil')} error=${errors.funtil} options=${[['', 'never stop'], ['clicked', 'clicked it'], ['dismissed', 'dismissed it']]} />
            </div>
          </fieldset>
          <fieldset class="group">
            <legend>Window and quiet hours</legend>
            <div class="grid-2">
              <${Text} label="Starts at" type="datetime-local" value=${f.starts_at} onInput=${set('starts_at')} error=${errors.starts_at} />
              <${Text} label="Ends at" type="datetime-local" value=${f.ends_at} onInput=${set('ends_at')} error=${errors.ends_at} />
            </div>
            <${Check} label="Quiet hours" checked=${f.quiet} onChange=${set('quiet')} hint="In the user's time zone (attrs.tz); urgent campaigns still fire." />
            ${f.quiet
              ? html`<div class="grid-2">
                  <${Text} label="Quiet from" type="time" value=${f.quiet_from} onInput=${set('quiet_from')} error=${errors.quiet_from} />
                  <${Text} label="Quiet until" type="time" value=${f.quiet_to} onInput=${set('quiet_to')} error=${errors.quiet_to} />
                </div>`
              : null}
          </fieldset>
          <fieldset class="group">
            <legend>Goal</legend>
            <${Check} label="Count conversions" checked=${f.goal} onChange=${set('goal')} hint="An event from the user within a time of their exposure counts one conversion." />
            ${f.goal
              ? html`<div class="grid-2">
                  <${Text} label="Goal event" value=${f.goal_event} onInput=${set('goal_event')} error=${errors.goal_event} mono placeholder="purchase" />
                  <${Text} label="Within (hours)" type="number" min="0" step="any" value=${f.goal_hours} onInput=${set('goal_hours')} error=${errors.goal_hours} />
                </div>`
              : null}
          </fieldset>
        </div>
      </${Card}>
      <div class="row sticky-actions">
        <button class="btn btn-primary" type="submit" disabled=${busy}>${busy ? 'Saving…' : editing ? 'Save changes' : 'Create campaign'}</button>
        <button class="btn btn-quiet" type="button" onClick=${() => onDone(null)}>Cancel</button>
        <${Outcome} outcome=${outcome} />
      </div>
    </div>
    <div class="compose-preview">
      <${Card} title=${f.content === 'variants' ? `Preview: variant ${(f.variants[0] && f.variants[0].id) || 1}` : 'Preview'} class="sticky-card">
        <${PreviewPanel} msg=${previewMsg} locales=${((shown && shown.locales) || []).map((l) => l.locale.trim())} />
      </${Card}>
    </div>
  </form>`;
}

export function Campaigns() {
  const list = useApi(async () => (await get('/v1/campaigns')).campaigns || [], []);
  const [editing, setEditing] = useState(null);
  const [outcome, setOutcome] = useState(null);
  const done = (text) => {
    setEditing(null);
    if (text) setOutcome({ ok: true, text });
    list.reload();
    setTimeout(() => document.getElementById('page-title')?.focus(), 0);
  };
  const toggle = async (c) => {
    try {
      const full = await get(`/v1/campaigns/${enc(c.id)}`);
      await put(`/v1/campaigns/${enc(c.id)}`, { ...full, active: !full.active });
      setOutcome({ ok: true, text: `${c.id} ${full.active ? 'deactivated' : 'activated'} on every node.` });
      list.reload();
    } catch (err) {
      setOutcome({ ok: false, text: `Not changed: ${err.message}` });
    }
  };
  const remove = async (c) => {
    const ok = await confirmDialog({ title: `Delete campaign ${c.id}?`, body: 'It stops firing on every node at once. Its counts stay readable by id.', confirm: 'Delete campaign' });
    if (!ok) return;
    try {
      await del(`/v1/campaigns/${enc(c.id)}`);
      setOutcome({ ok: true, text: `Deleted ${c.id}.` });
      list.reload();
    } catch (err) {
      setOutcome({ ok: false, text: `Not deleted: ${err.message}` });
    }
  };
  if (editing)
    return html`<${Page} title=${editing.id ? 'Edit campaign' : 'New campaign'} sub="Validated by the node as you save: a refused field is marked with the node’s reason.">
      <${Editor} initial=${editing.id ? fromCampaign(editing) : blank()} editing=${!!editing.id} onDone=${done} />
    </${Page}>`;
  const rows = list.data || [];
  return html`<${Page} title="Campaigns" sub="Messages triggered by what users do. Changes apply on every node at once."
    actions=${html`<button class="btn btn-primary" onClick=${() => setEditing({})}>New campaign</button>`}>
    <${Outcome} outcome=${outcome} />
    <${Card}>
      ${list.error ? html`<${ErrorState} error=${list.error} what="Campaigns" retry=${list.reload} />` : null}
      ${!list.data && !list.error ? html`<${StateBox} kind="loading" title="Loading campaigns…" />` : null}
      ${list.data && !rows.length ? html`<${StateBox} kind="empty" title="No campaigns yet">Create one to show a message when users do something: use a feature, connect, go idle.</${StateBox}>` : null}
      ${rows.length
        ? html`<div class="table-wrap" tabindex="0"><table class="table table-stack" aria-label="Campaigns">
            <thead><tr><th scope="col">Campaign</th><th scope="col">Trigger</th><th scope="col">Audience</th><th scope="col">Status</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>
              ${rows.map(
                (c) => html`<tr data-campaign=${c.id}>
                  <td><p class="cell-title mono">${c.id}</p><p class="cell-sub">${(c.message && (c.message.title || c.message.body)) || (c.variants ? `${c.variants.length} variants` : '')}</p></td>
                  <td data-label="Trigger">${triggerText(c.trigger)}</td>
                  <td data-label="Audience">${audienceText(c.audience)}</td>
                  <td><span class=${`pill ${c.active ? 'pill-ok' : 'pill-off'}`}>${c.active ? 'active' : 'inactive'}</span></td>
                  <td class="actions-cell">
                    <button class="btn btn-quiet" onClick=${() => toggle(c)} aria-label=${`${c.active ? 'Deactivate' : 'Activate'} ${c.id}`}>${c.active ? 'Deactivate' : 'Activate'}</button>
                    <button class="btn btn-quiet" onClick=${() => setEditing(c)} aria-label=${`Edit ${c.id}`}>Edit</button>
                    <a class="btn btn-quiet" href=${`#/measure/campaign/${enc(c.id)}`} aria-label=${`Counts of ${c.id}`}>Counts</a>
                    <button class="btn btn-danger-quiet" onClick=${() => remove(c)} aria-label=${`Delete ${c.id}`}>Delete</button>
                  </td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
        : null}
    </${Card}>
  </${Page}>`;
}
