//! The SPEC's streams: the writer that drains the events queue into them,
//! reading their newest entries, and the `dead` record of a refused
//! envelope (once per payload, however many nodes refused it).

use super::{RedisBus, unavailable};
use crate::bus::BusError;
use crate::events::{Record, Stream};
use redis::AsyncCommands;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

impl RedisBus {
    /// Records a refused envelope in the dead stream, once per `digest`
    /// however many nodes refused it.
    pub(super) async fn record_dead(
        &self,
        digest: &str,
        reason: &str,
        source: &str,
        envelope: &str,
    ) {
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<()> = async {
            // The first node to claim the digest records it.
            let first: Option<String> = redis::cmd("SET")
                .arg(self.keys.dead_seen(digest))
                .arg("1")
                .arg("NX")
                .arg("EX")
                .arg(60)
                .query_async(&mut conn)
                .await?;
            if first.is_none() {
                return Ok(());
            }
            let record = Record::dead(reason, source, envelope).stamped(&self.node);
            let written = self
                .keys
                .xadd(&record, self.maxlen)
                .query_async::<String>(&mut conn)
                .await
                .map(drop);
            if written.is_err() {
                // Unclaimed, so that another node's try can record it.
                let _: Result<i64, _> = conn.del(self.keys.dead_seen(digest)).await;
            }
            written
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not record a refused envelope");
        }
    }

    /// The newest `count` entries of a stream, newest first.
    pub async fn stream(
        &self,
        stream: Stream,
        count: usize,
    ) -> Result<Vec<serde_json::Value>, BusError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = conn
            .xrevrange_count(self.keys.stream(stream), "+", "-", count)
            .await
            .map_err(unavailable)?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| {
                let mut obj = serde_json::Map::new();
                obj.insert("entry".into(), entry.id.clone().into());
                for (k, v) in entry.map {
                    let text: String = redis::from_redis_value(v).unwrap_or_default();
                    obj.insert(k, text.into());
                }
                serde_json::Value::Object(obj)
            })
            .collect())
    }

    /// Drains the events queue into the Redis streams until `shutdown`,
    /// then flushes what is left once.
    pub async fn write_streams(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let events = self.dispatcher.events().clone();
        loop {
            let stopping = tokio::select! {
                () = &mut shutdown => true,
                () = events.notify.notified() => false,
            };
            loop {
                let batch = events.take(1000);
                if batch.is_empty() {
                    break;
                }
                // One pipeline per stream: in a cluster, each lives on its
                // own slot; the counts and traces of the batch, summed, in
                // one more (on the slot of Herald's own keys).
                let mut pipes: HashMap<Stream, redis::Pipeline> = HashMap::new();
                for r in batch.iter().filter(|r| super::stats::streamed(r)) {
                    pipes
                        .entry(r.stream)
                        .or_insert_with(redis::pipe)
                        .add_command(self.keys.xadd(r, self.maxlen))
                        .ignore();
                }
                let tally = self.tally(&batch);
                let mut conn = self.conn.clone();
                let (mut lost, mut failure) = (0, None);
                for pipe in pipes.values() {
                    if failure.is_some() {
                        lost += pipe.len() as u64;
                    } else if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                        lost += pipe.len() as u64;
                        failure = Some(e);
                    }
                }
                if let Some(pipe) = tally.filter(|_| failure.is_none())
                    && let Err(e) = pipe.query_async::<()>(&mut conn).await
                {
                    // The records are in their streams; their counts are not.
                    self.metrics.drop_reason("counts_not_written");
                    tracing::warn!(error = %e, records = batch.len(), "counts and traces not written");
                }
                if let Some(e) = failure {
                    self.metrics.events_dropped.inc_by(lost);
                    tracing::warn!(error = %e, lost, "stream records not written");
                    if !stopping {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    break;
                }
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::bus::redis::testing::{TestRedis, fixture};
    use crate::events::{Record, Stream};
    use redis::Commands;

    #[tokio::test]
    async fn records_are_written_to_their_streams_and_read_newest_first() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let events = f.bus.dispatcher.events().clone();
        for i in 0..3 {
            events.emit(Record::ack("displayed", &format!("m{i}"), "a", "n1.1"));
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(f.bus.clone().write_streams(async {
            let _ = stopped.await;
        }));
        let mut r = redis.sync().expect("conn");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while r.xlen::<_, usize>("herald:events").expect("XLEN") < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "records written in time"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
        writer.await.expect("writer");
        let newest = f.bus.stream(Stream::Events, 2).await.expect("read");
        let msgs: Vec<&str> = newest.iter().filter_map(|r| r["msg"].as_str()).collect();
        assert_eq!(msgs, ["m2", "m1"]);
        assert_eq!(newest[0]["node"], "n1");
    }

    #[tokio::test]
    async fn counts_and_traces_are_summed_per_batch_and_only_counted_records_stay_out_of_streams() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let events = f.bus.dispatcher.events().clone();
        for u in ["a", "b", "a"] {
            events.emit(Record::ack("displayed", "m1", u, "n1.1").with("campaign", "c"));
        }
        events.emit(Record::decision(
            "a",
            "c",
            "capped",
            "frequency: at most 1 ever",
        ));
        let batch = events.take(100);
        assert_eq!(batch.len(), 4);
        // One HINCRBY per scope and field, however many records.
        let pipe = f.bus.tally(&batch).expect("something to count");
        let hincrby = pipe
            .cmd_iter()
            .filter(|c| c.get_packed_command().windows(7).any(|w| w == b"HINCRBY"))
            .count();
        assert_eq!(hincrby, 4, "displayed and its hour, for m1 and for c");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        for r in batch {
            events.emit(r);
        }
        let writer = tokio::spawn(f.bus.clone().write_streams(async {
            let _ = stopped.await;
        }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let scope = crate::stats::Scope::Message("m1".into());
        while f.bus.counts(&scope).await.expect("read").is_none() {
            assert!(std::time::Instant::now() < deadline, "counted in time");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
        writer.await.expect("writer");
        let counts = f.bus.counts(&scope).await.expect("read").expect("kept");
        assert_eq!(counts.fields.get("displayed"), Some(&3));
        assert_eq!(counts.users.get("displayed"), Some(&2));
        let trace = f.bus.trace("a", 10).await.expect("trace");
        assert_eq!(trace.len(), 1, "{trace:?}");
        assert_eq!(trace[0]["decision"], "capped");
        // The decision is counted and traced, not streamed.
        let mut r = redis.sync().expect("conn");
        assert_eq!(r.xlen::<_, usize>("herald:events").expect("XLEN"), 3);
    }

    #[tokio::test]
    async fn a_refused_payload_is_recorded_once_however_many_nodes_refused_it() {
        let redis = TestRedis::start();
        let (a, b) = (fixture(&redis, "a"), fixture(&redis, "b"));
        a.bus
            .record_dead("d1", "title: required", "herald:broadcast", "{}")
            .await;
        b.bus
            .record_dead("d1", "title: required", "herald:broadcast", "{}")
            .await;
        b.bus
            .record_dead("d2", "kind: required", "herald:broadcast", "{\"x\":1}")
            .await;
        let dead = a.bus.stream(Stream::Dead, 10).await.expect("read");
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[1]["reason"], "title: required");
    }
}
