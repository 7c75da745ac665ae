//! From a received envelope to frames in outboxes: the node's delivery step.
//!
//! Every path ends here: the HTTP API and CLI in embedded mode, and the Redis
//! subscriber in Redis mode. A message is serialized once here and the same
//! bytes are shared by every recipient on this node, unless it varies by
//! recipient (locales: once per locale; placeholders: once per recipient).
//!
//! The dispatcher also keeps what a node must remember about messages:
//! ids seen within the dedupe window (a repeated id is delivered once), the
//! audience of recent messages (so a retraction reaches the sessions that
//! had the message), and the active set (sticky and must-acknowledge
//! messages, replayed to sessions that connect while they are active).

use crate::audience::Audience;
use crate::auth::Identity;
use crate::envelope::{self, Action, Command, Envelope, Kind, Position, Priority, Publish};
use crate::error::FieldError;
use crate::events::{Delivered, Events, Record};
use crate::hub::outbox::Outgoing;
use crate::hub::{Hub, Target};
use crate::metrics::{Metrics, Source};
use crate::protocol::{AckStatus, ServerFrame};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a message came from on the bus, which bounds whom it may reach.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// The broadcast channel, or a local publish: the audience decides.
    Broadcast,
    /// A per-user channel: only that user's sessions, if the audience agrees.
    User(&'a str),
}

/// Why a frame is sent, as the `reason` field says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Push,
    Sticky,
    Replay,
    Trigger,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Sticky => "sticky",
            Self::Replay => "replay",
            Self::Trigger => "trigger",
        }
    }
}

/// Ids seen recently, and the messages behind them, for a bounded window.
struct Recent {
    window: Duration,
    capacity: usize,
    seen: HashSet<String>,
    messages: HashMap<String, Arc<Publish>>,
    order: VecDeque<(Instant, String, bool)>,
}

impl Recent {
    fn prune(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.order.front() {
            if now.duration_since(*at) < self.window && self.order.len() <= self.capacity {
                break;
            }
            if let Some((_, key, is_message)) = self.order.pop_front() {
                if is_message {
                    self.messages.remove(&key);
                } else {
                    self.seen.remove(&key);
                }
            }
        }
    }

    /// True the first time `key` is seen within the window.
    fn first(&mut self, key: String, now: Instant) -> bool {
        self.prune(now);
        if self.seen.contains(&key) {
            return false;
        }
        self.seen.insert(key.clone());
        self.order.push_back((now, key, false));
        true
    }

    fn remember(&mut self, p: &Arc<Publish>, now: Instant) {
        let id = p.id().to_owned();
        if self.messages.insert(id.clone(), p.clone()).is_none() {
            self.order.push_back((now, id, true));
        }
    }
}

/// Sticky and must-acknowledge messages still active, by id, with the
/// `collapse_key` index that lets a new message replace the old one.
#[derive(Default)]
pub struct ActiveSet {
    by_id: HashMap<String, Arc<Publish>>,
    by_collapse: HashMap<String, String>,
    /// Embedded mode: users who acknowledged each must-acknowledge message,
    /// kept exactly as long as the message. (With Redis, acknowledgements
    /// live in Redis, shared by every node.)
    acked: HashMap<String, HashSet<Arc<str>>>,
}

