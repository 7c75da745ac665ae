//! Campaign counters as the state holds them: what one display must pass
//! ([`Limits`]), the verdict, and the embedded store ([`MemoryCounters`]);
//! the Redis one is `redis/campaign.lua`.

use std::collections::HashMap;

/// The limits one display must pass, as the counter store sees them.
#[derive(Debug, Clone)]
pub struct Limits<'a> {
    pub campaign: &'a str,
    pub user: &'a str,
    pub msg_id: &'a str,
    /// At most this many displays per `per_s` (absent: no per-campaign limit).
    pub max: Option<u32>,
    /// The window of `max`; absent: for ever.
    pub per_s: Option<u64>,
    /// Refused once the user reached the campaign's `until`.
    pub until: bool,
    /// 0: exempt (urgent campaigns).
    pub global_cap_per_hour: u32,
}

/// A user's assignment in an experiment, stored at their exposure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The variant id, or `holdout`.
    pub variant: String,
    /// When the user was exposed (unix ms), for the goal's `within_s`.
    pub at_ms: u64,
}

impl Exposure {
    /// As stored: `variant` and the time, tab-separated.
    pub fn encode(&self) -> String {
        format!("{}\t{}", self.variant, self.at_ms)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (variant, at) = text.split_once('\t')?;
        Some(Self {
            variant: variant.to_owned(),
            at_ms: at.parse().ok()?,
        })
    }
}

/// Embedded experiments: assignments and conversions per (campaign, user),
/// kept while the campaign exists (as in Redis).
#[derive(Default)]
pub struct MemoryExposures {
    inner: std::sync::Mutex<HashMap<String, Exposed>>,
}

/// One campaign's assignments by user, and its converted users.
type Exposed = (HashMap<String, Exposure>, std::collections::HashSet<String>);

impl MemoryExposures {
    pub fn get(&self, campaign: &str, user: &str) -> Option<Exposure> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(campaign).and_then(|(e, _)| e.get(user)).cloned()
    }

    /// Stores the assignment unless one is; returns the stored one and
    /// whether it is this one.
    pub fn expose(&self, campaign: &str, user: &str, e: &Exposure) -> (Exposure, bool) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (exposed, _) = m.entry(campaign.to_owned()).or_default();
        match exposed.get(user) {
            Some(stored) => (stored.clone(), false),
            None => {
                exposed.insert(user.to_owned(), e.clone());
                (e.clone(), true)
            }
        }
    }

    /// Whether this is the user's first conversion.
    pub fn convert(&self, campaign: &str, user: &str) -> bool {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(campaign.to_owned())
            .or_default()
            .1
            .insert(user.to_owned())
    }

    pub fn forget(&self, campaign: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(campaign);
    }
}

/// Why a display was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Frequency,
    Until,
    GlobalCap,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Frequency => "frequency",
            Self::Until => "until",
            Self::GlobalCap => "global_cap",
        }
    }

    pub fn from_code(code: i64) -> Self {
        match code {
            1 => Self::Allowed,
            -1 => Self::GlobalCap,
            -2 => Self::Until,
            _ => Self::Frequency,
        }
    }
}

/// Embedded counters: display times per (campaign, user), the hourly cap
/// per user, and who reached `until`. Like the Redis keys, which expire with
/// their window, entries whose window has passed are swept once a minute;
/// displays of a campaign without `frequency` are not kept at all.
#[derive(Default)]
pub struct MemoryCounters {
    inner: std::sync::Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    /// The campaign's window (ms; `None`: for ever) and the display times.
    displays: HashMap<(String, String), (Option<u64>, Vec<u64>)>,
    cap: HashMap<String, Vec<u64>>,
    done: std::collections::HashSet<(String, String)>,
    next_sweep_ms: u64,
}

const HOUR_MS: u64 = 3_600_000;
const SWEEP_EVERY_MS: u64 = 60_000;

