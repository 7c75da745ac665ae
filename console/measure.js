// Measure: the counts of SPEC 10.5 for one message or campaign, rates,
// clicks by action, experiments (each variant against the holdout, with
// its confidence interval), hourly charts (uPlot, loaded on first use); and
// the user trace that answers "why didn't this user see it?".

import { html, useEffect, useRef, useState } from './vendor/preact-htm.js';
import { NotAvailable, enc, get } from './api.js';
import * as shapes from './shapes.js';
import { Card, ErrorState, Page, Segmented, StateBox, Text, fmt, useApi } from './ui.js';

let uplot = null;
const loadUplot = () => {
  if (!uplot) {
    const css = document.createElement('link');
    css.rel = 'stylesheet';
    css.href = new URL('./vendor/uplot.css', import.meta.url).href;
    document.head.appendChild(css);
    uplot = import('./vendor/uplot.js').then((m) => m.default);
  }
  return uplot;
};

const SERIES = [
  ['delivered', 'Delivered', '--chart-1'],
  ['displayed', 'Displayed', '--chart-2'],
  ['clicked', 'Clicked', '--chart-3'],
];

/** Hourly counts as a uPlot line chart, with the same numbers as a table for assistive technology. */
function HourlyChart({ hours, label }) {
  const ref = useRef(null);
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const ro = new ResizeObserver(([e]) => setWidth(Math.floor(e.contentRect.width)));
    ro.observe(ref.current);
    return () => ro.disconnect();
  }, []);
  useEffect(() => {
    if (!width || !hours.length) return undefined;
    let chart = null;
    let gone = false;
    loadUplot().then((UPlot) => {
      if (gone) return;
      const css = getComputedStyle(document.documentElement);
      const color = (v) => css.getPropertyValue(v).trim();
      const axis = { stroke: color('--muted'), grid: { stroke: color('--line') }, ticks: { stroke: color('--line') } };
      chart = new UPlot(
        {
          width,
          height: 240,
          series: [{}, ...SERIES.map(([, l, c]) => ({ label: l, stroke: color(c), width: 2, points: { show: hours.length < 48 } }))],
          axes: [axis, axis],
          legend: { show: true },
          cursor: { drag: { x: false, y: false } },
        },
        [hours.map((h) => h.hour / 1000), ...SERIES.map(([k]) => hours.map((h) => h[k]))],
        ref.current,
      );
    });
    return () => {
      gone = true;
      if (chart) chart.destroy();
    };
  }, [width, JSON.stringify(hours)]);
  return html`<div>
    <div class="chart" ref=${ref} role="img" aria-label=${label}></div>
    ${!hours.length ? html`<${StateBox} kind="empty" title="No hourly data yet">Counts appear here hour by hour once the message is delivered.</${StateBox}>` : null}
    ${hours.length
      ? html`<details class="as-table"><summary>Show as a table</summary>
          <div class="table-wrap" tabindex="0"><table class="table" aria-label=${`${label}, as a table`}>
            <thead><tr><th scope="col">Hour</th>${SERIES.map(([, l]) => html`<th scope="col" class="num">${l}</th>`)}</tr></thead>
            <tbody>${hours.map((h) => html`<tr><td>${fmt.time(h.hour)}</td>${SERIES.map(([k]) => html`<td class="num">${fmt.n(h[k])}</td>`)}</tr>`)}</tbody>
          </table></div></details>`
      : null}
  </div>`;
}

/** A variant's difference from the holdout with its interval, on a shared axis. */
function CiBar({ v, span }) {
  if (!v.ci) return html`<span class="muted">–</span>`;
  const w = 140;
  const x = (d) => ((d + span) / (2 * span)) * w;
  const sig = v.ci[0] > 0 ? 'up' : v.ci[1] < 0 ? 'down' : 'flat';
  return html`<svg class=${`ci ci-${sig}`} width=${w} height="18" viewBox=${`0 0 ${w} 18`} role="img"
    aria-label=${`difference ${fmt.pp(v.diff)}, 95% interval ${fmt.pp(v.ci[0])} to ${fmt.pp(v.ci[1])}`}>
    <line x1=${x(0)} x2=${x(0)} y1="1" y2="17" class="ci-zero" />
    <line x1=${x(v.ci[0])} x2=${x(v.ci[1])} y1="9" y2="9" class="ci-range" />
    ${v.diff != null ? html`<circle cx=${x(v.diff)} cy="9" r="4" class="ci-dot" />` : null}
  </svg>`;
}

