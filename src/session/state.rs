//! The session's protocol state, free of I/O: client frames in, replies and
//! close decisions out. The socket loop in [`super`] applies what it returns.

use crate::config::SessionConfig;
use crate::protocol::{ClientFrame, Close, FrameError, ServerFrame};
use std::time::Instant;

/// What to do after a client frame.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// A valid frame for the node to act on (acks, events).
    pub frame: Option<ClientFrame>,
    /// A frame to send back (`pong`, `error`).
    pub reply: Option<String>,
    /// Close the session after sending `reply`.
    pub close: Option<Close>,
    /// The error code, when the frame was refused (for metrics).
    pub error: Option<&'static str>,
}

/// A token bucket. `f32`: whole tokens up to 2^24 are exact, and every
/// session holds two of these.
struct Bucket {
    tokens: f32,
    rate: f32,
    burst: f32,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            tokens: burst as f32,
            last: now,
            rate: rate as f32,
            burst: burst as f32,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets over client frames and over events feeding campaigns, and
/// counters of bad and limited frames.
pub struct SessionState {
    frames: Bucket,
    campaign_events: Bucket,
    bad_in_a_row: u32,
    limited: u32,
    max_bad: u32,
    max_limited: u32,
}

impl SessionState {
    pub fn new(cfg: &SessionConfig, now: Instant) -> Self {
        Self {
            frames: Bucket::new(cfg.client_frames_per_s, cfg.client_frames_burst, now),
            campaign_events: Bucket::new(cfg.campaign_events_per_s, cfg.campaign_events_burst, now),
            bad_in_a_row: 0,
            limited: 0,
            max_bad: cfg.max_bad_frames.max(1),
            max_limited: cfg.max_rate_limited,
        }
    }

    /// May this client event trigger campaigns?
    pub fn campaign_event_allowed(&mut self, now: Instant) -> bool {
        self.campaign_events.take(now)
    }

    pub fn on_text(&mut self, text: &str, now: Instant) -> Outcome {
        if let Some(limited) = self.rate_limit(now) {
            return limited;
        }
        match ClientFrame::parse(text) {
            Ok(frame) => {
                self.bad_in_a_row = 0;
                let reply = matches!(frame, ClientFrame::Ping).then(|| ServerFrame::Pong.to_json());
                Outcome {
                    frame: Some(frame),
                    reply,
                    ..Default::default()
                }
            }
            Err(e) => self.refuse(e),
        }
    }

    pub fn on_binary(&mut self, now: Instant) -> Outcome {
        if let Some(limited) = self.rate_limit(now) {
            return limited;
        }
        self.refuse(FrameError::Binary)
    }

    fn rate_limit(&mut self, now: Instant) -> Option<Outcome> {
        if self.frames.take(now) {
            return None;
        }
        self.limited += 1;
        let reply = error_frame("rate_limited", "too many frames; slow down");
        let close = (self.limited > self.max_limited).then_some(Close::RateLimited);
        Some(Outcome {
            reply: Some(reply),
            close,
            error: Some("rate_limited"),
            ..Default::default()
        })
    }

    fn refuse(&mut self, e: FrameError) -> Outcome {
        self.bad_in_a_row += 1;
        let close = (self.bad_in_a_row >= self.max_bad).then_some(Close::Abuse);
        Outcome {
            reply: Some(error_frame(e.code(), &e.to_string())),
            close,
            error: Some(e.code()),
            ..Default::default()
        }
    }
}

/// Longest `message` of an `error` frame: refusals may quote the client's
/// input, and a reply never echoes more than this of it.
pub const MAX_ERROR_MESSAGE: usize = 200;

pub fn error_frame(code: &str, message: &str) -> String {
    let cut = crate::render::cut(message, MAX_ERROR_MESSAGE);
    let message = if cut.len() < message.len() {
        std::borrow::Cow::Owned(format!("{cut}…"))
    } else {
        std::borrow::Cow::Borrowed(message)
    };
    ServerFrame::Error {
        code,
        message: &message,
    }
    .to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn state() -> (SessionState, Instant) {
        let cfg = SessionConfig {
            client_frames_per_s: 10,
            client_frames_burst: 3,
            max_bad_frames: 3,
            max_rate_limited: 2,
            ..Default::default()
        };
        let now = Instant::now();
        (SessionState::new(&cfg, now), now)
    }

    #[test]
    fn ping_gets_pong() {
        let (mut s, now) = state();
        let out = s.on_text(r#"{"t":"ping"}"#, now);
        assert_eq!(out.reply.as_deref(), Some(r#"{"t":"pong"}"#));
        assert_eq!(out.close, None);
    }

    #[test]
    fn bad_frames_get_errors_then_4000() {
        let (mut s, mut now) = state();
        for _ in 0..2 {
            now += Duration::from_secs(1);
            let out = s.on_text("nope", now);
            assert_eq!(out.error, Some("bad_json"));
            assert_eq!(out.close, None);
        }
        now += Duration::from_secs(1);
        assert_eq!(s.on_text("nope", now).close, Some(Close::Abuse));
    }

    #[test]
    fn error_replies_quote_a_bounded_prefix_of_the_input() {
        let (mut s, now) = state();
        let status = "x".repeat(15_000);
        let out = s.on_text(
            &format!(r#"{{"t":"ack","id":"m","status":"{status}"}}"#),
            now,
        );
        let reply = out.reply.expect("an error frame");
        assert!(
            reply.len() < MAX_ERROR_MESSAGE + 100,
            "{} bytes",
            reply.len()
        );
        let v: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
        assert_eq!(v["code"], "bad_field");
        assert!(v["message"].as_str().is_some_and(|m| m.ends_with('…')));
        // A short refusal is quoted whole: positive control.
        let out = s.on_text(r#"{"t":"what"}"#, now + Duration::from_secs(1));
        assert_eq!(
            out.reply.as_deref(),
            Some(r#"{"t":"error","code":"unknown_type","message":"unknown frame type \"what\""}"#)
        );
    }

    #[test]
    fn a_good_frame_resets_the_bad_count() {
        let (mut s, mut now) = state();
        for _ in 0..5 {
            now += Duration::from_secs(1);
            assert_eq!(s.on_text(r#"{"t":"what"}"#, now).close, None);
            now += Duration::from_secs(1);
            assert_eq!(s.on_text(r#"{"t":"ping"}"#, now).close, None);
        }
    }

    #[test]
    fn flooding_is_rate_limited_then_closed_with_4029() {
        let (mut s, now) = state();
        for _ in 0..3 {
            assert_eq!(s.on_text(r#"{"t":"ping"}"#, now).error, None);
        }
        assert_eq!(
            s.on_text(r#"{"t":"ping"}"#, now).error,
            Some("rate_limited")
        );
        assert_eq!(s.on_text(r#"{"t":"ping"}"#, now).close, None);
        assert_eq!(
            s.on_text(r#"{"t":"ping"}"#, now).close,
            Some(Close::RateLimited)
        );
        // After a pause the bucket refills: positive control for the same state.
        let (mut s, now) = state();
        for i in 0..10 {
            assert_eq!(
                s.on_text(r#"{"t":"ping"}"#, now + Duration::from_millis(150 * i))
                    .error,
                None
            );
        }
    }
}
