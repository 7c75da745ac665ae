//! The Redis bus: one pub/sub connection per node for receiving, one
//! multiplexed connection for commands.
//!
//! Receiving: every node subscribes to `{prefix}:broadcast`, and to
//! `{prefix}:user:{id}` while it holds a session of that user, so the reply
//! of `PUBLISH` on a user channel counts the nodes where the user is online.
//! The hub reports users whose session count changed ([`UserChanges`]); the
//! subscriber task mirrors them in batches: SUBSCRIBE / UNSUBSCRIBE, and the
//! presence hash `{prefix}:presence:{id}` (field: node id, value: sessions).
//! After losing Redis it reconnects with backoff and restores everything from
//! the hub, which stays the source of truth.

use super::{BusError, Presence, Reach};
use crate::dispatch::{Dispatcher, Route};
use crate::envelope::Command;
use crate::hub::{Hub, UserChanges};
use crate::metrics::Metrics;
use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Node heartbeat period; a node unseen for three is dead for presence.
const HEARTBEAT: Duration = Duration::from_secs(5);
const NODE_TTL_MS: u64 = 15_000;
/// Channels per SUBSCRIBE command when restoring.
const SUBSCRIBE_CHUNK: usize = 1000;
const USER_READY_WAIT: Duration = Duration::from_secs(5);

/// Redis key and channel names under the configured prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    user_channel_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            user_channel_prefix: format!("{prefix}:user:"),
        }
    }
    pub fn broadcast(&self) -> String {
        format!("{}:broadcast", self.prefix)
    }
    pub fn user(&self, user: &str) -> String {
        format!("{}{user}", self.user_channel_prefix)
    }
    pub fn presence(&self, user: &str) -> String {
        format!("{}:presence:{user}", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    fn user_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.user_channel_prefix)
    }
}

pub struct RedisBus {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    node: String,
    hub: Arc<Hub>,
    dispatcher: Arc<Dispatcher>,
    changes: Arc<UserChanges>,
    metrics: Arc<Metrics>,
    up: AtomicBool,
    /// Users whose channel this node is subscribed to right now.
    subscribed: Mutex<HashSet<Arc<str>>>,
    /// Bumped after every subscription change, for [`RedisBus::user_ready`].
    generation: watch::Sender<u64>,
}

/// Publishes one command from outside a node (the CLI), on a connection of
/// its own, routed exactly as a node routes it.
pub async fn publish_direct(
    url: &str,
    prefix: &str,
    cmd: &Command,
) -> Result<Option<Reach>, BusError> {
    let client = redis::Client::open(url).map_err(unavailable)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(unavailable)?;
    publish_with(&mut conn, &Keys::new(prefix), cmd).await
}

/// Users audiences go on their users' channels (the replies count the nodes
/// holding each user); everything else on the broadcast channel.
async fn publish_with(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    cmd: &Command,
) -> Result<Option<Reach>, BusError> {
    match cmd {
        Command::Publish(p) => {
            let json = p.to_json();
            let Some(users) = p.audience.users() else {
                let _: i64 = redis::cmd("PUBLISH")
                    .arg(keys.broadcast())
                    .arg(json)
                    .query_async(conn)
                    .await
                    .map_err(unavailable)?;
                return Ok(None);
            };
            let mut pipe = redis::pipe();
            for u in users {
                pipe.publish(keys.user(u), &json);
            }
            let counts: Vec<i64> = pipe.query_async(conn).await.map_err(unavailable)?;
            let mut reach = Reach::default();
            for (u, n) in users.iter().zip(counts) {
                if n > 0 {
                    &mut reach.online
                } else {
                    &mut reach.offline
                }
                .push(u.to_string());
            }
            Ok(Some(reach))
        }
        Command::Retract { id } => {
            let json = serde_json::json!({"op": "retract", "id": id}).to_string();
            let _: i64 = redis::cmd("PUBLISH")
                .arg(keys.broadcast())
                .arg(json)
                .query_async(conn)
                .await
                .map_err(unavailable)?;
            Ok(None)
        }
        Command::Disconnect { users } => {
            let mut pipe = redis::pipe();
            for u in users {
                let json = serde_json::json!({"op": "disconnect", "to": {"users": [u.as_ref()]}})
                    .to_string();
                pipe.publish(keys.user(u), json).ignore();
            }
            let () = pipe.query_async(conn).await.map_err(unavailable)?;
            Ok(None)
        }
    }
}

