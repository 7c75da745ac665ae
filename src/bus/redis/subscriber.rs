//! The receiving side: one subscriber task per node that connects,
//! restores every subscription from the hub, receives (handing each
//! payload to the dispatcher), mirrors the hub's user changes into
//! subscriptions and presence, and starts over after any Redis error.

use super::RedisBus;
use super::conn::{Incoming, Subscriber};
use super::sticky::parse_stored;
use crate::dispatch::{Received, Route};
use crate::envelope::Command;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::AsyncCommands;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One `XRANGE` entry: its id and its fields.
type StreamEntry = (String, Vec<(String, String)>);

/// The most a subscriber's setup (connect, subscribe, restore) may take.
const SETUP: Duration = Duration::from_secs(30);

/// Channels per SUBSCRIBE command when restoring.
const SUBSCRIBE_CHUNK: usize = 1000;

const USER_READY_WAIT: Duration = Duration::from_secs(5);

impl RedisBus {
    pub async fn user_ready(&self, user: &str) {
        let mut rx = self.generation.subscribe();
        let deadline = tokio::time::Instant::now() + USER_READY_WAIT;
        loop {
            if !self.up() || self.lock_subscribed().contains(user) {
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
        // A history position at or below which every message reached this
        // node; after a reconnect, what came after it is read back.
        let mut fill_from = None;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                result = self.session(&mut fill_from) => {
                    let was_up = self.up();
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
        let _: Result<(), _> = redis::pipe()
            .zrem(self.keys.nodes(), &self.node)
            .ignore()
            .hdel(self.keys.node_stats(), &self.node)
            .ignore()
            .del(self.keys.node_presence(&self.node))
            .ignore()
            .query_async(&mut conn)
            .await;
    }

    /// One connected stretch of the subscriber. Returns when Redis is lost.
    /// `fill_from` is kept between stretches: see [`RedisBus::fill_gap`].
    async fn session(
        self: &Arc<Self>,
        fill_from: &mut Option<String>,
    ) -> Result<(), redis::RedisError> {
        // A connection that answers nothing (a stuck proxy, a half-dead
        // server) must not hold the setup for ever: start over instead.
        let setup = tokio::time::timeout(SETUP, self.connect(fill_from)).await;
        let (mut sink, mut stream) = setup.map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "pub/sub setup timed out"))
        })??;
        self.watch(&mut sink, &mut stream, fill_from).await
    }

    /// Subscribes, restores what the node holds, reads back what it missed.
    async fn connect(
        self: &Arc<Self>,
        fill_from: &mut Option<String>,
    ) -> Result<(Subscriber, BoxStream<'static, redis::RedisResult<Incoming>>), redis::RedisError>
    {
        let (mut sink, stream) = self.backend.subscriber().await?;
        // Read before subscribing: whatever is published after it is
        // received in this stretch or read back after it.
        let before = self.head().await;
        sink.subscribe(&self.keys.broadcast()).await?;
        sink.subscribe(&self.keys.preview_channel()).await?;
        sink.subscribe(&self.probe_channel).await?;
        // Users who changed while disconnected: those who left need their
        // presence removed; the rest are covered by the full restore below.
        let changed_meanwhile = self.changes.take();
        let users = self.hub.users();
        for chunk in users.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|u| self.keys.user(u)).collect();
            sink.subscribe_users(channels).await?;
        }
        self.heartbeat().await?;
        let stored: Vec<(String, String)> = self.conn.clone().hgetall(self.keys.active()).await?;
        self.dispatcher
            .load_active(parse_stored(stored.into_iter().map(|(_, v)| v)));
        self.load_campaigns().await?;
        self.write_presence(users.iter().cloned().chain(changed_meanwhile))
            .await?;
        if let Some(since) = fill_from.clone() {
            self.fill_gap(&since, &users).await?;
        }
        *fill_from = before;
        self.lock_subscribed().extend(users);
        self.set_up(true);
        tracing::info!(node = %self.node, users = self.lock_subscribed().len(), "redis bus connected");
        Ok((sink, stream))
    }

    /// Receives until Redis is lost, the heartbeat's ping or the probe fails.
    async fn watch(
        self: &Arc<Self>,
        sink: &mut Subscriber,
        stream: &mut BoxStream<'static, redis::RedisResult<Incoming>>,
        fill_from: &mut Option<String>,
    ) -> Result<(), redis::RedisError> {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.tick().await;
        let (probe_every, probe_within) = self.probe;
        let mut probe_tick = tokio::time::interval(probe_every);
        probe_tick.tick().await;
        // Far off while no probe is on its way.
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let probe_due = tokio::time::sleep_until(far());
        tokio::pin!(probe_due);
        self.probe_pending.store(0, Ordering::Relaxed);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connection closed")));
                    };
                    match msg? {
                        Incoming::Message(msg) if self.backend().is_cluster() => {
                            let mut batch = vec![msg];
                            let more = Box::pin(gather(stream, &mut batch)).await;
                            in_history_order(&mut batch);
                            for m in &batch {
                                self.dispatcher.room().await;
                                self.receive(m.get_channel_name(), m.get_payload_bytes());
                            }
                            if let Some(other) = more {
                                self.on_unsubscribed(sink, other?)?;
                            }
                        }
                        Incoming::Message(msg) => {
                            // Broadcasts being evaluated in slices hold up intake when full.
                            self.dispatcher.room().await;
                            self.receive(msg.get_channel_name(), msg.get_payload_bytes())
                        }
                        // Not ours (the user is still held here): the slot
                        // moved, so start over and subscribe where it is now.
                        // Ours may be read after the user came back and was
                        // subscribed again, so they are counted, not guessed.
                        Incoming::Unsubscribed(channel) => {
                            if !sink.asked_to_leave(&channel)
                                && self.keys.user_of(&channel).is_some_and(|u| self.lock_subscribed().contains(u))
                            {
                                return Err(redis::RedisError::from((redis::ErrorKind::Io, "a sharded subscription moved with its slot")));
                            }
                        }
                    }
                }
                _ = probe_tick.tick() => {
                    // A probe through the command connection, expected back
                    // through this subscription: an open subscription that
                    // delivers nothing (a failover, a stuck proxy) is found.
                    if self.probe_pending.load(Ordering::Relaxed) == 0 {
                        let nonce = rand::random::<u64>() | 1;
                        self.probe_pending.store(nonce, Ordering::Relaxed);
                        let _: Result<i64, _> = tokio::time::timeout(
                            probe_within,
                            self.conn.clone().publish(&self.probe_channel, nonce.to_string()),
                        )
                        .await
                        .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "probe publish timed out"))));
                        probe_due.as_mut().reset(tokio::time::Instant::now() + probe_within);
                    }
                }
                () = &mut probe_due => {
                    if self.probe_pending.load(Ordering::Relaxed) != 0 {
                        self.metrics.bus_probe_failures.inc();
                        tracing::error!(node = %self.node, timeout = ?probe_within, "pub/sub probe did not come back: resubscribing on a fresh connection");
                        return Err(redis::RedisError::from((redis::ErrorKind::Io, "pub/sub probe did not come back")));
                    }
                    probe_due.as_mut().reset(far());
                }
                () = self.changes.notify.notified() => self.mirror(sink).await?,
                () = self.reloads.notify.notified() => self.reload_campaigns().await?,
                _ = tick.tick() => {
                    // The pong comes after every message published before
                    // the head was read: up to it, everything arrived.
                    let head = self.head().await;
                    tokio::time::timeout(Duration::from_secs(2), sink.ping())
                        .await
                        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "pub/sub ping timed out")))??;
                    if head.is_some() {
                        *fill_from = head;
                    }
                }
            }
        }
    }

    /// A sharded subscription ended that the node did not end itself: its
    /// slot moved, so the subscriber starts over.
    fn on_unsubscribed(
        &self,
        sink: &mut Subscriber,
        incoming: Incoming,
    ) -> Result<(), redis::RedisError> {
        if let Incoming::Unsubscribed(channel) = incoming
            && !sink.asked_to_leave(&channel)
            && self
                .keys
                .user_of(&channel)
                .is_some_and(|u| self.lock_subscribed().contains(u))
        {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "a sharded subscription moved with its slot",
            )));
        }
        Ok(())
    }

    /// After a reconnect: what the history holds after `since` for this
    /// node's users (the broadcast history and each user's own), received
    /// as if it had come by pub/sub, in history order. Published while the
    /// subscription was down (Redis restarted, the connection lost), it
    /// would otherwise reach only the sessions that reconnect and resume.
    /// What did arrive is dropped by the dedupe, what a session replayed by
    /// its position.
    async fn fill_gap(
        self: &Arc<Self>,
        since: &str,
        users: &[Arc<str>],
    ) -> Result<(), redis::RedisError> {
        let Some((epoch, after)) = crate::history::parse_pos(since) else {
            return Ok(());
        };
        let mut conn = self.conn.clone();
        let current: Option<String> = conn.get(self.keys.epoch()).await?;
        if current.as_deref() != Some(epoch) {
            tracing::warn!(
                "history epoch changed while disconnected; what was published meanwhile reaches only resuming clients"
            );
            return Ok(());
        }
        let start = format!("({after}");
        let history = self.keys.history();
        let mut streams = vec![(self.keys.broadcast(), history.clone())];
        streams.extend(
            users
                .iter()
                .map(|u| (self.keys.user(u), format!("{history}:user:{u}"))),
        );
        let mut entries = Vec::new();
        for chunk in streams.chunks(SUBSCRIBE_CHUNK) {
            let mut pipe = redis::pipe();
            for (_, key) in chunk {
                pipe.cmd("XRANGE").arg(key).arg(&start).arg("+");
            }
            let reads: Vec<Vec<StreamEntry>> = pipe.query_async(&mut conn).await?;
            for ((channel, _), read) in chunk.iter().zip(reads) {
                for (entry_id, fields) in read {
                    let Some(id) = crate::history::Id::parse(&entry_id) else {
                        continue;
                    };
                    if let Some((_, env)) = fields.into_iter().find(|(f, _)| f == "e")
                        && let Some(open) = env.strip_suffix('}')
                    {
                        // As published: the envelope with its position.
                        let payload = format!("{open},\"pos\":\"{epoch}.{entry_id}\"}}");
                        entries.push((id, channel.as_str(), payload));
                    }
                }
            }
        }
        entries.sort_by_key(|(id, _, _)| *id);
        if !entries.is_empty() {
            tracing::info!(
                entries = entries.len(),
                "read back what was published while disconnected"
            );
        }
        for (_, channel, payload) in &entries {
            self.dispatcher.room().await;
            self.receive(channel, payload.as_bytes());
        }
        Ok(())
    }

    fn receive(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        if self.keys.is_preview_channel(channel) {
            return self.answer_preview(payload);
        }
        if channel == self.probe_channel {
            if let Some(nonce) = std::str::from_utf8(payload)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                let _ = self.probe_pending.compare_exchange(
                    nonce,
                    0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            return;
        }
        let route = match self.keys.user_of(channel) {
            Some(user) => Route::User(user),
            None => Route::Broadcast,
        };
        match self.dispatcher.receive("redis", route, payload) {
            Ok(Received {
                command: Command::Campaign { id },
                ..
            }) => self.campaign_changed(&id),
            // Published by plain PUBLISH (no history position), a sticky or
            // must-acknowledge message is stored by the nodes that receive
            // it (idempotent, and refused right after a retraction); other
            // paths stored it already.
            Ok(Received {
                command: Command::Publish(p),
                ..
            }) if p.persistent() && p.envelope.pos.is_none() => {
                let bus = self.clone();
                self.background.spawn("store_sticky", async move {
                    if let Err(e) = bus
                        .publishing()
                        .publish(&mut bus.conn.clone(), &p, false)
                        .await
                    {
                        tracing::warn!(msg_id = p.id(), error = %e, "could not store a sticky message");
                    }
                });
            }
            // A retraction by plain PUBLISH: stored as every other way of
            // retracting stores it (out of the sticky set, into the history),
            // once, by the first node to get to it.
            Ok(Received {
                command: Command::Retract { id, pos: None, .. },
                ..
            }) if matches!(route, Route::Broadcast) => {
                let bus = self.clone();
                self.background.spawn("store_retraction", async move {
                    match bus
                        .publishing()
                        .store_retraction(&mut bus.conn.clone(), &id)
                        .await
                    {
                        Ok(true) => {
                            tracing::info!(msg_id = %id, "retraction by plain PUBLISH stored")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(msg_id = %id, error = %e, "could not store a retraction")
                        }
                    }
                });
            }
            Ok(_) => {}
            Err(e) => {
                let digest = {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    payload.hash(&mut h);
                    format!("{:016x}", h.finish())
                };
                let text =
                    String::from_utf8_lossy(&payload[..payload.len().min(64 * 1024)]).into_owned();
                let (bus, channel) = (self.clone(), channel.to_owned());
                self.background.spawn("dead_record", async move {
                    bus.record_dead(&digest, &e.to_string(), &channel, &text)
                        .await
                });
            }
        }
    }

    /// Applies pending user changes: subscriptions and presence.
    async fn mirror(&self, sink: &mut Subscriber) -> Result<(), redis::RedisError> {
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
            sink.subscribe_users(channels).await?;
            self.lock_subscribed().extend(chunk.iter().cloned());
        }
        // A user leaves `subscribed` before the UNSUBSCRIBE goes out, and
        // only if nobody came back meanwhile (checked under the lock that
        // `user_ready` takes): a session connecting from here on waits for
        // the next subscribe instead of trusting a channel about to go.
        {
            let mut subscribed = self.lock_subscribed();
            unsubscribe.retain(|u| self.hub.user_sessions(u) == 0 && subscribed.remove(u));
        }
        for chunk in unsubscribe.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|u| self.keys.user(u)).collect();
            sink.unsubscribe_users(channels).await?;
        }
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }
}

