//! Campaigns (SPEC §5): stored rules that deliver a message when a session
//! reports an event, connects, or stays idle, to users in an audience, within
//! per-user frequency limits and a global hourly cap.
//!
//! Each node holds the compiled campaigns in a [`Registry`] (CEL compiled
//! once, when stored: a campaign that does not compile is refused then, never
//! at trigger time). The bus stores them (in Redis, shared by every node;
//! embedded, in memory) and keeps the counters, atomically, so limits hold
//! across reconnects, devices and nodes.

use crate::audience::Audience;
use crate::auth::Identity;
use crate::bus::counters::{Limits, Verdict};
use crate::bus::{Bus, BusError, CampaignSink, Store};
use crate::dispatch::{Dispatcher, Reason};
use crate::envelope::{self, Command, Envelope, Priority, Publish};
use crate::error::FieldError;
use crate::expr::Filter;
use crate::hub::{Hub, Session};
use crate::protocol::{Ack, AckStatus};
use crate::tasks::Background;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A campaign as stored and as the admin API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// Letters, digits, `-`, `_`, `.`; taken from the path when absent.
    #[serde(default)]
    pub id: String,
    /// Exactly one of `event` (with an optional `where`), `connect`, `idle_s`.
    pub trigger: Trigger,
    /// Who may receive it, like an envelope's `to`; absent: everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::audience::schema")]
    pub audience: Option<serde_json::Value>,
    /// The message: an envelope without `to` (the triggering user is the audience).
    pub message: Envelope,
    /// Per-user limits; absent: no limit but the global cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<Frequency>,
    /// Seconds to wait before delivering (at most 86400).
    #[serde(default)]
    pub delay_s: u64,
    /// Arbitration between campaigns on one trigger; `urgent` skips the global cap.
    #[serde(default)]
    pub priority: Priority,
    /// An inactive campaign is kept but never fires.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// Exactly one of: an event (with an optional CEL filter over its props),
/// the connect of a session, or `idle_s` seconds without client events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The client `event` name that fires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// CEL over the event's `props` (and `name`), e.g. props.feature == "export".
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Fires when a session connects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<bool>,
    /// Fires after this many seconds without a client event or ack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Until {
    Clicked,
    Dismissed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Frequency {
    /// At most this many displays per user per `per_s` seconds.
    pub max: u32,
    /// The window; absent: for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_s: Option<u64>,
    /// Stop for a user once they clicked (or dismissed) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Until>,
}

/// What happened in a session, for matching triggers.
#[derive(Debug, Clone)]
pub enum Occurrence {
    Event {
        name: String,
        props: serde_json::Map<String, serde_json::Value>,
    },
    Connect,
    Idle {
        seconds: u64,
    },
}

/// A campaign ready to evaluate.
pub struct Compiled {
    pub campaign: Campaign,
    audience: Audience,
    filter: Option<Filter>,
}

const MAX_ID: usize = 128;

