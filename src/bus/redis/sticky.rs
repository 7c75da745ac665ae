//! The sticky store: the active set (`{p}:active`, with `{p}:collapse`),
//! per-user pending messages, and who acknowledged what.

use super::{RedisBus, unavailable};
use crate::auth::Identity;
use crate::bus::BusError;
use crate::envelope::{Command, Publish};
use redis::AsyncCommands;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

static ACK: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/ack.lua")));

/// A user's pending messages, and whether they acknowledged each global one.
type ReplayReads = (Vec<(String, String)>, Vec<bool>);

/// Stored envelopes back into checked messages; anything that no longer
/// passes the checks is skipped.
pub(super) fn parse_stored(values: impl Iterator<Item = String>) -> Vec<Arc<Publish>> {
    let now = crate::auth::unix_now_ms();
    values
        .filter_map(
            |v| match crate::envelope::parse(v.as_bytes(), usize::MAX, now) {
                Ok(Command::Publish(p)) if !p.expired(now) => Some(p),
                _ => None,
            },
        )
        .collect()
}

impl RedisBus {
    /// The active set as Redis holds it now (sticky and must-acknowledge
    /// messages with non-user audiences), expired ones left out.
    pub async fn active(&self) -> Result<Vec<Arc<Publish>>, BusError> {
        let mut conn = self.conn.clone();
        let stored: Vec<(String, String)> = conn
            .hgetall(self.keys.active())
            .await
            .map_err(unavailable)?;
        Ok(parse_stored(stored.into_iter().map(|(_, v)| v)))
    }

    /// What a session that just connected must receive: the active messages
    /// its audience matches (minus must-acknowledge ones its user
    /// acknowledged), and its user's own pending messages.
    pub async fn replay_for(&self, id: &Identity) -> Vec<Arc<Publish>> {
        let mut list = self.dispatcher.active_for(id);
        let needs_ack: Vec<String> = list
            .iter()
            .filter(|p| p.envelope.require_ack)
            .map(|p| p.id().to_owned())
            .collect();
        let mut pipe = redis::pipe();
        pipe.hgetall(self.keys.pending(&id.user));
        for msg in &needs_ack {
            pipe.sismember(self.keys.acked(msg), &*id.user);
        }
        let mut conn = self.conn.clone();
        let reply: Result<ReplayReads, _> = async {
            let values: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
            let mut it = values.into_iter();
            let pending: Vec<(String, String)> =
                redis::from_redis_value(it.next().unwrap_or(redis::Value::Nil))?;
            let acked: Vec<bool> = it.map(redis::from_redis_value).collect::<Result<_, _>>()?;
            Ok::<_, redis::RedisError>((pending, acked))
        }
        .await;
        match reply {
            Ok((pending, acked)) => {
                let done: HashSet<&str> = needs_ack
                    .iter()
                    .zip(acked)
                    .filter(|(_, a)| *a)
                    .map(|(m, _)| m.as_str())
                    .collect();
                list.retain(|p| !done.contains(p.id()));
                list.extend(
                    parse_stored(pending.into_iter().map(|(_, v)| v))
                        .into_iter()
                        .filter(|p| p.audience.matches(id)),
                );
            }
            Err(e) => {
                tracing::warn!(user = %id.user, error = %e, "replay read failed; sending the locally known active set")
            }
        }
        list
    }

    /// A click or dismissal: must-acknowledge messages stop being resent.
    pub async fn ack(&self, user: &str, msg: &str) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let _: i64 = ACK
            .key(self.keys.data())
            .arg(msg)
            .arg(user)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
