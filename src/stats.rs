//! Counts that answer "did it work?" (SPEC §10.5): per message and per
//! campaign, event counts, distinct users, per-variant exposures and
//! conversions, and hourly buckets.
//!
//! Counts are kept when events happen, never by scanning streams: every
//! record of the events stream (and the campaign decisions that only the
//! counts keep) turns into increments here ([`increments`], [`distinct`]).
//! With Redis, the stream writer adds them to the pipelines it writes the
//! streams with, summed per batch (a hash per message or campaign,
//! `HINCRBY`, and HyperLogLogs for distinct users), so counting costs no
//! round trip per recipient; embedded, [`MemoryStats`] counts them as they
//! are emitted. Both backends hand back the same [`Counts`], which
//! [`render`] turns into the API's JSON.
//!
//! Experiments: each variant's conversion rate is converted / exposed
//! users; against the holdout, the difference of the two rates with a 95 %
//! confidence interval by Newcombe's hybrid score method (Newcombe 1998,
//! method 10: from the two Wilson score intervals), which unlike the Wald
//! interval behaves with small counts and rates near 0.

use crate::events::Record;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// What counts are kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Message(String),
    Campaign(String),
}

impl Scope {
    /// `msg:{id}` or `campaign:{id}`: the name of its counters.
    pub fn key(&self) -> String {
        match self {
            Self::Message(id) => format!("msg:{id}"),
            Self::Campaign(id) => format!("campaign:{id}"),
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Message(id) | Self::Campaign(id) => id,
        }
    }
}

/// Whose distinct users are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    Delivered,
    Displayed,
    Clicked,
}

impl Who {
    pub const ALL: [Who; 3] = [Who::Delivered, Who::Displayed, Who::Clicked];

    pub fn name(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Displayed => "displayed",
            Self::Clicked => "clicked",
        }
    }
}

/// The raw counts of one scope, as either backend keeps them: counter
/// fields (`delivered`, `action:{id}`, `v:{variant}:exposed`,
/// `h:{hour ms}:delivered`, …) and distinct users.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub fields: HashMap<String, i64>,
    pub users: HashMap<&'static str, u64>,
}

pub const HOUR_MS: u64 = 3_600_000;

/// The counted names (SPEC §10.5), the hourly buckets carry each.
const EVENTS: [&str; 5] = [
    "delivered",
    "displayed",
    "clicked",
    "dismissed",
    "suppressed",
];

fn scopes(r: &Record) -> Vec<Scope> {
    let mut v = Vec::with_capacity(2);
    if let Some(m) = r.get("msg") {
        v.push(Scope::Message(m.to_owned()));
    }
    if let Some(c) = r.get("campaign") {
        v.push(Scope::Campaign(c.to_owned()));
    }
    v
}

/// The counter increments one record makes: `(scope, field, by)`.
pub fn increments(r: &Record) -> Vec<(Scope, String, i64)> {
    let kind = r.kind();
    let hour = r.ts() / HOUR_MS * HOUR_MS;
    let mut names: Vec<(String, i64)> = Vec::new();
    let variant = r.get("variant");
    match kind {
        "delivered" => {
            let n = r.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
            names.push(("delivered".into(), n));
        }
        "displayed" | "clicked" | "dismissed" | "suppressed" => {
            names.push((kind.into(), 1));
            if kind == "clicked"
                && let Some(a) = r.get("action")
            {
                names.push((format!("action:{a}"), 1));
            }
        }
        "exposure" | "conversion" => {
            let v = variant.unwrap_or("default");
            let name = if kind == "exposure" {
                "exposed"
            } else {
                "converted"
            };
            return vec![
                (
                    Scope::Campaign(r.get("campaign").unwrap_or_default().to_owned()),
                    format!("v:{v}:{name}"),
                    1,
                ),
                (
                    Scope::Campaign(r.get("campaign").unwrap_or_default().to_owned()),
                    format!("h:{hour}:{name}"),
                    1,
                ),
            ];
        }
        "published" => names.push(("published".into(), 1)),
        _ => return Vec::new(),
    }
    let mut out = Vec::new();
    for scope in scopes(r) {
        for (name, by) in &names {
            out.push((scope.clone(), name.clone(), *by));
            if EVENTS.contains(&name.as_str()) {
                out.push((scope.clone(), format!("h:{hour}:{name}"), *by));
                if let (Some(v), "displayed" | "clicked", Scope::Campaign(_)) =
                    (variant, name.as_str(), &scope)
                {
                    out.push((scope.clone(), format!("v:{v}:{name}"), *by));
                }
            }
        }
    }
    out
}

/// The users of one record, borrowed from it: a broadcast's recipients
/// (thousands) are not copied once per scope.
#[derive(Clone, Copy)]
pub struct Users<'a> {
    many: &'a [Arc<str>],
    one: Option<&'a str>,
    /// Users reached that are only in a sketch (Redis mode).
    pub sketch: Option<&'a crate::sketch::Sketch>,
}