impl Compiled {
    /// Checks and compiles a campaign; every refusal names the field.
    pub fn new(mut c: Campaign, id_from_path: Option<&str>) -> Result<Self, FieldError> {
        if let Some(path_id) = id_from_path {
            if !c.id.is_empty() && c.id != path_id {
                return Err(FieldError::new(
                    "id",
                    format!("{:?} does not match the path id {path_id:?}", c.id),
                ));
            }
            c.id = path_id.to_owned();
        }
        if c.id.is_empty()
            || c.id.len() > MAX_ID
            || !c
                .id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            return Err(FieldError::new(
                "id",
                "1 to 128 characters of letters, digits, - _ .",
            ));
        }
        let t = &c.trigger;
        let kinds = usize::from(t.event.is_some())
            + usize::from(t.connect == Some(true))
            + usize::from(t.idle_s.is_some());
        if kinds != 1 {
            return Err(FieldError::new(
                "trigger",
                "exactly one of event, connect: true, idle_s",
            ));
        }
        if let Some(name) = &t.event {
            if name.is_empty() || name.len() > MAX_ID {
                return Err(FieldError::new("trigger.event", "1 to 128 bytes"));
            }
        } else if t.filter.is_some() {
            return Err(FieldError::new("trigger.where", "only for event triggers"));
        }
        if t.idle_s == Some(0) {
            return Err(FieldError::new("trigger.idle_s", "must be at least 1"));
        }
        let filter = t
            .filter
            .as_deref()
            .map(|src| Filter::compile("trigger.where", src, &["props", "name"]))
            .transpose()?;
        let audience = match &c.audience {
            Some(a) => Audience::compile(a)
                .map_err(|e| FieldError::new(e.field.replacen("to", "audience", 1), e.reason))?,
            None => Audience::compile(&serde_json::Value::String("all".into()))?,
        };
        if c.message.to.is_some() || c.message.id.is_some() || c.message.op != envelope::Op::Publish
        {
            return Err(FieldError::new(
                "message",
                "an envelope without to, id or op: the campaign sets them",
            ));
        }
        if c.message.send_at.is_some() {
            return Err(FieldError::new(
                "message.send_at",
                "a campaign's message is shown when it fires; schedule messages with POST /v1/messages",
            ));
        }
        if c.message.priority != Priority::Normal {
            return Err(FieldError::new(
                "message.priority",
                "set priority on the campaign; it applies to its message",
            ));
        }
        // The message must be a valid envelope once addressed.
        let probe = Self::address(&c, "probe", "probe");
        envelope::check(probe, 0)
            .map_err(|e| FieldError::new(format!("message.{}", e.field), e.reason))?;
        if let Some(f) = &c.frequency {
            if f.max == 0 {
                return Err(FieldError::new("frequency.max", "must be at least 1"));
            }
            if f.per_s == Some(0) {
                return Err(FieldError::new("frequency.per_s", "must be at least 1"));
            }
        }
        if c.delay_s > 86_400 {
            return Err(FieldError::new("delay_s", "at most 86400"));
        }
        Ok(Self {
            campaign: c,
            audience,
            filter,
        })
    }

    fn address(c: &Campaign, user: &str, msg_id: &str) -> Envelope {
        let mut e = c.message.clone();
        e.id = Some(msg_id.to_owned());
        e.to = Some(serde_json::json!({ "users": [user] }));
        e.priority = c.priority;
        e.campaign = Some(c.id.clone());
        e
    }

    /// The message for one user, checked and ready to deliver.
    pub fn message_for(&self, user: &str) -> Option<Arc<Publish>> {
        let e = Self::address(&self.campaign, user, &envelope::new_id());
        match envelope::check(e, crate::auth::unix_now_ms()) {
            Ok(Command::Publish(p)) => Some(p),
            _ => None,
        }
    }

    fn fires_on(&self, what: &Occurrence, id: &Identity) -> bool {
        let t = &self.campaign.trigger;
        let trigger = match what {
            Occurrence::Connect => t.connect == Some(true),
            Occurrence::Idle { seconds } => t.idle_s == Some(*seconds),
            Occurrence::Event { name, props } => {
                t.event.as_deref() == Some(name.as_str())
                    && self.filter.as_ref().is_none_or(|f| {
                        f.eval(|ctx| {
                            ctx.add_variable_from_value(
                                "name",
                                cel::Value::String(Arc::new(name.clone())),
                            );
                            ctx.add_variable_from_value("props", props_to_cel(props));
                        })
                    })
            }
        };
        trigger && self.audience.matches(id)
    }
}

/// An event's `props` as the CEL map a trigger's `where` reads.
pub fn props_to_cel(props: &serde_json::Map<String, serde_json::Value>) -> cel::Value {
    cel::Value::Map(cel::objects::Map {
        map: Arc::new(
            props
                .iter()
                .map(|(k, v)| {
                    (
                        cel::objects::Key::String(Arc::new(k.clone())),
                        json_to_cel(v),
                    )
                })
                .collect(),
        ),
    })
}

