//! Sends the `101 Switching Protocols` response and the session's first
//! frame (`hello`) in one write.
//!
//! hyper writes and flushes the upgrade response itself, and the session
//! writes `hello` a moment later: two segments, two trips through the
//! kernel's loopback or NIC path and two wake-ups of the client per
//! handshake. This wrapper around the accepted socket holds the `101` back
//! (reporting it written) and puts it in front of the next write, which is
//! the session's `hello`. Everything else passes straight through. A
//! session takes the socket back out with what is held
//! ([`CoalesceUpgrade::into_parts`]) and sends both itself.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const SWITCHING: &[u8] = b"HTTP/1.1 101 ";

pub struct CoalesceUpgrade<S> {
    inner: S,
    /// The held upgrade response; empty once sent (or before any).
    held: Vec<u8>,
    /// A `101` was seen: nothing is held again on this connection.
    upgraded: bool,
}

impl<S> CoalesceUpgrade<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            held: Vec::new(),
            upgraded: false,
        }
    }

    /// The socket and what is still held, for a session that writes the
    /// held response itself (in front of its `hello`).
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.inner, self.held)
    }
}

impl<S: AsyncWrite + Unpin> CoalesceUpgrade<S> {
    /// Writes the held bytes and `bufs` together; returns how much of
    /// `bufs` went out.
    fn poll_with_held(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        while !self.held.is_empty() {
            let mut slices = Vec::with_capacity(bufs.len() + 1);
            slices.push(IoSlice::new(&self.held));
            slices.extend(bufs.iter().map(|b| IoSlice::new(b)));
            let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            if n < self.held.len() {
                self.held.drain(..n);
                continue;
            }
            let of_bufs = n - self.held.len();
            self.held = Vec::new();
            if of_bufs > 0 || bufs.iter().all(|b| b.is_empty()) {
                return Poll::Ready(Ok(of_bufs));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CoalesceUpgrade<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalesceUpgrade<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if !this.upgraded && bufs.first().is_some_and(|b| b.starts_with(SWITCHING)) {
            this.upgraded = true;
            for b in bufs {
                this.held.extend_from_slice(b);
            }
            return Poll::Ready(Ok(this.held.len()));
        }
        this.poll_with_held(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// A flush leaves the held response held: the next write carries it.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.held.is_empty() {
            ready!(this.poll_with_held(cx, &[]))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_upgrade_response_leaves_with_the_next_write() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut io = CoalesceUpgrade::new(a);
        io.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .expect("write");
        io.flush().await.expect("flush");
        // Held: nothing has reached the peer (a duplex write is visible to
        // the reader at once, as the 401 test below shows).
        let mut probe = [0u8; 64];
        assert!(
            futures::FutureExt::now_or_never(b.read(&mut probe)).is_none(),
            "the 101 waits for the next write"
        );
        io.write_all(b"hello").await.expect("write");
        io.flush().await.expect("flush");
        let want = b"HTTP/1.1 101 Switching Protocols\r\n\r\nhello";
        let mut got = vec![0u8; want.len()];
        b.read_exact(&mut got).await.expect("read");
        assert_eq!(&got[..], want);
    }

    #[tokio::test]
    async fn other_responses_pass_straight_through() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut io = CoalesceUpgrade::new(a);
        io.write_all(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
            .await
            .expect("write");
        let want = b"HTTP/1.1 401 Unauthorized\r\n\r\n";
        let mut got = vec![0u8; want.len()];
        let read = futures::FutureExt::now_or_never(b.read_exact(&mut got));
        assert!(read.is_some_and(|r| r.is_ok()), "passed through at once");
        assert_eq!(&got[..], want);
    }

    #[tokio::test]
    async fn a_held_response_is_sent_before_shutdown() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut io = CoalesceUpgrade::new(a);
        io.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .expect("write");
        io.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read");
        assert_eq!(&got[..], b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
    }
}
