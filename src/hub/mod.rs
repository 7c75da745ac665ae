//! The session registry and fan-out. Synchronous: nothing here awaits, and no
//! map guard is ever held across an `.await` (the session loop awaits; the hub
//! only pushes into outboxes).
//!
//! Maps: `sessions` (sid to session) for broadcasts, `users` (user to sids)
//! for targeted delivery and per-user limits, `ips` for per-address limits.
//! Entries are removed when their last session leaves, so nothing only grows.

pub mod outbox;

use crate::audience::Audience;
use crate::auth::Identity;
use crate::metrics::Metrics;
use crate::protocol::Close;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use outbox::{Outbox, Outgoing, Pushed};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Limits the hub enforces at registration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_sessions: usize,
    pub per_user: usize,
    pub per_ip: usize,
    /// Outbox capacity of every session.
    pub queue: outbox::Capacity,
}

/// A live session as the hub sees it.
pub struct Session {
    pub sid: u64,
    /// The token's `sub`: fixed for the session's life.
    pub user: Arc<str>,
    /// Where `user` lands in a distinct-users sketch (computed once: a
    /// broadcast counting its recipients reads this, not the string).
    pub user_place: crate::sketch::Place,
    /// Segments, attributes, expiry and locale: replaced when the client
    /// refreshes its token (SPEC §10.2), read by every delivery.
    identity: std::sync::RwLock<Identity>,
    pub ip: IpAddr,
    pub outbox: Outbox,
    /// When the session next has something to do on its own (a ping, its
    /// token's expiry, an idle campaign), in ms since the hub's epoch
    /// ([`Hub::wake_at`]); `u64::MAX`: nothing. The hub's one ticker wakes it then, instead of a
    /// timer in every session.
    wake_at: AtomicU64,
    /// The connection chose its locale (`?locale=`): it outranks the
    /// locale of every refreshed token.
    locale_pinned: AtomicBool,
}

impl Session {
    /// The session's current identity (held briefly: deliveries read it).
    pub fn identity(&self) -> std::sync::RwLockReadGuard<'_, Identity> {
        self.identity.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the identity after a token refresh; the user stays, and so
    /// does a locale the connection chose ([`Session::pin_locale`]).
    pub fn refresh(&self, mut identity: Identity) {
        debug_assert_eq!(identity.user, self.user);
        let mut current = self.identity.write().unwrap_or_else(|e| e.into_inner());
        if self.locale_pinned.load(Ordering::Relaxed) {
            identity.locale = current.locale.take();
        }
        *current = identity;
    }

    /// Keeps the identity's current locale across refreshes (a locale
    /// chosen on the connection outranks the token's).
    pub fn pin_locale(&self) {
        self.locale_pinned.store(true, Ordering::Relaxed);
    }
}

/// Why a connection was refused before the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("node is draining; reconnect to another node")]
    Draining,
    #[error("node is at capacity")]
    OverCapacity,
    #[error("too many connections for this user")]
    TooManyForUser,
    #[error("too many connections from this address")]
    TooManyForAddress,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Self::Draining | Self::OverCapacity => 503,
            Self::TooManyForUser | Self::TooManyForAddress => 429,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::OverCapacity => "over_capacity",
            Self::TooManyForUser => "user_limit",
            Self::TooManyForAddress => "address_limit",
        }
    }
}

