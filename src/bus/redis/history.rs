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
        Ok(history::walk(
            id,
            since,
            [read(&global_trimmed, global), read(&user_trimmed, mine)],
            crate::auth::unix_now_ms(),
        ))
    }
}
