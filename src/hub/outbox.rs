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

use crate::protocol::Close;

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
    /// Bytes of the frames in `queue`.
    bytes: usize,
    close: Option<Close>,
    /// The session stopped taking frames (it is closing).
    sealed: bool,
}

/// How much one outbox may hold: frames, and their bytes.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    pub frames: usize,
    pub bytes: usize,
}

#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    wake: Notify,
}

impl Outbox {
    pub fn push(&self, frame: Outgoing, capacity: Capacity) -> Pushed {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.close.is_some() || st.sealed {
            return Pushed::Closed;
        }
        let len = frame.bytes().len();
        if st.queue.len() >= capacity.frames || st.bytes + len > capacity.bytes {
            st.close = Some(Close::SlowConsumer);
            st.queue = VecDeque::new();
            st.bytes = 0;
            drop(st);
            self.wake.notify_one();
            return Pushed::Overflow;
        }
        st.bytes += len;
        st.queue.push_back(frame);
        let first = st.queue.len() == 1;
        drop(st);
        if first {
            self.wake.notify_one();
        }
        Pushed::Queued
    }

    /// Asks the session to close; the first reason wins.
    pub fn close(&self, reason: Close) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.close.is_none() {
            st.close = Some(reason);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Takes every pending frame, and the close reason if one is set.
    pub fn drain(&self) -> (VecDeque<Outgoing>, Option<Close>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.bytes = 0;
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
            st.bytes += f.bytes().len();
            st.queue.push_front(f);
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Refuses every frame from now on and drops what is queued: the
    /// session is closing and will not write them.
    pub fn seal(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.sealed = true;
        st.queue = VecDeque::new();
        st.bytes = 0;
    }

    /// The close reason, if the hub asked for one.
    pub fn closing(&self) -> Option<Close> {
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

    const TWO: Capacity = Capacity {
        frames: 2,
        bytes: 1 << 20,
    };

    #[test]
    fn overflow_closes_and_frees_the_queue() {
        let ob = Outbox::default();
        assert_eq!(ob.push(frame(), TWO), Pushed::Queued);
        assert_eq!(ob.push(frame(), TWO), Pushed::Queued);
        assert_eq!(ob.push(frame(), TWO), Pushed::Overflow);
        assert_eq!(ob.push(frame(), TWO), Pushed::Closed);
        let (q, close) = ob.drain();
        assert!(q.is_empty());
        assert_eq!(close, Some(Close::SlowConsumer));
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let big = || Outgoing::text(&"x".repeat(4000), Instant::now(), 0);
        let cap = Capacity {
            frames: 100,
            bytes: 10_000,
        };
        let ob = Outbox::default();
        assert_eq!(ob.push(big(), cap), Pushed::Queued);
        assert_eq!(ob.push(big(), cap), Pushed::Queued);
        // Drained, the bytes count starts over: positive control.
        assert_eq!(ob.drain().0.len(), 2);
        assert_eq!(ob.push(big(), cap), Pushed::Queued);
        assert_eq!(ob.push(big(), cap), Pushed::Queued);
        assert_eq!(ob.push(big(), cap), Pushed::Overflow);
        assert_eq!(ob.drain().1, Some(Close::SlowConsumer));
    }

    #[tokio::test]
    async fn a_push_before_wait_is_not_lost() {
        let ob = Outbox::default();
        ob.push(frame(), TWO);
        tokio::time::timeout(std::time::Duration::from_secs(5), ob.wait())
            .await
            .expect("woken");
        let (q, close) = ob.drain();
        assert_eq!(q.len(), 1);
        assert_eq!(close, None);
    }
}
