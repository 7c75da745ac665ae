//! Herald's state, in one place: what outlives a publish (the sticky set,
//! pending messages, acknowledgements), the history for resume, campaign
//! counters, the streams of SPEC §7, presence, and how messages travel
//! between nodes. Two backends keep it behind one contract, [`Store`]:
//! [`MemoryBus`] (embedded: one node, in memory) and [`RedisBus`] (any
//! number of nodes sharing one Redis or a Redis Cluster). [`Bus`] is the
//! one a node runs.
//!
//! In the library, `redis` is imported in this module tree and nowhere else
//! (the load generator, `herald-bench`, uses it too).

pub mod counters;
mod memory;
mod redis;
mod scheduled;

use crate::auth::Identity;
use crate::envelope::{Command, Publish};
use crate::events::Stream;
use crate::history::Resumed;
use crate::protocol::{Ack, AckStatus};
use crate::stats::{Counts, Scope};
use counters::{Exposure, Limits, Verdict};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub use memory::MemoryBus;
pub use redis::{
    BusParts, Direct as ScheduleDirect, Keys, RedisBus, RedisTarget, StatsKeeping, publish_direct,
    scheduled_direct,
};
pub use scheduled::{Due, LEASE, MemorySchedule, Preview, PreviewRequest, Schedule};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// A `redis.*` setting that cannot work (a refused login, a
    /// certificate that does not verify): the node does not start.
    #[error("{0}")]
    Config(String),
    #[error("send_at: {0} scheduled messages are waiting already (schedule.max_pending)")]
    ScheduleFull(usize),
}

/// Who a `users` publish reached, known at publish time.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Reach {
    pub online: Vec<String>,
    pub offline: Vec<String>,
}

impl Reach {
    /// Splits named users by `online(index, user)`.
    pub(crate) fn split(users: &[Arc<str>], mut online: impl FnMut(usize, &str) -> bool) -> Self {
        let mut r = Reach::default();
        for (i, u) in users.iter().enumerate() {
            if online(i, u) {
                &mut r.online
            } else {
                &mut r.offline
            }
            .push(u.to_string());
        }
        r
    }
}

/// A user's sessions across the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Presence {
    pub user: String,
    pub online: bool,
    pub sessions: u64,
}

/// Where a node applies the campaigns the state stores (the campaigns
/// engine's registry). The state hands over the stored JSON and never
/// compiles it: it knows campaigns only as ids and text.
pub trait CampaignSink: Send + Sync {
    /// Every stored campaign, `(id, JSON)`, replacing what the node applies.
    fn replace_all(&self, stored: Vec<(String, String)>);
    /// One campaign as stored now, or `None` when it was deleted.
    fn changed(&self, id: &str, stored: Option<&str>);
}

/// Campaign ids changed elsewhere in the cluster, waiting to be read again:
/// coalescing, and bounded (past [`CampaignReloads::MAX`] ids it reloads
/// them all instead), so a flood of change notices costs one read each at
/// most and no task per notice.
#[derive(Default)]
pub(crate) struct CampaignReloads {
    pending: Mutex<(bool, HashSet<String>)>,
    pub notify: tokio::sync::Notify,
}

impl CampaignReloads {
    const MAX: usize = 10_000;

