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
use crate::envelope::{self, Command, Publish};
use crate::error::FieldError;
use crate::events::{Delivered, Events, Record};
use crate::hub::outbox::{Outgoing, Pushed};
use crate::hub::{Hub, Target};
use crate::logs::Repeated;
use crate::metrics::{Metrics, Source};
use crate::protocol::{AckStatus, ServerFrame};
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

mod active;
mod fanout;
mod frame;
mod recent;
mod slices;

use active::ActiveSet;
use fanout::{Frames, Reached};
pub use frame::{Reason, msg_frame};
use recent::Recent;
use slices::{Job, Slices};

/// Users publishes parsed lately, kept to recognise the copies that arrive
/// on this node's other user channels.
const PARSED_KEPT: usize = 64;

/// A users publish arrives once per user channel the node holds, the same
/// payload each time: it is parsed, checked and serialized once per node.
struct Parsed {
    hash: u64,
    payload: Box<[u8]>,
    publish: Arc<Publish>,
    frame: std::sync::OnceLock<Outgoing>,
}

fn hash_of(payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

pub struct Dispatcher {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    events: Arc<Events>,
    max_envelope_bytes: usize,
    /// `sdk.allowed_link_schemes`: app links in actions beside http(s).
    link_schemes: Vec<String>,
    everyone: Audience,
    recent: Mutex<Recent>,
    active: Mutex<ActiveSet>,
    parsed: Mutex<VecDeque<Arc<Parsed>>>,
    slices: Slices,
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
        let slices = Slices::new(metrics.audience_pending.clone());
        Self {
            hub,
            metrics,
            events,
            max_envelope_bytes,
            link_schemes: Vec::new(),
            everyone,
            recent: Mutex::new(Recent {
                window: dedupe_window,
                capacity: 100_000,
                seen: HashSet::new(),
                messages: HashMap::new(),
                order: VecDeque::new(),
            }),
            active: Mutex::new(ActiveSet::default()),
            parsed: Mutex::new(VecDeque::new()),
            slices,
        }
    }

    /// Evaluates queued broadcasts in slices until `stop`, then finishes
    /// what is still queued (see `slices.rs`). Without this task running,
    /// every audience is evaluated where the message is received.
    pub async fn run_slices(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        self.slices.set_running(true);
        tokio::pin!(stop);
        loop {
            while let Some(job) = self.slices.pop() {
                self.run_job(job, true).await;
                self.slices.done();
            }
            tokio::select! {
                () = &mut stop => break,
                () = self.slices.work() => {}
            }
        }
        self.slices.set_running(false);
        while let Some(job) = self.slices.pop() {
            self.run_job(job, false).await;
            self.slices.done();
        }
    }

    /// Waits while the queue of broadcasts being evaluated in slices is
    /// full: the bus calls it before handing over the next message.
    pub async fn room(&self) {
        self.slices.room().await
    }

    /// Delivers one queued job over a snapshot of the sessions, a slice at
    /// a time, yielding between slices when `yielding`.
    async fn run_job(&self, job: Job, yielding: bool) {
        let sessions = self.hub.snapshot();
        let mut delivered = 0;
        match job {
            Job::Publish { p, born } => {
                // First in line: what it reaches may keep its position.
                let mut frames = Frames::new(&p, born, None, true);
                let mut reached = Reached::new(self, &p);
                for slice in sessions.chunks(slices::SLICE) {
                    delivered += self.hub.deliver_to(
                        slice,
                        &p.audience,
                        |s| frames.for_session(s),
                        |s| reached.add(self, &p, s),
                    );
                    if yielding {
                        tokio::task::yield_now().await;
                    }
                }
                reached.finish(self, &p, delivered);
                tracing::debug!(msg_id = p.id(), delivered, "message delivered in slices");
            }
            Job::Retract { known, frame } => {
                let audience = known.as_ref().map_or(&self.everyone, |p| &p.audience);
                for slice in sessions.chunks(slices::SLICE) {
                    self.hub
                        .deliver_to(slice, audience, |_| frame.clone(), |_| {});
                    if yielding {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    }

    /// Allows action links with these app schemes (normalized names).
    pub fn with_link_schemes(mut self, schemes: Vec<String>) -> Self {
        self.link_schemes = schemes;
        self
    }

    /// The app schemes action links may use on this node.
    pub fn link_schemes(&self) -> &[String] {
        &self.link_schemes
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
        let hash = matches!(route, Route::User(_)).then(|| hash_of(payload));
        if let Some(hit) = hash.and_then(|h| self.parsed_before(h, payload)) {
            self.metrics
                .messages
                .get_or_create(&Source { source })
                .inc();
            let delivered = self.publish(&hit.publish, route, born, Some(&hit.frame));
            return Ok(Received {
                command: Command::Publish(hit.publish.clone()),
                delivered,
            });
        }
        let parsed = envelope::parse(payload, self.max_envelope_bytes, crate::auth::unix_now_ms())
            .and_then(|command| match &command {
                Command::Publish(p) => p.envelope.check_links(&self.link_schemes).map(|()| command),
                _ => Ok(command),
            });
        match parsed {
            Ok(command) => {
                self.metrics
                    .messages
                    .get_or_create(&Source { source })
                    .inc();
                let delivered = match (&command, hash) {
                    // Named users: the same payload comes on each user's channel.
                    (Command::Publish(p), Some(hash))
                        if p.audience.users().is_some_and(|u| u.len() > 1) =>
                    {
                        let parsed = self.keep_parsed(hash, payload, p);
                        self.publish(p, route, born, Some(&parsed.frame))
                    }
                    _ => self.apply(&command, route, born),
                };
                Ok(Received { command, delivered })
            }
            Err(e) => {
                self.metrics
                    .invalid_envelopes
                    .get_or_create(&Source { source })
                    .inc();
                static REFUSED: Repeated = Repeated::new("envelope refused");
                if REFUSED.first(|| format!("source={source} error={e}")) {
                    tracing::warn!(source, error = %e, "envelope refused");
                }
                Err(e)
            }
        }
    }

    /// Delivers a checked command to the matching sessions on this node.
    pub fn apply(&self, cmd: &Command, route: Route<'_>, born: Instant) -> usize {
        match cmd {
            Command::Publish(p) => self.publish(p, route, born, None),
            Command::Retract { id, pos, except } => {
                let seq = crate::history::seq_of_pos(pos.as_deref());
                match route {
                    // On a user's channel: that user acknowledged it
                    // elsewhere (SPEC §10.1); only their sessions drop it.
                    Route::User(u) => self.retract_for(u, id, seq, born, except.as_deref()),
                    Route::Broadcast => self.retract(id, seq, born),
                }
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

    /// The message for the payload of a users publish received before.
    fn parsed_before(&self, hash: u64, payload: &[u8]) -> Option<Arc<Parsed>> {
        self.lock_parsed()
            .iter()
            .find(|p| p.hash == hash && *p.payload == *payload)
            .cloned()
    }

    fn keep_parsed(&self, hash: u64, payload: &[u8], p: &Arc<Publish>) -> Arc<Parsed> {
        let parsed = Arc::new(Parsed {
            hash,
            payload: payload.into(),
            publish: p.clone(),
            frame: std::sync::OnceLock::new(),
        });
        let mut cache = self.lock_parsed();
        if cache.len() >= PARSED_KEPT {
            cache.pop_front();
        }
        cache.push_back(parsed.clone());
        parsed
    }

    fn lock_parsed(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Parsed>>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(
        &self,
        p: &Arc<Publish>,
        route: Route<'_>,
        born: Instant,
        frame: Option<&std::sync::OnceLock<Outgoing>>,
    ) -> usize {
        let now_ms = crate::auth::unix_now_ms();
        if p.expired(now_ms) {
            self.metrics.drop_reason("expired");
            let mut record = Record::expired(p);
            // On a user's channel, the trace entry is that user's only.
            if let Route::User(u) = route {
                record.users = vec![Arc::from(u)];
            }
            self.events.emit(record);
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
        if matches!(target, Target::Everyone)
            && self.slices.running()
            && (p.audience.evaluates() || self.slices.busy())
        {
            self.slices.push(Job::Publish { p: p.clone(), born });
            return 0;
        }
        let n = self.deliver(p, target, born, frame);
        tracing::debug!(msg_id = p.id(), delivered = n, "message delivered");
        n
    }

    /// Pushes `p` to the sessions in `target` its audience matches,
    /// rendering once per node, per locale, or per recipient as the message
    /// requires.
    fn deliver(
        &self,
        p: &Publish,
        target: Target<'_>,
        born: Instant,
        frame: Option<&std::sync::OnceLock<Outgoing>>,
    ) -> usize {
        // Overtaking a broadcast still being evaluated: no position.
        let with_pos = !self.slices.busy();
        let mut frames = Frames::new(p, born, frame.filter(|_| with_pos), with_pos);
        let mut reached = Reached::new(self, p);
        let delivered = self.hub.deliver(
            target,
            &p.audience,
            |s| frames.for_session(s),
            |s| reached.add(self, p, s),
        );
        reached.finish(self, p, delivered);
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
        // A broadcast's retraction goes behind the broadcasts being
        // evaluated (it may be one of them), and is itself evaluated in
        // slices when its audience costs. Named users' messages never queue.
        let named = known.as_ref().is_some_and(|p| p.audience.users().is_some());
        let costs = known.as_ref().is_some_and(|p| p.audience.evaluates());
        if self.slices.running() && !named && (self.slices.busy() || costs) {
            self.slices.push(Job::Retract {
                known,
                frame: retract,
            });
            return 0;
        }
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

    /// Sends the `retract` frame to one user's sessions on this node but
    /// `except` (the session that acknowledged, as `node.sid`): the user
    /// clicked or dismissed the message there. It stays for everyone else.
    pub fn retract_for(
        &self,
        user: &str,
        id: &str,
        seq: u64,
        born: Instant,
        except: Option<&str>,
    ) -> usize {
        let retract = Outgoing::text(&ServerFrame::Retract { id }.to_json(), born, seq);
        let skip = except.and_then(|sid| self.hub.local_sid(sid));
        let mut n = 0;
        self.hub.for_each_of_user(user, |s| {
            if Some(s.sid) != skip && self.hub.push_to(s, retract.clone()) == Pushed::Queued {
                n += 1;
            }
        });
        n
    }

    /// Whether a `dismissed` ack acknowledges this message (`None`: this
    /// node does not know it; the ack counts).
    pub fn dismissible(&self, id: &str) -> Option<bool> {
        let active = self
            .lock_active()
            .by_id
            .get(id)
            .map(|p| p.envelope.dismissible());
        active.or_else(|| {
            self.lock_recent()
                .messages
                .get(id)
                .map(|p| p.envelope.dismissible())
        })
    }

    /// Whether `user` acknowledged this active message (embedded mode).
    pub fn acknowledged_by(&self, id: &str, user: &str) -> bool {
        self.lock_active()
            .acked
            .get(id)
            .is_some_and(|users| users.contains(user))
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
    /// audience it matches, without the ones its user clicked or dismissed
    /// (as far as this node knows; Redis mode checks further).
    pub fn active_for(&self, id: &Identity) -> Vec<Arc<Publish>> {
        let (unacked, acked) = {
            let mut active = self.lock_active();
            active.purge(crate::auth::unix_now_ms());
            let was_acked = |p: &Publish| {
                active
                    .acked
                    .get(p.id())
                    .is_some_and(|users| users.contains(&id.user))
            };
            (
                active.sorted(|p| !was_acked(p)),
                active.sorted(|p| was_acked(p)),
            )
        };
        for p in acked.iter().filter(|p| p.audience.matches(id)) {
            self.events.emit(Record::dismissed_before(p, &id.user));
        }
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

    /// Embedded mode: the user clicked or dismissed an active message; it
    /// is not sent to them again, for as long as it is active (the mark
    /// leaves with the message). Returns whether the message was active.
    /// (With Redis this state lives in Redis, shared by every node.)
    pub fn acknowledge(&self, id: &str, user: &Arc<str>) -> bool {
        let mut active = self.lock_active();
        if !active.by_id.contains_key(id) {
            return false;
        }
        active
            .acked
            .entry(id.to_owned())
            .or_default()
            .insert(user.clone());
        true
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

    /// The campaign and variant of a message this node delivered or holds active.
    fn tags_of(&self, id: &str) -> (Option<String>, Option<String>) {
        let tags = |p: &Arc<Publish>| (p.envelope.campaign.clone(), p.envelope.variant.clone());
        let active = self.lock_active().by_id.get(id).map(tags);
        active
            .or_else(|| self.lock_recent().messages.get(id).map(tags))
            .unwrap_or_default()
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
        let (campaign, variant) = self.tags_of(id);
        self.events.emit(
            Record::ack(status.as_str(), id, user, sid)
                .with_opt("action", action)
                .with_opt("campaign", campaign.as_deref())
                .with_opt("variant", variant.as_deref()),
        );
        campaign
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Limits, outbox::Capacity};

    fn identity(user: &str) -> Identity {
        Identity {
            user: Arc::from(user),
            segments: Box::new([]),
            attrs: cel::Value::Map(cel::objects::Map {
                map: Arc::new(Default::default()),
            }),
            exp: u64::MAX,
            locale: None,
        }
    }

    #[test]
    fn a_users_publish_is_parsed_and_serialized_once_per_node() {
        let metrics = Arc::new(Metrics::default());
        let limits = Limits {
            max_sessions: 10,
            per_user: 4,
            per_ip: 10,
            queue: Capacity {
                frames: 8,
                bytes: 1 << 20,
            },
        };
        let hub = Arc::new(Hub::new("n".into(), limits, metrics.clone(), None));
        let events = Arc::new(Events::new(
            "n".into(),
            true,
            false,
            16,
            16,
            metrics.clone(),
        ));
        let d = Dispatcher::new(hub.clone(), metrics, events, 65536, Duration::from_secs(60));
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let regs: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|u| hub.register(identity(u), ip).expect("registered"))
            .collect();
        let payload = br#"{"id":"m","to":{"users":["a","b","c"]},"kind":"toast","title":"hi"}"#;
        // As Redis hands it over: once per user channel this node holds.
        for u in ["a", "b", "c"] {
            let r = d
                .receive("redis", Route::User(u), payload)
                .expect("accepted");
            assert_eq!(r.delivered, 1, "to {u}");
        }
        let frames: Vec<Outgoing> = regs
            .iter()
            .map(|r| r.session.outbox.drain().0.pop_front().expect("a frame"))
            .collect();
        // One serialization: every session got the same bytes.
        assert!(
            frames
                .windows(2)
                .all(|w| w[0].bytes().as_ptr() == w[1].bytes().as_ptr())
        );
        // A different payload is parsed on its own (positive control).
        let other = br#"{"id":"m2","to":{"users":["a","b"]},"kind":"toast","title":"hi"}"#;
        d.receive("redis", Route::User("a"), other)
            .expect("accepted");
        let next = regs[0]
            .session
            .outbox
            .drain()
            .0
            .pop_front()
            .expect("a frame");
        assert_ne!(next.bytes().as_ptr(), frames[0].bytes().as_ptr());
    }
}