fn json_to_cel(v: &serde_json::Value) -> cel::Value {
    use serde_json::Value as J;
    match v {
        J::Null => cel::Value::Null,
        J::Bool(b) => cel::Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => cel::Value::String(Arc::new(s.clone())),
        J::Array(a) => cel::Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        J::Object(o) => props_to_cel(o),
    }
}

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
    /// highest priority first (then by id, for a stable order).
    pub fn candidates(&self, what: &Occurrence, id: &Identity) -> Vec<Arc<Compiled>> {
        // CEL runs outside the lock: a change to the campaigns never waits
        // for a trigger's evaluation.
        let active: Vec<Arc<Compiled>> = self
            .read()
            .values()
            .filter(|c| c.campaign.active)
            .cloned()
            .collect();
        let mut v: Vec<Arc<Compiled>> = active
            .into_iter()
            .filter(|c| c.fires_on(what, id))
            .collect();
        v.sort_by(|a, b| {
            b.campaign
                .priority
                .cmp(&a.campaign.priority)
                .then_with(|| a.campaign.id.cmp(&b.campaign.id))
        });
        v
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Compiled>>> {
        self.by_id.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Compiled>>> {
        self.by_id.write().unwrap_or_else(|e| e.into_inner())
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
    /// waits on counters.
    pub fn fire(self: &Arc<Self>, session: Arc<Session>, what: Occurrence) {
        let candidates = self.registry.candidates(&what, &session.identity());
        if candidates.is_empty() {
            return;
        }
        let engine = self.clone();
        self.background.spawn("campaign", async move {
            engine.deliver_first_allowed(session, candidates).await
        });
    }

    /// At most one message per occurrence: the highest-priority campaign
    /// whose limits allow a display wins.
    async fn deliver_first_allowed(&self, session: Arc<Session>, candidates: Vec<Arc<Compiled>>) {
        let user = session.user.clone();
        for c in candidates {
            let Some(p) = c.message_for(&user) else {
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
            self.metrics
                .campaign_decisions
                .get_or_create(&crate::metrics::Reason { reason: label })
                .inc();
            match verdict {
                Ok(Verdict::Allowed) => {}
                Ok(verdict) => {
                    tracing::debug!(%user, campaign = %c.campaign.id, ?verdict, "campaign held back");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%user, campaign = %c.campaign.id, error = %e, "campaign counters unavailable");
                    return;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn campaign(v: serde_json::Value) -> Result<Compiled, FieldError> {
        Compiled::new(serde_json::from_value(v).expect("shape"), None)
    }

    #[test]
    fn the_spec_example_compiles() {
        let c = campaign(json!({
            "id": "upsell-export",
            "trigger": {"event": "feature_used", "where": "props.feature == \"export\""},
            "audience": {"where": "attrs.plan == \"free\""},
            "message": {"kind": "modal", "title": "Export more with Pro", "actions": [{"id": "upgrade", "label": "Upgrade", "url": "/billing"}]},
            "frequency": {"max": 2, "per_s": 604800, "until": "clicked"},
            "delay_s": 0, "priority": "normal", "active": true
        }))
        .expect("compiles");
        assert_eq!(c.campaign.id, "upsell-export");
        let p = c.message_for("u1").expect("message");
        assert_eq!(p.envelope.campaign.as_deref(), Some("upsell-export"));
        assert_eq!(p.audience.users().map(|u| u.len()), Some(1));
    }

    #[test]
    fn refusals_name_the_field() {
        let base = json!({"id": "c", "trigger": {"connect": true}, "message": {"kind": "toast", "title": "x"}});
        let with = |path: &str, v: serde_json::Value| {
            let mut c = base.clone();
            let mut cur = &mut c;
            let parts: Vec<&str> = path.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                cur = &mut cur[*p];
            }
            cur[parts[parts.len() - 1]] = v;
            campaign(c).err().map(|e| e.field)
        };
        assert_eq!(
            with("trigger", json!({"event": "x", "where": "props.a =="})),
            Some("trigger.where".into())
        );
        assert_eq!(
            with("trigger", json!({"event": "x", "connect": true})),
            Some("trigger".into())
        );
        assert_eq!(
            with("trigger", json!({"connect": true, "where": "true"})),
            Some("trigger.where".into())
        );
        assert_eq!(
            with("audience", json!({"where": "attrs.plan =="})),
            Some("audience.where".into())
        );
        assert_eq!(
            with("message", json!({"kind": "toast"})),
            Some("message.title".into())
        );
        assert_eq!(with("message.to", json!("all")), Some("message".into()));
        assert_eq!(
            with("frequency", json!({"max": 0})),
            Some("frequency.max".into())
        );
        assert_eq!(with("id", json!("bad id!")), Some("id".into()));
        assert_eq!(campaign(base).err(), None, "positive control");
    }
}