    pub fn mark(&self, id: &str) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.1.len() >= Self::MAX {
            p.0 = true;
            p.1.clear();
        } else if !p.0 {
            p.1.insert(id.to_owned());
        }
        drop(p);
        self.notify.notify_one();
    }

    /// `(all, ids)`: every campaign, or these ones.
    pub fn take(&self) -> (bool, HashSet<String>) {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The contract both backends keep. Implemented by [`MemoryBus`] and
/// [`RedisBus`] only, and called through [`Bus`], which dispatches
/// statically, so the futures' `Send`-ness is known at every call site.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Publishes a checked command to every node (embedded: this one). For
    /// `users` audiences, says who was online.
    async fn publish(&self, cmd: &Command) -> Result<Option<Reach>, BusError>;
    /// A user's sessions across the cluster.
    async fn presence(&self, user: &str) -> Result<Presence, BusError>;
    /// The sticky set: active sticky and must-acknowledge messages.
    async fn active(&self) -> Result<Vec<Arc<Publish>>, BusError>;
    /// What a client resuming at `since` missed: all of it, or nothing
    /// (`recovered: false`).
    async fn resume(&self, id: &Identity, since: &str) -> Resumed;
    /// The history's current position, for the `hello` frame.
    async fn head(&self) -> Option<String>;
    /// Messages a session that just connected must receive (`sticky`).
    async fn replay_for(&self, id: &Identity) -> Vec<Arc<Publish>>;
    /// The user clicked or dismissed `msg` (SPEC §10.1): it leaves their
    /// other sessions on every node (a `retract` frame), and is not sent to
    /// them again: not as sticky, not in a resume, on no device. The mark is
    /// kept as long as the message can still reach them.
    /// `sid` (`node.sid`) is the session that acknowledged, left out.
    async fn acknowledged(&self, user: &str, msg: &str, sid: &str) -> Result<(), BusError>;
    /// Stores a campaign's JSON where every node finds it, and tells them.
    async fn campaign_store(&self, id: &str, json: &str) -> Result<(), BusError>;
    async fn campaign_remove(&self, id: &str) -> Result<(), BusError>;
    /// Checks and counts one display against a campaign's limits.
    async fn campaign_check(&self, limits: &Limits<'_>) -> Result<Verdict, BusError>;
    /// The user reached the campaign's `until`.
    async fn campaign_done(&self, campaign: &str, user: &str) -> Result<(), BusError>;
    /// A user's stored assignment in an experiment.
    async fn exposure(&self, campaign: &str, user: &str) -> Result<Option<Exposure>, BusError>;
    /// Stores a user's assignment unless one is stored: the stored one, and
    /// whether it is this one (the user's first exposure).
    async fn expose(
        &self,
        campaign: &str,
        user: &str,
        e: &Exposure,
    ) -> Result<(Exposure, bool), BusError>;
    /// Marks the user's conversion; whether it is their first.
    async fn convert(&self, campaign: &str, user: &str) -> Result<bool, BusError>;
    /// The counts of a message or campaign (SPEC §10.5), `None` when none
    /// were ever kept.
    async fn counts(&self, scope: &Scope) -> Result<Option<Counts>, BusError>;
    /// The newest `limit` decisions about a user, newest first.
    async fn trace(&self, user: &str, limit: usize) -> Result<Vec<serde_json::Value>, BusError>;
    /// The newest records of a stream (events, undelivered, dead), newest first.
    async fn stream(
        &self,
        stream: Stream,
        count: usize,
    ) -> Result<Vec<serde_json::Value>, BusError>;
    /// Counters of every live node and their sums (embedded: none).
    async fn cluster_stats(&self) -> Result<Option<serde_json::Value>, BusError>;
    /// Waits (briefly) until this node receives `user`'s channel, so that a
    /// message published right after the `hello` frame is not missed.
    async fn user_ready(&self, user: &str);
    /// Ready to carry messages: always embedded; connected with Redis.
    fn is_up(&self) -> bool;
}

/// The node's state: one backend or the other.
pub enum Bus {
    Memory(Box<MemoryBus>),
    Redis(Arc<RedisBus>),
}

/// Calls the contract's method on the backend in use.
macro_rules! each {
    ($self:ident . $m:ident ( $($a:expr),* )) => {
        match $self {
            Bus::Memory(b) => Store::$m(&**b, $($a),*).await,
            Bus::Redis(b) => Store::$m(&**b, $($a),*).await,
        }
    };
}

impl Bus {
    pub fn mode(&self) -> &'static str {
        match self {
            Bus::Memory(_) => "embedded",
            Bus::Redis(_) => "redis",
        }
    }

    /// Under Redis Sentinel: the monitored master's name, and the address
    /// this node last reached it at.
    pub fn sentinel_master(&self) -> Option<(String, Option<String>)> {
        match self {
            Bus::Memory(_) => None,
            Bus::Redis(b) => b.sentinel_master(),
        }
    }

    /// The dispatcher the backend delivers through.
    fn dispatcher(&self) -> &crate::dispatch::Dispatcher {
        match self {
            Bus::Memory(b) => b.dispatcher(),
            Bus::Redis(b) => b.dispatcher(),
        }
    }

    /// Records an acknowledgement: the events stream, and for clicked or
    /// dismissed, the end of resending a must-acknowledge message. Returns
    /// the message's campaign, when this node knows it.
    pub async fn ack(
        &self,
        user: &Arc<str>,
        sid: &str,
        ack: &Ack,
    ) -> Result<Option<String>, BusError> {
        let dispatcher = self.dispatcher();
        let campaign = dispatcher.on_ack(user, sid, &ack.id, ack.status, ack.action.as_deref());
        // A click always acknowledges; a dismissal only a dismissible
        // message (SPEC §10.1: the SDK draws no close control on the others).
        let acknowledges = match ack.status {
            AckStatus::Clicked => true,
            AckStatus::Dismissed => dispatcher.dismissible(&ack.id) != Some(false),
            AckStatus::Displayed | AckStatus::Suppressed => false,
        };
        if acknowledges {
            self.acknowledged(user, &ack.id, sid).await?;
        }
        Ok(campaign)
    }
}