impl ActiveSet {
    /// Adds a message; returns the id it replaced by `collapse_key`.
    fn put(&mut self, p: Arc<Publish>) -> Option<String> {
        let id = p.id().to_owned();
        let mut replaced = None;
        if let Some(key) = &p.envelope.collapse_key
            && let Some(old) = self.by_collapse.insert(key.clone(), id.clone())
            && old != id
        {
            self.by_id.remove(&old);
            self.acked.remove(&old);
            replaced = Some(old);
        }
        self.by_id.insert(id, p);
        replaced
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Publish>> {
        self.acked.remove(id);
        let p = self.by_id.remove(id)?;
        if let Some(key) = &p.envelope.collapse_key
            && self.by_collapse.get(key).is_some_and(|v| v == id)
        {
            self.by_collapse.remove(key);
        }
        Some(p)
    }

    fn purge(&mut self, now_ms: u64) {
        let expired: Vec<String> = self
            .by_id
            .values()
            .filter(|p| p.expired(now_ms))
            .map(|p| p.id().to_owned())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }

    /// The messages `keep` accepts, by id.
    fn sorted(&self, keep: impl Fn(&Publish) -> bool) -> Vec<Arc<Publish>> {
        let mut list: Vec<_> = self.by_id.values().filter(|p| keep(p)).cloned().collect();
        list.sort_by(|a, b| a.id().cmp(b.id()));
        list
    }
}

pub struct Dispatcher {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    events: Arc<Events>,
    max_envelope_bytes: usize,
    everyone: Audience,
    recent: Mutex<Recent>,
    active: Mutex<ActiveSet>,
}

/// What a received envelope turned out to be, for the bus to act on.
pub struct Received {
    pub command: Command,
    pub delivered: usize,
}

impl Dispatcher {
    pub fn new(
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        events: Arc<Events>,
        max_envelope_bytes: usize,
        dedupe_window: Duration,
    ) -> Self {
        let everyone = Audience::compile(&serde_json::Value::String("all".into()))
            .unwrap_or_else(|_| unreachable!("\"all\" always compiles"));
        Self {
            hub,
            metrics,
            events,
            max_envelope_bytes,
            everyone,
            recent: Mutex::new(Recent {
                window: dedupe_window,
                capacity: 100_000,
                seen: HashSet::new(),
                messages: HashMap::new(),
                order: VecDeque::new(),
            }),
            active: Mutex::new(ActiveSet::default()),
        }
    }

    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// Parses, checks and delivers an envelope received from the bus.
    /// A refused envelope is counted and logged here; the caller records it
    /// in the `dead` stream.
    pub fn receive(
        &self,
        source: &'static str,
        route: Route<'_>,
        payload: &[u8],
    ) -> Result<Received, FieldError> {
        let born = Instant::now();
        match envelope::parse(payload, self.max_envelope_bytes, crate::auth::unix_now_ms()) {
            Ok(command) => {
                self.metrics
                    .messages
                    .get_or_create(&Source { source })
                    .inc();
                let delivered = self.apply(&command, route, born);
                Ok(Received { command, delivered })
            }
            Err(e) => {
                self.metrics
                    .invalid_envelopes
                    .get_or_create(&Source { source })
                    .inc();
                tracing::warn!(source, error = %e, "envelope refused");
                Err(e)
            }
        }
    }

    /// Delivers a checked command to the matching sessions on this node.
    pub fn apply(&self, cmd: &Command, route: Route<'_>, born: Instant) -> usize {
        match cmd {
            Command::Publish(p) => self.publish(p, route, born),
            Command::Retract { id, pos } => {
                self.retract(id, crate::history::seq_of_pos(pos.as_deref()), born)
            }
            // Reloading the campaign is the bus's job; nothing to deliver.
            Command::Campaign { .. } => 0,
            Command::Disconnect { users } => match route {
                Route::User(u) => self.hub.disconnect_user(u),
                Route::Broadcast => users.iter().map(|u| self.hub.disconnect_user(u)).sum(),
            },
        }
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, ActiveSet> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, p: &Arc<Publish>, route: Route<'_>, born: Instant) -> usize {
        let now_ms = crate::auth::unix_now_ms();
        if p.expired(now_ms) {
            self.metrics.drop_reason("expired");
            self.events.emit(Record::expired(p));
            return 0;
        }
        let key = match route {
            Route::Broadcast => p.id().to_owned(),
            Route::User(u) => format!("{}\u{0}{u}", p.id()),
        };
        let now = Instant::now();
        {
            let mut recent = self.lock_recent();
            if !recent.first(key, now) {
                drop(recent);
                self.metrics.drop_reason("duplicate");
                return 0;
            }
            recent.remember(p, now);
        }
        if p.persistent() {
            let mut active = self.lock_active();
            active.purge(now_ms);
            active.put(p.clone());
        }
        let target = match (route, p.audience.users()) {
            (Route::User(u), _) => Target::User(u),
            (Route::Broadcast, Some(users)) => Target::Users(users),
            (Route::Broadcast, None) => Target::Everyone,
        };
        let n = self.deliver(p, target, born);
        tracing::debug!(msg_id = p.id(), delivered = n, "message delivered");
        n
    }