impl MemoryCounters {
    /// Checks and, when allowed, counts one display, atomically.
    pub fn check(&self, l: &Limits<'_>, now_ms: u64) -> Verdict {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if now_ms >= m.next_sweep_ms {
            m.sweep(now_ms);
        }
        let key = (l.campaign.to_owned(), l.user.to_owned());
        if l.until && m.done.contains(&key) {
            return Verdict::Until;
        }
        if let Some(max) = l.max {
            let window = l.per_s.map(|s| s * 1000);
            let (w, shown) = m.displays.entry(key.clone()).or_default();
            *w = window;
            if let Some(per) = window {
                shown.retain(|t| *t + per > now_ms);
            }
            if shown.len() >= max as usize {
                return Verdict::Frequency;
            }
        }
        if l.global_cap_per_hour > 0 {
            let cap = m.cap.entry(l.user.to_owned()).or_default();
            cap.retain(|t| *t + HOUR_MS > now_ms);
            if cap.len() >= l.global_cap_per_hour as usize {
                return Verdict::GlobalCap;
            }
            cap.push(now_ms);
        }
        if l.max.is_some() {
            m.displays.entry(key).or_default().1.push(now_ms);
        }
        Verdict::Allowed
    }

    pub fn done(&self, campaign: &str, user: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .done
            .insert((campaign.to_owned(), user.to_owned()));
    }

    /// A campaign was deleted: nothing of it is kept (its `until` markers
    /// would otherwise stay for every user who ever reached them).
    pub fn forget(&self, campaign: &str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.done.retain(|(c, _)| c != campaign);
        m.displays.retain(|(c, _), _| c != campaign);
    }

    /// Entries kept: (campaign, user) display lists, per-user caps, and
    /// `until` markers.
    #[cfg(test)]
    fn kept(&self) -> (usize, usize, usize) {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (m.displays.len(), m.cap.len(), m.done.len())
    }
}

impl MemoryInner {
    /// Drops what no check can count any more: displays older than their
    /// campaign's window, caps older than an hour.
    fn sweep(&mut self, now_ms: u64) {
        self.displays.retain(|_, (window, shown)| match window {
            Some(per) => shown.iter().any(|t| *t + *per > now_ms),
            None => !shown.is_empty(),
        });
        self.cap
            .retain(|_, times| times.iter().any(|t| *t + HOUR_MS > now_ms));
        self.next_sweep_ms = now_ms + SWEEP_EVERY_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_counters_enforce_frequency_cap_and_until() {
        let m = MemoryCounters::default();
        let l = Limits {
            campaign: "c",
            user: "u",
            msg_id: "m",
            max: Some(2),
            per_s: Some(60),
            until: true,
            global_cap_per_hour: 3,
        };
        assert_eq!(m.check(&l, 1_000), Verdict::Allowed);
        assert_eq!(m.check(&l, 2_000), Verdict::Allowed);
        assert_eq!(m.check(&l, 3_000), Verdict::Frequency);
        assert_eq!(m.check(&l, 62_000), Verdict::Allowed, "the window slid");
        let other = Limits {
            campaign: "d",
            max: None,
            per_s: None,
            until: false,
            ..l.clone()
        };
        assert_eq!(
            m.check(&other, 62_500),
            Verdict::GlobalCap,
            "3 per hour already"
        );
        m.done("c", "u");
        assert_eq!(m.check(&l, 200_000), Verdict::Until);
        // Deleted, the campaign leaves nothing behind.
        m.forget("c");
        assert_eq!(m.kept().2, 0);
        assert_eq!(m.kept().0, 0);
    }

    #[test]
    fn memory_counters_forget_what_no_window_holds_any_more() {
        let m = MemoryCounters::default();
        let windowed = Limits {
            campaign: "c",
            user: "u",
            msg_id: "m",
            max: Some(5),
            per_s: Some(60),
            until: false,
            global_cap_per_hour: 5,
        };
        let unlimited = Limits {
            campaign: "d",
            user: "v",
            max: None,
            per_s: None,
            global_cap_per_hour: 0,
            ..windowed.clone()
        };
        assert_eq!(m.check(&windowed, 1_000), Verdict::Allowed);
        for t in 0..100 {
            assert_eq!(m.check(&unlimited, 1_000 + t), Verdict::Allowed);
        }
        assert_eq!(
            m.kept(),
            (1, 1, 0),
            "nothing kept for a campaign without frequency"
        );
        // A minute later the window has passed, the hour has not.
        assert_eq!(m.check(&unlimited, 62_000), Verdict::Allowed);
        assert_eq!(m.kept(), (0, 1, 0));
        // An hour later the cap is swept too.
        assert_eq!(m.check(&unlimited, 3_700_000), Verdict::Allowed);
        assert_eq!(m.kept(), (0, 0, 0));
        // A lifetime cap (no window) is kept, as in Redis.
        let once = Limits {
            max: Some(1),
            per_s: None,
            ..unlimited.clone()
        };
        assert_eq!(m.check(&once, 3_700_001), Verdict::Allowed);
        assert_eq!(m.check(&once, 9_000_000), Verdict::Frequency);
        assert_eq!(m.kept(), (1, 0, 0));
    }
}
