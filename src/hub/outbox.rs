//! One session's bounded outbound queue.
//!
//! A mutex-guarded `VecDeque` plus a `Notify`, rather than an mpsc channel:
//! an idle outbox allocates nothing, and the session drains everything
//! pending at once so that several frames share one socket write.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

use crate::protocol::CloseCode;

/// A frame ready for the socket: the whole WebSocket frame (header and
/// payload) encoded once per message and shared by every recipient, since
/// server frames are unmasked and so the same bytes for everyone. A queue
/// entry is one pointer: a broadcast touches 8 bytes of each outbox's
/// queue, and a burst leaves small queues behind.
#[derive(Clone, Debug)]
pub struct Outgoing(Arc<Frame>);

#[derive(Debug)]
struct Frame {
    bytes: Bytes,
    born: Instant,
    seq: u64,
}

impl Outgoing {
    /// `born`: when this node received the message; `seq`: its history
    /// sequence (0: none), to drop live duplicates of what a resume already
    /// replayed.
    pub fn new(bytes: Bytes, born: Instant, seq: u64) -> Self {
        Self(Arc::new(Frame { bytes, born, seq }))
    }

    /// Encodes a text frame around `json`.
    pub fn text(json: &str, born: Instant, seq: u64) -> Self {
        Self::new(encode_text_frame(json.as_bytes()), born, seq)
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0.bytes
    }

    pub fn born(&self) -> Instant {
        self.0.born
    }

    pub fn seq(&self) -> u64 {
        self.0.seq
    }
}

/// A final, unmasked text frame (RFC 6455 §5.2).
pub fn encode_text_frame(payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut buf = BytesMut::with_capacity(len + 10);
    buf.put_u8(0x81);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        buf.put_u8(126);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
    buf.put_slice(payload);
    buf.freeze()
}

/// Why the hub asked a session to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    SlowConsumer,
    Disconnected,
    Draining,
}

impl CloseReason {
    pub fn code(self) -> CloseCode {
        match self {
            Self::SlowConsumer => CloseCode::SlowConsumer,
            Self::Disconnected => CloseCode::Policy,
            Self::Draining => CloseCode::Restart,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow consumer: outbound queue overflowed",
            Self::Disconnected => "disconnected by operator",
            Self::Draining => "node draining: reconnect elsewhere",
        }
    }
}

/// Result of [`Outbox::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full: the session is now closing with 4008.
    Overflow,
    /// The session is already closing; the frame was dropped.
    Closed,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Outgoing>,
    close: Option<CloseReason>,
}

#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    wake: Notify,
}

impl Outbox {
    pub fn push(&self, frame: Outgoing, capacity: usize) -> Pushed {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.close.is_some() {
            return Pushed::Closed;
        }
        if st.queue.len() >= capacity {
            st.close = Some(CloseReason::SlowConsumer);
            st.queue = VecDeque::new();
            drop(st);
            self.wake.notify_one();
            return Pushed::Overflow;
        }
        st.queue.push_back(frame);
        let first = st.queue.len() == 1;
        drop(st);
        if first {
            self.wake.notify_one();
        }
        Pushed::Queued
    }

    /// Asks the session to close; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.close.is_none() {
            st.close = Some(reason);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Takes every pending frame, and the close reason if one is set.
    pub fn drain(&self) -> (VecDeque<Outgoing>, Option<CloseReason>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut st.queue), st.close)
    }

    /// Puts frames ahead of everything queued (what a connecting session
    /// must see first: its replay), beyond the capacity if need be: the
    /// replay is bounded by the history window.
    pub fn prepend(&self, frames: Vec<Outgoing>) {
        if frames.is_empty() {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for f in frames.into_iter().rev() {
            st.queue.push_front(f);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The close reason, if the hub asked for one.
    pub fn closing(&self) -> Option<CloseReason> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).close
    }

    /// Restores a wake consumed while the session was busy writing.
    pub fn rewake(&self) {
        self.wake.notify_one();
    }

    /// Resolves once something was pushed or a close was asked since the
    /// last wake. Cancel-safe: a wake that arrives meanwhile is kept.
    pub async fn wait(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Outgoing {
        Outgoing::text("{}", Instant::now(), 0)
    }

    #[test]
    fn frames_are_encoded_as_rfc_6455_text_frames() {
        assert_eq!(&encode_text_frame(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let mid = encode_text_frame(&[b'x'; 300]);
        assert_eq!(&mid[..4], &[0x81, 126, 1, 44]);
        assert_eq!(mid.len(), 304);
        let big = encode_text_frame(&vec![b'x'; 70_000]);
        assert_eq!(&big[..2], &[0x81, 127]);
        assert_eq!(
            u64::from_be_bytes(big[2..10].try_into().expect("8 bytes")),
            70_000
        );
    }

    #[test]
    fn overflow_closes_and_frees_the_queue() {
        let ob = Outbox::default();
        assert_eq!(ob.push(frame(), 2), Pushed::Queued);
        assert_eq!(ob.push(frame(), 2), Pushed::Queued);
        assert_eq!(ob.push(frame(), 2), Pushed::Overflow);
        assert_eq!(ob.push(frame(), 2), Pushed::Closed);
        let (q, close) = ob.drain();
        assert!(q.is_empty());
        assert_eq!(close, Some(CloseReason::SlowConsumer));
    }

    #[tokio::test]
    async fn a_push_before_wait_is_not_lost() {
        let ob = Outbox::default();
        ob.push(frame(), 8);
        tokio::time::timeout(std::time::Duration::from_secs(5), ob.wait())
            .await
            .expect("woken");
        let (q, close) = ob.drain();
        assert_eq!(q.len(), 1);
        assert_eq!(close, None);
    }
}
