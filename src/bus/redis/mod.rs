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

mod conn;
mod counters;
mod history;
mod ingress;
mod keys;
mod presence;
mod publishing;
mod schedule;
mod sentinel;
mod stats;
mod sticky;
mod streams;
mod subscriber;
#[cfg(test)]
mod testing;

pub use keys::Keys;
use publishing::Publishing;
pub use publishing::publish_direct;
pub use schedule::{Direct, scheduled_direct};

use crate::auth::Identity;
use crate::bus::counters::{Exposure, Limits, Verdict};
use crate::bus::{BusError, CampaignReloads, CampaignSink, Presence, Reach, Store};
use crate::dispatch::Dispatcher;
use crate::envelope::{Command, Publish};
use crate::events::Stream;
use crate::history::Resumed;
use crate::hub::{Hub, UserChanges};
use crate::metrics::Metrics;
use crate::stats::{Counts, Scope};
use conn::{Backend, Conn};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The node's parts the Redis bus works with.
pub struct BusParts {
    /// Where receiving hands its Redis writes (stores, dead records), bounded.
    pub background: Arc<crate::tasks::Background>,
    pub node: String,
    pub hub: Arc<Hub>,
    pub dispatcher: Arc<Dispatcher>,
    pub changes: Arc<UserChanges>,
    pub metrics: Arc<Metrics>,
    /// Where stored campaigns are applied (the campaigns engine).
    pub campaigns: Arc<dyn CampaignSink>,
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
    /// The pub/sub probe: its interval and how long it may take.
    pub probe: (Duration, Duration),
    /// The resume window and entries per history stream; `None`: no history.
    pub history: Option<(Duration, usize)>,
    /// Certificates for `rediss://`.
    pub tls: crate::config::TlsFiles<'a>,
    /// How counts and traces are kept (`[stats]`).
    pub stats: StatsKeeping,
    /// Scheduled messages that may wait at once (`schedule.max_pending`).
    pub max_scheduled: usize,
}

/// How long counts live, and how much of each user's trace is kept.
#[derive(Debug, Clone, Copy)]
pub struct StatsKeeping {
    pub retention: Duration,
    pub trace_per_user: usize,
    pub trace_ttl: Duration,
    /// Users whose trace is kept, the least recently traced going first.
    pub trace_users: usize,
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
    campaigns: Arc<dyn CampaignSink>,
    /// Campaign ids changed elsewhere, read again by the subscriber task.
    reloads: CampaignReloads,
    background: Arc<crate::tasks::Background>,
    up: AtomicBool,
    maxlen: usize,
    heartbeat: Duration,
    probe: (Duration, Duration),
    /// The probe on its way round (0: none), and its channel.
    probe_pending: std::sync::atomic::AtomicU64,
    probe_channel: String,
    history: Option<(Duration, usize)>,
    stats: StatsKeeping,
    max_scheduled: usize,
    /// Users whose channel this node is subscribed to right now.
    subscribed: Mutex<HashSet<Arc<str>>>,
    /// Bumped after every subscription change, for [`RedisBus::user_ready`].
    generation: watch::Sender<u64>,
}

/// What a first connection says about the settings: a refused login or a
/// certificate that does not verify is a configuration error (stop the
/// start, naming the key); anything else (refused, timed out) is an outage
/// the node waits out.
pub(super) fn misconfigured(e: &redis::RedisError, ca_file: bool) -> Option<String> {
    let text = e.to_string();
    for (marker, key) in [
        (sentinel::SENTINEL_LOGIN, "redis.sentinel_password"),
        (sentinel::MASTER_LOGIN, "redis.password"),
    ] {
        if text.contains(marker) {
            return Some(format!("{key}: Redis refused the login: {text}"));
        }
    }
    if sentinel::unknown_master(e) {
        return Some(format!(
            "redis.sentinel_master: {text} (the name in `sentinel monitor <name> ...`)"
        ));
    }
    let login = matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || ["WRONGPASS", "NOAUTH", "NOPERM", "invalid username-password"]
            .iter()
            .any(|m| text.contains(m));
    if login {
        return Some(format!(
            "redis.url: Redis refused the login (user and password in redis://user:password@host): {text}"
        ));
    }
    let tls = [
        "certificate",
        "UnknownIssuer",
        "NotValidForName",
        "tls handshake",
        "TLS",
    ]
    .iter()
    .any(|m| text.contains(m));
    tls.then(|| {
        let key = if ca_file { "redis.tls_ca_file" } else { "redis.url" };
        format!("{key}: the TLS connection to Redis failed (is the CA the one that signed the server's certificate, and the host its name?): {text}")
    })
}

