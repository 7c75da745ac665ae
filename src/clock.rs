//! The wall clock campaigns and counts read: the system's, or one a test
//! sets and moves (campaign windows, quiet hours, goal windows and hourly
//! buckets are tested at chosen times, without waiting for them).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unix milliseconds, from the system or from a hand the caller moves.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicU64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock standing at `ms` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn manual(ms: u64) -> Self {
        Self(Some(Arc::new(AtomicU64::new(ms))))
    }

    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            Some(hand) => hand.load(Ordering::Relaxed),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
        }
    }

    /// Moves a manual clock to `ms` (a system clock ignores it).
    pub fn set(&self, ms: u64) {
        if let Some(hand) = &self.0 {
            hand.store(ms, Ordering::Relaxed);
        }
    }

    /// Moves a manual clock forward (a system clock ignores it).
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(hand) = &self.0 {
            hand.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
        }
    }
}
