//! Scheduled messages and audience previews on Redis.
//!
//! Scheduled: `lua/schedule.lua` holds, claims (by Redis's `TIME`, with a
//! lease), settles and cancels; any node claims, so the node that accepted
//! a message may be gone by its time.
//!
//! Preview: a request `{"req","to"}` on `{prefix}:preview` reaches every
//! node's subscriber; each counts its own sessions (delivering nothing)
//! and answers on a list of the request's, adding its matching users to a
//! set of the request's so users on several nodes count once. The asking
//! node waits (at most [`PREVIEW_WAIT`]) for as many answers as `PUBLISH`
//! said nodes heard the request.

use super::conn::{Backend, Conn};
use super::keys::Keys;
use super::{RedisBus, unavailable};
use crate::audience::Audience;
use crate::bus::{BusError, Due, Preview};
use crate::envelope::Publish;
use redis::AsyncCommands;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

static SCHEDULE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/schedule.lua")));

/// How long a preview waits for the nodes' answers.
pub const PREVIEW_WAIT: Duration = Duration::from_secs(1);
/// How long a preview's answers stay in Redis (they are deleted once read).
const PREVIEW_KEEP_MS: u64 = 10_000;
/// The largest preview request a node reads (an audience is far smaller).
const PREVIEW_MAX_BYTES: usize = 256 * 1024;
/// Users per SADD of a preview answer.
const PREVIEW_CHUNK: usize = 1000;

/// Holds `p` until `at`; `false` when `max` messages are waiting already.
async fn add(
    conn: &mut Conn,
    keys: &Keys,
    p: &Publish,
    at: u64,
    max: usize,
) -> Result<(), BusError> {
    let added: i64 = SCHEDULE
        .key(keys.data())
        .arg("add")
        .arg(p.id())
        .arg(at)
        .arg(p.to_json())
        .arg(max)
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    if added == 0 {
        return Err(BusError::ScheduleFull(max));
    }
    Ok(())
}

async fn cancel(conn: &mut Conn, keys: &Keys, id: &str) -> Result<bool, BusError> {
    let n: i64 = SCHEDULE
        .key(keys.data())
        .arg("cancel")
        .arg(id)
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(n == 1)
}

/// Up to `limit` waiting envelopes, soonest first.
async fn list(
    conn: &mut Conn,
    keys: &Keys,
    limit: usize,
) -> Result<Vec<serde_json::Value>, BusError> {
    let ids: Vec<String> = conn
        .zrange(keys.scheduled(), 0, limit.max(1) as isize - 1)
        .await
        .map_err(unavailable)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let envs: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(keys.scheduled_envelopes())
        .arg(&ids)
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(envs
        .into_iter()
        .flatten()
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect())
}

