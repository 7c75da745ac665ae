//! The session's protocol state, free of I/O: client frames in, replies and
//! close decisions out. The socket loop in [`super`] applies what it returns.

use crate::config::SessionConfig;
use crate::protocol::{ClientFrame, Close, FrameError, ServerFrame};

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
/// session holds two of these; its rate and burst are read from the
/// settings, not copied into every session.
struct Bucket {
    tokens: f32,
    /// ms, on the caller's clock.
    last: u64,
}

impl Bucket {
    fn new(burst: u32, now_ms: u64) -> Self {
        Self {
            tokens: burst as f32,
            last: now_ms,
        }
    }

    fn take(&mut self, now_ms: u64, rate: u32, burst: u32) -> bool {
        let elapsed = now_ms.saturating_sub(self.last) as f32 / 1000.0;
        self.last = now_ms;
        self.tokens = (self.tokens + elapsed * rate as f32).min(burst as f32);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets over client frames and over events feeding campaigns, and
/// counters of bad and limited frames. Times are ms on one clock of the
/// caller's choosing; limits come from the settings passed in.
pub struct SessionState {
    frames: Bucket,
    campaign_events: Bucket,
    bad_in_a_row: u32,
    limited: u32,
}

impl SessionState {
    pub fn new(cfg: &SessionConfig, now_ms: u64) -> Self {
        Self {
            frames: Bucket::new(cfg.client_frames_burst, now_ms),
            campaign_events: Bucket::new(cfg.campaign_events_burst, now_ms),
            bad_in_a_row: 0,
            limited: 0,
        }
    }

    /// May this client event trigger campaigns?
    pub fn campaign_event_allowed(&mut self, cfg: &SessionConfig, now_ms: u64) -> bool {
        self.campaign_events
            .take(now_ms, cfg.campaign_events_per_s, cfg.campaign_events_burst)
    }

    pub fn on_text(&mut self, cfg: &SessionConfig, text: &str, now_ms: u64) -> Outcome {
        if let Some(limited) = self.rate_limit(cfg, now_ms) {
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
            Err(e) => self.refuse(cfg, e),
        }
    }

    pub fn on_binary(&mut self, cfg: &SessionConfig, now_ms: u64) -> Outcome {
        if let Some(limited) = self.rate_limit(cfg, now_ms) {
            return limited;
        }
        self.refuse(cfg, FrameError::Binary)
    }

    fn rate_limit(&mut self, cfg: &SessionConfig, now_ms: u64) -> Option<Outcome> {
        if self
            .frames
            .take(now_ms, cfg.client_frames_per_s, cfg.client_frames_burst)
        {
            return None;
        }
        self.limited += 1;
        let reply = error_frame("rate_limited", "too many frames; slow down");
        let close = (self.limited > cfg.max_rate_limited).then_some(Close::RateLimited);
        Some(Outcome {
            reply: Some(reply),
            close,
            error: Some("rate_limited"),
            ..Default::default()
        })
    }

    fn refuse(&mut self, cfg: &SessionConfig, e: FrameError) -> Outcome {
        self.bad_in_a_row += 1;
        let close = (self.bad_in_a_row >= cfg.max_bad_frames.max(1)).then_some(Close::Abuse);
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

    /// A session's state, its settings, and a time (ms) to start from.
    fn state() -> (SessionState, SessionConfig, u64) {
        let cfg = SessionConfig {
            client_frames_per_s: 10,
            client_frames_burst: 3,
            max_bad_frames: 3,
            max_rate_limited: 2,
            ..Default::default()
        };
        let now = 1_000_000;
        (SessionState::new(&cfg, now), cfg, now)
    }

    #[test]
    fn ping_gets_pong() {
        let (mut s, cfg, now) = state();
        let out = s.on_text(&cfg, r#"{"t":"ping"}"#, now);
        assert_eq!(out.reply.as_deref(), Some(r#"{"t":"pong"}"#));
        assert_eq!(out.close, None);
    }

    #[test]
    fn bad_frames_get_errors_then_4000() {
        let (mut s, cfg, mut now) = state();
        for _ in 0..2 {
            now += 1000;
            let out = s.on_text(&cfg, "nope", now);
            assert_eq!(out.error, Some("bad_json"));
            assert_eq!(out.close, None);
        }
        now += 1000;
        assert_eq!(s.on_text(&cfg, "nope", now).close, Some(Close::Abuse));
    }

    #[test]
    fn error_replies_quote_a_bounded_prefix_of_the_input() {
        let (mut s, cfg, now) = state();
        let status = "x".repeat(15_000);
        let out = s.on_text(
            &cfg,
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
        let out = s.on_text(&cfg, r#"{"t":"what"}"#, now + 1000);
        assert_eq!(
            out.reply.as_deref(),
            Some(r#"{"t":"error","code":"unknown_type","message":"unknown frame type \"what\""}"#)
        );
    }

    #[test]
    fn a_good_frame_resets_the_bad_count() {
        let (mut s, cfg, mut now) = state();
        for _ in 0..5 {
            now += 1000;
            assert_eq!(s.on_text(&cfg, r#"{"t":"what"}"#, now).close, None);
            now += 1000;
            assert_eq!(s.on_text(&cfg, r#"{"t":"ping"}"#, now).close, None);
        }
    }

    #[test]
    fn flooding_is_rate_limited_then_closed_with_4029() {
        let (mut s, cfg, now) = state();
        for _ in 0..3 {
            assert_eq!(s.on_text(&cfg, r#"{"t":"ping"}"#, now).error, None);
        }
        assert_eq!(
            s.on_text(&cfg, r#"{"t":"ping"}"#, now).error,
            Some("rate_limited")
        );
        assert_eq!(s.on_text(&cfg, r#"{"t":"ping"}"#, now).close, None);
        assert_eq!(
            s.on_text(&cfg, r#"{"t":"ping"}"#, now).close,
            Some(Close::RateLimited)
        );
        // After a pause the bucket refills: positive control for the same state.
        let (mut s, cfg, now) = state();
        for i in 0..10 {
            assert_eq!(
                s.on_text(&cfg, r#"{"t":"ping"}"#, now + 150 * i).error,
                None
            );
        }
    }
}