pub(super) fn unavailable(e: redis::RedisError) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl RedisBus {
    /// One connection attempt at start: a refused login or a certificate
    /// that does not verify stops the node with the key to fix; an outage
    /// (nothing listening, no answer) lets it start and wait for Redis.
    pub async fn check_settings(&self, ca_file: bool) -> Result<(), BusError> {
        let attempt = async {
            let mut conn = self.backend.dedicated(Duration::from_secs(2)).await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => match misconfigured(&e, ca_file) {
                Some(reason) => Err(BusError::Config(reason)),
                None => {
                    tracing::warn!(error = %e, "redis not reachable at start; waiting for it");
                    Ok(())
                }
            },
            Err(_) => {
                tracing::warn!("redis did not answer at start; waiting for it");
                Ok(())
            }
        }
    }

    /// Connects lazily: the node starts even while Redis is down, and
    /// reports not ready until the subscriber is connected.
    pub fn new(target: RedisTarget<'_>, parts: BusParts) -> Result<Arc<Self>, BusError> {
        let BusParts {
            background,
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
            probe,
            history,
            tls,
            stats,
            max_scheduled,
        } = target;
        let backend = Backend::open(url, cluster, tls).map_err(unavailable)?;
        let probe_channel = Keys::new(prefix, cluster).probe_channel(&node);
        let conn = backend.shared().map_err(unavailable)?;
        metrics.bus_up.set(0);
        if let Some(addr) = backend.server_addr() {
            let label = crate::metrics::RedisMaster { addr };
            metrics.redis_master.get_or_create(&label).set(1);
        }
        if let Some(sentinels) = backend.sentinels() {
            sentinels.count_readonly(metrics.redis_readonly.clone());
            let m = metrics.clone();
            sentinels.on_change(move |old, new| {
                let label = |addr: &str| crate::metrics::RedisMaster { addr: addr.into() };
                if let Some(old) = old {
                    m.redis_master.get_or_create(&label(old)).set(0);
                }
                m.redis_master.get_or_create(&label(new)).set(1);
            });
        }
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
            reloads: CampaignReloads::default(),
            background,
            maxlen,
            heartbeat,
            probe,
            probe_pending: std::sync::atomic::AtomicU64::new(0),
            probe_channel,
            history,
            stats,
            max_scheduled,
            subscribed: Mutex::new(HashSet::new()),
            generation: watch::Sender::new(0),
        }))
    }

    fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Under Sentinel: the master's name and the address in use.
    pub fn sentinel_master(&self) -> Option<(String, Option<String>)> {
        self.backend
            .sentinels()
            .map(|s| (s.name().to_owned(), s.current()))
    }

    fn keys(&self) -> &Keys {
        &self.keys
    }

    fn node(&self) -> &str {
        &self.node
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(super) fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    fn up(&self) -> bool {
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
            Err(e) if self.up() => {
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
}

/// The contract, from the methods each job's file defines.
impl Store for RedisBus {
    async fn publish(&self, cmd: &Command) -> Result<Option<Reach>, BusError> {
        RedisBus::publish(self, cmd).await
    }
    async fn presence(&self, user: &str) -> Result<Presence, BusError> {
        RedisBus::presence(self, user).await
    }
    async fn active(&self) -> Result<Vec<Arc<Publish>>, BusError> {
        RedisBus::active(self).await
    }
    async fn resume(&self, id: &Identity, since: &str) -> Resumed {
        RedisBus::resume(self, id, since).await
    }
    async fn head(&self) -> Option<String> {
        RedisBus::head(self).await
    }
    async fn replay_for(&self, id: &Identity) -> Vec<Arc<Publish>> {
        RedisBus::replay_for(self, id).await
    }
    async fn acknowledged(&self, user: &str, msg: &str, sid: &str) -> Result<(), BusError> {
        RedisBus::ack(self, user, msg, sid).await
    }
    async fn campaign_store(&self, id: &str, json: &str) -> Result<(), BusError> {
        RedisBus::campaign_store(self, id, json).await
    }
    async fn campaign_remove(&self, id: &str) -> Result<(), BusError> {
        RedisBus::campaign_remove(self, id).await
    }
    async fn campaign_check(&self, limits: &Limits<'_>) -> Result<Verdict, BusError> {
        RedisBus::campaign_check(self, limits).await
    }
    async fn campaign_done(&self, campaign: &str, user: &str) -> Result<(), BusError> {
        RedisBus::campaign_done(self, campaign, user).await
    }
    async fn exposure(&self, campaign: &str, user: &str) -> Result<Option<Exposure>, BusError> {
        RedisBus::exposure(self, campaign, user).await
    }
    async fn expose(
        &self,
        campaign: &str,
        user: &str,
        e: &Exposure,
    ) -> Result<(Exposure, bool), BusError> {
        RedisBus::expose(self, campaign, user, e).await
    }
    async fn convert(&self, campaign: &str, user: &str) -> Result<bool, BusError> {
        RedisBus::convert(self, campaign, user).await
    }
    async fn counts(&self, scope: &Scope) -> Result<Option<Counts>, BusError> {
        RedisBus::counts(self, scope).await
    }
    async fn trace(&self, user: &str, limit: usize) -> Result<Vec<serde_json::Value>, BusError> {
        RedisBus::trace(self, user, limit).await
    }
    async fn stream(
        &self,
        stream: Stream,
        count: usize,
    ) -> Result<Vec<serde_json::Value>, BusError> {
        RedisBus::stream(self, stream, count).await
    }
    async fn cluster_stats(&self) -> Result<Option<serde_json::Value>, BusError> {
        RedisBus::cluster_stats(self).await.map(Some)
    }
    async fn user_ready(&self, user: &str) {
        RedisBus::user_ready(self, user).await
    }
    fn is_up(&self) -> bool {
        self.up()
    }
}