fn unavailable(e: redis::RedisError) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl RedisBus {
    /// Connects lazily: the node starts even while Redis is down, and
    /// reports not ready until the subscriber is connected.
    pub fn new(
        url: &str,
        prefix: &str,
        node: String,
        hub: Arc<Hub>,
        dispatcher: Arc<Dispatcher>,
        changes: Arc<UserChanges>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, BusError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
        metrics.bus_up.set(0);
        Ok(Arc::new(Self {
            client,
            conn,
            keys: Keys::new(prefix),
            node,
            hub,
            dispatcher,
            changes,
            metrics,
            up: AtomicBool::new(false),
            subscribed: Mutex::new(HashSet::new()),
            generation: watch::Sender::new(0),
        }))
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
        self.metrics.bus_up.set(i64::from(up));
        self.generation.send_modify(|g| *g += 1);
    }

    pub async fn publish(&self, cmd: &Command) -> Result<Option<Reach>, BusError> {
        publish_with(&mut self.conn.clone(), &self.keys, cmd).await
    }

    /// Sessions of `user` on live nodes, from the presence hash. Fields of
    /// nodes that stopped heartbeating are ignored and removed.
    pub async fn presence(&self, user: &str) -> Result<Presence, BusError> {
        let mut conn = self.conn.clone();
        let key = self.keys.presence(user);
        let fields: Vec<(String, u64)> = conn.hgetall(&key).await.map_err(unavailable)?;
        let cutoff = crate::auth::unix_now_ms().saturating_sub(NODE_TTL_MS);
        let mut sessions = 0;
        let mut dead = Vec::new();
        for (node, count) in fields {
            let seen: Option<u64> = conn
                .zscore(self.keys.nodes(), &node)
                .await
                .map_err(unavailable)?;
            if seen.is_some_and(|s| s >= cutoff) {
                sessions += count;
            } else {
                dead.push(node);
            }
        }
        if !dead.is_empty() {
            let _: Result<i64, _> = conn.hdel(&key, dead).await;
        }
        Ok(Presence {
            user: user.to_owned(),
            online: sessions > 0,
            sessions,
        })
    }

    pub async fn user_ready(&self, user: &str) {
        let mut rx = self.generation.subscribe();
        let deadline = tokio::time::Instant::now() + USER_READY_WAIT;
        loop {
            if !self.is_up() || self.lock_subscribed().contains(user) {
                return;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                tracing::warn!(user, "user channel not subscribed in time");
                return;
            }
        }
    }

    fn lock_subscribed(&self) -> std::sync::MutexGuard<'_, HashSet<Arc<str>>> {
        self.subscribed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the subscriber until `shutdown` resolves: connect, restore,
    /// receive and mirror; on any Redis error, back off and start again.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                result = self.session() => {
                    let was_up = self.is_up();
                    self.lock_subscribed().clear();
                    self.set_up(false);
                    if let Err(e) = result {
                        if was_up {
                            tracing::error!(error = %e, "redis bus lost; reconnecting");
                            backoff = Duration::from_millis(100);
                        } else {
                            tracing::warn!(error = %e, retry_in = ?backoff, "redis bus unavailable");
                        }
                    }
                }
            }
            self.metrics.bus_reconnects.inc();
            let jitter = Duration::from_millis(rand::random::<u64>() % 100);
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        self.set_up(false);
        let mut conn = self.conn.clone();
        let _: Result<i64, _> = conn.zrem(self.keys.nodes(), &self.node).await;
    }

    /// One connected stretch of the subscriber. Returns when Redis is lost.
    async fn session(&self) -> Result<(), redis::RedisError> {
        let pubsub = self.client.get_async_pubsub().await?;
        let (mut sink, mut stream) = pubsub.split();
        sink.subscribe(self.keys.broadcast()).await?;
        // Users who changed while disconnected: those who left need their
        // presence removed; the rest are covered by the full restore below.
        let changed_meanwhile = self.changes.take();
        let users = self.hub.users();
        for chunk in users.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|u| self.keys.user(u)).collect();
            sink.subscribe(&channels).await?;
        }
        self.heartbeat().await?;
        self.write_presence(users.iter().cloned().chain(changed_meanwhile))
            .await?;
        self.lock_subscribed().extend(users);
        self.set_up(true);
        tracing::info!(node = %self.node, users = self.lock_subscribed().len(), "redis bus connected");

        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connection closed")));
                    };
                    self.receive(msg.get_channel_name(), msg.get_payload_bytes());
                }
                () = self.changes.notify.notified() => self.mirror(&mut sink).await?,
                _ = tick.tick() => {
                    tokio::time::timeout(Duration::from_secs(2), sink.ping::<String>())
                        .await
                        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "pub/sub ping timed out")))??;
                    self.heartbeat().await?;
                }
            }
        }
    }

    fn receive(&self, channel: &str, payload: &[u8]) {
        let route = match self.keys.user_of(channel) {
            Some(user) => Route::User(user),
            None => Route::Broadcast,
        };
        // Refusals are counted and logged by the dispatcher.
        let _ = self.dispatcher.receive("redis", route, payload);
    }

    /// Applies pending user changes: subscriptions and presence.
    async fn mirror(&self, sink: &mut PubSubSink) -> Result<(), redis::RedisError> {
        let changed = self.changes.take();
        if changed.is_empty() {
            return Ok(());
        }
        let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
        {
            let subscribed = self.lock_subscribed();
            for user in &changed {
                let here = self.hub.user_sessions(user) > 0;
                match (here, subscribed.contains(user)) {
                    (true, false) => subscribe.push(user.clone()),
                    (false, true) => unsubscribe.push(user.clone()),
                    _ => {}
                }
            }
        }
        self.write_presence(changed.into_iter()).await?;
        for chunk in subscribe.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|u| self.keys.user(u)).collect();
            sink.subscribe(&channels).await?;
            self.lock_subscribed().extend(chunk.iter().cloned());
        }
        for chunk in unsubscribe.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|u| self.keys.user(u)).collect();
            sink.unsubscribe(&channels).await?;
            let mut subscribed = self.lock_subscribed();
            for u in chunk {
                subscribed.remove(u);
            }
        }
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    async fn write_presence(
        &self,
        users: impl Iterator<Item = Arc<str>>,
    ) -> Result<(), redis::RedisError> {
        let mut pipe = redis::pipe();
        let mut any = false;
        for user in users {
            any = true;
            let n = self.hub.user_sessions(&user);
            let key = self.keys.presence(&user);
            if n > 0 {
                pipe.hset(key, &self.node, n).ignore();
            } else {
                pipe.hdel(key, &self.node).ignore();
            }
        }
        if any {
            let mut conn = self.conn.clone();
            let () = pipe.query_async(&mut conn).await?;
        }
        Ok(())
    }

    async fn heartbeat(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        let () = conn
            .zadd(self.keys.nodes(), &self.node, crate::auth::unix_now_ms())
            .await?;
        Ok(())
    }
}