/// Most messages gathered into one ordered batch on a Redis Cluster.
const BATCH: usize = 256;

/// On a Redis Cluster, messages come over one connection per Redis node,
/// read by tasks of their own: a broadcast (over the connection to the
/// broadcast channel's node) and the per-user message published right after
/// it (over the user's shard) can reach the subscriber in the other order.
/// After the first message, this lets those tasks run once and takes what
/// they have passed on meanwhile (up to [`BATCH`] messages); anything but a
/// message ends the batch and is returned.
async fn gather(
    stream: &mut futures::stream::BoxStream<'static, redis::RedisResult<Incoming>>,
    batch: &mut Vec<redis::Msg>,
) -> Option<redis::RedisResult<Incoming>> {
    use futures::FutureExt;
    tokio::task::yield_now().await;
    while batch.len() < BATCH {
        match stream.next().now_or_never() {
            Some(Some(Ok(Incoming::Message(m)))) => batch.push(m),
            Some(Some(other)) => return Some(other),
            Some(None) => {
                return Some(Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "pub/sub connection closed",
                ))));
            }
            None => break,
        }
    }
    None
}

/// Puts a batch in history order (by the `pos` Herald adds), so a client
/// resuming from the last position it saw has seen everything before it.
/// Messages without a position (plain `PUBLISH`) keep their place after
/// the one before them.
fn in_history_order(batch: &mut [redis::Msg]) {
    if batch.len() < 2 {
        return;
    }
    let mut last = 0;
    let mut keyed: Vec<(u64, usize)> = batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if let Some(seq) = seq_of_payload(m.get_payload_bytes()) {
                last = seq;
            }
            (last, i)
        })
        .collect();
    if keyed.windows(2).all(|w| w[0].0 <= w[1].0) {
        return;
    }
    keyed.sort_by_key(|(seq, i)| (*seq, *i));
    let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    let mut sorted: Vec<redis::Msg> = order.iter().map(|&i| batch[i].clone()).collect();
    batch.swap_with_slice(&mut sorted);
}

