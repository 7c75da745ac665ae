//! Why a user saw a message, or why not (SPEC §10.5): the newest decisions
//! about each user, `{"at", "message" or "campaign", "decision", "reason"}`.
//!
//! Entries come from the same records as the counts ([`entries`]): a
//! delivery to a named user's session, a fallback user offline, a message
//! expired before delivery, the client's veto (`suppressed` ack), and the
//! campaign engine's decisions (not in the audience, capped, quiet hours,
//! outside the window, holdout, dismissed before), and the sticky messages
//! a connect's replay leaves out because the user dismissed them before. Deliveries to broadcast
//! audiences are counted per node, not traced per recipient: a trace write
//! per recipient would make a broadcast cost a Redis command per user.
//!
//! Kept per user (newest `stats.trace_per_user`) for `stats.trace_ttl`
//! after the last one, for at most `stats.trace_users` users: with Redis a
//! list per user written by the stream writer (`LPUSH`, `LTRIM`, `PEXPIRE`,
//! and `lua/trace_bound.lua` for the total, in its pipelines), embedded
//! [`MemoryTrace`].

use crate::events::Record;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The SPEC's decision names.
pub const DECISIONS: [&str; 10] = [
    "delivered",
    "not_online",
    "not_in_audience",
    "capped",
    "quiet_hours",
    "outside_window",
    "holdout",
    "suppressed_by_client",
    "dismissed_before",
    "expired",
];

fn entry(r: &Record, decision: &str, reason: &str) -> Value {
    let mut o = Map::new();
    o.insert("at".into(), r.ts().into());
    if let Some(m) = r.get("msg") {
        o.insert("message".into(), m.into());
    }
    if let Some(c) = r.get("campaign") {
        o.insert("campaign".into(), c.into());
    }
    if let Some(v) = r.get("variant") {
        o.insert("variant".into(), v.into());
    }
    o.insert("decision".into(), decision.into());
    o.insert("reason".into(), reason.into());
    Value::Object(o)
}

/// The trace entries one record makes, by user.
pub fn entries(r: &Record) -> Vec<(Arc<str>, Value)> {
    let user = r.get("user").map(Arc::<str>::from);
    let one = |decision: &str, reason: String| match &user {
        Some(u) => vec![(u.clone(), entry(r, decision, &reason))],
        None => Vec::new(),
    };
    match r.kind() {
        "decision" => one(
            r.get("decision").unwrap_or_default(),
            r.get("reason").unwrap_or_default().to_owned(),
        ),
        "delivered" => one(
            "delivered",
            format!(
                "sent to session {} on node {}",
                r.get("sid").unwrap_or("?"),
                r.get("node").unwrap_or("?")
            ),
        ),
        "undelivered" => one(
            "not_online",
            "no live session on any node (recorded for fallback)".to_owned(),
        ),
        "not_online" => one(
            "not_online",
            "no live session on any node when it was published".to_owned(),
        ),
        // The client's veto; a campaign's quiet hours come as a decision.
        "suppressed" if r.get("sid").is_some() => one(
            "suppressed_by_client",
            "the app's client vetoed the display (ack suppressed)".to_owned(),
        ),
        "expired" => {
            let e = entry(
                r,
                "expired",
                "the message expired before it could be delivered",
            );
            r.users.iter().map(|u| (u.clone(), e.clone())).collect()
        }
        _ => Vec::new(),
    }
}

/// Embedded traces: the newest entries of at most `max_users` users.
pub struct MemoryTrace {
    inner: Mutex<HashMap<Arc<str>, VecDeque<Value>>>,
    per_user: usize,
    max_users: usize,
    ttl_ms: u64,
}

impl MemoryTrace {
    pub fn new(per_user: usize, max_users: usize, ttl: std::time::Duration) -> Self {
        Self {
            inner: Mutex::new(HashMap::new()),
            per_user: per_user.max(1),
            max_users: max_users.max(1),
            ttl_ms: ttl.as_millis() as u64,
        }
    }

    pub fn record(&self, r: &Record) {
        let list = entries(r);
        if list.is_empty() {
            return;
        }
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (user, e) in list {
            if !m.contains_key(&user) && m.len() >= self.max_users {
                // The user traced least recently goes.
                let oldest = m
                    .iter()
                    .min_by_key(|(_, q)| q.front().map_or(0, at))
                    .map(|(u, _)| u.clone());
                if let Some(u) = oldest {
                    m.remove(&u);
                }
            }
            let q = m.entry(user).or_default();
            q.push_front(e);
            q.truncate(self.per_user);
        }
    }

    /// The newest `limit` entries about `user` younger than the ttl at `now_ms`.
    pub fn read(&self, user: &str, limit: usize, now_ms: u64) -> Vec<Value> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(user).map_or_else(Vec::new, |q| {
            q.iter()
                .filter(|e| at(e) + self.ttl_ms > now_ms)
                .take(limit)
                .cloned()
                .collect()
        })
    }
}

fn at(e: &Value) -> u64 {
    e["at"].as_u64().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Record;

    #[test]
    fn newest_first_bounded_per_user_and_in_total() {
        let t = MemoryTrace::new(2, 2, std::time::Duration::from_secs(60));
        for (i, c) in ["c1", "c2", "c3"].iter().enumerate() {
            t.record(
                &Record::decision("alice", c, "capped", "frequency").stamped_at("n", i as u64),
            );
        }
        let got = t.read("alice", 10, 10);
        let names: Vec<&str> = got.iter().filter_map(|e| e["campaign"].as_str()).collect();
        assert_eq!(names, ["c3", "c2"]);
        t.record(&Record::decision("bob", "c", "holdout", "h").stamped_at("n", 5));
        t.record(&Record::decision("carol", "c", "holdout", "h").stamped_at("n", 6));
        assert!(
            t.read("alice", 10, 10).is_empty(),
            "alice was traced least recently"
        );
        assert_eq!(t.read("carol", 10, 10).len(), 1, "positive control");
        assert!(t.read("carol", 10, 60_006).is_empty(), "expired");
    }
}
