//! The Redis bus: one pub/sub connection per node for receiving, one
//! multiplexed connection for commands.
//!
//! Receiving: every node subscribes to `{prefix}:broadcast`, and to
//! `{prefix}:user:{id}` while it holds a session of that user, so the reply
//! of `PUBLISH` on a user channel counts the nodes where the user is online.
//! The hub reports users whose session count changed ([`UserChanges`]); the
//! subscriber task mirrors them in batches: SUBSCRIBE / UNSUBSCRIBE, and the
//! node's presence hash `{prefix}:nodepresence:{node}` (field: user, value:
//! sessions), which expires unless the node's heartbeat keeps it.
//! After losing Redis it reconnects with backoff and restores everything from
//! the hub, which stays the source of truth.

use super::conn::{Backend, Conn, Incoming, Subscriber};
use super::{BusError, Presence, Reach};
use crate::auth::Identity;
use crate::campaigns::{Campaign, Compiled, Limits, Registry, Verdict};
use crate::dispatch::{Dispatcher, Received, Route};
use crate::envelope::{Command, Publish};
use crate::events::{Record, Stream};
use crate::history::{self, Resumed};
use crate::hub::{Hub, UserChanges};
use crate::metrics::Metrics;
use futures::StreamExt;
use redis::AsyncCommands;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Channels per SUBSCRIBE command when restoring.
const SUBSCRIBE_CHUNK: usize = 1000;
const USER_READY_WAIT: Duration = Duration::from_secs(5);

/// Redis key and channel names under the configured prefix.
///
/// Channels and the public streams (`ingress`, `events`, `undelivered`,
/// `dead`) are named `{prefix}:…` as the contract says. Herald's own keys
/// (history, the sticky set, pending messages, campaigns, counters,
/// presence) are too on one server; in a Redis Cluster they carry the hash
/// tag `{prefix}` (`{herald}:active`), so that every script and pipeline
/// touching several of them stays on one slot.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    /// The prefix of Herald's own keys: `prefix`, or `{prefix}` in a cluster.
    data: String,
    user_channel_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str, cluster: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            data: if cluster {
                format!("{{{prefix}}}")
            } else {
                prefix.to_owned()
            },
            user_channel_prefix: format!("{prefix}:user:"),
        }
    }
    pub fn broadcast(&self) -> String {
        format!("{}:broadcast", self.prefix)
    }
    pub fn user(&self, user: &str) -> String {
        format!("{}{user}", self.user_channel_prefix)
    }
    pub fn ingress(&self) -> String {
        format!("{}:ingress", self.prefix)
    }
    pub fn stream(&self, stream: Stream) -> String {
        format!("{}:{}", self.prefix, stream.name())
    }
    /// What the scripts build Herald's keys from (their `KEYS[1]`, which
    /// also routes them to the right slot in a cluster).
    pub fn data(&self) -> &str {
        &self.data
    }
    /// One node's sessions per user; it expires with the node's heartbeat,
    /// so a dead node's presence goes with it.
    pub fn node_presence(&self, node: &str) -> String {
        format!("{}:nodepresence:{node}", self.data)
    }
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.data)
    }
    pub fn node_stats(&self) -> String {
        format!("{}:nodestats", self.data)
    }
    pub fn active(&self) -> String {
        format!("{}:active", self.data)
    }
    pub fn pending(&self, user: &str) -> String {
        format!("{}:pending:{user}", self.data)
    }
    pub fn acked(&self, msg: &str) -> String {
        format!("{}:acked:{msg}", self.data)
    }
    pub fn campaigns(&self) -> String {
        format!("{}:campaigns", self.data)
    }
    pub fn freq_done(&self, campaign: &str, user: &str) -> String {
        format!("{}:freqdone:{campaign}:{user}", self.data)
    }
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.data)
    }
    pub fn history(&self) -> String {
        format!("{}:history", self.data)
    }
    /// `XADD` of one record to its stream, trimmed to about `maxlen`.
    fn xadd(&self, r: &Record, maxlen: usize) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.stream(r.stream))
            .arg("MAXLEN")
            .arg("~")
            .arg(maxlen)
            .arg("*");
        for (k, v) in &r.fields {
            cmd.arg(*k).arg(v);
        }
        cmd
    }
    fn dead_seen(&self, digest: &str) -> String {
        format!("{}:dead:seen:{digest}", self.data)
    }
    fn user_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.user_channel_prefix)
    }
}

