//! Experiments' assignments, the counts and the user traces in Redis.
//!
//! Counts and traces are written by the stream writer (`streams.rs`), in
//! its own pipeline next to the streams' ones: the increments of a whole
//! batch of records are summed first (one `HINCRBY` per scope and field,
//! one `PFADD` per scope and kind of user, one `LPUSH` per traced user), so
//! a broadcast's count costs each node one command per message, not one per
//! recipient. Beyond [`SKETCH_FROM`] users, the node hashes them into a
//! HyperLogLog of its own (`crate::sketch`; the fan-out does it as it
//! goes) and Redis merges it (`PFMERGE`):
//! 12 KiB sent instead of every user id, and no hashing on Redis.

use super::{RedisBus, unavailable};
use crate::bus::BusError;
use crate::bus::counters::Exposure;
use crate::events::Record;
use crate::sketch::{SKETCH_FROM, Sketch};
use crate::stats::{self, Counts, Scope, Who};
use redis::AsyncCommands;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Deletes the traces of the least recently traced users past `stats.trace_users`.
const TRACE_BOUND: &str = include_str!("lua/trace_bound.lua");

/// One scope's distinct users in a batch: named, and in sketches.
type Distinct<'a> = (Vec<&'a str>, Option<Sketch>);

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
        let mut users: BTreeMap<(&'static str, String), Distinct<'_>> = BTreeMap::new();
        let mut traces: BTreeMap<Arc<str>, Vec<String>> = BTreeMap::new();
        for r in batch {
            for (scope, field, by) in stats::increments(r) {
                *sums.entry((scope.key(), field)).or_default() += by;
            }
            for (scope, who, list) in stats::distinct(r) {
                let (names, sketch) = users.entry((who.name(), scope.key())).or_default();
                match (sketch.as_mut(), list.sketch) {
                    (Some(sum), Some(more)) => sum.merge(more),
                    (None, Some(more)) => *sketch = Some(more.clone()),
                    (_, None) => {}
                }
                names.extend(list.names());
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
        // Written, merged and deleted in this pipeline; one stream writer
        // per node, so one such key per node at a time.
        let sketch_key = format!("{}:sketch:{}", self.keys.data(), self.node);
        for ((who, scope), (names, sketch)) in users {
            let key = self.keys.distinct(who, &scope);
            if sketch.is_none() && names.len() < SKETCH_FROM {
                pipe.cmd("PFADD").arg(&key).arg(names).ignore();
            } else {
                let mut sketch = sketch.unwrap_or_default();
                names.iter().for_each(|u| sketch.add(u.as_bytes()));
                pipe.cmd("SET")
                    .arg(&sketch_key)
                    .arg(sketch.to_dense())
                    .arg("PX")
                    .arg(60_000)
                    .ignore();
                pipe.cmd("PFMERGE").arg(&key).arg(&sketch_key).ignore();
                pipe.del(&sketch_key).ignore();
            }
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

    #[tokio::test]
    async fn a_fan_out_to_thousands_is_counted_from_sketches_as_pfadd_would_count_it() {
        use crate::bus::redis::testing::command;
        use crate::envelope::Command;
        use crate::events::Delivered;
        use std::sync::Arc;
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let mut conn = f.bus.conn.clone();
        let Command::Publish(p) =
            command(serde_json::json!({"id": "wide", "to": "all", "kind": "banner", "title": "x"}))
        else {
            unreachable!("a publish")
        };
        let ids = |r: std::ops::Range<usize>| -> Vec<Arc<str>> {
            r.map(|i| Arc::from(format!("user-{i}"))).collect()
        };
        // As two nodes would count it: 3,000 users each, 1,500 on both; one
        // record names them, the other carries them in a sketch, as the
        // fan-out builds it.
        for (range, sketched) in [(0..3000, false), (1500..4500, true)] {
            let users = ids(range);
            assert!(
                users.len() >= crate::sketch::SKETCH_FROM,
                "sent as a sketch"
            );
            let mut r = Record::delivered(&p, Delivered::Count(users.len(), Vec::new()));
            if sketched {
                let mut sketch = crate::sketch::Sketch::default();
                users.iter().for_each(|u| sketch.add(u.as_bytes()));
                r.sketch = Some(Box::new(sketch));
            } else {
                r.users = users;
            }
            let pipe = f.bus.tally(&[r]).expect("counted");
            pipe.query_async::<()>(&mut conn).await.expect("written");
        }
        let counts = f
            .bus
            .counts(&crate::stats::Scope::Message("wide".into()))
            .await
            .expect("read")
            .expect("counted");
        assert_eq!(counts.fields["delivered"], 6000, "deliveries are summed");
        // The control: the same ids added by PFADD.
        let all: Vec<String> = (0..4500).map(|i| format!("user-{i}")).collect();
        let (_, control): (i64, u64) = redis::pipe()
            .cmd("PFADD")
            .arg("control")
            .arg(&all)
            .cmd("PFCOUNT")
            .arg("control")
            .query_async(&mut conn)
            .await
            .expect("PFADD");
        assert_eq!(counts.users["delivered"], control, "distinct users");
        assert!((4400..4600).contains(&control), "{control}");
        let left: bool = redis::cmd("EXISTS")
            .arg("herald:sketch:n1")
            .query_async(&mut conn)
            .await
            .expect("EXISTS");
        assert!(!left, "the merged sketch is deleted");
    }

    async fn conn(redis: &TestRedis) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connection")
    }

    /// The registers of the dense HyperLogLog at `key`.
    async fn registers(c: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<u8> {
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(key)
            .query_async(c)
            .await
            .expect("GET");
        assert_eq!(bytes.len(), crate::sketch::DENSE_SIZE, "{key} is dense");
        bytes[crate::sketch::HEADER..].to_vec()
    }

    #[tokio::test]
    async fn a_merged_sketch_is_the_hyperloglog_redis_builds_from_the_same_users() {
        let redis = TestRedis::start();
        let mut c = conn(&redis).await;
        // Dense from the first element, to compare registers byte for byte.
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("hll-sparse-max-bytes")
            .arg(0)
            .query_async(&mut c)
            .await
            .expect("CONFIG SET");
        for n in [1usize, 7, 100, 10_000, 60_000] {
            // Ids of every length 1..20, to cover each tail of the hash.
            let users: Vec<String> = (0..n)
                .map(|i| format!("{i}{}", "u".repeat(i % 20)))
                .collect();
            let (added, merged) = (format!("added:{n}"), format!("merged:{n}"));
            for chunk in users.chunks(1000) {
                let _: i64 = redis::cmd("PFADD")
                    .arg(&added)
                    .arg(chunk)
                    .query_async(&mut c)
                    .await
                    .expect("PFADD");
            }
            let mut sketch = crate::sketch::Sketch::default();
            users.iter().for_each(|u| sketch.add(u.as_bytes()));
            let _: () = redis::pipe()
                .set("sketch", sketch.to_dense())
                .ignore()
                .cmd("PFMERGE")
                .arg(&merged)
                .arg("sketch")
                .ignore()
                .query_async(&mut c)
                .await
                .expect("PFMERGE accepts the sketch");
            assert_eq!(
                registers(&mut c, &merged).await,
                registers(&mut c, &added).await,
                "{n} users"
            );
            let counts: (u64, u64) = redis::pipe()
                .cmd("PFCOUNT")
                .arg(&merged)
                .cmd("PFCOUNT")
                .arg(&added)
                .query_async(&mut c)
                .await
                .expect("PFCOUNT");
            assert_eq!(counts.0, counts.1);
            // Within HyperLogLog's error (0.81 % standard error).
            let error = (counts.0 as f64 - n as f64).abs() / n as f64;
            assert!(error < 0.03, "{n} users counted {}", counts.0);
        }
    }
}