impl Store for Bus {
    async fn publish(&self, cmd: &Command) -> Result<Option<Reach>, BusError> {
        each!(self.publish(cmd))
    }
    async fn presence(&self, user: &str) -> Result<Presence, BusError> {
        each!(self.presence(user))
    }
    async fn active(&self) -> Result<Vec<Arc<Publish>>, BusError> {
        each!(self.active())
    }
    async fn resume(&self, id: &Identity, since: &str) -> Resumed {
        each!(self.resume(id, since))
    }
    async fn head(&self) -> Option<String> {
        each!(self.head())
    }
    async fn replay_for(&self, id: &Identity) -> Vec<Arc<Publish>> {
        each!(self.replay_for(id))
    }
    async fn acknowledged(&self, user: &str, msg: &str, sid: &str) -> Result<(), BusError> {
        each!(self.acknowledged(user, msg, sid))
    }
    async fn campaign_store(&self, id: &str, json: &str) -> Result<(), BusError> {
        each!(self.campaign_store(id, json))
    }
    async fn campaign_remove(&self, id: &str) -> Result<(), BusError> {
        each!(self.campaign_remove(id))
    }
    async fn campaign_check(&self, limits: &Limits<'_>) -> Result<Verdict, BusError> {
        each!(self.campaign_check(limits))
    }
    async fn campaign_done(&self, campaign: &str, user: &str) -> Result<(), BusError> {
        each!(self.campaign_done(campaign, user))
    }
    async fn exposure(&self, campaign: &str, user: &str) -> Result<Option<Exposure>, BusError> {
        each!(self.exposure(campaign, user))
    }
    async fn expose(
        &self,
        campaign: &str,
        user: &str,
        e: &Exposure,
    ) -> Result<(Exposure, bool), BusError> {
        each!(self.expose(campaign, user, e))
    }
    async fn convert(&self, campaign: &str, user: &str) -> Result<bool, BusError> {
        each!(self.convert(campaign, user))
    }
    async fn counts(&self, scope: &Scope) -> Result<Option<Counts>, BusError> {
        each!(self.counts(scope))
    }
    async fn trace(&self, user: &str, limit: usize) -> Result<Vec<serde_json::Value>, BusError> {
        each!(self.trace(user, limit))
    }
    async fn stream(
        &self,
        stream: Stream,
        count: usize,
    ) -> Result<Vec<serde_json::Value>, BusError> {
        each!(self.stream(stream, count))
    }
    async fn cluster_stats(&self) -> Result<Option<serde_json::Value>, BusError> {
        each!(self.cluster_stats())
    }
    async fn user_ready(&self, user: &str) {
        each!(self.user_ready(user))
    }
    fn is_up(&self) -> bool {
        match self {
            Bus::Memory(b) => b.is_up(),
            Bus::Redis(b) => Store::is_up(&**b),
        }
    }
}
