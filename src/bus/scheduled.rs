//! The bus's part of scheduled messages and audience previews: holding
//! envelopes until their `send_at` and handing them to one claimer
//! ([`Schedule`]), and counting who an audience reaches on every node.
//! Redis keeps them in `src/bus/redis/schedule.rs`; embedded, in
//! [`MemorySchedule`].

use super::{Bus, BusError};
use crate::audience::Audience;
use crate::clock::Clock;
use crate::envelope::Publish;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// How long a claimed message stays away from other nodes: the claimer
/// publishes it within this, or (it died meanwhile) another node claims it
/// again after it. Ids dedupe on every node for `messages.dedupe_window`,
/// so a second publish after a lease ran out is not delivered twice.
pub const LEASE: Duration = Duration::from_secs(30);

/// A scheduled message claimed for publishing: the claimer publishes it and
/// then [`Schedule::settle`]s the claim.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: String,
    /// The envelope as accepted (id and absolute expiry fixed).
    pub json: String,
    /// The claim's lease end, as the store wrote it: settling removes the
    /// message only if it still carries this claim.
    pub lease: u64,
}

/// The body of `POST /v1/audience/preview`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The audience, as in an envelope's `to`.
    #[schemars(schema_with = "crate::audience::schema")]
    pub to: serde_json::Value,
}

/// Who an audience reaches now (SPEC §10.5), delivering nothing.
#[derive(Debug, Default, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Preview {
    /// Sessions online now that the audience matches.
    pub sessions: u64,
    /// Distinct users among them.
    pub users: u64,
    /// At most 10 of those users.
    pub sample: Vec<String>,
    /// Nodes that answered (with Redis: within the preview's wait).
    pub nodes: u64,
    /// Every live node answered in time.
    pub complete: bool,
}

impl Preview {
    pub const SAMPLE: usize = 10;
}

/// What both backends keep for scheduled messages and previews.
#[allow(async_fn_in_trait)]
pub trait Schedule {
    /// Holds a checked publish until `at` (unix ms); the same id again
    /// replaces it. Refused past `schedule.max_pending` waiting messages.
    async fn schedule(&self, p: &Publish, at: u64) -> Result<(), BusError>;
    /// Up to `limit` waiting envelopes, soonest first.
    async fn scheduled(&self, limit: usize) -> Result<Vec<serde_json::Value>, BusError>;
    /// Cancels a waiting message; `false` when none has that id.
    async fn cancel(&self, id: &str) -> Result<bool, BusError>;
    /// Claims up to `batch` messages due by the store's clock (Redis's
    /// `TIME`; embedded, the node's [`Clock`]), so that no other node
    /// claims them while the lease lasts.
    async fn claim_due(&self, batch: usize) -> Result<Vec<Due>, BusError>;
    /// The claimed message was published (or dropped): forget it.
    async fn settle(&self, due: &Due) -> Result<(), BusError>;
    /// The clock scheduled messages are due by: Redis's `TIME`, or the
    /// embedded node's [`Clock`]. No node's own clock is asked with Redis.
    async fn now_ms(&self) -> Result<u64, BusError>;
    /// Counts the sessions and users of `audience` online now, on every node.
    async fn preview(
        &self,
        to: &serde_json::Value,
        audience: &Audience,
    ) -> Result<Preview, BusError>;
}

impl Schedule for Bus {
    async fn schedule(&self, p: &Publish, at: u64) -> Result<(), BusError> {
        match self {
            Bus::Memory(b) => b.schedule().schedule(p, at),
            Bus::Redis(b) => b.schedule(p, at).await,
        }
    }
    async fn scheduled(&self, limit: usize) -> Result<Vec<serde_json::Value>, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.schedule().list(limit)),
            Bus::Redis(b) => b.scheduled(limit).await,
        }
    }
    async fn cancel(&self, id: &str) -> Result<bool, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.schedule().cancel(id)),
            Bus::Redis(b) => b.cancel_scheduled(id).await,
        }
    }
    async fn claim_due(&self, batch: usize) -> Result<Vec<Due>, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.schedule().claim(batch)),
            Bus::Redis(b) => b.claim_due(batch).await,
        }
    }
    async fn settle(&self, due: &Due) -> Result<(), BusError> {
        match self {
            // Embedded claims take the message out at once.
            Bus::Memory(_) => Ok(()),
            Bus::Redis(b) => b.settle(due).await,
        }
    }
    async fn now_ms(&self) -> Result<u64, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.schedule().clock.now_ms()),
            Bus::Redis(b) => b.now_ms().await,
        }
    }
    async fn preview(
        &self,
        to: &serde_json::Value,
        audience: &Audience,
    ) -> Result<Preview, BusError> {
        match self {
            Bus::Memory(b) => Ok(b.preview(audience)),
            Bus::Redis(b) => b.preview(to, audience).await,
        }
    }
}

/// Counts and samples what a node's hub matches, as [`Preview`] wants it.
pub(crate) fn local_preview(hub: &crate::hub::Hub, audience: &Audience) -> Preview {
    let (sessions, users) = hub.matching(audience);
    Preview {
        sessions: sessions as u64,
        users: users.len() as u64,
        sample: users
            .iter()
            .take(Preview::SAMPLE)
            .map(|u| u.to_string())
            .collect(),
        nodes: 1,
        complete: true,
    }
}

/// The embedded schedule: envelopes by send time, in memory, bounded.
pub struct MemorySchedule {
    clock: Clock,
    max: usize,
    inner: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    by_time: BTreeSet<(u64, String)>,
    /// id to (send_at, envelope JSON).
    by_id: HashMap<String, (u64, String)>,
}

impl MemorySchedule {
    pub fn new(clock: Clock, max: usize) -> Self {
        Self {
            clock,
            max,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn schedule(&self, p: &Publish, at: u64) -> Result<(), BusError> {
        let mut w = self.lock();
        let id = p.id().to_owned();
        if let Some((old, _)) = w.by_id.remove(&id) {
            w.by_time.remove(&(old, id.clone()));
        } else if w.by_id.len() >= self.max {
            return Err(BusError::ScheduleFull(self.max));
        }
        w.by_time.insert((at, id.clone()));
        w.by_id.insert(id, (at, p.to_json()));
        Ok(())
    }

    fn list(&self, limit: usize) -> Vec<serde_json::Value> {
        let w = self.lock();
        w.by_time
            .iter()
            .take(limit)
            .filter_map(|(_, id)| w.by_id.get(id))
            .filter_map(|(_, json)| serde_json::from_str(json).ok())
            .collect()
    }

    fn cancel(&self, id: &str) -> bool {
        let mut w = self.lock();
        match w.by_id.remove(id) {
            Some((at, _)) => {
                w.by_time.remove(&(at, id.to_owned()));
                true
            }
            None => false,
        }
    }

    fn claim(&self, batch: usize) -> Vec<Due> {
        let now = self.clock.now_ms();
        let mut w = self.lock();
        let mut out = Vec::new();
        while out.len() < batch {
            let Some((at, id)) = w.by_time.first().cloned() else {
                break;
            };
            if at > now {
                break;
            }
            w.by_time.remove(&(at, id.clone()));
            if let Some((_, json)) = w.by_id.remove(&id) {
                out.push(Due { id, json, lease: 0 });
            }
        }
        out
    }
}
