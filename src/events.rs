//! Analytics and feedback records: the `events`, `undelivered` and `dead`
//! streams of SPEC §7.
//!
//! Producers (the dispatcher, sessions, publishers) never wait: a record goes
//! into a bounded queue, and a full queue drops it and counts the drop
//! (`herald_events_dropped_total`). With Redis a bus task drains the queue
//! into `XADD … MAXLEN ~ N` pipelines; embedded, records land in bounded
//! in-memory rings that the admin API reads (`GET /v1/streams/{name}`).
//!
//! The same records feed the counts (`crate::stats`) and the user trace
//! (`crate::trace`): with Redis the writer adds their counters to the
//! pipelines it writes the streams with; embedded, a [`Tally`] counts them
//! from the same bounded queue, in a task of its own ([`Events::run_tally`]).
//! Some records (`only_counted`) are decisions that only the counts and the
//! trace keep, not the streams.

use crate::envelope::Publish;
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Events,
    Undelivered,
    Dead,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Events, Stream::Undelivered, Stream::Dead];

    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Undelivered => "undelivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One stream entry: field/value pairs, in order.
#[derive(Debug, Clone)]
pub struct Record {
    pub stream: Stream,
    pub fields: Vec<(&'static str, String)>,
    /// Users the record is about beyond its `user` field (a per-node
    /// `delivered` count's recipients, an expired message's named users),
    /// for distinct-user counts and the trace; never written to a stream.
    pub users: Vec<Arc<str>>,
    /// More recipients than [`crate::sketch::SKETCH_FROM`] on a Redis node:
    /// hashed into a sketch as they were reached instead of named.
    pub sketch: Option<Box<crate::sketch::Sketch>>,
    /// Counted and traced, not written to a stream (campaign decisions).
    pub only_counted: bool,
}

impl Record {
    pub fn new(stream: Stream, kind: &str) -> Self {
        Self {
            stream,
            fields: vec![("type", kind.to_owned())],
            users: Vec::new(),
            sketch: None,
            only_counted: false,
        }
    }

    /// The value of a field, if the record has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The record's type (`delivered`, `clicked`, …).
    pub fn kind(&self) -> &str {
        self.get("type").unwrap_or_default()
    }

    /// A campaign decision about one user, for the trace (SPEC §10.5):
    /// `decision` is one of the SPEC's names, `reason` says why in words.
    pub fn decision(user: &str, campaign: &str, decision: &str, reason: &str) -> Self {
        let mut r = Self::new(Stream::Events, "decision")
            .with("user", user)
            .with("campaign", campaign)
            .with("decision", decision)
            .with("reason", reason);
        r.only_counted = true;
        r
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((key, value.into()));
        self
    }

    pub fn with_opt(self, key: &'static str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.with(key, v),
            None => self,
        }
    }

    /// A decision about one user and a message: kept out of a sticky
    /// replay because they clicked or dismissed it before (SPEC §10.1).
    pub fn dismissed_before(p: &Publish, user: &str) -> Self {
        let mut r = Self::new(Stream::Events, "decision")
            .with("msg", p.id())
            .with("user", user)
            .with_opt("campaign", p.envelope.campaign.as_deref())
            .with("decision", "dismissed_before")
            .with(
                "reason",
                "the user clicked or dismissed it before: not shown again on any device",
            );
        r.only_counted = true;
        r
    }

    /// A message published through this node: its counts exist from now on.
    pub fn published(p: &Publish) -> Self {
        let mut r = Self::new(Stream::Events, "published")
            .with("msg", p.id())
            .with_opt("campaign", p.envelope.campaign.as_deref());
        r.only_counted = true;
        r
    }

    /// A named recipient with no live session when it was published (traced).
    pub fn not_online(p: &Publish, user: &str) -> Self {
        let mut r = Self::new(Stream::Events, "not_online")
            .with("msg", p.id())
            .with("user", user)
            .with_opt("campaign", p.envelope.campaign.as_deref());
        r.only_counted = true;
        r
    }

    /// A message that expired before it could be delivered.
    pub fn expired(p: &Publish) -> Self {
        let mut r = Self::new(Stream::Events, "expired")
            .with("msg", p.id())
            .with_opt("campaign", p.envelope.campaign.as_deref())
            .with_opt("variant", p.envelope.variant.as_deref());
        if let Some(users) = p.audience.users() {
            r.users = users.to_vec();
        }
        r
    }

    /// One session reached (named users), or `count` on this node
    /// (broadcast audiences: one record per node, not per session).
    pub fn delivered(p: &Publish, to: Delivered<'_>) -> Self {
        let r = Self::new(Stream::Events, "delivered").with("msg", p.id());
        let r = match to {
            Delivered::Session { user, sid } => r.with("user", user).with("sid", sid),
            Delivered::Count(n, users) => {
                let mut r = r.with("count", n.to_string());
                r.users = users;
                r
            }
        };
        r.with_opt("campaign", p.envelope.campaign.as_deref())
            .with_opt("variant", p.envelope.variant.as_deref())
    }