/// The node's parts the Redis bus works with.
pub struct BusParts {
    pub node: String,
    pub hub: Arc<Hub>,
    pub dispatcher: Arc<Dispatcher>,
    pub changes: Arc<UserChanges>,
    pub metrics: Arc<Metrics>,
    pub campaigns: Arc<Registry>,
}

/// Where and how a node uses Redis.
pub struct RedisTarget<'a> {
    /// One server; or with `cluster`, seed nodes separated by commas.
    pub url: &'a str,
    /// A Redis Cluster: sharded pub/sub for user channels, hash-tagged keys.
    pub cluster: bool,
    pub prefix: &'a str,
    /// Approximate MAXLEN of the streams.
    pub maxlen: usize,
    /// Node heartbeat and pub/sub liveness check period.
    pub heartbeat: Duration,
    /// The resume window and entries per history stream; `None`: no history.
    pub history: Option<(Duration, usize)>,
}

pub struct RedisBus {
    backend: Backend,
    conn: Conn,
    keys: Keys,
    node: String,
    hub: Arc<Hub>,
    dispatcher: Arc<Dispatcher>,
    changes: Arc<UserChanges>,
    metrics: Arc<Metrics>,
    campaigns: Arc<Registry>,
    up: AtomicBool,
    maxlen: usize,
    heartbeat: Duration,
    history: Option<(Duration, usize)>,
    /// Users whose channel this node is subscribed to right now.
    subscribed: Mutex<HashSet<Arc<str>>>,
    /// Bumped after every subscription change, for [`RedisBus::user_ready`].
    generation: watch::Sender<u64>,
}

