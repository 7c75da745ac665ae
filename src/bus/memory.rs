//! The embedded backend: one node, its state in memory, lost with the
//! process. Publishing goes straight to this node's dispatcher, after the
//! history gives the message its position.

use super::counters::{Exposure, Limits, MemoryCounters, MemoryExposures, Verdict};
use super::{BusError, Presence, Reach, Store};
use crate::auth::Identity;
use crate::dispatch::{Dispatcher, Route};
use crate::envelope::{Command, Publish};
use crate::events::{Record, Stream};
use crate::history::{MemoryHistory, Resumed};
use crate::hub::Hub;
use crate::stats::{Counts, Embedded, Scope};
use std::sync::Arc;
use std::time::Instant;

pub struct MemoryBus {
    hub: Arc<Hub>,
    dispatcher: Arc<Dispatcher>,
    counters: MemoryCounters,
    exposures: MemoryExposures,
    /// The counts and traces, fed by the dispatcher's records.
    tally: Arc<Embedded>,
    /// `None` when `history.enabled` is off.
    history: Option<MemoryHistory>,
    schedule: super::MemorySchedule,
}

impl MemoryBus {
    pub fn new(
        hub: Arc<Hub>,
        dispatcher: Arc<Dispatcher>,
        history: Option<MemoryHistory>,
        tally: Arc<Embedded>,
        schedule: super::MemorySchedule,
    ) -> Self {
        dispatcher.events().set_tally(tally.clone());
        Self {
            hub,
            dispatcher,
            counters: MemoryCounters::default(),
            exposures: MemoryExposures::default(),
            tally,
            history,
            schedule,
        }
    }

    pub(super) fn schedule(&self) -> &super::MemorySchedule {
        &self.schedule
    }

    pub(super) fn preview(&self, audience: &crate::audience::Audience) -> super::Preview {
        super::scheduled::local_preview(&self.hub, audience)
    }

    pub(super) fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }
}

impl Store for MemoryBus {
    async fn publish(&self, cmd: &Command) -> Result<Option<Reach>, BusError> {
        // Who is online is known before delivery, as with PUBLISH replies.
        let reach = match cmd {
            Command::Publish(p) => p
                .audience
                .users()
                .map(|users| Reach::split(users, |_, u| self.hub.user_sessions(u) > 0)),
            _ => None,
        };
        // Broadcasts being evaluated in slices hold up intake when full.
        self.dispatcher.room().await;
        // Recorded in the history first, so it goes out with its position.
        let positioned = match (cmd, &self.history) {
            (Command::Publish(p), Some(h)) => h.append(p).map(Command::Publish),
            (Command::Retract { id, .. }, Some(h)) => Some(Command::Retract {
                except: None,
                id: id.clone(),
                pos: Some(h.retract(id)),
            }),
            _ => None,
        };
        self.dispatcher.apply(
            positioned.as_ref().unwrap_or(cmd),
            Route::Broadcast,
            Instant::now(),
        );
        if let (Command::Publish(p), Some(r)) = (cmd, &reach)
            && p.envelope.fallback
        {
            for user in &r.offline {
                self.dispatcher.events().emit(Record::undelivered(p, user));
            }
        }
        Ok(reach)
    }

    async fn presence(&self, user: &str) -> Result<Presence, BusError> {
        let sessions = self.hub.user_sessions(user) as u64;
        Ok(Presence {
            user: user.to_owned(),
            online: sessions > 0,
            sessions,
        })
    }

    async fn active(&self) -> Result<Vec<Arc<Publish>>, BusError> {
        Ok(self.dispatcher.active())
    }

    async fn resume(&self, id: &Identity, since: &str) -> Resumed {
        match &self.history {
            Some(h) => h.resume(id, since),
            None => Resumed::lost(),
        }
    }

    async fn head(&self) -> Option<String> {
        self.history.as_ref().map(|h| h.head())
    }

    async fn replay_for(&self, id: &Identity) -> Vec<Arc<Publish>> {
        self.dispatcher.active_for(id)
    }

    async fn acknowledged(&self, user: &str, msg: &str, sid: &str) -> Result<(), BusError> {
        self.dispatcher.acknowledge(msg, &Arc::from(user));
        let pos = self.history.as_ref().map(|h| h.acknowledge(user, msg));
        let seq = crate::history::seq_of_pos(pos.as_deref());
        self.dispatcher
            .retract_for(user, msg, seq, Instant::now(), Some(sid));
        Ok(())
    }

    // The campaigns engine's registry is the embedded store.
    async fn campaign_store(&self, _id: &str, _json: &str) -> Result<(), BusError> {
        Ok(())
    }

    async fn campaign_remove(&self, id: &str) -> Result<(), BusError> {
        self.counters.forget(id);
        self.exposures.forget(id);
        Ok(())
    }

    async fn exposure(&self, campaign: &str, user: &str) -> Result<Option<Exposure>, BusError> {
        Ok(self.exposures.get(campaign, user))
    }

    async fn expose(
        &self,
        campaign: &str,
        user: &str,
        e: &Exposure,
    ) -> Result<(Exposure, bool), BusError> {
        Ok(self.exposures.expose(campaign, user, e))
    }

    async fn convert(&self, campaign: &str, user: &str) -> Result<bool, BusError> {
        Ok(self.exposures.convert(campaign, user))
    }

    async fn counts(&self, scope: &Scope) -> Result<Option<Counts>, BusError> {
        Ok(self.tally.stats.counts(scope))
    }

    async fn trace(&self, user: &str, limit: usize) -> Result<Vec<serde_json::Value>, BusError> {
        let now = self.dispatcher.events().clock().now_ms();
        Ok(self.tally.trace.read(user, limit, now))
    }

    async fn campaign_check(&self, limits: &Limits<'_>) -> Result<Verdict, BusError> {
        Ok(self.counters.check(limits, crate::auth::unix_now_ms()))
    }

    async fn campaign_done(&self, campaign: &str, user: &str) -> Result<(), BusError> {
        self.counters.done(campaign, user);
        Ok(())
    }

    async fn stream(
        &self,
        stream: Stream,
        count: usize,
    ) -> Result<Vec<serde_json::Value>, BusError> {
        Ok(self
            .dispatcher
            .events()
            .recent(stream, count)
            .unwrap_or_default())
    }

    async fn cluster_stats(&self) -> Result<Option<serde_json::Value>, BusError> {
        Ok(None)
    }

    async fn user_ready(&self, _user: &str) {}

    fn is_up(&self) -> bool {
        true
    }
}