/// What the CLI does with scheduled messages through Redis, on a
/// connection of its own.
pub enum Direct<'a> {
    /// Hold a message until its time (at most `max` waiting); answers null.
    Schedule(&'a Publish, u64, usize),
    /// List up to this many; answers an array of envelopes.
    List(usize),
    /// Cancel one; answers whether it was waiting.
    Cancel(&'a str),
}

/// Schedules, lists or cancels from outside a node (the CLI), as a node does.
pub async fn scheduled_direct(
    url: &str,
    cluster: bool,
    tls: crate::config::TlsFiles<'_>,
    prefix: &str,
    what: Direct<'_>,
) -> Result<serde_json::Value, BusError> {
    let backend = Backend::open(url, cluster, tls).map_err(unavailable)?;
    let mut conn = backend
        .dedicated(Duration::from_secs(5))
        .await
        .map_err(unavailable)?;
    let keys = Keys::new(prefix, cluster);
    match what {
        Direct::Schedule(p, at, max) => add(&mut conn, &keys, p, at, max)
            .await
            .map(|()| serde_json::Value::Null),
        Direct::List(limit) => list(&mut conn, &keys, limit).await.map(Into::into),
        Direct::Cancel(id) => cancel(&mut conn, &keys, id).await.map(Into::into),
    }
}

/// One node's answer to a preview request.
#[derive(serde::Serialize, serde::Deserialize)]
struct Answer {
    node: String,
    sessions: u64,
    sample: Vec<String>,
}

impl RedisBus {
    pub(crate) async fn schedule(&self, p: &Publish, at: u64) -> Result<(), BusError> {
        add(
            &mut self.conn.clone(),
            &self.keys,
            p,
            at,
            self.max_scheduled,
        )
        .await
    }

    pub(crate) async fn scheduled(&self, limit: usize) -> Result<Vec<serde_json::Value>, BusError> {
        list(&mut self.conn.clone(), &self.keys, limit).await
    }

    pub(crate) async fn cancel_scheduled(&self, id: &str) -> Result<bool, BusError> {
        cancel(&mut self.conn.clone(), &self.keys, id).await
    }

    /// Redis's clock, which decides when scheduled messages are due.
    pub(crate) async fn now_ms(&self) -> Result<u64, BusError> {
        let (s, us): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(s * 1000 + us / 1000)
    }

    pub(crate) async fn claim_due(&self, batch: usize) -> Result<Vec<Due>, BusError> {
        self.claim_leased(batch, crate::bus::LEASE).await
    }

    async fn claim_leased(&self, batch: usize, lease: Duration) -> Result<Vec<Due>, BusError> {
        let reply: Vec<redis::Value> = SCHEDULE
            .key(self.keys.data())
            .arg("claim")
            .arg(batch)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let mut it = reply.into_iter();
        let lease: u64 = it
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or_default();
        let mut due = Vec::new();
        while let (Some(id), Some(json)) = (it.next(), it.next()) {
            if let (Ok(id), Ok(json)) = (
                redis::from_redis_value::<String>(id),
                redis::from_redis_value::<String>(json),
            ) {
                due.push(Due { id, json, lease });
            }
        }
        Ok(due)
    }

    pub(crate) async fn settle(&self, due: &Due) -> Result<(), BusError> {
        let _: i64 = SCHEDULE
            .key(self.keys.data())
            .arg("settle")
            .arg(&due.id)
            .arg(due.lease)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Asks every node to count `to`, and sums their answers.
    pub(crate) async fn preview(
        &self,
        to: &serde_json::Value,
        _audience: &Audience,
    ) -> Result<Preview, BusError> {
        let req = crate::envelope::new_id();
        let mut conn = self.conn.clone();
        let request = serde_json::json!({ "req": req, "to": to }).to_string();
        let heard: u64 = conn
            .publish(self.keys.preview_channel(), request)
            .await
            .map_err(unavailable)?;
        let answers_key = self.keys.preview_answers(&req);
        let deadline = tokio::time::Instant::now() + PREVIEW_WAIT;
        loop {
            let n: u64 = conn.llen(&answers_key).await.map_err(unavailable)?;
            if n >= heard || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let users_key = self.keys.preview_users(&req);
        let (answers, users): (Vec<String>, u64) = redis::pipe()
            .lrange(&answers_key, 0, -1)
            .scard(&users_key)
            .del(&answers_key)
            .ignore()
            .del(&users_key)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut p = Preview {
            users,
            ..Preview::default()
        };
        for a in answers
            .iter()
            .filter_map(|a| serde_json::from_str::<Answer>(a).ok())
        {
            p.nodes += 1;
            p.sessions += a.sessions;
            for u in a.sample {
                if p.sample.len() < Preview::SAMPLE && !p.sample.contains(&u) {
                    p.sample.push(u);
                }
            }
        }
        p.complete = p.nodes >= heard;
        Ok(p)
    }

    /// A preview request from the channel: counted here, answered in the
    /// background (bounded like every other job the subscriber hands off).
    pub(super) fn answer_preview(self: &Arc<Self>, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Request {
            req: String,
            to: serde_json::Value,
        }
        if payload.len() > PREVIEW_MAX_BYTES {
            tracing::warn!(bytes = payload.len(), "preview request too large; ignored");
            return;
        }
        let Some(r) = serde_json::from_slice::<Request>(payload)
            .ok()
            .filter(|r| !r.req.is_empty() && r.req.len() <= crate::envelope::MAX_ID)
        else {
            tracing::warn!("preview request not understood; ignored");
            return;
        };
        let audience = match Audience::compile(&r.to) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "preview request with a bad audience; ignored");
                return;
            }
        };
        let (sessions, users) = self.hub.matching(&audience);
        let answer = Answer {
            node: self.node.clone(),
            sessions: sessions as u64,
            sample: users
                .iter()
                .take(Preview::SAMPLE)
                .map(|u| u.to_string())
                .collect(),
        };
        let bus = self.clone();
        self.background.spawn("preview", async move {
            let users_key = bus.keys.preview_users(&r.req);
            let answers_key = bus.keys.preview_answers(&r.req);
            let mut pipe = redis::pipe();
            for chunk in users.chunks(PREVIEW_CHUNK) {
                let chunk: Vec<&str> = chunk.iter().map(|u| &**u).collect();
                pipe.sadd(&users_key, chunk).ignore();
            }
            // The answer last: once the asker sees it, this node's users
            // are in the set.
            pipe.pexpire(&users_key, PREVIEW_KEEP_MS as i64)
                .ignore()
                .rpush(
                    &answers_key,
                    serde_json::to_string(&answer).unwrap_or_default(),
                )
                .ignore()
                .pexpire(&answers_key, PREVIEW_KEEP_MS as i64)
                .ignore();
            if let Err(e) = pipe.query_async::<()>(&mut bus.conn.clone()).await {
                tracing::warn!(error = %e, "preview answer not written");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{TestRedis, command, fixture};
    use crate::envelope::Command;
    use std::time::Duration;

    fn publish(id: &str) -> std::sync::Arc<crate::envelope::Publish> {
        match command(serde_json::json!({"id": id, "to": "all", "kind": "toast", "title": id})) {
            Command::Publish(p) => p,
            other => panic!("not a publish: {other:?}"),
        }
    }

    #[tokio::test]
    async fn due_by_redis_time_claimed_by_one_node_and_again_only_after_its_lease() {
        let redis = TestRedis::start();
        let (a, b) = (fixture(&redis, "a"), fixture(&redis, "b"));
        let now = a.bus.now_ms().await.expect("TIME");
        a.bus
            .schedule(&publish("due"), now - 1)
            .await
            .expect("held");
        a.bus
            .schedule(&publish("later"), now + 60_000)
            .await
            .expect("held");
        // Both nodes claim at once: one gets it, the other nothing.
        let lease = Duration::from_millis(300);
        let (ca, cb) = tokio::join!(a.bus.claim_leased(10, lease), b.bus.claim_leased(10, lease));
        let (ca, cb) = (ca.expect("claimed"), cb.expect("claimed"));
        let claimed: Vec<&str> = ca.iter().chain(&cb).map(|d| d.id.as_str()).collect();
        assert_eq!(claimed, ["due"], "exactly one claim, and not the later one");
        let first = ca.into_iter().chain(cb).next().expect("one");
        // Unsettled (its claimer died), it is due again once the lease ran out.
        let again = loop {
            let d = b.bus.claim_leased(10, lease).await.expect("claimed");
            if !d.is_empty() {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(again[0].id, "due");
        assert!(again[0].lease > first.lease);
        // The first claim, settled late, no longer removes it; the second does.
        a.bus.settle(&first).await.expect("settled");
        assert_eq!(a.bus.scheduled(10).await.expect("list").len(), 2);
        b.bus.settle(&again[0]).await.expect("settled");
        let left = a.bus.scheduled(10).await.expect("list");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["id"], "later");
        assert!(a.bus.cancel_scheduled("later").await.expect("cancel"));
        assert!(!a.bus.cancel_scheduled("later").await.expect("cancel"));
        assert!(a.bus.claim_due(10).await.expect("claim").is_empty());
    }

    #[tokio::test]
    async fn holding_is_bounded_and_the_same_id_replaces() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "a");
        let now = f.bus.now_ms().await.expect("TIME");
        for i in 0..1000 {
            f.bus
                .schedule(&publish(&format!("m{i}")), now + 60_000)
                .await
                .expect("held");
        }
        assert!(matches!(
            f.bus.schedule(&publish("one-more"), now + 60_000).await,
            Err(crate::bus::BusError::ScheduleFull(1000))
        ));
        f.bus
            .schedule(&publish("m0"), now + 1)
            .await
            .expect("replacing is not more");
        assert_eq!(f.bus.scheduled(1).await.expect("list")[0]["id"], "m0");
    }
}
