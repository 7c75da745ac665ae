//! Campaigns (SPEC §5): stored rules that deliver a message when a session
//! reports an event, connects, or stays idle, to users in an audience, within
//! per-user frequency limits and a global hourly cap.
//!
//! Each node holds the compiled campaigns in a [`Registry`] (CEL compiled
//! once, when stored: a campaign that does not compile is refused then, never
//! at trigger time). The bus stores them (in Redis, shared by every node;
//! embedded, in memory) and keeps the counters, atomically, so limits hold
//! across reconnects, devices and nodes.
//!
//! In time and as experiments (SPEC §10.4): `timing.rs` holds the window
//! and quiet hours, `experiment.rs` the assignment of users to variants;
//! the engine records each decision about a user (`events::Record::decision`)
//! for the trace, and exposures and conversions for the counts.

mod experiment;
mod model;
mod timing;

pub use experiment::{Arm, assign};
pub use model::*;

use crate::auth::Identity;
use crate::bus::counters::{Exposure, Limits, Verdict};
use crate::bus::{Bus, BusError, CampaignSink, Store};
use crate::clock::Clock;
use crate::dispatch::{Dispatcher, Reason};
use crate::envelope::{Priority, Publish};
use crate::error::FieldError;
use crate::events::{Record, Stream};
use crate::hub::{Hub, Session};
use crate::protocol::{Ack, AckStatus};
use crate::tasks::Background;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The campaigns this node applies, by id.
#[derive(Default)]
pub struct Registry {
    by_id: RwLock<HashMap<String, Arc<Compiled>>>,
}

impl Registry {
    pub fn put(&self, c: Arc<Compiled>) {
        self.write().insert(c.campaign.id.clone(), c);
    }

    pub fn remove(&self, id: &str) -> bool {
        self.write().remove(id).is_some()
    }

    pub fn replace_all_compiled(&self, list: Vec<Arc<Compiled>>) {
        *self.write() = list
            .into_iter()
            .map(|c| (c.campaign.id.clone(), c))
            .collect();
    }

    pub fn get(&self, id: &str) -> Option<Arc<Compiled>> {
        self.read().get(id).cloned()
    }