/// The history sequence of a published envelope, from the `"pos"` that
/// Herald appends last.
fn seq_of_payload(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let at = text.rfind(",\"pos\":\"")?;
    let rest = &text[at + 8..];
    let pos = &rest[..rest.find('"')?];
    crate::history::parse_pos(pos).map(|(_, id)| id.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(channel: &str, payload: &str) -> redis::Msg {
        redis::Msg::from_owned_value(redis::Value::Array(vec![
            redis::Value::BulkString(b"message".to_vec()),
            redis::Value::BulkString(channel.as_bytes().to_vec()),
            redis::Value::BulkString(payload.as_bytes().to_vec()),
        ]))
        .expect("a message")
    }

    #[test]
    fn a_batch_is_put_in_history_order() {
        let at = |seq: u64| format!(r#"{{"id":"m{seq}","pos":"e.100-{seq}"}}"#);
        let mut batch = vec![
            msg("u", &at(35)),
            msg("b", &at(34)),
            msg("b", r#"{"id":"plain"}"#),
            msg("u", &at(36)),
        ];
        in_history_order(&mut batch);
        let order: Vec<String> = batch
            .iter()
            .map(|m| String::from_utf8_lossy(m.get_payload_bytes()).into_owned())
            .collect();
        // The plain message stays right after the one it came after.
        assert_eq!(
            order,
            [at(34), r#"{"id":"plain"}"#.to_owned(), at(35), at(36)]
        );
        // In order already: untouched (positive control).
        let mut sorted = vec![msg("b", &at(1)), msg("u", &at(2))];
        in_history_order(&mut sorted);
        assert_eq!(sorted[0].get_payload_bytes(), at(1).as_bytes());
    }

    #[tokio::test]
    async fn the_subscriber_follows_the_hub_and_delivers_what_it_receives() {
        use crate::bus::redis::testing::{TestRedis, fixture, identity};
        use redis::Commands;
        let redis = TestRedis::start();
        let f = fixture(&redis, "n1");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(f.bus.clone().run(async {
            let _ = stopped.await;
        }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !f.bus.up() {
            assert!(std::time::Instant::now() < deadline, "connected in time");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let reg = f
            .hub
            .register(identity("ada"), std::net::IpAddr::from([127, 0, 0, 1]))
            .expect("registered");
        f.bus.user_ready("ada").await;
        let mut r = redis.sync().expect("conn");
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut r)
            .expect("PUBSUB");
        assert!(
            channels.contains(&"herald:user:ada".to_owned()),
            "{channels:?}"
        );
        let _: i64 = r
            .publish(
                "herald:user:ada",
                r#"{"to":{"users":["ada"]},"kind":"toast","title":"hi"}"#,
            )
            .expect("PUBLISH");
        loop {
            if let Some(frame) = reg.session.outbox.drain().0.pop_front() {
                assert!(String::from_utf8_lossy(frame.bytes()).contains("\"title\":\"hi\""));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "delivered in time");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The user leaves: the channel goes.
        drop(reg);
        loop {
            let channels: Vec<String> = redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .query(&mut r)
                .expect("PUBSUB");
            if !channels.contains(&"herald:user:ada".to_owned()) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "unsubscribed in time");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
        task.await.expect("subscriber");
    }
}
