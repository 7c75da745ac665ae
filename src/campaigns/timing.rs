//! Campaigns in time (SPEC §10.4): the `starts_at`/`ends_at` window and
//! quiet hours in the user's time zone (the token's `attrs.tz`, else
//! `campaigns.default_tz`). Time zones come from `jiff`'s bundled copy of
//! the IANA database, so a node needs no system tzdata; an unknown zone
//! falls back to the default (counted), never an error at trigger time.

use crate::auth::Identity;
use crate::error::FieldError;
use jiff::tz::TimeZone;

/// Quiet hours as minutes of the day: `from` inclusive, `to` exclusive,
/// wrapping midnight when `to` < `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietSpan {
    from: u16,
    to: u16,
}

impl QuietSpan {
    pub fn parse(from: &str, to: &str) -> Result<Self, FieldError> {
        let from = minutes("quiet_hours.from", from)?;
        let to = minutes("quiet_hours.to", to)?;
        if from == to {
            return Err(FieldError::new(
                "quiet_hours.to",
                "must differ from quiet_hours.from",
            ));
        }
        Ok(Self { from, to })
    }

    /// Whether `minute` (of the day) is quiet.
    pub fn contains(self, minute: u16) -> bool {
        if self.from < self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

/// `HH:MM`, 00:00 to 23:59, as minutes of the day.
fn minutes(field: &str, text: &str) -> Result<u16, FieldError> {
    let bad = || FieldError::new(field, format!("{text:?} is not HH:MM (00:00 to 23:59)"));
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Whether `now_ms` lies in `[starts_at, ends_at)`.
pub fn in_window(starts_at: Option<u64>, ends_at: Option<u64>, now_ms: u64) -> bool {
    starts_at.is_none_or(|s| now_ms >= s) && ends_at.is_none_or(|e| now_ms < e)
}

/// The zone a user's quiet hours are read in.
pub struct Zones {
    default: TimeZone,
    default_name: String,
}

/// A user's local time of day, and the zone it was read in.
pub struct Local {
    pub minute: u16,
    pub zone: String,
    /// The user's `attrs.tz` named no known zone (the default was used).
    pub unknown: bool,
}

impl Zones {
    /// `default` was checked when the configuration was loaded.
    pub fn new(default: &str) -> Self {
        Self {
            default: TimeZone::get(default).unwrap_or(TimeZone::UTC),
            default_name: default.to_owned(),
        }
    }

    /// The local minute of the day at `now_ms` for this identity.
    pub fn local(&self, id: &Identity, now_ms: u64) -> Local {
        let named = tz_attr(id);
        let (tz, zone, unknown) = match named.as_deref().map(|n| (n, TimeZone::get(n))) {
            Some((n, Ok(tz))) => (tz, n.to_owned(), false),
            Some((_, Err(_))) => (self.default.clone(), self.default_name.clone(), true),
            None => (self.default.clone(), self.default_name.clone(), false),
        };
        let ts = jiff::Timestamp::from_millisecond(i64::try_from(now_ms).unwrap_or(i64::MAX))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let local = ts.to_zoned(tz);
        Local {
            minute: local.hour() as u16 * 60 + local.minute() as u16,
            zone,
            unknown,
        }
    }
}

/// The token's `attrs.tz`, when it is a string.
fn tz_attr(id: &Identity) -> Option<String> {
    let cel::Value::Map(m) = &id.attrs else {
        return None;
    };
    match m
        .map
        .get(&cel::objects::Key::String("tz".to_owned().into()))
    {
        Some(cel::Value::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_wrap_midnight_and_refuse_bad_times() {
        let night = QuietSpan::parse("22:00", "08:00").expect("parses");
        assert!(night.contains(23 * 60));
        assert!(night.contains(7 * 60 + 59));
        assert!(!night.contains(8 * 60), "to is exclusive");
        assert!(!night.contains(12 * 60), "positive control");
        let lunch = QuietSpan::parse("12:00", "13:30").expect("parses");
        assert!(lunch.contains(12 * 60 + 45) && !lunch.contains(14 * 60));
        for bad in ["24:00", "7:00", "07:60", "0700", "aa:bb", ""] {
            assert_eq!(
                QuietSpan::parse(bad, "08:00").map_err(|e| e.field),
                Err("quiet_hours.from".to_owned()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn windows_include_the_start_and_exclude_the_end() {
        assert!(in_window(Some(10), Some(20), 10));
        assert!(!in_window(Some(10), Some(20), 20));
        assert!(!in_window(Some(10), None, 9));
        assert!(in_window(None, None, 0));
    }
}
