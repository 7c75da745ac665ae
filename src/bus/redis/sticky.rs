//! The sticky store: the active set (`{p}:active`, with `{p}:collapse`),
//! per-user pending messages, and who acknowledged what.

use super::{RedisBus, unavailable};
use crate::auth::Identity;
use crate::bus::BusError;
use crate::envelope::{Command, Publish};
use crate::events::Record;
use redis::AsyncCommands;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

static ACK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&[include_str!("lua/history.lua"), include_str!("lua/ack.lua")].concat())
});

/// How long a mark on a message that is not active outlives the ack: the
/// history window, plus a minute.
const MARK_SLACK: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// its audience matches (minus those its user clicked or dismissed), and
    /// its user's own pending messages.
    pub async fn replay_for(&self, id: &Identity) -> Vec<Arc<Publish>> {
        let mut list = self.dispatcher.active_for(id);
        let needs_ack: Vec<String> = list.iter().map(|p| p.id().to_owned()).collect();
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
                list.retain(|p| {
                    let acked = done.contains(p.id());
                    if acked {
                        self.dispatcher
                            .events()
                            .emit(Record::dismissed_before(p, &id.user));
                    }
                    !acked
                });
                // The node may hold a user's sticky message in its own set
                // too (it received it on the user's channel): once each.
                let known: HashSet<String> = list.iter().map(|p| p.id().to_owned()).collect();
                list.extend(
                    parse_stored(pending.into_iter().map(|(_, v)| v))
                        .into_iter()
                        .filter(|p| !known.contains(p.id()) && p.audience.matches(id)),
                );
            }
            Err(e) => {
                tracing::warn!(user = %id.user, error = %e, "replay read failed; sending the locally known active set")
            }
        }
        list
    }

    /// A click or dismissal (SPEC §10.1): marked, taken out of the user's
    /// pending messages, and retracted on the user's channel (and history).
    pub async fn ack(&self, user: &str, msg: &str, sid: &str) -> Result<(), BusError> {
        let publishing = self.publishing();
        let cluster = publishing.cluster;
        let lifetime = self.history.map_or(MARK_SLACK, |(w, _)| w + MARK_SLACK);
        let mut conn = self.conn.clone();
        let env: String = ACK
            .key(self.keys.data())
            .arg(msg)
            .arg(user)
            .arg(self.keys.prefix())
            .arg(&publishing.history_args()[..])
            .arg(if cluster { "1" } else { "0" })
            .arg(lifetime.as_millis() as u64)
            .arg(sid)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if cluster {
            publishing
                .publish_users(&mut conn, std::iter::once((user, env.as_str())))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::bus::redis::testing::{TestRedis, command, fixture, identity};
    use futures::StreamExt;
    use redis::Commands;
    use serde_json::json;

    #[tokio::test]
    async fn an_acknowledged_message_is_not_replayed_to_that_user_and_leaves_their_sessions() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let mut conn = f.bus.conn.clone();
        for cmd in [
            command(
                json!({"id": "all", "to": "all", "kind": "banner", "title": "x", "sticky": true}),
            ),
            command(
                json!({"id": "mine", "to": {"users": ["a"]}, "kind": "card", "title": "y", "sticky": true}),
            ),
        ] {
            f.bus
                .publishing()
                .run(&mut conn, &cmd)
                .await
                .expect("published");
            f.bus.dispatcher.apply(
                &cmd,
                crate::dispatch::Route::Broadcast,
                std::time::Instant::now(),
            );
        }
        let ids = |list: Vec<std::sync::Arc<crate::envelope::Publish>>| {
            let mut v: Vec<String> = list.iter().map(|p| p.id().to_owned()).collect();
            v.sort();
            v
        };
        assert_eq!(ids(f.bus.replay_for(&identity("a")).await), ["all", "mine"]);
        let mut sub = redis::Client::open(redis.url())
            .expect("client")
            .get_async_pubsub()
            .await
            .expect("pubsub");
        sub.subscribe("herald:user:a").await.expect("SUBSCRIBE");
        f.bus.ack("a", "all", "n1.1").await.expect("acked");
        f.bus.ack("a", "mine", "n1.1").await.expect("acked");
        let retract: serde_json::Value = serde_json::from_slice(
            sub.on_message()
                .next()
                .await
                .expect("a message")
                .get_payload_bytes(),
        )
        .expect("JSON");
        assert_eq!(
            (retract["op"].as_str(), retract["id"].as_str()),
            (Some("retract"), Some("all"))
        );
        assert!(
            retract["pos"].is_string(),
            "in the user's history: {retract}"
        );
        assert!(ids(f.bus.replay_for(&identity("a")).await).is_empty());
        // Another user still gets the global one: positive control.
        assert_eq!(ids(f.bus.replay_for(&identity("b")).await), ["all"]);
        let mut r = redis.sync().expect("conn");
        assert!(
            !r.hexists::<_, _, bool>("herald:pending:a", "mine")
                .expect("HEXISTS")
        );
        assert_eq!(
            r.xlen::<_, usize>("herald:history:user:a").expect("XLEN"),
            3
        );
    }
}