function Variants({ variants }) {
  if (!variants.length) return null;
  const span = Math.max(0.01, ...variants.flatMap((v) => (v.ci ? v.ci.map(Math.abs) : [Math.abs(v.diff || 0)])));
  return html`<${Card} title="Experiment" sub="Each variant against the holdout: conversions per exposed user, the difference and its 95% confidence interval.">
    <div class="table-wrap" tabindex="0"><table class="table" aria-label="Variants">
      <thead><tr><th scope="col">Variant</th><th scope="col" class="num">Exposed</th><th scope="col" class="num">Displayed</th><th scope="col" class="num">Clicked</th><th scope="col" class="num">Converted</th><th scope="col" class="num">Rate</th><th scope="col" class="num">vs holdout</th><th scope="col">Interval</th></tr></thead>
      <tbody>
        ${variants.map(
          (v) => html`<tr data-variant=${v.id}>
            <td>${v.holdout ? html`<span class="tag">holdout</span>` : html`<span class="mono">${v.id}</span>`}</td>
            <td class="num">${fmt.n(v.exposed)}</td><td class="num">${fmt.n(v.displayed)}</td><td class="num">${fmt.n(v.clicked)}</td><td class="num">${fmt.n(v.converted)}</td>
            <td class="num" data-rate>${fmt.pct(v.rate)}</td>
            <td class="num" data-diff>${v.holdout ? '–' : fmt.pp(v.diff)}</td>
            <td data-ci>${v.holdout ? html`<span class="muted">baseline</span>` : html`<${CiBar} v=${v} span=${span} /> <span class="ci-text">${v.ci ? `${fmt.pp(v.ci[0])} … ${fmt.pp(v.ci[1])}` : ''}</span>`}</td>
          </tr>`,
        )}
      </tbody>
    </table></div>
  </${Card}>`;
}

function Counts({ what, id }) {
  const path = what === 'campaign' ? `/v1/campaigns/${enc(id)}/stats` : `/v1/messages/${enc(id)}/stats`;
  const data = useApi(async () => {
    const [total, hourly] = await Promise.all([get(path), get(`${path}?by=hour`).catch((err) => ({ failed: err }))]);
    const c = shapes.counts(total);
    // A node without hourly counts answers 400/404/405, or the totals without `hours`.
    c.hourly = !hourly.failed && Array.isArray(hourly.hours);
    c.hours = c.hourly ? shapes.hours(hourly.hours) : [];
    return c;
  }, [path], 10000);
  if (data.error && !data.data) {
    if (data.error.status === 404 && !(data.error instanceof NotAvailable))
      return html`<${StateBox} kind="empty" title=${`No ${what} ${id}`}>The node knows no ${what} with this id (yet).</${StateBox}>`;
    return html`<${ErrorState} error=${data.error} what=${what === 'campaign' ? 'Campaign counts' : 'Message counts'} retry=${data.reload} />`;
  }
  if (!data.data) return html`<${StateBox} kind="loading" title="Loading counts…" />`;
  const c = data.data;
  const tiles = [
    ['delivered', 'Delivered', c.delivered, `${fmt.n(c.users.delivered)} users`],
    ['displayed', 'Displayed', c.displayed, `${fmt.pct(c.displayRate)} of delivered`],
    ['clicked', 'Clicked', c.clicked, `${fmt.pct(c.clickRate)} of displayed`],
    ['dismissed', 'Dismissed', c.dismissed, `${fmt.pct(c.dismissRate)} of displayed`],
    ['suppressed', 'Suppressed', c.suppressed, 'held back by the app'],
  ];
  const top = Math.max(1, ...c.actions.map((a) => a.n));
  return html`<div class="stack-lg">
    <div class="tiles tiles-5">
      ${tiles.map(([k, l, v, foot]) => html`<div class="tile"><p class="tile-label">${l}</p><p class="tile-value" data-count=${k}>${fmt.n(v)}</p><p class="tile-foot">${foot}</p></div>`)}
    </div>
    <div class="split">
      <${Card} title="Over time" sub="Per hour.">
        ${c.hourly
          ? html`<${HourlyChart} hours=${c.hours} label=${`Delivered, displayed and clicked per hour for ${what} ${id}`} />`
          : html`<${StateBox} kind="na" title="Hourly counts are not available on this node">It answers the totals only; the chart needs <span class="mono">?by=hour</span>.</${StateBox}>`}
      </${Card}>
      <${Card} title="Clicks by button">
        ${!c.actions.length ? html`<${StateBox} kind="empty" title="No clicks yet" />` : null}
        <ul class="bars" aria-label="Clicks by button">
          ${c.actions.map((a) => html`<li data-action=${a.id}><span class="bar-label mono">${a.id}</span><span class="bar"><span style=${`width:${(a.n / top) * 100}%`}></span></span><span class="bar-n">${fmt.n(a.n)}</span></li>`)}
        </ul>
        <p class="hint">Distinct users: ${fmt.n(c.users.delivered)} delivered, ${fmt.n(c.users.displayed)} displayed, ${fmt.n(c.users.clicked)} clicked.</p>
      </${Card}>
    </div>
    <${Variants} variants=${c.variants} />
  </div>`;
}

