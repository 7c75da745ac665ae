//! Publishing: one Lua script stores what must outlive a publish (sticky,
//! `require_ack`), appends recoverable messages to the history, and
//! publishes, for the node's API, the ingress consumer and the CLI alike.

use super::conn::{Backend, Conn};
use super::keys::Keys;
use super::unavailable;
use crate::bus::{BusError, Reach};
use crate::envelope::{Command, Publish};
use crate::events::Record;
use futures::StreamExt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Publishes one command from outside a node (the CLI), on a connection of
/// its own, routed and stored exactly as a node does it.
pub async fn publish_direct(
    url: &str,
    cluster: bool,
    tls: crate::config::TlsFiles<'_>,
    prefix: &str,
    history: &crate::config::HistoryConfig,
    stream_maxlen: usize,
    cmd: &Command,
) -> Result<Option<Reach>, BusError> {
    let backend = Backend::open(url, cluster, tls).map_err(unavailable)?;
    let mut conn = backend
        .dedicated(Duration::from_secs(5))
        .await
        .map_err(unavailable)?;
    let keys = Keys::new(prefix, cluster);
    // The nodes' own history settings: a shorter window here would trim
    // what they keep for resuming clients.
    let history = history
        .enabled
        .then_some((history.window, history.max_per_stream));
    let how = Publishing {
        keys: &keys,
        node: "cli",
        maxlen: stream_maxlen,
        history,
        cluster,
    };
    how.run(&mut conn, cmd).await
}

static PUBLISH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        &[
            include_str!("lua/history.lua"),
            include_str!("lua/publish.lua"),
        ]
        .concat(),
    )
});

static RETRACT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        &[
            include_str!("lua/history.lua"),
            include_str!("lua/retract.lua"),
        ]
        .concat(),
    )
});

/// How long a retracted id is refused to late writers of the same message.
const TOMBSTONE_S: u64 = 60;

/// The publishing step shared by nodes and the CLI: one Lua script stores
/// what must outlive the publish (sticky, require_ack) and publishes, so a
/// message is never published without being stored or the other way round.
/// Users audiences go on their users' channels (the replies count the nodes
/// holding each user); everything else on the broadcast channel.
/// In a Redis Cluster the script only stores, and the node then publishes:
/// SPUBLISH per user channel (each lives on its own slot), PUBLISH on the
/// broadcast channel's slot for broadcasts and retractions.
pub(super) struct Publishing<'a> {
    pub(super) keys: &'a Keys,
    pub(super) node: &'a str,
    pub(super) maxlen: usize,
    pub(super) history: Option<(Duration, usize)>,
    pub(super) cluster: bool,
}