    /// What a user did with a message (`displayed`, `clicked`, …).
    pub fn ack(status: &str, msg: &str, user: &str, sid: &str) -> Self {
        Self::new(Stream::Events, status)
            .with("msg", msg)
            .with("user", user)
            .with("sid", sid)
    }

    /// A `fallback` recipient with no live session on any node.
    pub fn undelivered(p: &Publish, user: &str) -> Self {
        Self::new(Stream::Undelivered, "undelivered")
            .with("msg", p.id())
            .with("user", user)
            .with_opt("campaign", p.envelope.campaign.as_deref())
    }

    /// A refused envelope, with the reason and its first 64 KiB.
    pub fn dead(reason: &str, channel: &str, envelope: &str) -> Self {
        Self::new(Stream::Dead, "dead")
            .with("reason", reason)
            .with("channel", channel)
            .with("envelope", crate::render::cut(envelope, 64 * 1024))
    }

    /// Adds the node that wrote the record and the time (unix ms).
    pub fn stamped(self, node: &str) -> Self {
        self.stamped_at(node, crate::auth::unix_now_ms())
    }

    pub fn stamped_at(self, node: &str, ms: u64) -> Self {
        self.with("node", node).with("ts", ms.to_string())
    }

    /// The time it was stamped with (unix ms; 0 before).
    pub fn ts(&self) -> u64 {
        self.get("ts").and_then(|t| t.parse().ok()).unwrap_or(0)
    }

    pub fn to_json(&self) -> serde_json::Value {
        self.fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
            .collect()
    }
}

/// Who a `delivered` record counts.
pub enum Delivered<'a> {
    Session {
        user: &'a str,
        sid: &'a str,
    },
    /// Sessions reached on this node, and their users (for the distinct count).
    Count(usize, Vec<Arc<str>>),
}

/// Embedded mode: what counts and traces records as they are emitted.
pub trait Tally: Send + Sync {
    fn record(&self, record: &Record);
}

pub struct Events {
    node: String,
    /// Whether each delivery is recorded (one entry per session reached).
    pub record_deliveries: bool,
    /// Redis mode: a broadcast's many recipients are counted by a sketch
    /// (embedded counts them exactly, by name).
    pub sketches: bool,
    queue: Mutex<VecDeque<Record>>,
    capacity: usize,
    pub notify: Notify,
    /// Embedded mode: the last records of each stream, newest last.
    rings: Option<Mutex<[VecDeque<serde_json::Value>; 3]>>,
    ring_len: usize,
    metrics: Arc<Metrics>,
    /// Stamps the records (their `ts` places them in an hour of the counts).
    clock: crate::clock::Clock,
    /// Embedded mode: the counts and the trace.
    tally: std::sync::OnceLock<Arc<dyn Tally>>,
}

impl Events {
    pub fn new(
        node: String,
        embedded: bool,
        record_deliveries: bool,
        capacity: usize,
        ring_len: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            node,
            record_deliveries,
            sketches: !embedded,
            queue: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            rings: embedded.then(|| Mutex::new(Default::default())),
            ring_len,
            metrics,
            clock: crate::clock::Clock::system(),
            tally: std::sync::OnceLock::new(),
        }
    }

    /// Stamps records with this clock instead of the system's.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Embedded mode: counts and traces every record emitted from now on.
    pub fn set_tally(&self, tally: Arc<dyn Tally>) {
        let _ = self.tally.set(tally);
    }

    pub fn clock(&self) -> &crate::clock::Clock {
        &self.clock
    }

    /// Adds `node` and `ts` (unix ms) and queues the record; never blocks.
    pub fn emit(&self, record: Record) {
        let record = record.stamped_at(&self.node, self.clock.now_ms());
        if let Some(rings) = &self.rings {
            if !record.only_counted {
                let mut rings = rings.lock().unwrap_or_else(|e| e.into_inner());
                let ring = &mut rings[record.stream as usize];
                if ring.len() >= self.ring_len {
                    ring.pop_front();
                }
                ring.push_back(record.to_json());
            }
            // Counted by [`Events::run_tally`], behind the same bounded queue.
            if self.tally.get().is_none() {
                return;
            }
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.capacity {
            drop(q);
            self.metrics.events_dropped.inc();
            return;
        }
        q.push_back(record);
        let first = q.len() == 1;
        drop(q);
        if first {
            self.notify.notify_one();
        }
    }

    /// Embedded mode: counts and traces queued records until `shutdown`,
    /// off the paths that emit them.
    pub async fn run_tally(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let stopping = tokio::select! {
                () = &mut shutdown => true,
                () = self.notify.notified() => false,
            };
            if let Some(tally) = self.tally.get() {
                loop {
                    let batch = self.take(1000);
                    if batch.is_empty() {
                        break;
                    }
                    for r in &batch {
                        tally.record(r);
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Takes up to `max` queued records (for the Redis writer).
    pub fn take(&self, max: usize) -> Vec<Record> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Embedded mode: the newest `count` records of a stream, newest first.
    pub fn recent(&self, stream: Stream, count: usize) -> Option<Vec<serde_json::Value>> {
        let rings = self
            .rings
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Some(
            rings[stream as usize]
                .iter()
                .rev()
                .take(count)
                .cloned()
                .collect(),
        )
    }
}