    /// Pushes `p` to the sessions in `target` its audience matches,
    /// rendering once per node, per locale, or per recipient as the message
    /// requires.
    fn deliver(&self, p: &Publish, target: Target<'_>, born: Instant) -> usize {
        let seq = crate::history::seq_of(p);
        let encode = |locale: Option<&str>, id: Option<&Identity>| {
            Outgoing::text(&msg_frame(&p.envelope, locale, id, Reason::Push), born, seq)
        };
        let shared = (!p.varies()).then(|| encode(None, None));
        let mut per_locale: HashMap<Option<Box<str>>, Outgoing> = HashMap::new();
        // Named users: one record per session reached. Broadcast audiences:
        // one record per node with the count, so a fan-out to thousands does
        // not turn into thousands of stream entries.
        let per_session = self.events.record_deliveries && p.audience.users().is_some();
        let delivered = self.hub.deliver(
            target,
            &p.audience,
            |s| match &shared {
                Some(frame) => frame.clone(),
                None if p.personalized => {
                    let id = s.identity();
                    encode(id.locale.as_deref(), Some(&id))
                }
                None => {
                    let locale = s.identity().locale.clone();
                    per_locale
                        .entry(locale)
                        .or_insert_with_key(|l| encode(l.as_deref(), None))
                        .clone()
                }
            },
            |s| {
                if per_session {
                    self.record_delivery(p, s);
                }
            },
        );
        if self.events.record_deliveries && !per_session && delivered > 0 {
            self.events
                .emit(Record::delivered(p, Delivered::Count(delivered)));
        }
        delivered
    }

    fn record_delivery(&self, p: &Publish, s: &crate::hub::Session) {
        let sid = self.hub.sid_text(s.sid);
        self.events.emit(Record::delivered(
            p,
            Delivered::Session {
                user: &s.user,
                sid: &sid,
            },
        ));
    }

    /// Sends the `retract` frame to the sessions the message could have
    /// reached (every session when this node does not know the message) and
    /// forgets it, so that sessions connecting later do not get it.
    /// `seq`: the retraction's history sequence (0: none).
    fn retract(&self, id: &str, seq: u64, born: Instant) -> usize {
        let known = self
            .lock_active()
            .remove(id)
            .or_else(|| self.lock_recent().messages.get(id).cloned());
        let retract = Outgoing::text(&ServerFrame::Retract { id }.to_json(), born, seq);
        let frame = |_: &crate::hub::Session| retract.clone();
        match &known {
            Some(p) => {
                let target = p.audience.users().map_or(Target::Everyone, Target::Users);
                self.hub.deliver(target, &p.audience, frame, |_| {})
            }
            None => self
                .hub
                .deliver(Target::Everyone, &self.everyone, frame, |_| {}),
        }
    }

    /// Active messages known to this node, not expired (the sticky set).
    pub fn active(&self) -> Vec<Arc<Publish>> {
        let mut active = self.lock_active();
        active.purge(crate::auth::unix_now_ms());
        active.sorted(|_| true)
    }

    /// Replaces the active set (after loading it from Redis).
    pub fn load_active(&self, messages: Vec<Arc<Publish>>) {
        let mut active = self.lock_active();
        *active = ActiveSet::default();
        let now_ms = crate::auth::unix_now_ms();
        for p in messages.into_iter().filter(|p| !p.expired(now_ms)) {
            active.put(p);
        }
    }

    /// Active messages for a session that just connected: those whose
    /// audience it matches, without the must-acknowledge ones its user
    /// acknowledged (as far as this node knows; Redis mode checks further).
    pub fn active_for(&self, id: &Identity) -> Vec<Arc<Publish>> {
        let unacked = {
            let mut active = self.lock_active();
            active.purge(crate::auth::unix_now_ms());
            active.sorted(|p| {
                !(p.envelope.require_ack
                    && active
                        .acked
                        .get(p.id())
                        .is_some_and(|users| users.contains(&id.user)))
            })
        };
        // Audiences (CEL) are evaluated without holding the set.
        unacked
            .into_iter()
            .filter(|p| p.audience.matches(id))
            .collect()
    }

    /// What a session that just connected receives before anything live:
    /// the messages it missed (reason `replay`), then the active messages
    /// (reason `sticky`) it did not just get in the replay.
    /// Retractions recorded after the client's position close the list: it
    /// may have shown those messages before it left.
    pub fn connect_frames(
        &self,
        session: &crate::hub::Session,
        missed: &[Arc<Publish>],
        retracted: &[String],
        active: &[Arc<Publish>],
    ) -> Vec<Outgoing> {
        let born = Instant::now();
        let replayed: HashSet<&str> = missed.iter().map(|p| p.id()).collect();
        let missed = missed.iter().map(|p| (p, Reason::Replay));
        let active = active
            .iter()
            .filter(|p| !replayed.contains(p.id()))
            .map(|p| (p, Reason::Sticky));
        missed
            .chain(active)
            .map(|(p, reason)| {
                let id = session.identity();
                let json = msg_frame(&p.envelope, id.locale.as_deref(), Some(&id), reason);
                // Replayed frames are the reference, never dropped as duplicates.
                Outgoing::text(&json, born, 0)
            })
            .chain(
                retracted
                    .iter()
                    .map(|id| Outgoing::text(&ServerFrame::Retract { id }.to_json(), born, 0)),
            )
            .collect()
    }

