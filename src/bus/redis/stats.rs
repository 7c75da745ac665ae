//! Experiments' assignments, the counts and the user traces in Redis.
//!
//! Counts and traces are written by the stream writer (`streams.rs`), in
//! its own pipeline next to the streams' ones: the increments of a whole
//! batch of records are summed first (one `HINCRBY` per scope and field,
//! one `PFADD` per scope and kind of user, one `LPUSH` per traced user), so
//! a broadcast's count costs each node one command per message, not one per
//! recipient.

use super::{RedisBus, unavailable};
use crate::bus::BusError;
use crate::bus::counters::Exposure;
use crate::events::Record;
use crate::stats::{self, Counts, Scope, Who};
use redis::AsyncCommands;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Deletes the traces of the least recently traced users past `stats.trace_users`.
const TRACE_BOUND: &str = include_str!("lua/trace_bound.lua");

impl RedisBus {
    pub(super) async fn exposure(
        &self,
        campaign: &str,
        user: &str,
    ) -> Result<Option<Exposure>, BusError> {
        let mut conn = self.conn.clone();
        let stored: Option<String> = conn
            .hget(self.keys.exposures(campaign), user)
            .await
            .map_err(unavailable)?;
        Ok(stored.as_deref().and_then(Exposure::decode))
    }

    pub(super) async fn expose(
        &self,
        campaign: &str,
        user: &str,
        e: &Exposure,
    ) -> Result<(Exposure, bool), BusError> {
        let mut conn = self.conn.clone();
        let key = self.keys.exposures(campaign);
        // Stored unless stored before; either way the stored one is read back.
        let (first, stored): (bool, Option<String>) = redis::pipe()
            .hset_nx(&key, user, e.encode())
            .hget(&key, user)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let stored = stored
            .as_deref()
            .and_then(Exposure::decode)
            .unwrap_or_else(|| e.clone());
        Ok((stored, first))
    }

    pub(super) async fn convert(&self, campaign: &str, user: &str) -> Result<bool, BusError> {
        let mut conn = self.conn.clone();
        let added: i64 = conn
            .sadd(self.keys.conversions(campaign), user)
            .await
            .map_err(unavailable)?;
        Ok(added == 1)
    }

    pub(super) async fn counts(&self, scope: &Scope) -> Result<Option<Counts>, BusError> {
        let mut conn = self.conn.clone();
        let name = scope.key();
        let mut pipe = redis::pipe();
        pipe.hgetall(self.keys.counts(&name));
        for who in Who::ALL {
            pipe.cmd("PFCOUNT")
                .arg(self.keys.distinct(who.name(), &name));
        }
        let (fields, d, p, c): (HashMap<String, i64>, u64, u64, u64) =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        if fields.is_empty() && d + p + c == 0 {
            return Ok(None);
        }
        let users = Who::ALL.iter().map(|w| w.name()).zip([d, p, c]).collect();
        Ok(Some(Counts { fields, users }))
    }

    pub(super) async fn trace(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, BusError> {
        let mut conn = self.conn.clone();
        let stop = limit.saturating_sub(1) as isize;
        let list: Vec<String> = conn
            .lrange(self.keys.trace(user), 0, stop)
            .await
            .map_err(unavailable)?;
        Ok(list
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect())
    }

    /// The counters and traces of a batch of records, summed, as one
    /// pipeline (`None`: nothing to count).
    pub(super) fn tally(&self, batch: &[crate::events::Record]) -> Option<redis::Pipeline> {
        let mut sums: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut users: BTreeMap<(&'static str, String), Vec<&str>> = BTreeMap::new();
        let mut traces: BTreeMap<Arc<str>, Vec<String>> = BTreeMap::new();
        for r in batch {
            for (scope, field, by) in stats::increments(r) {
                *sums.entry((scope.key(), field)).or_default() += by;
            }
            for (scope, who, list) in stats::distinct(r) {
                users
                    .entry((who.name(), scope.key()))
                    .or_default()
                    .extend(list.names());
            }
            for (user, entry) in crate::trace::entries(r) {
                traces.entry(user).or_default().push(entry.to_string());
            }
        }
        if sums.is_empty() && users.is_empty() && traces.is_empty() {
            return None;
        }
        let keep = self.stats.retention.as_millis() as u64;
        let mut pipe = redis::pipe();
        let mut touched: Vec<String> = Vec::new();
        for ((scope, field), by) in sums {
            let key = self.keys.counts(&scope);
            pipe.hincr(&key, field, by).ignore();
            if touched.last() != Some(&key) {
                touched.push(key);
            }
        }
        for ((who, scope), list) in users {
            let key = self.keys.distinct(who, &scope);
            pipe.cmd("PFADD").arg(&key).arg(list).ignore();
            touched.push(key);
        }
        for key in touched {
            pipe.pexpire(key, keep as i64).ignore();
        }
        let (per_user, ttl) = (
            self.stats.trace_per_user,
            self.stats.trace_ttl.as_millis() as i64,
        );
        if !traces.is_empty() {
            // EVAL (not EVALSHA): a pipeline cannot load a missing script.
            let mut bound = redis::cmd("EVAL");
            bound
                .arg(TRACE_BOUND)
                .arg(1)
                .arg(self.keys.data())
                .arg(self.stats.trace_users)
                .arg(crate::auth::unix_now_ms());
            for user in traces.keys() {
                bound.arg(&**user);
            }
            pipe.add_command(bound).ignore();
        }
        for (user, entries) in traces {
            let key = self.keys.trace(&user);
            // Oldest first, so the newest ends at the head.
            pipe.lpush(&key, entries).ignore();
            pipe.ltrim(&key, 0, per_user as isize - 1).ignore();
            pipe.pexpire(&key, ttl).ignore();
        }
        Some(pipe)
    }
}

/// Records whose only use is counting: not written to a stream.
pub(super) fn streamed(r: &Record) -> bool {
    !r.only_counted
}

#[cfg(test)]
mod tests {
    use crate::bus::redis::testing::{TestRedis, fixture};
    use crate::events::Record;

    #[tokio::test]
    async fn traces_are_bounded_in_total_the_least_recently_traced_going_first() {
        let redis = TestRedis::start();
        // The fixture keeps 2 users' traces, 5 entries each.
        let f = fixture(&redis, "n1");
        let mut conn = f.bus.conn.clone();
        for (i, user) in ["ann", "bob", "cat"].iter().enumerate() {
            let r = Record::decision(user, "c", "capped", "frequency").stamped_at("n1", i as u64);
            let pipe = f.bus.tally(&[r]).expect("traced");
            pipe.query_async::<()>(&mut conn).await.expect("written");
            // Distinct times in the index.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert!(
            f.bus.trace("ann", 10).await.expect("read").is_empty(),
            "ann went first"
        );
        assert_eq!(f.bus.trace("bob", 10).await.expect("read").len(), 1);
        assert_eq!(
            f.bus.trace("cat", 10).await.expect("read").len(),
            1,
            "positive control"
        );
        // Per user: the newest 5, newest first.
        let batch: Vec<Record> = (0..7)
            .map(|i| {
                Record::decision("cat", &format!("c{i}"), "holdout", "h").stamped_at("n1", 10 + i)
            })
            .collect();
        let pipe = f.bus.tally(&batch).expect("traced");
        pipe.query_async::<()>(&mut conn).await.expect("written");
        let cat = f.bus.trace("cat", 10).await.expect("read");
        let names: Vec<&str> = cat.iter().filter_map(|e| e["campaign"].as_str()).collect();
        assert_eq!(names, ["c6", "c5", "c4", "c3", "c2"]);
    }
}