    pub fn list(&self) -> Vec<Campaign> {
        let mut v: Vec<Campaign> = self.read().values().map(|c| c.campaign.clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The smallest `idle_s` above `done` among active idle campaigns: the
    /// next silence a session should report.
    pub fn next_idle_after(&self, done: u64) -> Option<u64> {
        self.read()
            .values()
            .filter(|c| c.campaign.active)
            .filter_map(|c| c.campaign.trigger.idle_s)
            .filter(|s| *s > done)
            .min()
    }

    /// Active campaigns that fire on this occurrence for this identity,
    /// highest priority first (then by id, for a stable order), and those
    /// whose trigger matched but whose audience the identity is not in.
    pub fn candidates(
        &self,
        what: &Occurrence,
        id: &Identity,
    ) -> (Vec<Arc<Compiled>>, Vec<Arc<Compiled>>) {
        // CEL runs outside the lock: a change to the campaigns never waits
        // for a trigger's evaluation.
        let active: Vec<Arc<Compiled>> = self
            .read()
            .values()
            .filter(|c| c.campaign.active)
            .cloned()
            .collect();
        let (mut v, outside): (Vec<Arc<Compiled>>, Vec<Arc<Compiled>>) = active
            .into_iter()
            .filter(|c| c.triggered_by(what))
            .partition(|c| c.audience_has(id));
        v.sort_by(|a, b| {
            b.campaign
                .priority
                .cmp(&a.campaign.priority)
                .then_with(|| a.campaign.id.cmp(&b.campaign.id))
        });
        (v, outside)
    }

    /// Campaigns (active or not: a conversion may come after the end)
    /// whose goal is this client event.
    pub fn with_goal(&self, event: &str) -> Vec<Arc<Compiled>> {
        self.read()
            .values()
            .filter(|c| c.campaign.goal.as_ref().is_some_and(|g| g.event == event))
            .cloned()
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Compiled>>> {
        self.by_id.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Compiled>>> {
        self.by_id.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The trace's decision and reason for a display the limits refused.
fn held_back(c: &Compiled, verdict: Verdict, global_cap: u32) -> (&'static str, String) {
    let f = c.campaign.frequency.as_ref();
    match verdict {
        Verdict::Until if f.and_then(|f| f.until) == Some(Until::Dismissed) => (
            "dismissed_before",
            "the user dismissed this campaign before (frequency.until: dismissed)".to_owned(),
        ),
        Verdict::Until => (
            "capped",
            "until: the user clicked this campaign before (frequency.until: clicked)".to_owned(),
        ),
        Verdict::GlobalCap => (
            "capped",
            format!("global cap: {global_cap} campaign messages per user per hour"),
        ),
        _ => (
            "capped",
            match f.map(|f| (f.max, f.per_s)) {
                Some((max, Some(per))) => format!("frequency: at most {max} per {per} s"),
                Some((max, None)) => format!("frequency: at most {max} ever"),
                None => "frequency".to_owned(),
            },
        ),
    }
}

/// Stored campaigns, as the state hands them over: compiled here; one that
/// no longer compiles (stored by an older node, or written by hand) is
/// skipped with a warning, never applied.
impl CampaignSink for Registry {
    fn replace_all(&self, stored: Vec<(String, String)>) {
        self.replace_all_compiled(
            stored
                .iter()
                .filter_map(|(id, json)| compile_stored(id, json))
                .map(Arc::new)
                .collect(),
        );
    }

    fn changed(&self, id: &str, stored: Option<&str>) {
        match stored.map(|json| compile_stored(id, json)) {
            Some(Some(c)) => self.put(Arc::new(c)),
            Some(None) => {}
            None => {
                self.remove(id);
            }
        }
    }
}

fn compile_stored(id: &str, json: &str) -> Option<Compiled> {
    let compiled = serde_json::from_str::<Campaign>(json)
        .map_err(FieldError::from_serde)
        .and_then(|c| Compiled::new(c, None));
    match compiled {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(campaign = id, error = %e, "stored campaign no longer valid; ignored");
            None
        }
    }
}

/// Runs campaigns for this node: stores them through the bus, and turns
/// session occurrences into at most one message each.
pub struct Engine {
    pub registry: Arc<Registry>,
    bus: Arc<Bus>,
    hub: Arc<Hub>,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<crate::metrics::Metrics>,
    background: Arc<Background>,
    global_cap_per_hour: u32,
    /// Messages waiting out their campaign's `delay_s`, for [`Engine::run_delays`].
    delayed: tokio::sync::mpsc::Sender<Delayed>,
    /// Windows, quiet hours, exposures and goals are read on this clock.
    clock: Clock,
    zones: timing::Zones,
}

/// A campaign message to deliver later to one session, known by its sid:
/// nothing holds the session meanwhile.
struct Delayed {
    at: tokio::time::Instant,
    sid: u64,
    message: Arc<Publish>,
}

/// What [`Engine::run_delays`] drains.
pub struct Delays(tokio::sync::mpsc::Receiver<Delayed>);

/// What the engine works with, besides the registry and the bus.
pub struct EngineParts {
    pub hub: Arc<Hub>,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub background: Arc<Background>,
    pub global_cap_per_hour: u32,
    /// Messages that may wait out a `delay_s` at once; more are dropped, counted.
    pub max_delayed: usize,
    pub clock: Clock,
    /// `campaigns.default_tz`.
    pub default_tz: String,
}

impl Engine {
    pub fn new(registry: Arc<Registry>, bus: Arc<Bus>, parts: EngineParts) -> (Self, Delays) {
        let (delayed, rx) = tokio::sync::mpsc::channel(parts.max_delayed.max(1));
        let engine = Self {
            registry,
            bus,
            hub: parts.hub,
            dispatcher: parts.dispatcher,
            metrics: parts.metrics,
            background: parts.background,
            global_cap_per_hour: parts.global_cap_per_hour,
            delayed,
            clock: parts.clock,
            zones: timing::Zones::new(&parts.default_tz),
        };
        (engine, Delays(rx))
    }

    /// Delivers delayed campaign messages at their time, to the sessions
    /// still open, until `shutdown`. One task and one timer queue for all.
    pub async fn run_delays(
        &self,
        mut delays: Delays,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut queue = tokio_util::time::DelayQueue::new();
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                next = delays.0.recv() => match next {
                    Some(d) => {
                        let at = d.at;
                        queue.insert_at(d, at);
                    }
                    None => return,
                },
                Some(due) = futures::StreamExt::next(&mut queue) => {
                    let d = due.into_inner();
                    // The session may have ended meanwhile; the display was
                    // counted, as a caller cannot tell a closed tab from a dismissal.
                    if let Some(session) = self.hub.session(d.sid) {
                        self.dispatcher.deliver_to(&session, &d.message, Reason::Trigger);
                    }
                }
            }
        }
    }

    /// Stores a checked campaign; every node applies it at once.
    pub async fn put(&self, c: Compiled) -> Result<(), BusError> {
        let c = Arc::new(c);
        let json =
            serde_json::to_string(&c.campaign).map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.bus.campaign_store(&c.campaign.id, &json).await?;
        self.registry.put(c);
        Ok(())
    }

    pub async fn delete(&self, id: &str) -> Result<bool, BusError> {
        let existed = self.registry.get(id).is_some();
        self.bus.campaign_remove(id).await?;
        self.registry.remove(id);
        Ok(existed)
    }

    /// Evaluates an occurrence in the background: the session loop never
    /// waits on counters. A client event may also be a goal's conversion.
    pub fn fire(self: &Arc<Self>, session: Arc<Session>, what: Occurrence) {
        if let Occurrence::Event { name, .. } = &what {
            let goals = self.registry.with_goal(name);
            if !goals.is_empty() {
                let (engine, user) = (self.clone(), session.user.clone());
                self.background.spawn("campaign_goal", async move {
                    engine.convert(&user, goals).await;
                });
            }
        }
        let (candidates, outside) = self.registry.candidates(&what, &session.identity());
        for c in outside {
            self.decide(
                &session.user,
                &c,
                "not_in_audience",
                "the user is not in the campaign's audience",
            );
        }
        if candidates.is_empty() {
            return;
        }
        let engine = self.clone();
        self.background.spawn("campaign", async move {
            engine.deliver_first_allowed(session, candidates).await
        });
    }

    /// Records a decision about a user for the trace (and the counts).
    fn decide(&self, user: &str, c: &Compiled, decision: &str, reason: &str) {
        self.dispatcher
            .events()
            .emit(Record::decision(user, &c.campaign.id, decision, reason));
    }

    /// Why the window or the quiet hours hold a campaign back now, if they do.
    fn held_in_time(
        &self,
        c: &Compiled,
        session: &Session,
        now_ms: u64,
    ) -> Option<(&'static str, String)> {
        let k = &c.campaign;
        if !timing::in_window(k.starts_at, k.ends_at, now_ms) {
            let reason = match (k.starts_at, k.ends_at) {
                (Some(s), _) if now_ms < s => format!("the campaign starts at {s} (unix ms)"),
                (_, Some(e)) => format!("the campaign ended at {e} (unix ms)"),
                _ => "outside the campaign's window".to_owned(),
            };
            return Some(("outside_window", reason));
        }
        let quiet = c.quiet.filter(|_| k.priority != Priority::Urgent)?;
        let local = self.zones.local(&session.identity(), now_ms);
        if local.unknown {
            self.metrics.campaign_unknown_tz.inc();
        }
        quiet.contains(local.minute).then(|| {
            let q = k
                .quiet_hours
                .as_ref()
                .map_or(("", ""), |q| (q.from.as_str(), q.to.as_str()));
            (
                "quiet_hours",
                format!(
                    "quiet hours {} to {} in {}{} (local {:02}:{:02})",
                    q.0,
                    q.1,
                    local.zone,
                    if local.unknown {
                        ", attrs.tz unknown"
                    } else {
                        ""
                    },
                    local.minute / 60,
                    local.minute % 60
                ),
            )
        })
    }

    /// The arm a user is in: the one stored at their exposure, else the
    /// hash's (`first`: not exposed yet).
    async fn arm_of(&self, c: &Compiled, user: &str) -> Result<(String, bool), BusError> {
        if !c.is_experiment() {
            return Ok((Arm::DEFAULT.to_owned(), false));
        }
        let stored = self.bus.exposure(&c.campaign.id, user).await?;
        // A variant removed since its exposure: the user is assigned again.
        match stored {
            Some(e) if e.variant == Arm::HOLDOUT || c.arms.iter().any(|a| a.id == e.variant) => {
                Ok((e.variant, false))
            }
            _ => Ok((
                assign(&c.campaign.id, user, c.campaign.holdout_pct, &c.arms).to_owned(),
                true,
            )),
        }
    }

    /// Stores the user's assignment; the first time, records the exposure.
    /// Returns the stored arm (another node may have stored it first).
    async fn expose(&self, c: &Compiled, user: &str, arm: &str) -> Result<String, BusError> {
        let (stored, first) = self
            .bus
            .expose(
                &c.campaign.id,
                user,
                &Exposure {
                    variant: arm.to_owned(),
                    at_ms: self.clock.now_ms(),
                },
            )
            .await?;
        if first {
            self.dispatcher.events().emit(
                Record::new(Stream::Events, "exposure")
                    .with("campaign", c.campaign.id.as_str())
                    .with("user", user)
                    .with("variant", stored.variant.as_str()),
            );
        }
        Ok(stored.variant)
    }

    /// A goal's event: one conversion per user exposed within `within_s`.
    async fn convert(&self, user: &str, goals: Vec<Arc<Compiled>>) {
        for c in goals {
            let Some(goal) = &c.campaign.goal else {
                continue;
            };
            let r = async {
                let Some(e) = self.bus.exposure(&c.campaign.id, user).await? else {
                    return Ok(());
                };
                let now = self.clock.now_ms();
                if now < e.at_ms || now - e.at_ms > goal.within_s * 1000 {
                    return Ok(());
                }
                if self.bus.convert(&c.campaign.id, user).await? {
                    self.dispatcher.events().emit(
                        Record::new(Stream::Events, "conversion")
                            .with("campaign", c.campaign.id.as_str())
                            .with("user", user)
                            .with("variant", e.variant.as_str())
                            .with("goal", goal.event.as_str()),
                    );
                }
                Ok::<(), BusError>(())
            }
            .await;
            if let Err(e) = r {
                tracing::warn!(%user, campaign = %c.campaign.id, error = %e, "conversion not recorded");
            }
        }
    }

    /// At most one message per occurrence: the highest-priority campaign
    /// whose window, quiet hours and limits allow a display wins. A holdout
    /// user's campaign wins too, showing nothing (SPEC §10.4).
    async fn deliver_first_allowed(&self, session: Arc<Session>, candidates: Vec<Arc<Compiled>>) {
        let user = session.user.clone();
        for c in candidates {
            let now_ms = self.clock.now_ms();
            if let Some((decision, reason)) = self.held_in_time(&c, &session, now_ms) {
                if decision == "quiet_hours" {
                    // The trigger is recorded as suppressed (SPEC §10.4).
                    self.dispatcher.events().emit(
                        Record::new(Stream::Events, "suppressed")
                            .with("campaign", c.campaign.id.as_str())
                            .with("user", &*user)
                            .with("reason", "quiet_hours"),
                    );
                }
                self.count_decision(decision);
                self.decide(&user, &c, decision, &reason);
                continue;
            }
            let (arm, first) = match self.arm_of(&c, &user).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%user, campaign = %c.campaign.id, error = %e, "campaign assignments unavailable");
                    return;
                }
            };
            if arm == Arm::HOLDOUT {
                if first && let Err(e) = self.expose(&c, &user, &arm).await {
                    tracing::warn!(%user, campaign = %c.campaign.id, error = %e, "exposure not recorded");
                }
                self.count_decision("holdout");
                self.decide(
                    &user,
                    &c,
                    "holdout",
                    "the user is in the campaign's holdout: shown nothing, counted for comparison",
                );
                return;
            }
            let Some(chosen) = c.arms.iter().find(|a| a.id == arm) else {
                continue;
            };
            let Some(p) = c.message_of(&user, chosen, crate::auth::unix_now_ms()) else {
                continue;
            };
            let f = c.campaign.frequency.as_ref();
            let limits = Limits {
                campaign: &c.campaign.id,
                user: &user,
                msg_id: p.id(),
                max: f.map(|f| f.max),
                per_s: f.and_then(|f| f.per_s),
                until: f.is_some_and(|f| f.until.is_some()),
                global_cap_per_hour: if c.campaign.priority == Priority::Urgent {
                    0
                } else {
                    self.global_cap_per_hour
                },
            };
            let verdict = self.bus.campaign_check(&limits).await;
            let label = verdict.as_ref().map_or("error", |v| v.label());
            self.count_decision(label);
            match verdict {
                Ok(Verdict::Allowed) => {}
                Ok(verdict) => {
                    tracing::debug!(%user, campaign = %c.campaign.id, ?verdict, "campaign held back");
                    let (decision, reason) = held_back(&c, verdict, self.global_cap_per_hour);
                    self.decide(&user, &c, decision, &reason);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%user, campaign = %c.campaign.id, error = %e, "campaign counters unavailable");
                    return;
                }
            }
            let p = if first {
                match self.expose(&c, &user, &arm).await {
                    // Another node exposed the user first, to another arm
                    // (the weights changed meanwhile): theirs holds.
                    Ok(stored) if stored != arm => {
                        match c
                            .arms
                            .iter()
                            .find(|a| a.id == stored)
                            .and_then(|a| c.message_of(&user, a, crate::auth::unix_now_ms()))
                        {
                            Some(p) => p,
                            None => return,
                        }
                    }
                    Ok(_) => p,
                    Err(e) => {
                        tracing::warn!(%user, campaign = %c.campaign.id, error = %e, "exposure not recorded");
                        p
                    }
                }
            } else {
                p
            };
            if c.campaign.delay_s > 0 {
                let later = Delayed {
                    at: tokio::time::Instant::now()
                        + std::time::Duration::from_secs(c.campaign.delay_s),
                    sid: session.sid,
                    message: p,
                };
                if self.delayed.try_send(later).is_err() {
                    self.metrics.drop_reason("campaign_delays_full");
                    tracing::warn!(%user, campaign = %c.campaign.id, "too many delayed campaign messages; dropped");
                }
            } else {
                self.dispatcher.deliver_to(&session, &p, Reason::Trigger);
            }
            return;
        }
    }

    fn count_decision(&self, label: &'static str) {
        self.metrics
            .campaign_decisions
            .get_or_create(&crate::metrics::Reason { reason: label })
            .inc();
    }

    /// An ack: recorded; for a campaign with `until`, the matching status
    /// ends the campaign for that user.
    /// The `until` marker is written before the ack is recorded, so that
    /// whoever sees the ack in the events stream sees the campaign stopped.
    pub async fn on_ack(&self, user: &Arc<str>, sid: &str, ack: &Ack) -> Result<(), BusError> {
        if let Some(c) = self
            .dispatcher
            .campaign_of(&ack.id)
            .and_then(|id| self.registry.get(&id))
        {
            let until = c.campaign.frequency.as_ref().and_then(|f| f.until);
            let reached = matches!(
                (until, ack.status),
                (Some(Until::Clicked), AckStatus::Clicked)
                    | (Some(Until::Dismissed), AckStatus::Dismissed)
            );
            if reached {
                self.bus.campaign_done(&c.campaign.id, user).await?;
            }
        }
        self.bus.ack(user, sid, ack).await?;
        Ok(())
    }
}