impl<'a> Users<'a> {
    pub fn names(self) -> impl Iterator<Item = &'a str> {
        self.many.iter().map(|u| &**u).chain(self.one)
    }

    pub fn arcs(self) -> impl Iterator<Item = Arc<str>> + 'a {
        self.many.iter().cloned().chain(self.one.map(Arc::from))
    }
}

/// The users one record adds to distinct counts, per scope.
pub fn distinct(r: &Record) -> Vec<(Scope, Who, Users<'_>)> {
    let who = match r.kind() {
        "delivered" => Who::Delivered,
        "displayed" => Who::Displayed,
        "clicked" => Who::Clicked,
        _ => return Vec::new(),
    };
    let users = Users {
        many: &r.users,
        one: r.get("user"),
        sketch: r.sketch.as_deref(),
    };
    if users.many.is_empty() && users.one.is_none() && users.sketch.is_none() {
        return Vec::new();
    }
    scopes(r).into_iter().map(|s| (s, who, users)).collect()
}

/// Embedded counts, for at most `max_scopes` messages and campaigns (the
/// oldest go first).
pub struct MemoryStats {
    inner: Mutex<MemoryInner>,
    max_scopes: usize,
}

#[derive(Default)]
struct MemoryInner {
    by_scope: HashMap<Scope, Kept>,
    order: VecDeque<Scope>,
}

impl MemoryStats {
    pub fn new(max_scopes: usize) -> Self {
        Self {
            inner: Mutex::new(MemoryInner::default()),
            max_scopes: max_scopes.max(1),
        }
    }

    pub fn record(&self, r: &Record) {
        let inc = increments(r);
        let users = distinct(r);
        if inc.is_empty() && users.is_empty() {
            return;
        }
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (scope, field, by) in inc {
            *m.entry(scope).0.entry(field).or_default() += by;
        }
        for (scope, who, list) in users {
            m.entry(scope)
                .1
                .entry(who.name())
                .or_default()
                .extend(list.arcs());
        }
        while m.order.len() > self.max_scopes {
            if let Some(old) = m.order.pop_front() {
                m.by_scope.remove(&old);
            }
        }
    }

    pub fn counts(&self, scope: &Scope) -> Option<Counts> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.by_scope.get(scope).map(|(fields, users)| Counts {
            fields: fields.clone(),
            users: users.iter().map(|(k, v)| (*k, v.len() as u64)).collect(),
        })
    }

    pub fn forget(&self, scope: &Scope) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.by_scope.remove(scope);
        m.order.retain(|s| s != scope);
    }
}

type Kept = (
    HashMap<String, i64>,
    HashMap<&'static str, HashSet<Arc<str>>>,
);

impl MemoryInner {
    fn entry(&mut self, scope: Scope) -> &mut Kept {
        if !self.by_scope.contains_key(&scope) {
            self.order.push_back(scope.clone());
        }
        self.by_scope.entry(scope).or_default()
    }
}

/// Embedded mode: the counts and the trace, fed by every record emitted.
pub struct Embedded {
    pub stats: MemoryStats,
    pub trace: crate::trace::MemoryTrace,
}

impl crate::events::Tally for Embedded {
    fn record(&self, r: &Record) {
        self.stats.record(r);
        self.trace.record(r);
    }
}

/// The API's JSON for one scope. `variants`: a campaign's variant ids as
/// defined now (with `holdout` when it has one), shown even at zero;
/// `by_hour`: add the hourly buckets.
pub fn render(scope: &Scope, c: &Counts, variants: Option<&[String]>, by_hour: bool) -> Value {
    let get = |k: &str| c.fields.get(k).copied().unwrap_or(0);
    let mut out = Map::new();
    out.insert("id".into(), scope.id().into());
    for name in EVENTS {
        out.insert(name.into(), get(name).into());
    }
    let actions: Map<String, Value> = c
        .fields
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("action:")
                .map(|a| (a.to_owned(), (*v).into()))
        })
        .collect();
    out.insert("actions".into(), Value::Object(actions));
    let users: Map<String, Value> = Who::ALL
        .iter()
        .map(|w| {
            (
                w.name().to_owned(),
                c.users.get(w.name()).copied().unwrap_or(0).into(),
            )
        })
        .collect();
    out.insert("users".into(), Value::Object(users));
    if let Scope::Campaign(_) = scope {
        out.insert(
            "variants".into(),
            variants_json(c, variants.unwrap_or_default()),
        );
        out.insert("interval".into(), "newcombe-hybrid-score-95".into());
    }
    if by_hour {
        out.insert("hours".into(), hours_json(c));
    }
    Value::Object(out)
}