export function Measure({ arg }) {
  const [what0, ...rest] = (arg || '').split('/');
  const [what, setWhat] = useState(what0 === 'campaign' ? 'campaign' : 'message');
  const [id, setId] = useState(rest.join('/'));
  const [shown, setShown] = useState(rest.join('/') ? { what, id: rest.join('/') } : null);
  const campaigns = useApi(async () => (await get('/v1/campaigns')).campaigns || [], []);
  const show = (e) => {
    e.preventDefault();
    if (!id.trim()) return;
    setShown({ what, id: id.trim() });
    history.replaceState(null, '', `#/measure/${what}/${enc(id.trim())}`);
  };
  return html`<${Page} title="Measure" sub="Did it work? Deliveries, displays, clicks and conversions, cluster-wide.">
    <${Card}>
      <form class="toolbar" onSubmit=${show}>
        <${Segmented} legend="Counts of" value=${what} onChange=${setWhat} options=${[['message', 'A message'], ['campaign', 'A campaign']]} name="measure-what" />
        <${Text} label=${what === 'campaign' ? 'Campaign id' : 'Message id'} value=${id} onInput=${setId} mono list=${what === 'campaign' ? 'campaign-ids' : undefined} placeholder=${what === 'campaign' ? 'upsell-export' : '01J…'} />
        <datalist id="campaign-ids">${(campaigns.data || []).map((c) => html`<option value=${c.id} />`)}</datalist>
        <button class="btn btn-primary" type="submit">Show counts</button>
      </form>
    </${Card}>
    ${shown ? html`<${Counts} what=${shown.what} id=${shown.id} key=${`${shown.what}/${shown.id}`} />` : html`<${StateBox} kind="empty" title="Pick a message or a campaign">The id is shown when you send a message; campaigns are listed as you type.</${StateBox}>`}
  </${Page}>`;
}

function TraceResult({ user, filter }) {
  const presence = useApi(() => get(`/v1/presence/${enc(user)}`), [user]);
  const trace = useApi(async () => shapes.trace(await get(`/v1/users/${enc(user)}/trace?limit=50`)), [user]);
  const list = (trace.data || []).filter((d) => !filter || d.message === filter || d.campaign === filter);
  return html`<div class="stack-lg">
    <div class="presence" data-online=${presence.data ? String(presence.data.online) : ''}>
      ${presence.data
        ? presence.data.online
          ? html`<span class="dot dot-ok" aria-hidden="true"></span> <strong>${user}</strong> is online now, ${presence.data.sessions} session${presence.data.sessions === 1 ? '' : 's'}.`
          : html`<span class="dot dot-off" aria-hidden="true"></span> <strong>${user}</strong> is not online now.`
        : presence.error
          ? presence.error.message
          : 'Checking presence…'}
    </div>
    <${Card} title="Decisions" sub="Newest first: every time Herald decided whether this user gets a message.">
      ${trace.error ? html`<${ErrorState} error=${trace.error} what="The user trace" retry=${trace.reload} />` : null}
      ${!trace.data && !trace.error ? html`<${StateBox} kind="loading" title="Loading the trace…" />` : null}
      ${trace.data && !list.length ? html`<${StateBox} kind="empty" title="No decisions recorded">${filter ? `Nothing about ${filter} for this user.` : 'Herald has not decided anything about this user yet.'}</${StateBox}>` : null}
      ${list.length
        ? html`<ol class="timeline" aria-label="Decisions">
            ${list.map(
              (d) => html`<li class=${`tl tl-${d.shown ? 'ok' : 'no'}`} data-decision=${d.decision}>
                <span class=${`pill ${d.shown ? 'pill-ok' : 'pill-warn'}`}>${d.label}</span>
                <div class="tl-main">
                  <p>${d.campaign ? html`Campaign <span class="mono">${d.campaign}</span>${d.variant && d.variant !== 'holdout' ? html`, variant <span class="mono">${d.variant}</span>` : null}` : html`Message <span class="mono">${d.message || '–'}</span>`}${d.reason ? html` — ${d.reason}` : null}</p>
                  <p class="list-meta">${fmt.time(d.at)}</p>
                </div>
              </li>`,
            )}
          </ol>`
        : null}
    </${Card}>
  </div>`;
}

export function Trace({ arg }) {
  const [user, setUser] = useState(arg || '');
  const [filter, setFilter] = useState('');
  const [shown, setShown] = useState(arg || '');
  const go = (e) => {
    e.preventDefault();
    if (!user.trim()) return;
    setShown(user.trim());
    history.replaceState(null, '', `#/trace/${enc(user.trim())}`);
  };
  return html`<${Page} title="User trace" sub="Why did this user see a message, or why not?">
    <${Card}>
      <form class="toolbar" onSubmit=${go}>
        <${Text} label="User id" value=${user} onInput=${setUser} mono placeholder="u-1842" />
        <${Text} label="Only this message or campaign (optional)" value=${filter} onInput=${setFilter} mono />
        <button class="btn btn-primary" type="submit">Trace</button>
      </form>
    </${Card}>
    ${shown ? html`<${TraceResult} user=${shown} filter=${filter.trim()} key=${shown} />` : html`<${StateBox} kind="empty" title="Enter a user id">The trace lists Herald's decisions about them: delivered, not online, capped, quiet hours, holdout…</${StateBox}>`}
  </${Page}>`;
}