/// Publishes one command from outside a node (the CLI), on a connection of
/// its own, routed and stored exactly as a node does it.
pub async fn publish_direct(
    url: &str,
    cluster: bool,
    prefix: &str,
    cmd: &Command,
) -> Result<Option<Reach>, BusError> {
    let backend = Backend::open(url, cluster).map_err(unavailable)?;
    let mut conn = backend
        .dedicated(Duration::from_secs(5))
        .await
        .map_err(unavailable)?;
    let keys = Keys::new(prefix, cluster);
    // The CLI publishes with the default history settings, like a node.
    let h = crate::config::HistoryConfig::default();
    let history = h.enabled.then_some((h.window, h.max_per_stream));
    let how = Publishing {
        keys: &keys,
        node: "cli",
        maxlen: 100_000,
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
static RESUME: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/resume.lua")));
static ACK: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/ack.lua")));
static CAMPAIGN: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/campaign.lua")));

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

/// A user's pending messages, and whether they acknowledged each global one.
type ReplayReads = (Vec<(String, String)>, Vec<bool>);

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
struct Publishing<'a> {
    keys: &'a Keys,
    node: &'a str,
    maxlen: usize,
    history: Option<(Duration, usize)>,
    cluster: bool,
}

impl Publishing<'_> {
    async fn run(&self, conn: &mut Conn, cmd: &Command) -> Result<Option<Reach>, BusError> {
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
                    .arg(&self.keys.prefix)
                    .arg(id)
                    .arg(env)
                    .arg(TOMBSTONE_S)
                    .arg(self.history_args())
                    .arg(if self.cluster { "1" } else { "0" });
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

    /// The history arguments both scripts take: on ("0"|"1"), window ms,
    /// entries per stream, and an epoch to use if none exists yet.
    fn history_args(&self) -> Vec<String> {
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
    async fn publish_users<'u>(
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
    async fn publish(
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
            .arg(&self.keys.prefix)
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
        let ts = crate::auth::unix_now_ms().to_string();
        let mut pipe = redis::pipe();
        for (user, _) in users.iter().zip(counts).filter(|(_, n)| **n == 0) {
            let record = Record::new(Stream::Undelivered, "undelivered")
                .with("msg", p.id())
                .with("user", &**user)
                .with("node", self.node)
                .with("ts", ts.as_str())
                .with_opt("campaign", p.envelope.campaign.as_deref());
            pipe.add_command(self.keys.xadd(&record, self.maxlen))
                .ignore();
        }
        pipe.query_async(conn).await
    }
}

fn compile_stored(json: &str) -> Option<Compiled> {
    let c: Campaign = serde_json::from_str(json).ok()?;
    Compiled::new(c, None).ok()
}

/// Stored envelopes back into checked messages; anything that no longer
/// passes the checks is skipped.
fn parse_stored(values: impl Iterator<Item = String>) -> Vec<Arc<Publish>> {
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

pub(super) fn unavailable(e: redis::RedisError) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl RedisBus {
    /// Connects lazily: the node starts even while Redis is down, and
    /// reports not ready until the subscriber is connected.
    pub fn new(target: RedisTarget<'_>, parts: BusParts) -> Result<Arc<Self>, BusError> {
        let BusParts {
            node,
            hub,
            dispatcher,
            changes,
            metrics,
            campaigns,
        } = parts;
        let RedisTarget {
            url,
            cluster,
            prefix,
            maxlen,
            heartbeat,
            history,
        } = target;
        let backend = Backend::open(url, cluster).map_err(unavailable)?;
        let conn = backend.shared().map_err(unavailable)?;
        metrics.bus_up.set(0);
        Ok(Arc::new(Self {
            backend,
            conn,
            keys: Keys::new(prefix, cluster),
            node,
            hub,
            dispatcher,
            changes,
            metrics,
            up: AtomicBool::new(false),
            campaigns,
            maxlen,
            heartbeat,
            history,
            subscribed: Mutex::new(HashSet::new()),
            generation: watch::Sender::new(0),
        }))
    }

    pub(super) fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(super) fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(super) fn node(&self) -> &str {
        &self.node
    }

    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
        self.metrics.bus_up.set(i64::from(up));
        self.generation.send_modify(|g| *g += 1);
    }

    fn publishing(&self) -> Publishing<'_> {
        Publishing {
            keys: &self.keys,
            node: &self.node,
            maxlen: self.maxlen,
            history: self.history,
            cluster: self.backend.is_cluster(),
        }
    }

    /// Publishes a command. While the bus is up, a publish that failed on
    /// the shared connection (it broke since its last use: Redis restarted)
    /// is tried once more on a fresh one; ids dedupe, so a retry never
    /// delivers twice.
    pub async fn publish(&self, cmd: &Command) -> Result<Option<Reach>, BusError> {
        match self.publishing().run(&mut self.conn.clone(), cmd).await {
            Err(e) if self.is_up() => {
                tracing::debug!(error = %e, "publish failed; retrying on a fresh connection");
                let mut fresh = self
                    .backend
                    .dedicated(Duration::from_secs(2))
                    .await
                    .map_err(unavailable)?;
                self.publishing().run(&mut fresh, cmd).await
            }
            other => other,
        }
    }

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

    pub async fn campaign_store(&self, c: &Campaign) -> Result<(), BusError> {
        let json = serde_json::to_string(c).map_err(|e| BusError::Unavailable(e.to_string()))?;
        let mut conn = self.conn.clone();
        let () = conn
            .hset(self.keys.campaigns(), &c.id, json)
            .await
            .map_err(unavailable)?;
        self.publish(&Command::Campaign { id: c.id.clone() })
            .await?;
        Ok(())
    }

    pub async fn campaign_remove(&self, id: &str) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn
            .hdel(self.keys.campaigns(), id)
            .await
            .map_err(unavailable)?;
        self.publish(&Command::Campaign { id: id.to_owned() })
            .await?;
        Ok(())
    }

    pub async fn campaign_check(&self, l: &Limits<'_>) -> Result<Verdict, BusError> {
        let f = l.frequency;
        let mut conn = self.conn.clone();
        let code: i64 = CAMPAIGN
            .key(self.keys.data())
            .arg(l.campaign)
            .arg(l.user)
            .arg(l.msg_id)
            .arg(crate::auth::unix_now_ms())
            .arg(f.map_or(0, |f| f.max))
            .arg(f.and_then(|f| f.per_s).unwrap_or(0))
            .arg(if f.is_some_and(|f| f.until.is_some()) {
                "1"
            } else {
                "0"
            })
            .arg(l.global_cap_per_hour)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Verdict::from_code(code))
    }

    pub async fn campaign_done(&self, campaign: &str, user: &str) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let () = conn
            .set(self.keys.freq_done(campaign, user), 1)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

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
            let record = Record::new(Stream::Dead, "dead")
                .with("reason", reason)
                .with("channel", source)
                .with("envelope", cut(envelope, 64 * 1024))
                .with("node", self.node.as_str())
                .with("ts", crate::auth::unix_now_ms().to_string());
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

    /// Reloads one campaign after a change anywhere in the cluster.
    async fn reload_campaign(&self, id: &str) {
        let mut conn = self.conn.clone();
        match conn
            .hget::<_, _, Option<String>>(self.keys.campaigns(), id)
            .await
        {
            Ok(Some(json)) => match compile_stored(&json) {
                Some(c) => self.campaigns.put(Arc::new(c)),
                None => tracing::warn!(campaign = id, "stored campaign no longer valid; ignored"),
            },
            Ok(None) => {
                self.campaigns.remove(id);
            }
            Err(e) => tracing::warn!(campaign = id, error = %e, "campaign reload failed"),
        }
    }

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
        let now = crate::auth::unix_now_ms();
        if since.ms + window.as_millis() as u64 + 1000 < now {
            return Ok(Resumed::lost());
        }
        let (current, global_trimmed, global, user_trimmed, mine): ResumeReads = RESUME
            .key(self.keys.data())
            .arg(&*id.user)
            .arg(since.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        // Another epoch, or a stream that dropped an entry after `since`:
        // the gap cannot be filled.
        let gap = |trimmed: &str| history::Id::parse(trimmed).is_some_and(|t| t > since);
        if current != epoch || gap(&global_trimmed) || gap(&user_trimmed) {
            return Ok(Resumed::lost());
        }
        let mut found: Vec<(history::Id, Arc<Publish>)> = Vec::new();
        let mut retracted = Vec::new();
        // The client has everything up to `since` already.
        let mut upto = since.seq;
        for (entry_id, json) in global.into_iter().chain(mine) {
            let Some(eid) = history::Id::parse(&entry_id) else {
                continue;
            };
            upto = upto.max(eid.seq);
            match history::entry(&json, &format!("{epoch}.{eid}")) {
                Some(history::Entry::Retract(msg)) => retracted.push(msg),
                Some(history::Entry::Publish(p)) if p.audience.matches(id) && !p.expired(now) => {
                    found.push((eid, p))
                }
                _ => {}
            }
        }
        found.sort_by_key(|(eid, _)| *eid);
        Ok(Resumed::new(
            found.into_iter().map(|(_, p)| p).collect(),
            retracted,
            upto,
        ))
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
                // own slot.
                let mut pipes: HashMap<Stream, redis::Pipeline> = HashMap::new();
                for r in &batch {
                    pipes
                        .entry(r.stream)
                        .or_insert_with(redis::pipe)
                        .add_command(self.keys.xadd(r, self.maxlen))
                        .ignore();
                }
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

    /// Sessions of `user` on live nodes, from their presence hashes.
    pub async fn presence(&self, user: &str) -> Result<Presence, BusError> {
        let mut conn = self.conn.clone();
        let live: Vec<String> = conn
            .zrangebyscore(self.keys.nodes(), self.live_cutoff(), "+inf")
            .await
            .map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for node in &live {
            pipe.hget(self.keys.node_presence(node), user);
        }
        let counts: Vec<Option<u64>> = if live.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await.map_err(unavailable)?
        };
        let sessions = counts.into_iter().flatten().sum();
        Ok(Presence {
            user: user.to_owned(),
            online: sessions > 0,
            sessions,
        })
    }

    /// Nodes unseen for three heartbeats are dead for presence and stats.
    fn live_cutoff(&self) -> u64 {
        crate::auth::unix_now_ms().saturating_sub(3 * self.heartbeat.as_millis() as u64)
    }

    /// How long this node's presence hash lives without a heartbeat.
    fn presence_ttl_ms(&self) -> u64 {
        3 * self.heartbeat.as_millis() as u64
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

    /// Marks this node alive every heartbeat while the bus is up, in a task
    /// of its own: a subscriber busy delivering must not make the cluster
    /// see this node, and its users, as gone.
    pub async fn beat(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            if self.is_up()
                && let Err(e) = self.heartbeat().await
            {
                tracing::debug!(error = %e, "heartbeat not written");
            }
        }
    }

    /// One connected stretch of the subscriber. Returns when Redis is lost.
    async fn session(self: &Arc<Self>) -> Result<(), redis::RedisError> {
        let (mut sink, mut stream) = self.backend.subscriber().await?;
        sink.subscribe(&self.keys.broadcast()).await?;
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
        let stored: Vec<(String, String)> =
            self.conn.clone().hgetall(self.keys.campaigns()).await?;
        self.campaigns.replace_all(
            stored
                .iter()
                .filter_map(|(_, v)| compile_stored(v))
                .map(Arc::new)
                .collect(),
        );
        self.write_presence(users.iter().cloned().chain(changed_meanwhile))
            .await?;
        self.lock_subscribed().extend(users);
        self.set_up(true);
        tracing::info!(node = %self.node, users = self.lock_subscribed().len(), "redis bus connected");

        let mut tick = tokio::time::interval(self.heartbeat);
        tick.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connection closed")));
                    };
                    match msg? {
                        Incoming::Message(msg) => self.receive(msg.get_channel_name(), msg.get_payload_bytes()),
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
                () = self.changes.notify.notified() => self.mirror(&mut sink).await?,
                _ = tick.tick() => {
                    tokio::time::timeout(Duration::from_secs(2), sink.ping())
                        .await
                        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "pub/sub ping timed out")))??;
                }
            }
        }
    }

    fn receive(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        let route = match self.keys.user_of(channel) {
            Some(user) => Route::User(user),
            None => Route::Broadcast,
        };
        match self.dispatcher.receive("redis", route, payload) {
            // Published by plain PUBLISH, a sticky or must-acknowledge message
            // is stored by the nodes that receive it (idempotent, and refused
            // right after a retraction); other paths stored it already.
            Ok(Received {
                command: Command::Campaign { id },
                ..
            }) => {
                let bus = self.clone();
                tokio::spawn(async move { bus.reload_campaign(&id).await });
            }
            Ok(Received {
                command: Command::Publish(p),
                ..
            }) if p.persistent() => {
                let bus = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = bus
                        .publishing()
                        .publish(&mut bus.conn.clone(), &p, false)
                        .await
                    {
                        tracing::warn!(msg_id = p.id(), error = %e, "could not store a sticky message");
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
                tokio::spawn(async move {
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

    async fn write_presence(
        &self,
        users: impl Iterator<Item = Arc<str>>,
    ) -> Result<(), redis::RedisError> {
        let key = self.keys.node_presence(&self.node);
        let mut pipe = redis::pipe();
        let mut any = false;
        for user in users {
            any = true;
            let n = self.hub.user_sessions(&user);
            if n > 0 {
                pipe.hset(&key, &*user, n).ignore();
            } else {
                pipe.hdel(&key, &*user).ignore();
            }
        }
        if any {
            pipe.pexpire(&key, self.presence_ttl_ms() as i64).ignore();
            let mut conn = self.conn.clone();
            let () = pipe.query_async(&mut conn).await?;
        }
        Ok(())
    }

    /// Marks this node alive, publishes its counters for cluster stats,
    /// keeps its presence hash, and forgets nodes silent for three
    /// heartbeats (their presence hashes expire by themselves).
    async fn heartbeat(&self) -> Result<(), redis::RedisError> {
        let stats = serde_json::json!({
            "sessions": self.hub.session_count(),
            "users": self.hub.user_count(),
            "deliveries": self.metrics.deliveries.get(),
        });
        let mut conn = self.conn.clone();
        let (dead,): (Vec<String>,) = redis::pipe()
            .zadd(self.keys.nodes(), &self.node, crate::auth::unix_now_ms())
            .ignore()
            .hset(self.keys.node_stats(), &self.node, stats.to_string())
            .ignore()
            .pexpire(
                self.keys.node_presence(&self.node),
                self.presence_ttl_ms() as i64,
            )
            .ignore()
            .cmd("ZRANGEBYSCORE")
            .arg(self.keys.nodes())
            .arg("-inf")
            .arg(format!("({}", self.live_cutoff()))
            .query_async(&mut conn)
            .await?;
        if !dead.is_empty() {
            tracing::info!(nodes = ?dead, "forgetting nodes silent for three heartbeats");
            let () = redis::pipe()
                .zrem(self.keys.nodes(), &dead)
                .ignore()
                .hdel(self.keys.node_stats(), &dead)
                .ignore()
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Every live node's counters (as of its last heartbeat) and their sums.
    pub async fn cluster_stats(&self) -> Result<serde_json::Value, BusError> {
        let mut conn = self.conn.clone();
        let live: Vec<String> = conn
            .zrangebyscore(self.keys.nodes(), self.live_cutoff(), "+inf")
            .await
            .map_err(unavailable)?;
        let mut nodes = serde_json::Map::new();
        let (mut sessions, mut deliveries) = (0u64, 0u64);
        if !live.is_empty() {
            let stats: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.keys.node_stats())
                .arg(&live)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for (node, s) in live.iter().zip(stats) {
                let v: serde_json::Value = s
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
                sessions += v["sessions"].as_u64().unwrap_or(0);
                deliveries += v["deliveries"].as_u64().unwrap_or(0);
                nodes.insert(node.clone(), v);
            }
        }
        Ok(serde_json::json!({ "nodes": nodes, "sessions": sessions, "deliveries": deliveries }))
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
