//! Broadcasts whose audience costs: evaluated over the node's sessions in
//! bounded slices by one task, so that no single message holds up the
//! others (SPEC §4, `where`; issue "Redis as production runs it", 16.4).
//!
//! A broadcast with a `where` expression is queued here instead of being
//! evaluated where it was received (the Redis subscriber, an HTTP request).
//! The task walks a snapshot of the sessions, in the order they connected,
//! [`SLICE`] sessions at a time, and yields to the runtime between slices:
//! per-user messages, which the subscriber keeps delivering meanwhile, go
//! out first. Order is kept where a client can see it:
//! - while anything is queued, every later broadcast (and broadcast
//!   retraction) queues behind it, so broadcasts reach a session in the
//!   order they were published;
//! - a message that overtakes a queued broadcast is sent without `pos`: a
//!   client must not resume after a position it skipped. (The client's
//!   dedupe drops the copy a later resume replays.)
//!
//! The queue is bounded ([`MAX_PENDING`]); the bus waits for room before
//! it hands over the next message ([`super::Dispatcher::room`]), so an
//! attacker's stream of costly messages slows intake, never memory.

use crate::envelope::Publish;
use crate::hub::outbox::Outgoing;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

/// Sessions evaluated between two yields. At the cost bound's worst
/// accepted expression (under 90 µs a session, docs/BENCHMARKS.md) a slice
/// holds a worker thread for about 20 ms.
pub const SLICE: usize = 256;

/// Broadcasts queued at most; intake waits beyond it.
pub const MAX_PENDING: usize = 1024;

/// One delivery waiting for the slicing task.
pub(super) enum Job {
    /// A broadcast to every session its audience matches.
    Publish { p: Arc<Publish>, born: Instant },
    /// A retraction: the frame to the sessions the message's audience
    /// matches (every session when the node did not know the message).
    Retract {
        known: Option<Arc<Publish>>,
        frame: Outgoing,
    },
}

pub(super) struct Slices {
    /// Whether the task runs; without it (unit tests, benches) every
    /// delivery is evaluated where it is received.
    running: AtomicBool,
    queue: Mutex<VecDeque<Job>>,
    /// Jobs queued or being evaluated.
    pending: AtomicUsize,
    /// Wakes the task.
    work: Notify,
    /// Wakes intake waiting for room.
    room: Notify,
    /// `herald_audience_pending`: [`Slices::pending`] as a metric.
    gauge: Gauge,
}

impl Slices {
    pub fn new(gauge: Gauge) -> Self {
        Self {
            running: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            pending: AtomicUsize::new(0),
            work: Notify::new(),
            room: Notify::new(),
            gauge,
        }
    }

    pub fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub fn set_running(&self, on: bool) {
        self.running.store(on, Ordering::Release);
    }

    /// Whether a broadcast is queued or being evaluated: a message
    /// delivered now overtakes it.
    pub fn busy(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub fn push(&self, job: Job) {
        let n = self.pending.fetch_add(1, Ordering::AcqRel) + 1;
        self.gauge.set(n as i64);
        self.lock().push_back(job);
        self.work.notify_one();
    }

    pub fn pop(&self) -> Option<Job> {
        self.lock().pop_front()
    }

    /// The job taken by [`Slices::pop`] is done.
    pub fn done(&self) {
        let n = self.pending.fetch_sub(1, Ordering::AcqRel) - 1;
        self.gauge.set(n as i64);
        self.room.notify_waiters();
    }

    pub async fn work(&self) {
        self.work.notified().await
    }

    /// Returns once fewer than [`MAX_PENDING`] jobs are pending: at once,
    /// without registering a waiter, in the usual case (it runs for every
    /// message the bus receives).
    pub async fn room(&self) {
        if self.pending() < MAX_PENDING {
            return;
        }
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending() < MAX_PENDING {
                return;
            }
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}