/// Which sessions a delivery considers before the audience filter.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Every session on this node.
    Everyone,
    /// The sessions of one user (a per-user channel).
    User(&'a str),
    /// The sessions of these users.
    Users(&'a [Arc<str>]),
}

/// Users whose session count changed, for the bus to mirror in Redis
/// (per-user subscriptions and presence). Coalescing: a user appears once
/// however often it changed, so this is bounded by the number of users.
#[derive(Default)]
pub struct UserChanges {
    pending: Mutex<HashSet<Arc<str>>>,
    pub notify: Notify,
}

impl UserChanges {
    fn mark(&self, user: &Arc<str>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let first = p.is_empty();
        p.insert(user.clone());
        drop(p);
        if first {
            self.notify.notify_one();
        }
    }

    pub fn take(&self) -> HashSet<Arc<str>> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub struct Hub {
    node: String,
    limits: Limits,
    sessions: DashMap<u64, Arc<Session>>,
    /// A user's sids, inline up to two (no allocation per user).
    users: DashMap<Arc<str>, smallvec::SmallVec<[u64; 2]>>,
    ips: DashMap<IpAddr, u32>,
    count: AtomicUsize,
    next_sid: AtomicU64,
    draining: AtomicBool,
    empty: Notify,
    /// Present when a bus mirrors users into Redis; embedded mode has none,
    /// so nothing accumulates there.
    changes: Option<Arc<UserChanges>>,
    metrics: Arc<Metrics>,
    /// Where the sessions' wake-up times count from.
    epoch: tokio::time::Instant,
}

/// A registered session. Dropping it unregisters the session, keyed on its
/// own sid, on every exit path (including a failed upgrade).
pub struct Registration {
    hub: Arc<Hub>,
    pub session: Arc<Session>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.session);
    }
}

impl Hub {
    pub fn new(
        node: String,
        limits: Limits,
        metrics: Arc<Metrics>,
        changes: Option<Arc<UserChanges>>,
    ) -> Self {
        Self {
            node,
            limits,
            sessions: DashMap::new(),
            users: DashMap::new(),
            ips: DashMap::new(),
            count: AtomicUsize::new(0),
            next_sid: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            empty: Notify::new(),
            changes,
            metrics,
            epoch: tokio::time::Instant::now(),
        }
    }

    /// Asks the ticker to wake `session` at `at_ms` ([`Hub::now_ms`]'s
    /// clock), replacing any earlier request: see [`Hub::run_ticker`].
    pub fn wake_at(&self, session: &Session, at_ms: u64) {
        session
            .wake_at
            .store(at_ms.min(u64::MAX - 1), Ordering::Release);
    }

    /// Now, in ms since the hub's epoch: the clock of sessions' own
    /// deadlines (8 bytes each in every session, where an `Instant` is 16).
    pub fn now_ms(&self) -> u64 {
        self.ms(tokio::time::Instant::now())
    }