    /// Delivers one message to one session (a campaign's), remembering it
    /// so that acks find its campaign and a retraction finds the session.
    pub fn deliver_to(&self, session: &crate::hub::Session, p: &Arc<Publish>, reason: Reason) {
        self.lock_recent().remember(p, Instant::now());
        let json = {
            let id = session.identity();
            msg_frame(&p.envelope, id.locale.as_deref(), Some(&id), reason)
        };
        let frame = Outgoing::text(&json, Instant::now(), crate::history::seq_of(p));
        if self.hub.push_to(session, frame) == crate::hub::outbox::Pushed::Queued {
            self.metrics.deliveries.inc();
            if self.events.record_deliveries {
                self.record_delivery(p, session);
            }
        }
    }

    /// Embedded mode: the user clicked or dismissed a message; a
    /// must-acknowledge one is not sent to them again. (With Redis this
    /// state lives in Redis, shared by every node.)
    pub fn acknowledge(&self, id: &str, user: &Arc<str>) {
        let mut active = self.lock_active();
        if active.by_id.get(id).is_some_and(|p| p.envelope.require_ack) {
            active
                .acked
                .entry(id.to_owned())
                .or_default()
                .insert(user.clone());
        }
    }

    /// The campaign of a message this node delivered or holds active.
    pub fn campaign_of(&self, id: &str) -> Option<String> {
        let active = self
            .lock_active()
            .by_id
            .get(id)
            .and_then(|p| p.envelope.campaign.clone());
        active.or_else(|| {
            self.lock_recent()
                .messages
                .get(id)
                .and_then(|p| p.envelope.campaign.clone())
        })
    }

    /// Records an acknowledgement in the events stream. Returns the
    /// message's campaign, when this node knows it.
    pub fn on_ack(
        &self,
        user: &Arc<str>,
        sid: &str,
        id: &str,
        status: AckStatus,
        action: Option<&str>,
    ) -> Option<String> {
        let campaign = self.campaign_of(id);
        self.events.emit(
            Record::ack(status.as_str(), id, user, sid)
                .with_opt("action", action)
                .with_opt("campaign", campaign.as_deref()),
        );
        campaign
    }
}

/// The `msg` frame: the envelope's content fields, without `to`, `op` and
/// `fallback`, plus `pos` and `reason`.
#[derive(Serialize)]
struct MsgFrame<'a> {
    t: &'static str,
    id: &'a str,
    kind: Option<Kind>,
    priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    actions: &'a [Action],
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anchor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    theme: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    sticky: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    collapse_key: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    require_ack: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pos: Option<&'a str>,
    reason: &'a str,
}

/// Serializes a `msg` frame for a recipient's locale, filling placeholders
/// from `identity` when one is given.
pub fn msg_frame(
    e: &Envelope,
    locale: Option<&str>,
    identity: Option<&Identity>,
    reason: Reason,
) -> String {
    let rendered = (e.locales.is_some() || identity.is_some()).then(|| e.content(locale, identity));
    let (title, body, actions) = match &rendered {
        Some((title, body, actions)) => (title.as_deref(), body.as_deref(), &actions[..]),
        None => (e.title.as_deref(), e.body.as_deref(), &e.actions[..]),
    };
    let frame = MsgFrame {
        t: "msg",
        id: e.id.as_deref().unwrap_or_default(),
        kind: e.kind,
        priority: e.priority,
        title,
        body,
        image_url: e.image_url.as_deref(),
        actions,
        position: e.position,
        anchor: e.anchor.as_deref(),
        theme: e.theme.as_ref(),
        data: e.data.as_ref(),
        expires_at: e.expires_at,
        sticky: e.sticky,
        collapse_key: e.collapse_key.as_deref(),
        require_ack: e.require_ack,
        campaign: e.campaign.as_deref(),
        pos: e.pos.as_deref(),
        reason: reason.as_str(),
    };
    serde_json::to_string(&frame).unwrap_or_default()
}
