//! Warnings that repeat, aggregated: the first of a kind is logged at once;
//! the ones after it within `log.repeat_interval` are counted, and one line
//! per interval says how many there were, with the last of them. A flood of
//! bad payloads gives a few lines, not one per payload; the metrics still
//! count every one.
//!
//! ```ignore
//! static REFUSED: Repeated = Repeated::new("envelope refused");
//! if REFUSED.first(|| format!("source={source} error={e}")) {
//!     tracing::warn!(source, error = %e, "envelope refused");
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// The longest example kept, in bytes.
const EXAMPLE_MAX: usize = 300;

static INTERVAL_MS: AtomicU64 = AtomicU64::new(10_000);
static REGISTRY: Mutex<Vec<&'static Repeated>> = Mutex::new(Vec::new());
static FLUSHER: Once = Once::new();

/// Sets the aggregation interval (`log.repeat_interval`) for the process.
pub fn set_interval(d: Duration) {
    INTERVAL_MS.store(d.as_millis().max(1) as u64, Ordering::Relaxed);
}

fn interval() -> Duration {
    Duration::from_millis(INTERVAL_MS.load(Ordering::Relaxed))
}

/// One kind of repeated warning, a `static` at its call site.
pub struct Repeated {
    name: &'static str,
    state: Mutex<State>,
    registered: Once,
}

#[derive(Default)]
struct State {
    /// Start of the interval the last logged line opened; `None` when the
    /// next occurrence is logged at once.
    since: Option<Instant>,
    suppressed: u64,
    last: String,
}

impl Repeated {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            state: Mutex::new(State {
                since: None,
                suppressed: 0,
                last: String::new(),
            }),
            registered: Once::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when this occurrence is to be logged now (the first of its
    /// interval); otherwise it is counted, and `example` (called only then)
    /// kept as the last one.
    pub fn first(&'static self, example: impl FnOnce() -> String) -> bool {
        self.registered.call_once(|| {
            REGISTRY
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self);
            start_flusher();
        });
        self.first_at(Instant::now(), example)
    }

    fn first_at(&self, now: Instant, example: impl FnOnce() -> String) -> bool {
        let mut s = self.lock();
        match s.since {
            Some(since) if now.duration_since(since) < interval() || s.suppressed > 0 => {
                s.suppressed += 1;
                let mut e = example();
                if e.len() > EXAMPLE_MAX {
                    let mut cut = EXAMPLE_MAX;
                    while !e.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    e.truncate(cut);
                }
                s.last = e;
                false
            }
            _ => {
                s.since = Some(now);
                true
            }
        }
    }

    /// Logs the interval's summary if anything was held back, and returns
    /// how many were. Called by the flusher once per interval.
    fn flush_at(&self, now: Instant) -> u64 {
        let mut s = self.lock();
        let n = std::mem::take(&mut s.suppressed);
        if n > 0 {
            tracing::warn!(repeated = n, last = %s.last, "{} (repeated)", self.name);
            // A flood that goes on gives one line per interval.
            s.since = Some(now);
        } else {
            s.since = None;
        }
        s.last.clear();
        n
    }
}

/// Flushes every kind now: the summaries of the current interval.
pub fn flush() {
    let kinds: Vec<&'static Repeated> = REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let now = Instant::now();
    for k in kinds {
        k.flush_at(now);
    }
}

/// A thread of its own (logging needs no runtime), started on first use.
fn start_flusher() {
    FLUSHER.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("herald-log-repeats".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(interval());
                    flush();
                }
            });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_the_rest_counted_then_one_line_per_interval() {
        let r = Repeated::new("test warning");
        let t0 = Instant::now();
        let step = interval() / 10;
        assert!(r.first_at(t0, || "e0".into()), "the first is logged");
        for i in 1..=5 {
            assert!(!r.first_at(t0 + step * i, || format!("e{i}")));
        }
        assert_eq!(r.lock().last, "e5", "the last example kept");
        // The interval's summary: five held back.
        assert_eq!(r.flush_at(t0 + interval()), 5);
        // Still flooding: counted again, one summary per interval.
        assert!(!r.first_at(t0 + interval() + step, || "e6".into()));
        assert_eq!(r.flush_at(t0 + interval() * 2), 1);
        // A quiet interval: the next one is logged at once.
        assert_eq!(r.flush_at(t0 + interval() * 3), 0);
        assert!(r.first_at(t0 + interval() * 3 + step, || "e7".into()));
    }

    #[test]
    fn examples_are_cut_to_a_bound_on_a_char_boundary() {
        let r = Repeated::new("long");
        let t0 = Instant::now();
        assert!(r.first_at(t0, String::new));
        assert!(!r.first_at(t0, || "é".repeat(400)));
        let last = r.lock().last.clone();
        assert!(last.len() <= EXAMPLE_MAX && last.starts_with('é'));
    }
}