    /// `at` in ms since the hub's epoch; never `u64::MAX` (which means
    /// "nothing to wake for").
    fn ms(&self, at: tokio::time::Instant) -> u64 {
        let ms = at.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX).min(u64::MAX - 1)
    }

    /// Every `every`, wakes the sessions whose wake-up time has come (with
    /// [`Outbox::tick`]), until `shutdown`. One walk over the sessions per
    /// tick replaces a timer per session: 112 bytes of every idle session's
    /// state, and its registration in the runtime's timer wheel. A session
    /// is woken at most `every` late.
    pub async fn run_ticker(
        self: Arc<Self>,
        every: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            let now = self.now_ms();
            for entry in self.sessions.iter() {
                let s = entry.value();
                let at = s.wake_at.load(Ordering::Acquire);
                // Only if unchanged: a session that just asked for a later
                // time keeps it.
                if at <= now
                    && s.wake_at
                        .compare_exchange(at, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    s.outbox.tick();
                }
            }
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn sid_text(&self, sid: u64) -> String {
        format!("{}.{sid:x}", self.node)
    }

    /// Admits a session if every limit allows it.
    pub fn register(
        self: &Arc<Self>,
        identity: Identity,
        ip: IpAddr,
    ) -> Result<Registration, Refusal> {
        if self.draining.load(Ordering::Acquire) {
            return Err(Refusal::Draining);
        }
        if self.count.fetch_add(1, Ordering::AcqRel) >= self.limits.max_sessions {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::OverCapacity);
        }
        {
            let mut n = self.ips.entry(ip).or_insert(0);
            if *n as usize >= self.limits.per_ip {
                drop(n);
                self.release_ip(ip);
                self.count.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::TooManyForAddress);
            }
            *n += 1;
        }
        let sid = self.next_sid.fetch_add(1, Ordering::Relaxed);
        let user = identity.user.clone();
        let session = Arc::new(Session {
            sid,
            user: user.clone(),
            user_place: crate::sketch::Place::of(user.as_bytes()),
            identity: std::sync::RwLock::new(identity),
            ip,
            outbox: Outbox::default(),
            wake_at: AtomicU64::new(u64::MAX),
            locale_pinned: AtomicBool::new(false),
        });
        self.sessions.insert(sid, session.clone());
        {
            let mut sids = self.users.entry(user.clone()).or_default();
            if sids.len() >= self.limits.per_user {
                let empty = sids.is_empty();
                drop(sids);
                if empty {
                    self.users.remove_if(&user, |_, v| v.is_empty());
                }
                self.sessions.remove(&sid);
                self.ips.entry(ip).and_modify(|n| *n -= 1);
                self.release_ip(ip);
                self.count.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::TooManyForUser);
            }
            sids.push(sid);
        }
        if let Some(changes) = &self.changes {
            changes.mark(&user);
        }
        self.metrics.sessions.inc();
        self.metrics.users.set(self.users.len() as i64);
        Ok(Registration {
            hub: self.clone(),
            session,
        })
    }

    fn release_ip(&self, ip: IpAddr) {
        self.ips.remove_if(&ip, |_, n| *n == 0);
    }

    fn unregister(&self, session: &Session) {
        let user = &session.user;
        if let Entry::Occupied(mut e) = self.users.entry(user.clone()) {
            e.get_mut().retain(|s| *s != session.sid);
            if e.get().is_empty() {
                e.remove();
            }
        }
        self.sessions
            .remove_if(&session.sid, |_, s| s.sid == session.sid);
        self.ips
            .entry(session.ip)
            .and_modify(|n| *n = n.saturating_sub(1));
        self.release_ip(session.ip);
        if let Some(changes) = &self.changes {
            changes.mark(user);
        }
        self.metrics.sessions.dec();
        self.metrics.users.set(self.users.len() as i64);
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.empty.notify_waiters();
        }
    }

    pub fn session_count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Sessions of `user` on this node.
    pub fn user_sessions(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |s| s.len())
    }

    /// Every user with a session here (for restoring subscriptions).
    pub fn users(&self) -> Vec<Arc<str>> {
        self.users.iter().map(|e| e.key().clone()).collect()
    }

    /// Pushes a frame to every session in `target` that the audience matches;
    /// `frame` builds it per session (a clone of one shared frame unless the
    /// message varies by recipient); `on_delivered` hears of each session
    /// that got it. Returns how many sessions got it.
    pub fn deliver(
        &self,
        target: Target<'_>,
        audience: &Audience,
        mut frame: impl FnMut(&Session) -> Outgoing,
        mut on_delivered: impl FnMut(&Session),
    ) -> usize {
        let mut delivered = 0;
        let mut visit = |s: &Session| {
            if self.offer(s, audience, &mut frame, &mut on_delivered) {
                delivered += 1;
            }
        };
        match target {
            Target::Everyone => {
                for entry in self.sessions.iter() {
                    visit(entry.value());
                }
            }
            Target::User(user) => self.for_user(user, &mut visit),
            Target::Users(users) => {
                for user in users {
                    self.for_user(user, &mut visit);
                }
            }
        }
        self.metrics.deliveries.inc_by(delivered as u64);
        delivered
    }

    /// Every session on this node, in the order they connected: what a
    /// delivery in slices walks without holding a map guard.
    pub fn snapshot(&self) -> Vec<Arc<Session>> {
        let mut all: Vec<Arc<Session>> = self.sessions.iter().map(|e| e.value().clone()).collect();
        all.sort_unstable_by_key(|s| s.sid);
        all
    }

    /// [`Hub::deliver`] for sessions of a [`Hub::snapshot`] (one slice of
    /// it); a session that left since gets nothing.
    pub fn deliver_to(
        &self,
        sessions: &[Arc<Session>],
        audience: &Audience,
        mut frame: impl FnMut(&Session) -> Outgoing,
        mut on_delivered: impl FnMut(&Session),
    ) -> usize {
        let delivered = sessions
            .iter()
            .filter(|s| self.offer(s, audience, &mut frame, &mut on_delivered))
            .count();
        self.metrics.deliveries.inc_by(delivered as u64);
        delivered
    }

    /// Pushes the frame to `s` if the audience matches it; true when queued.
    fn offer(
        &self,
        s: &Session,
        audience: &Audience,
        frame: &mut impl FnMut(&Session) -> Outgoing,
        on_delivered: &mut impl FnMut(&Session),
    ) -> bool {
        // "all" needs no identity (nor its lock).
        if !audience.is_all() && !audience.matches(&s.identity()) {
            return false;
        }
        match s.outbox.push(frame(s), self.limits.queue) {
            Pushed::Queued => {
                on_delivered(s);
                true
            }
            Pushed::Overflow => {
                self.metrics.drop_reason("slow_consumer");
                tracing::warn!(user = %s.user, sid = s.sid, "slow consumer: closing with 4008");
                false
            }
            Pushed::Closed => false,
        }
    }

    /// Sessions the audience matches on this node, and their distinct
    /// users; nothing is delivered (the audience preview).
    pub fn matching(&self, audience: &Audience) -> (usize, Vec<Arc<str>>) {
        let mut sessions = 0;
        let mut users = Vec::new();
        let mut count = |user: &Arc<str>| {
            let mut n = 0;
            self.for_user(user, &mut |s: &Session| {
                if audience.matches(&s.identity()) {
                    n += 1;
                }
            });
            if n > 0 {
                sessions += n;
                users.push(user.clone());
            }
        };
        match audience.users() {
            Some(named) => named.iter().for_each(&mut count),
            None => self.users().iter().for_each(&mut count),
        }
        (sessions, users)
    }

    /// Pushes one frame to one session, within the outbox limit.
    pub fn push_to(&self, session: &Session, frame: Outgoing) -> Pushed {
        let pushed = session.outbox.push(frame, self.limits.queue);
        if pushed == Pushed::Overflow {
            self.metrics.drop_reason("slow_consumer");
        }
        pushed
    }

    /// The live session with this sid, if any.
    pub fn session(&self, sid: u64) -> Option<Arc<Session>> {
        self.sessions.get(&sid).map(|s| s.value().clone())
    }

    /// Visits the user's sessions under a read guard of the user's shard:
    /// `visit` is synchronous and never touches the `users` map, so holding
    /// it is safe and saves copying the sids for every message.
    fn for_user(&self, user: &str, visit: &mut impl FnMut(&Session)) {
        let Some(sids) = self.users.get(user) else {
            return;
        };
        for sid in sids.iter() {
            if let Some(s) = self.sessions.get(sid) {
                visit(s.value());
            }
        }
    }

    /// Visits the sessions of `user` on this node.
    pub fn for_each_of_user(&self, user: &str, mut visit: impl FnMut(&Session)) {
        self.for_user(user, &mut visit);
    }

    /// The sid of one of this node's sessions, from its `node.sid` text.
    pub fn local_sid(&self, text: &str) -> Option<u64> {
        let (node, sid) = text.rsplit_once('.')?;
        (node == self.node).then(|| u64::from_str_radix(sid, 16).ok())?
    }

    /// Closes every session of `user` on this node with 1008.
    pub fn disconnect_user(&self, user: &str) -> usize {
        let mut n = 0;
        self.for_user(user, &mut |s| {
            s.outbox.close(Close::Disconnected);
            n += 1;
        });
        n
    }

    /// Stops admitting sessions and asks every live one to close with 1012.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        for entry in self.sessions.iter() {
            entry.value().outbox.close(Close::Draining);
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Resolves when no session is left.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.session_count() == 0 {
                return;
            }
            notified.await;
        }
    }
}