impl Publishing<'_> {
    pub(super) async fn run(
        &self,
        conn: &mut Conn,
        cmd: &Command,
    ) -> Result<Option<Reach>, BusError> {
        match cmd {
            Command::Publish(p) => {
                let counts = self.publish(conn, p, true).await?;
                Ok(p.audience
                    .users()
                    .map(|users| Reach::split(users, |i, _| counts.get(i).is_some_and(|n| *n > 0))))
            }
            Command::Retract { id, .. } => {
                let env = serde_json::json!({"op": "retract", "id": id}).to_string();
                let mut inv = RETRACT.prepare_invoke();
                inv.key(self.keys.data())
                    .arg(self.keys.prefix())
                    .arg(id)
                    .arg(env)
                    .arg(TOMBSTONE_S)
                    .arg(self.history_args())
                    .arg(if self.cluster { "1" } else { "0" })
                    .arg("publish");
                if !self.cluster {
                    let _: i64 = inv.invoke_async(conn).await.map_err(unavailable)?;
                    return Ok(None);
                }
                let env: String = inv.invoke_async(conn).await.map_err(unavailable)?;
                self.publish_broadcast(conn, &env)
                    .await
                    .map_err(unavailable)?;
                Ok(None)
            }
            Command::Campaign { id } => {
                let env = serde_json::json!({"op": "campaign", "id": id}).to_string();
                self.publish_broadcast(conn, &env)
                    .await
                    .map_err(unavailable)?;
                Ok(None)
            }
            Command::Disconnect { users } => {
                let envs: Vec<String> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({"op": "disconnect", "to": {"users": [u.as_ref()]}})
                            .to_string()
                    })
                    .collect();
                let each = users
                    .iter()
                    .map(|u| &**u)
                    .zip(envs.iter().map(String::as_str));
                self.publish_users(conn, each).await.map_err(unavailable)?;
                Ok(None)
            }
        }
    }

    /// Stores a retraction that reached the nodes by plain `PUBLISH`: out
    /// of the sticky set and pending messages, into the history, as every
    /// other way of retracting does. The first node to run it does it; for
    /// the others, and after Herald's own retractions, it changes nothing.
    pub(super) async fn store_retraction(
        &self,
        conn: &mut Conn,
        id: &str,
    ) -> Result<bool, BusError> {
        let env = serde_json::json!({"op": "retract", "id": id}).to_string();
        let done: i64 = RETRACT
            .prepare_invoke()
            .key(self.keys.data())
            .arg(self.keys.prefix())
            .arg(id)
            .arg(env)
            .arg(TOMBSTONE_S)
            .arg(self.history_args())
            .arg("0")
            .arg("store")
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    /// The history arguments both scripts take: on ("0"|"1"), window ms,
    /// entries per stream, and an epoch to use if none exists yet.
    pub(super) fn history_args(&self) -> Vec<String> {
        let (on, window, max) = match self.history {
            Some((w, n)) => ("1", w.as_millis() as u64, n),
            None => ("0", 0, 0),
        };
        vec![
            on.into(),
            window.to_string(),
            max.to_string(),
            format!("{:016x}", rand::random::<u64>()),
        ]
    }

    /// Publishes on the broadcast channel (in a cluster, on the Redis node
    /// owning its slot, where the Herald nodes subscribe to it); returns how
    /// many subscribers it reached there.
    async fn publish_broadcast(&self, conn: &mut Conn, env: &str) -> redis::RedisResult<i64> {
        redis::cmd("PUBLISH")
            .arg(self.keys.broadcast())
            .arg(env)
            .query_async(conn)
            .await
    }

    /// Publishes on user channels (`PUBLISH`, or `SPUBLISH` in a cluster)
    /// and returns how many nodes each reached.
    pub(super) async fn publish_users<'u>(
        &self,
        conn: &mut Conn,
        envs: impl Iterator<Item = (&'u str, &'u str)>,
    ) -> redis::RedisResult<Vec<i64>> {
        let command = if self.cluster { "SPUBLISH" } else { "PUBLISH" };
        let cmds: Vec<redis::Cmd> = envs
            .map(|(user, env)| {
                let mut c = redis::cmd(command);
                c.arg(self.keys.user(user)).arg(env);
                c
            })
            .collect();
        if !self.cluster {
            let mut pipe = redis::pipe();
            for c in cmds {
                pipe.add_command(c);
            }
            return pipe.query_async(conn).await;
        }
        // One slot per channel: a pipeline may not span slots.
        futures::stream::iter(cmds)
            .map(|c| {
                let mut conn = conn.clone();
                async move { c.query_async::<i64>(&mut conn).await }
            })
            .buffered(super::conn::SLOT_COMMANDS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// `publish = false` only stores (a node keeping a sticky message that
    /// arrived by plain PUBLISH), and then respects a recent retraction.
    pub(super) async fn publish(
        &self,
        conn: &mut Conn,
        p: &Publish,
        publish: bool,
    ) -> Result<Vec<i64>, BusError> {
        let e = &p.envelope;
        let users = p.audience.users();
        let store = match (p.persistent(), users.is_some()) {
            (false, _) => "none",
            (true, false) => "active",
            (true, true) => "pending",
        };
        let route = match (publish, users.is_some()) {
            (false, _) => "none",
            (true, false) if self.cluster => "broadcast_stored",
            (true, false) => "broadcast",
            (true, true) if self.cluster => "users_stored",
            (true, true) => "users",
        };
        let mut inv = PUBLISH.prepare_invoke();
        inv.key(self.keys.data())
            .arg(self.keys.prefix())
            .arg(p.id())
            .arg(p.to_json())
            .arg(store)
            .arg(e.collapse_key.as_deref().unwrap_or_default())
            .arg(e.expires_at.unwrap_or(0))
            .arg(if publish { "0" } else { "1" })
            .arg(route)
            .arg(if e.fallback { "1" } else { "0" })
            .arg(self.maxlen)
            .arg(e.campaign.as_deref().unwrap_or_default())
            .arg(self.node)
            .arg(self.history_args());
        for u in users.unwrap_or_default() {
            inv.arg(&**u);
        }
        if !route.ends_with("_stored") {
            return inv.invoke_async(conn).await.map_err(unavailable);
        }
        let (code, env): (i64, Option<String>) =
            inv.invoke_async(conn).await.map_err(unavailable)?;
        let Some(env) = env else {
            return Ok(vec![code]);
        };
        let Some(users) = users else {
            let n = self
                .publish_broadcast(conn, &env)
                .await
                .map_err(unavailable)?;
            return Ok(vec![n]);
        };
        let counts = self
            .publish_users(conn, users.iter().map(|u| (&**u, env.as_str())))
            .await
            .map_err(unavailable)?;
        if e.fallback && counts.contains(&0) {
            self.record_undelivered(conn, p, users, &counts)
                .await
                .map_err(unavailable)?;
        }
        Ok(counts)
    }

    /// Users of a `fallback` message whom no node holds, in the undelivered
    /// stream (publish.lua does this itself on one server).
    async fn record_undelivered(
        &self,
        conn: &mut Conn,
        p: &Publish,
        users: &[Arc<str>],
        counts: &[i64],
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for (user, _) in users.iter().zip(counts).filter(|(_, n)| **n == 0) {
            let record = Record::undelivered(p, user).stamped(self.node);
            pipe.add_command(self.keys.xadd(&record, self.maxlen))
                .ignore();
        }
        pipe.query_async(conn).await
    }
}

#[cfg(test)]
mod tests {
    use crate::bus::redis::testing::{TestRedis, command, fixture};
    use futures::StreamExt;
    use redis::Commands;
    use serde_json::json;

    async fn listen(redis: &TestRedis, channel: &str) -> redis::aio::PubSub {
        let mut sub = redis::Client::open(redis.url())
            .expect("client")
            .get_async_pubsub()
            .await
            .expect("pubsub");
        sub.subscribe(channel).await.expect("SUBSCRIBE");
        sub
    }

    async fn next(sub: &mut redis::aio::PubSub) -> serde_json::Value {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), sub.on_message().next())
            .await
            .expect("a message in time")
            .expect("a message");
        serde_json::from_slice(m.get_payload_bytes()).expect("JSON")
    }

    #[tokio::test]
    async fn a_sticky_broadcast_is_stored_kept_in_the_history_and_published_then_retracted() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let mut sub = listen(&redis, "herald:broadcast").await;
        let mut conn = f.bus.conn.clone();
        let sticky = command(
            json!({"id": "inc", "to": "all", "kind": "banner", "title": "down", "sticky": true}),
        );
        f.bus
            .publishing()
            .run(&mut conn, &sticky)
            .await
            .expect("published");
        let got = next(&mut sub).await;
        assert_eq!(got["id"], "inc");
        assert!(
            got["pos"].as_str().is_some(),
            "published with its position: {got}"
        );
        let mut r = redis.sync().expect("conn");
        assert!(
            r.hexists::<_, _, bool>("herald:active", "inc")
                .expect("HEXISTS")
        );
        assert_eq!(r.xlen::<_, usize>("herald:history").expect("XLEN"), 1);
        let retract = crate::envelope::Command::Retract {
            except: None,
            id: "inc".into(),
            pos: None,
        };
        f.bus
            .publishing()
            .run(&mut conn, &retract)
            .await
            .expect("retracted");
        assert_eq!(next(&mut sub).await["op"], "retract");
        assert!(
            !r.hexists::<_, _, bool>("herald:active", "inc")
                .expect("HEXISTS")
        );
        assert!(r.exists::<_, bool>("herald:retracted:inc").expect("EXISTS"));
        // Herald's own retraction done, a plain-PUBLISH copy changes nothing.
        assert!(
            !f.bus
                .publishing()
                .store_retraction(&mut conn, "inc")
                .await
                .expect("ran")
        );
    }

    #[tokio::test]
    async fn a_retraction_by_plain_publish_is_stored_once() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let mut conn = f.bus.conn.clone();
        // Stored as a plain PUBLISH of a sticky is (no history, no publish).
        let sticky = command(
            json!({"id": "inc", "to": "all", "kind": "banner", "title": "down", "sticky": true}),
        );
        let crate::envelope::Command::Publish(p) = &sticky else {
            panic!("a publish")
        };
        f.bus
            .publishing()
            .publish(&mut conn, p, false)
            .await
            .expect("stored");
        let mut r = redis.sync().expect("conn");
        assert!(
            r.hexists::<_, _, bool>("herald:active", "inc")
                .expect("HEXISTS")
        );
        assert!(
            f.bus
                .publishing()
                .store_retraction(&mut conn, "inc")
                .await
                .expect("ran")
        );
        assert!(
            !r.hexists::<_, _, bool>("herald:active", "inc")
                .expect("HEXISTS")
        );
        // In the history, so a resume honours it; and only once.
        assert_eq!(r.xlen::<_, usize>("herald:history").expect("XLEN"), 1);
        assert!(
            !f.bus
                .publishing()
                .store_retraction(&mut conn, "inc")
                .await
                .expect("ran")
        );
        assert_eq!(r.xlen::<_, usize>("herald:history").expect("XLEN"), 1);
    }

    #[tokio::test]
    async fn a_users_publish_says_who_was_online_and_records_the_others() {
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let mut sub = listen(&redis, "herald:user:a").await;
        let cmd = command(
            json!({"id": "m", "to": {"users": ["a", "b"]}, "kind": "toast", "title": "hi", "fallback": true}),
        );
        let reach = f
            .bus
            .publishing()
            .run(&mut f.bus.conn.clone(), &cmd)
            .await
            .expect("published")
            .expect("a reach");
        assert_eq!(
            (reach.online, reach.offline),
            (vec!["a".to_owned()], vec!["b".to_owned()])
        );
        assert_eq!(next(&mut sub).await["id"], "m");
        let mut r = redis.sync().expect("conn");
        let undelivered: redis::streams::StreamRangeReply =
            r.xrange_all("herald:undelivered").expect("XRANGE");
        assert_eq!(undelivered.ids.len(), 1);
        assert_eq!(
            undelivered.ids[0].get::<String>("user").as_deref(),
            Some("b")
        );
    }
}
