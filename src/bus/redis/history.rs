//! The history in Redis: the position for `hello` and the resume read
//! (one script), walked by [`crate::history`] as the embedded one is.

use super::RedisBus;
use crate::auth::Identity;
use crate::history::{self, Resumed};
use std::sync::LazyLock;

static RESUME: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/resume.lua")));

/// The epoch, the last history time and sequence, and Redis's clock.
type HeadReads = ((Option<String>, Option<u64>, Option<u64>), (u64, u64));

/// The epoch, then for the broadcast history and the user's: the newest id
/// trimmed away ("" for none) and the entries after `since` (id, envelope).
type ResumeReads = (
    String,
    String,
    Vec<(String, String)>,
    String,
    Vec<(String, String)>,
);

impl RedisBus {
    /// The history's current position (creating its epoch if there is none
    /// yet, so that a client connecting to a fresh history can resume too).
    pub async fn head(&self) -> Option<String> {
        self.history?;
        let mut conn = self.conn.clone();
        let candidate = format!("{:016x}", rand::random::<u64>());
        // One round trip per connecting session: create the epoch if there
        // is none, read it with the last id, and Redis's clock (which
        // history ids use).
        let read: redis::RedisResult<HeadReads> = redis::pipe()
            .cmd("SET")
            .arg(self.keys.epoch())
            .arg(&candidate)
            .arg("NX")
            .ignore()
            .cmd("MGET")
            .arg(self.keys.epoch())
            .arg(format!("{}:lastms", self.keys.history()))
            .arg(format!("{}:seq", self.keys.history()))
            .cmd("TIME")
            .query_async(&mut conn)
            .await;
        match read {
            // Never older than now: a fresh history's position must not look
            // older than the window.
            Ok(((Some(epoch), ms, seq), (s, us))) => {
                let now_ms = s * 1000 + us / 1000;
                Some(format!(
                    "{epoch}.{}-{}",
                    ms.unwrap_or(0).max(now_ms),
                    seq.unwrap_or(0)
                ))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "history head not read");
                None
            }
        }
    }

    /// Everything after `since` that targets this identity, from the
    /// broadcast history and the user's own, in order; or nothing when the
    /// epoch changed, `since` is outside the window, or a stream dropped an
    /// entry after it.
    pub async fn resume(&self, id: &Identity, since: &str) -> Resumed {
        match self.try_resume(id, since).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(user = %id.user, error = %e, "resume failed; the client starts fresh");
                Resumed::lost()
            }
        }
    }

    async fn try_resume(&self, id: &Identity, since: &str) -> Result<Resumed, redis::RedisError> {
        let (Some((window, _)), Some((epoch, since))) = (self.history, history::parse_pos(since))
        else {
            return Ok(Resumed::lost());
        };
        if !history::within(since, window, crate::auth::unix_now_ms()) {
            return Ok(Resumed::lost());
        }
        let (current, global_trimmed, global, user_trimmed, mine): ResumeReads = RESUME
            .key(self.keys.data())
            .arg(&*id.user)
            .arg(since.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        // Another epoch: the gap cannot be filled.
        if current != epoch {
            return Ok(Resumed::lost());
        }
        let read = |trimmed: &str, entries: Vec<(String, String)>| history::StreamRead {
            trimmed: history::Id::parse(trimmed),
            entries: entries
                .into_iter()
                .filter_map(|(entry_id, json)| {
                    let eid = history::Id::parse(&entry_id)?;
                    Some((eid, history::entry(&json, &format!("{epoch}.{eid}"))?))
                })
                .collect(),
        };
        let mut resumed = history::walk(
            id,
            since,
            [read(&global_trimmed, global), read(&user_trimmed, mine)],
            crate::auth::unix_now_ms(),
        );
        // Not what the user clicked or dismissed (SPEC §10.1).
        if !resumed.messages.is_empty() {
            let mut pipe = redis::pipe();
            for p in &resumed.messages {
                pipe.sismember(self.keys.acked(p.id()), &*id.user);
            }
            let acked: Vec<bool> = pipe.query_async(&mut self.conn.clone()).await?;
            let mut acked = acked.into_iter();
            resumed.messages.retain(|_| !acked.next().unwrap_or(false));
        }
        Ok(resumed)
    }
}

#[cfg(test)]
mod tests {
    use crate::bus::redis::testing::{TestRedis, command, fixture, identity};
    use serde_json::json;

    #[tokio::test]
    async fn a_resume_gets_what_was_missed_or_nothing() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let since = f.bus.head().await.expect("a position");
        let mut conn = f.bus.conn.clone();
        for (id, to) in [("b1", json!("all")), ("u1", json!({"users": ["a"]}))] {
            let cmd = command(json!({"id": id, "to": to, "kind": "toast", "title": id}));
            f.bus
                .publishing()
                .run(&mut conn, &cmd)
                .await
                .expect("published");
        }
        let for_a = f.bus.resume(&identity("a"), &since).await;
        assert!(for_a.recovered);
        let ids: Vec<&str> = for_a.messages.iter().map(|p| p.id()).collect();
        assert_eq!(ids, ["b1", "u1"]);
        let for_b = f.bus.resume(&identity("b"), &since).await;
        assert_eq!(for_b.messages.len(), 1, "not a's own message");
        // Past the 100 entries a stream keeps: the gap cannot be filled.
        for i in 0..100 {
            let cmd = command(json!({"to": "all", "kind": "toast", "title": format!("t{i}")}));
            f.bus
                .publishing()
                .run(&mut conn, &cmd)
                .await
                .expect("published");
        }
        assert!(!f.bus.resume(&identity("a"), &since).await.recovered);
        // Another epoch, or garbage: nothing either.
        assert!(!f.bus.resume(&identity("a"), "other.1-1").await.recovered);
        assert!(!f.bus.resume(&identity("a"), "garbage").await.recovered);
    }
}
