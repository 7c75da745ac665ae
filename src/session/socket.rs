//! A session's WebSocket: tungstenite's protocol (framing, masking, pongs,
//! the close handshake) over the accepted `TcpStream`, driven by the
//! socket's own readiness.
//!
//! tokio-tungstenite's `WebSocketStream` does the same through a wrapper
//! that keeps two reference-counted waker proxies per connection (160 bytes
//! of heap in every idle session) and re-registers the task's waker in them
//! on every poll. Here tungstenite reads and writes with `try_read` and
//! `try_write`, which never wait; when one would block, the session polls
//! that direction's readiness, and tokio keeps the one waker in the
//! socket's own registration.
//!
//! Deliveries, `hello`, pings and replies do not go through tungstenite:
//! they are encoded frames written straight to the socket ([`Socket::tcp`])
//! after [`Socket::flush`], so tungstenite's write buffer is used only for
//! its own frames (pongs and the close) and stays unallocated otherwise.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub struct Socket {
    ws: WebSocket<Raw>,
    /// tungstenite said the connection is over (or failed): nothing more
    /// is read.
    ended: bool,
}

/// The socket as tungstenite's blocking-style `Read + Write`: every call
/// returns at once, `WouldBlock` when the kernel has nothing (or no room).
struct Raw(TcpStream);

impl Read for Raw {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Raw {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block(e: &WsError) -> bool {
    matches!(e, WsError::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl Socket {
    /// A server-side WebSocket over an upgraded connection; `read` holds
    /// what the HTTP parser already read past the request (usually nothing).
    pub fn new(tcp: TcpStream, read: &[u8], config: WebSocketConfig) -> Self {
        let raw = Raw(tcp);
        let ws = if read.is_empty() {
            WebSocket::from_raw_socket(raw, Role::Server, Some(config))
        } else {
            WebSocket::from_partially_read(raw, read.to_vec(), Role::Server, Some(config))
        };
        Self { ws, ended: false }
    }

    /// The socket itself, for frames written without tungstenite: call
    /// [`Socket::flush`] first so that its frames and these never interleave.
    pub fn tcp(&mut self) -> &mut TcpStream {
        &mut self.ws.get_mut().0
    }

    /// The next message from the peer; `None` once the connection is over.
    /// tungstenite answers pings itself (the pong leaves with the next read
    /// or flush).
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        loop {
            match self.ws.read() {
                Ok(msg) => return Poll::Ready(Some(Ok(msg))),
                // tungstenite reports only a blocked read here (a blocked
                // pong is kept for later).
                Err(e) if would_block(&e) => match self.ws.get_ref().0.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => {
                        self.ended = true;
                        return Poll::Ready(Some(Err(WsError::Io(e))));
                    }
                    Poll::Pending => return Poll::Pending,
                },
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Err(e) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    /// Writes out what tungstenite holds (a pong, the echo of a close).
    pub async fn flush(&mut self) -> Result<(), WsError> {
        self.drive(|ws| ws.flush()).await
    }

    /// Queues a close frame and writes it out.
    pub async fn close(&mut self, frame: CloseFrame) -> Result<(), WsError> {
        let mut frame = Some(frame);
        // The frame is queued by the first call whatever it returns; later
        // calls only write out what is left.
        self.drive(|ws| match frame.take() {
            Some(frame) => ws.close(Some(frame)),
            None => ws.flush(),
        })
        .await
    }

    /// Repeats a tungstenite write until it no longer blocks, waiting for
    /// the socket to take more in between. A connection tungstenite has
    /// finished with counts as written.
    async fn drive(
        &mut self,
        mut op: impl FnMut(&mut WebSocket<Raw>) -> Result<(), WsError>,
    ) -> Result<(), WsError> {
        poll_fn(|cx| {
            loop {
                match op(&mut self.ws) {
                    Ok(()) | Err(WsError::ConnectionClosed) => return Poll::Ready(Ok(())),
                    Err(e) if would_block(&e) => match self.ws.get_ref().0.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(WsError::Io(e))),
                        Poll::Pending => return Poll::Pending,
                    },
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        })
        .await
    }
}
