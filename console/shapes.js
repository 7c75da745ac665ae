// The answers of the admin API the console reads, parsed into what the views
// draw, in one place: a shape that changes is changed here only. Every
// parser tolerates missing fields (older nodes) and never throws.

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const obj = (v) => (v && typeof v === 'object' && !Array.isArray(v) ? v : {});
const arr = (v) => (Array.isArray(v) ? v : []);
/** The list in an answer: the answer itself, one of `names`, else its first array. */
const listIn = (v, names) => {
  if (Array.isArray(v)) return v;
  const o = obj(v);
  for (const n of names) if (Array.isArray(o[n])) return o[n];
  return Object.values(o).find(Array.isArray) || [];
};
/** An id given as a string, or as an object with an id. */
const idOf = (v) => (v == null ? null : typeof v === 'object' ? String(v.id ?? v.title ?? '') || null : String(v));

/** GET /v1/stats → {sessions, users, deliveries, nodes: [{id, sessions, users, deliveries, state}], mode, clustered}. */
export function stats(s) {
  s = obj(s);
  const cluster = obj(s.cluster);
  const nodes = [];
  const self = s.node || 'this node';
  const selfState = s.draining ? 'draining' : s.bus_up === false ? 'bus down' : 'ready';
  if (s.cluster && !cluster.error && cluster.nodes) {
    for (const [id, n] of Object.entries(obj(cluster.nodes))) {
      nodes.push({ id, sessions: num(n.sessions), users: num(n.users), deliveries: num(n.deliveries), state: id === self ? selfState : 'live', self: id === self });
    }
  }
  if (!nodes.some((n) => n.self)) nodes.unshift({ id: self, sessions: num(s.sessions), users: num(s.users), deliveries: num(s.deliveries), state: selfState, self: true });
  nodes.sort((a, b) => (a.self === b.self ? a.id.localeCompare(b.id) : a.self ? -1 : 1));
  const clustered = !!(s.cluster && !cluster.error);
  return {
    mode: s.mode || 'embedded',
    clustered,
    clusterError: cluster.error || null,
    sessions: clustered ? num(cluster.sessions) : num(s.sessions),
    users: nodes.reduce((t, n) => t + n.users, 0),
    deliveries: clustered ? num(cluster.deliveries) : num(s.deliveries),
    drops: obj(s.drops),
    nodes,
  };
}

/** The counts of GET /v1/messages/{id}/stats and /v1/campaigns/{id}/stats (SPEC 10.5). */
export function counts(s) {
  s = obj(s);
  const users = obj(s.users);
  const delivered = num(s.delivered);
  const displayed = num(s.displayed);
  const clicked = num(s.clicked);
  const rate = (a, b) => (b > 0 ? a / b : null);
  return {
    id: s.id || '',
    delivered,
    displayed,
    clicked,
    dismissed: num(s.dismissed),
    suppressed: num(s.suppressed),
    actions: Object.entries(obj(s.actions)).map(([id, n]) => ({ id, n: num(n) })).sort((a, b) => b.n - a.n),
    users: { delivered: num(users.delivered), displayed: num(users.displayed), clicked: num(users.clicked) },
    displayRate: rate(displayed, delivered),
    clickRate: rate(clicked, displayed),
    dismissRate: rate(num(s.dismissed), displayed),
    variants: variants(s.variants),
    hours: hours(s.hours),
  };
}

/**
 * `variants` of campaign stats: {"<id>": {exposed, displayed, clicked,
 * converted, conversion_rate, vs_holdout: {difference, ci95: [lo, hi]}}}
 * (also read as rate, diff, ci); the holdout first, then by id. The rate
 * (conversions per exposure) is computed when the node gives none.
 */
export function variants(v) {
  return Object.entries(obj(v))
    .map(([id, x]) => {
      x = obj(x);
      const exposed = num(x.exposed);
      const converted = num(x.converted);
      const vs = obj(x.vs_holdout);
      const ciIn = Array.isArray(x.ci) ? x.ci : vs.ci95;
      const ci = Array.isArray(ciIn) && ciIn.length === 2 ? [num(ciIn[0]), num(ciIn[1])] : null;
      const rate = typeof x.rate === 'number' ? x.rate : x.conversion_rate;
      const diff = typeof x.diff === 'number' ? x.diff : vs.difference;
      return {
        id,
        holdout: id === 'holdout',
        exposed,
        displayed: num(x.displayed),
        clicked: num(x.clicked),
        converted,
        rate: typeof rate === 'number' ? rate : exposed > 0 ? converted / exposed : null,
        diff: typeof diff === 'number' ? diff : null,
        ci,
      };
    })
    .sort((a, b) => (a.holdout === b.holdout ? a.id.localeCompare(b.id) : a.holdout ? -1 : 1));
}

/** `?by=hour`: [{hour: unix ms, delivered, displayed, clicked, …}] sorted by hour. */
export function hours(h) {
  return arr(h)
    .map((x) => ({ hour: num(obj(x).hour), delivered: num(x.delivered), displayed: num(x.displayed), clicked: num(x.clicked), dismissed: num(x.dismissed), converted: num(x.converted) }))
    .filter((x) => x.hour > 0)
    .sort((a, b) => a.hour - b.hour);
}

export const DECISIONS = {
  delivered: 'Delivered',
  not_online: 'Not online',
  not_in_audience: 'Not in the audience',
  capped: 'Frequency cap reached',
  quiet_hours: 'Quiet hours',
  outside_window: 'Outside the campaign window',
  holdout: 'In the holdout',
  suppressed_by_client: 'Suppressed by the app',
  dismissed_before: 'Dismissed before',
  expired: 'Expired',
};

/** GET /v1/users/{user}/trace: {"decisions"|"trace": [{at, message|campaign, decision, reason}]}, newest first. */
export function trace(t) {
  return listIn(t, ['decisions', 'trace', 'entries'])
    .map((d) => {
      d = obj(d);
      return {
        at: num(d.at),
        message: idOf(d.message),
        campaign: idOf(d.campaign),
        variant: d.variant ? String(d.variant) : null,
        decision: String(d.decision || ''),
        label: DECISIONS[d.decision] || String(d.decision || 'unknown'),
        reason: d.reason ? String(d.reason) : '',
        shown: d.decision === 'delivered',
      };
    })
    .sort((a, b) => b.at - a.at);
}

/** POST /v1/audience/preview → {sessions, users, sample}. */
export function preview(p) {
  p = obj(p);
  return { sessions: num(p.sessions), users: num(p.users), sample: arr(p.sample).map(String) };
}

/** GET /v1/messages/scheduled → [{id, send_at, envelope}]: each item the stored envelope with its send_at. */
export function scheduled(s) {
  return listIn(s, ['messages', 'scheduled'])
    .map((m) => {
      m = obj(m);
      const e = obj(m.envelope || m);
      return { id: String(m.id || e.id || ''), sendAt: num(m.send_at || e.send_at), envelope: e };
    })
    .sort((a, b) => a.sendAt - b.sendAt);
}

/** POST /v1/messages → {id, send_at?, online?, offline?}. */
export function published(p) {
  p = obj(p);
  return { id: String(p.id || ''), sendAt: p.send_at ? num(p.send_at) : null, online: Array.isArray(p.online) ? p.online : null, offline: Array.isArray(p.offline) ? p.offline : null };
}