fn variants_json(c: &Counts, defined: &[String]) -> Value {
    let mut per: BTreeMap<String, BTreeMap<&'static str, i64>> = BTreeMap::new();
    for id in defined {
        per.entry(id.clone()).or_default();
    }
    for (k, v) in &c.fields {
        let Some(rest) = k.strip_prefix("v:") else {
            continue;
        };
        let Some((id, name)) = rest.rsplit_once(':') else {
            continue;
        };
        let name = match name {
            "exposed" => "exposed",
            "displayed" => "displayed",
            "clicked" => "clicked",
            "converted" => "converted",
            _ => continue,
        };
        *per.entry(id.to_owned())
            .or_default()
            .entry(name)
            .or_default() += v;
    }
    let rate = |m: &BTreeMap<&str, i64>| {
        let (x, n) = (
            m.get("converted").copied().unwrap_or(0),
            m.get("exposed").copied().unwrap_or(0),
        );
        (x.max(0) as u64, n.max(0) as u64)
    };
    let holdout = per.get("holdout").map(rate);
    let out: Map<String, Value> = per
        .iter()
        .map(|(id, m)| {
            let mut o = Map::new();
            for name in ["exposed", "displayed", "clicked", "converted"] {
                o.insert(name.into(), m.get(name).copied().unwrap_or(0).into());
            }
            let (x, n) = rate(m);
            o.insert(
                "conversion_rate".into(),
                (n > 0).then(|| x as f64 / n as f64).into(),
            );
            if let (Some((hx, hn)), false) = (holdout, id == "holdout") {
                o.insert("vs_holdout".into(), versus(x, n, hx, hn));
            }
            (id.clone(), Value::Object(o))
        })
        .collect();
    Value::Object(out)
}

/// The difference of two conversion rates, `x1/n1 − x2/n2`, with its 95 %
/// Newcombe hybrid score interval; nulls while either side has no exposure.
fn versus(x1: u64, n1: u64, x2: u64, n2: u64) -> Value {
    match newcombe(x1, n1, x2, n2) {
        Some((d, lo, hi)) => json!({"difference": d, "ci95": [lo, hi]}),
        None => json!({"difference": null, "ci95": null}),
    }
}

const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `x` successes in `n` trials.
fn wilson(x: u64, n: u64) -> (f64, f64) {
    let (x, n, z2) = (x as f64, n as f64, Z95 * Z95);
    let p = x / n;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// `(p1 − p2, lower, upper)` by Newcombe's method 10.
pub fn newcombe(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<(f64, f64, f64)> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let ((l1, u1), (l2, u2)) = (wilson(x1, n1), wilson(x2, n2));
    let d = p1 - p2;
    let lower = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let upper = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Some((d, lower, upper))
}

fn hours_json(c: &Counts) -> Value {
    let mut hours: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    for (k, v) in &c.fields {
        let Some(rest) = k.strip_prefix("h:") else {
            continue;
        };
        let Some((hour, name)) = rest.split_once(':') else {
            continue;
        };
        let Ok(hour) = hour.parse::<u64>() else {
            continue;
        };
        hours
            .entry(hour)
            .or_default()
            .insert(name.to_owned(), (*v).into());
    }
    Value::Array(
        hours
            .into_iter()
            .map(|(hour, mut m)| {
                for name in EVENTS {
                    m.entry(name).or_insert(0.into());
                }
                m.insert("hour".into(), hour.into());
                Value::Object(m)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newcombe_matches_the_published_example() {
        // Newcombe (1998), table II, example (a): 56/70 vs 48/80:
        // difference 0.2, interval 0.0524 to 0.3339.
        let (d, lo, hi) = newcombe(56, 70, 48, 80).expect("defined");
        assert!((d - 0.2).abs() < 1e-9);
        assert!((lo - 0.0524).abs() < 5e-4, "{lo}");
        assert!((hi - 0.3339).abs() < 5e-4, "{hi}");
        assert_eq!(newcombe(1, 0, 1, 10), None);
    }

    #[test]
    fn records_turn_into_counts_by_scope_and_hour() {
        use crate::events::{Record, Stream};
        let stats = MemoryStats::new(10);
        let click = Record::ack("clicked", "m1", "alice", "n.1")
            .with("action", "upgrade")
            .with("campaign", "c")
            .with("variant", "a")
            .stamped_at("n", 2 * HOUR_MS + 5);
        stats.record(&click);
        stats.record(&Record::ack("clicked", "m1", "alice", "n.2").stamped_at("n", 3 * HOUR_MS));
        let mut count = Record::new(Stream::Events, "delivered")
            .with("msg", "m1")
            .with("count", "3");
        count.users = vec![Arc::from("a"), Arc::from("b"), Arc::from("a")];
        stats.record(&count.stamped_at("n", 3 * HOUR_MS));
        let m = stats.counts(&Scope::Message("m1".into())).expect("kept");
        let v = render(&Scope::Message("m1".into()), &m, None, true);
        assert_eq!(v["clicked"], 2);
        assert_eq!(v["delivered"], 3);
        assert_eq!(v["actions"]["upgrade"], 1);
        assert_eq!(v["users"]["clicked"], 1, "alice twice");
        assert_eq!(v["users"]["delivered"], 2);
        assert_eq!(v["hours"][0]["hour"], 2 * HOUR_MS);
        assert_eq!(v["hours"][1]["delivered"], 3);
        let c = stats.counts(&Scope::Campaign("c".into())).expect("kept");
        let v = render(
            &Scope::Campaign("c".into()),
            &c,
            Some(&["a".into(), "b".into()]),
            false,
        );
        assert_eq!(v["variants"]["a"]["clicked"], 1);
        assert_eq!(v["variants"]["b"]["clicked"], 0);
        assert!(v.get("hours").is_none());
    }
}
