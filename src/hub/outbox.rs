//! One session's bounded outbound queue.
//!
//! A mutex-guarded [`Batch`] plus a waker, rather than an mpsc channel:
//! an idle outbox allocates nothing, and the session drains everything
//! pending at once so that several frames share one socket write.

use bytes::{BufMut, Bytes, BytesMut};
use futures::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

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
    let mut buf = BytesMut::with_capacity(payload.len() + 10);
    put_text_frame(&mut buf, payload);
    buf.freeze()
}

/// A ping with no payload, as every session sends it (RFC 6455 §5.5.2).
pub const PING_FRAME: &[u8] = &[0x89, 0x00];

/// Appends a final, unmasked text frame to `buf` (a session's first write
/// puts `hello` behind the upgrade response this way, with no copy).
pub fn put_text_frame(buf: &mut impl BufMut, payload: &[u8]) {
    let len = payload.len();
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

/// Frames in order: the first inline, the rest in a queue allocated only
/// when a second frame waits. Most deliveries find the outbox empty and
/// are written alone, so most allocate nothing here.
#[derive(Debug, Default)]
pub struct Batch {
    first: Option<Outgoing>,
    rest: VecDeque<Outgoing>,
}

impl Batch {
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Outgoing> {
        self.first.iter().chain(self.rest.iter())
    }

    pub fn pop_front(&mut self) -> Option<Outgoing> {
        let first = self.first.take();
        self.first = self.rest.pop_front();
        first
    }

    fn push_back(&mut self, frame: Outgoing) {
        match self.first {
            None => self.first = Some(frame),
            Some(_) => self.rest.push_back(frame),
        }
    }

    fn push_front(&mut self, frame: Outgoing) {
        if let Some(first) = self.first.replace(frame) {
            self.rest.push_front(first);
        }
    }

    /// Keeps the frames for which `keep` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&Outgoing) -> bool) {
        self.rest.retain(&mut keep);
        if self.first.as_ref().is_some_and(|f| !keep(f)) {
            self.first = self.rest.pop_front();
        }
    }
}

#[derive(Default)]
struct State {
    queue: Batch,
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
    /// The session's task, woken when `woken` is set. One waiter (the
    /// session), so a waker slot and a flag instead of a `Notify`: the
    /// wait is a `poll_fn` of one reference, small in every idle session's
    /// state.
    waker: AtomicWaker,
    woken: AtomicBool,
    /// The hub's ticker says the session's wake-up time has come.
    ticked: AtomicBool,
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
            st.queue = Batch::default();
            st.bytes = 0;
            drop(st);
            self.wake();
            return Pushed::Overflow;
        }
        st.bytes += len;
        st.queue.push_back(frame);
        let first = st.queue.len() == 1;
        drop(st);
        if first {
            self.wake();
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
        self.wake();
    }

    /// Takes every pending frame, and the close reason if one is set.
    pub fn drain(&self) -> (Batch, Option<Close>) {
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
        self.wake();
    }

    /// Refuses every frame from now on and drops what is queued: the
    /// session is closing and will not write them.
    pub fn seal(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.sealed = true;
        st.queue = Batch::default();
        st.bytes = 0;
    }

    /// The close reason, if the hub asked for one.
    pub fn closing(&self) -> Option<Close> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).close
    }

    /// Wakes the session for its own timers (see `Hub::run_ticker`).
    pub fn tick(&self) {
        self.ticked.store(true, Ordering::Release);
        self.wake();
    }

    /// Whether a tick came since the last call.
    pub fn take_tick(&self) -> bool {
        self.ticked.swap(false, Ordering::AcqRel)
    }

    /// Restores a wake consumed while the session was busy writing.
    pub fn rewake(&self) {
        self.wake();
    }

    /// Resolves once something was pushed or a close was asked since the
    /// last wake. Cancel-safe: a wake that arrives meanwhile is kept.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_wait(cx))
    }

    fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Register first, then look: a wake between the two is not lost.
        self.waker.register(cx.waker());
        if self.woken.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
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

    #[test]
    fn a_batch_keeps_its_order_through_prepend_and_retain() {
        let seq = |n| Outgoing::text("{}", Instant::now(), n);
        let seqs = |b: &Batch| b.iter().map(Outgoing::seq).collect::<Vec<_>>();
        let ob = Outbox::default();
        assert_eq!(ob.push(seq(3), TWO), Pushed::Queued);
        assert_eq!(ob.push(seq(4), TWO), Pushed::Queued);
        ob.prepend(vec![seq(1), seq(2)]);
        let (mut batch, _) = ob.drain();
        assert_eq!(seqs(&batch), [1, 2, 3, 4]);
        assert_eq!(batch.len(), 4);
        batch.retain(|f| f.seq() % 2 == 0);
        assert_eq!(seqs(&batch), [2, 4]);
        assert_eq!(batch.pop_front().map(|f| f.seq()), Some(2));
        assert_eq!(batch.pop_front().map(|f| f.seq()), Some(4));
        assert!(batch.pop_front().is_none() && batch.is_empty());
        // Drained, the outbox starts over with one frame inline.
        assert_eq!(ob.push(seq(5), TWO), Pushed::Queued);
        assert_eq!(seqs(&ob.drain().0), [5]);
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
