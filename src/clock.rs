//! Wall-clock time as Herald's time-dependent rules read it, so that tests
//! can set it instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Wall-clock time in unix milliseconds: the system's, or (for tests of the
/// embedded node) one that only moves when told to.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(t) => write!(f, "Clock::manual({})", t.load(Ordering::Acquire)),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock standing at `now_ms` until [`Clock::advance`] moves it.
    pub fn manual(now_ms: u64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(now_ms))),
        }
    }

    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(t) => t.load(Ordering::Acquire),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
        }
    }

    /// Moves a manual clock forward (the system clock moves by itself).
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            t.fetch_add(by.as_millis() as u64, Ordering::AcqRel);
        }
    }
}
