//! The per-connection loop. It owns the socket; protocol decisions come from
//! [`state::SessionState`], deliveries from the session's [`Outbox`].

mod setup;
pub mod state;

pub use setup::start;

use crate::campaigns::Occurrence;
use crate::config::SessionConfig;
use crate::hub::Registration;
use crate::hub::outbox::Outgoing;
use crate::logs::Repeated;
use crate::metrics::{FrameType, Metrics, Reason};
use crate::protocol::{ClientFrame, Close};
use futures::{SinkExt, StreamExt};
use state::SessionState;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// After Herald sends a close frame it keeps reading, and discarding, what
/// the peer still sends, for at most this long and this many bytes: closing
/// with unread bytes makes the kernel answer with a reset, and the peer
/// would lose the close frame (and learn nothing of why it was closed).
const LINGER: Duration = Duration::from_secs(3);
const LINGER_BYTES: usize = 1024 * 1024;
/// How long a close frame may take to write.
const CLOSE_WRITE: Duration = Duration::from_secs(1);
/// Sessions end at their token's `exp`, or after ten years at the latest
/// (an `exp` near `u64::MAX` is not a time a clock can hold).
const MAX_SESSION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// tungstenite's settings for a session: buffers and the largest frame.
pub fn ws_config(cfg: &SessionConfig) -> WebSocketConfig {
    let mut ws = WebSocketConfig::default();
    ws.read_buffer_size = cfg.read_buffer_bytes;
    ws.write_buffer_size = cfg.write_buffer_bytes;
    ws.max_message_size = Some(cfg.max_frame_bytes);
    ws.max_frame_size = Some(cfg.max_frame_bytes);
    ws
}

/// How the loop ended.
enum End {
    /// The socket broke, or the peer went silent: nothing more to send.
    Gone,
    /// The peer sent a close frame; tungstenite queued its echo.
    PeerClosed,
    /// Herald closes the session.
    Close(Close),
}

/// What every session loop shares.
pub struct SessionCtx {
    pub cfg: SessionConfig,
    /// tungstenite's settings, from `cfg`.
    pub ws: WebSocketConfig,
    pub metrics: Arc<Metrics>,
    pub hub: Arc<crate::hub::Hub>,
    pub campaigns: Arc<crate::campaigns::Engine>,
    /// Verifies the tokens of `auth` frames, as the handshake does.
    pub verifier: Arc<crate::auth::Verifier>,
    /// A connecting session's resume, active messages and position.
    pub bus: Arc<crate::bus::Bus>,
    /// A connecting session's first frames.
    pub dispatcher: Arc<crate::dispatch::Dispatcher>,
    /// Where acknowledgements are recorded, bounded.
    pub background: Arc<crate::tasks::Background>,
}

/// Runs one session until it ends, then unregisters it (by dropping `reg`).
///
/// Inputs of the `select!` loop:
/// - the outbox: frames to write (drained in batches, one flush each) and
///   close requests from the hub (slow consumer, operator, drain);
/// - the socket: client frames, pings and pongs, close, errors;
/// - one timer: the next keepalive ping, the token's expiry, or the next
///   idle threshold of a campaign, whichever comes first. A peer silent for
///   two heartbeats is dropped.
pub async fn run<S>(
    mut ws: WebSocketStream<S>,
    reg: Registration,
    ctx: Arc<SessionCtx>,
    hello: String,
    replayed_upto: u64,
    query_locale: Option<Box<str>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let session = reg.session.clone();
    let user = session.user.clone();
    let sid = session.sid;
    let metrics = &ctx.metrics;
    let heartbeat = ctx.cfg.heartbeat;
    let started = Instant::now();
    let deadline_of = |exp: u64| {
        Instant::now()
            + Duration::from_secs(exp.saturating_sub(crate::auth::unix_now())).min(MAX_SESSION)
    };
    let mut expires = deadline_of(session.identity().exp);
    let mut state = SessionState::new(&ctx.cfg, started.into_std());
    let mut last_seen = started;
    let mut next_ping = started + heartbeat;
    // Idle campaigns: time since the last client event or ack, and the
    // largest idle threshold already fired in this quiet stretch.
    let mut idle_since = started;
    let mut idle_done_s = 0;
    let next_idle = |since: Instant, done: u64| {
        ctx.campaigns
            .registry
            .next_idle_after(done)
            .map(|s| (since + Duration::from_secs(s), s))
    };
    let deadline = |next_ping: Instant, expires: Instant, idle: Option<(Instant, u64)>| {
        let d = next_ping.min(expires);
        idle.map_or(d, |(at, _)| d.min(at))
    };

    let write_timeout = ctx.cfg.write_timeout;
    if Box::pin(send(&mut ws, Message::Text(hello.into()), write_timeout))
        .await
        .is_err()
    {
        return;
    }
    tracing::debug!(%user, sid, "session open");

    let timer = tokio::time::sleep_until(deadline(
        next_ping,
        expires,
        next_idle(idle_since, idle_done_s),
    ));
    tokio::pin!(timer);

    let end: End = loop {
        tokio::select! {
            () = session.outbox.wait() => {
                let (mut frames, close) = session.outbox.drain();
                if replayed_upto > 0 {
                    // Live copies of what the client had or the resume replayed.
                    frames.retain(|f| f.seq() == 0 || f.seq() > replayed_upto);
                }
                if !frames.is_empty() {
                    // Boxed: its state exists only while writing, not in every idle session.
                    match Box::pin(write_watching(&mut ws, frames, &session.outbox, &ctx.cfg, metrics)).await {
                        Written::Done => {}
                        Written::SocketGone => break End::Gone,
                        Written::Closing(reason) => break End::Close(reason),
                    }
                }
                if let Some(reason) = close {
                    break End::Close(reason);
                }
            }
            incoming = ws.next() => {
                let msg = match incoming {
                    None => break End::Gone,
                    Some(Ok(msg)) => msg,
                    Some(Err(WsError::Capacity(_))) => break End::Close(Close::TooBig),
                    Some(Err(WsError::Utf8(_))) => break End::Close(Close::InvalidUtf8),
                    Some(Err(WsError::Protocol(_))) => break End::Close(Close::Protocol),
                    Some(Err(_)) => break End::Gone,
                };
                last_seen = Instant::now();
                let outcome = match msg {
                    Message::Text(text) => state.on_text(&text, last_seen.into_std()),
                    Message::Binary(_) => state.on_binary(last_seen.into_std()),
                    Message::Close(_) => break End::PeerClosed,
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                let mut outcome = outcome;
                if let Some(ClientFrame::Auth { token }) = &outcome.frame {
                    // A fresh token: verified as at the handshake, for the
                    // same user; the session then ends at its expiry.
                    let (reply, refreshed) = Box::pin(refresh(&ctx.verifier, &session, token, query_locale.as_deref())).await;
                    outcome.reply = Some(reply);
                    if let Some(exp) = refreshed {
                        expires = deadline_of(exp);
                        timer.as_mut().reset(deadline(next_ping, expires, next_idle(idle_since, idle_done_s)));
                    }
                }
                if let Some(frame) = outcome.frame {
                    metrics.client_frames.get_or_create(&FrameType { r#type: frame.kind() }).inc();
                    if !matches!(frame, ClientFrame::Ping | ClientFrame::Auth { .. }) {
                        idle_since = last_seen;
                        idle_done_s = 0;
                    }
                    let feeds_campaigns = matches!(frame, ClientFrame::Event(_))
                        && state.campaign_event_allowed(last_seen.into_std());
                    if matches!(frame, ClientFrame::Event(_)) && !feeds_campaigns {
                        metrics.drop_reason("campaign_events_rate");
                    }
                    on_client_frame(&ctx, &session, frame, feeds_campaigns);
                }
                if let Some(code) = outcome.error {
                    metrics.client_errors.get_or_create(&Reason { reason: code }).inc();
                }
                // A peer that sends but never reads cannot hold the loop
                // on a reply: the write is bounded like every other.
                if let Some(reply) = outcome.reply
                    && let Err(end) = Box::pin(send(&mut ws, Message::Text(reply.into()), write_timeout)).await
                {
                    break end;
                }
                if let Some(close) = outcome.close {
                    break End::Close(close);
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if now >= expires {
                    break End::Close(Close::TokenExpired);
                }
                if now.duration_since(last_seen) >= heartbeat * 2 {
                    metrics.closes.get_or_create(&Reason { reason: "timeout" }).inc();
                    tracing::debug!(%user, sid, "peer silent for two heartbeats");
                    break End::Gone;
                }
                if now >= next_ping {
                    if let Err(end) = Box::pin(send(&mut ws, Message::Ping(Default::default()), write_timeout)).await {
                        break end;
                    }
                    next_ping = now + heartbeat;
                }
                if let Some((at, seconds)) = next_idle(idle_since, idle_done_s)
                    && now >= at
                {
                    idle_done_s = seconds;
                    ctx.campaigns.fire(session.clone(), Occurrence::Idle { seconds });
                }
                timer.as_mut().reset(deadline(next_ping, expires, next_idle(idle_since, idle_done_s)));
            }
        }
    };

    if let End::Close(close) = end {
        metrics
            .closes
            .get_or_create(&Reason {
                reason: close.label(),
            })
            .inc();
        tracing::debug!(%user, sid, code = close.code().code(), reason = close.reason(), "closing session");
    }
    // Nothing more is written but the close; the session stays registered
    // (and a drain waits for it) until its close frame is out.
    session.outbox.seal();
    Box::pin(finish(&mut ws, end)).await;
    drop(reg);
    tracing::debug!(%user, sid, "session closed");
}

/// An `auth` frame's token checked and, when it is good and for the same
/// user, made the session's identity. Returns the reply and, on success,
/// the new expiry.
async fn refresh(
    verifier: &crate::auth::Verifier,
    session: &crate::hub::Session,
    token: &str,
    query_locale: Option<&str>,
) -> (String, Option<u64>) {
    let refused = |why: &str| (state::error_frame("auth_failed", why), None);
    match verifier.verify_fresh(token).await {
        Ok(mut identity) if identity.user == session.user => {
            // A locale chosen on the connection outranks the token's.
            if let Some(locale) = query_locale {
                identity.locale = Some(locale.into());
            }
            let exp = identity.exp;
            session.refresh(identity);
            tracing::debug!(user = %session.user, sid = session.sid, exp, "token refreshed");
            (
                crate::protocol::ServerFrame::Auth { exp }.to_json(),
                Some(exp),
            )
        }
        Ok(_) => refused("the token is for another user"),
        Err(e) => refused(&e.to_string()),
    }
}

/// Sends one frame tungstenite builds (hello, pong, error, ping) within
/// `within`: a socket that takes nothing for that long is a slow consumer.
async fn send<S>(ws: &mut WebSocketStream<S>, msg: Message, within: Duration) -> Result<(), End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(within, ws.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => Err(End::Close(Close::WriteTimeout)),
    }
}

/// Ends the connection: echoes the peer's close, or sends Herald's, then
/// lingers (reads and discards, bounded) so that the close frame reaches a
/// peer that is still reading instead of being lost to a reset.
async fn finish<S>(ws: &mut WebSocketStream<S>, end: End)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let sent = match end {
        End::Gone => return,
        End::PeerClosed => tokio::time::timeout(CLOSE_WRITE, ws.flush()).await,
        End::Close(close) => {
            let frame = CloseFrame {
                code: close.code().code().into(),
                reason: close.reason().into(),
            };
            tokio::time::timeout(CLOSE_WRITE, ws.close(Some(frame))).await
        }
    };
    if !matches!(sent, Ok(Ok(()))) {
        // The peer takes nothing: nothing more can reach it.
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut read = 0;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        read += msg.len();
        if read > LINGER_BYTES {
            break;
        }
    }
}

enum Written {
    Done,
    SocketGone,
    /// Abandoned: the hub asked to close, or the peer took too long.
    Closing(Close),
}

/// Writes a batch while still watching the outbox, so that a close request
/// (a slow consumer overflowing, an operator, a drain) is not stuck behind
/// a socket that does not drain. Wakes for new frames are kept for later.
async fn write_watching<S>(
    ws: &mut WebSocketStream<S>,
    frames: VecDeque<Outgoing>,
    outbox: &crate::hub::outbox::Outbox,
    cfg: &SessionConfig,
    metrics: &Metrics,
) -> Written
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let write = tokio::time::timeout(cfg.write_timeout, write_batch(ws, frames, metrics));
    tokio::pin!(write);
    let mut woken = false;
    let result = loop {
        tokio::select! {
            r = &mut write => break match r {
                Ok(Ok(())) => Written::Done,
                Ok(Err(_)) => Written::SocketGone,
                Err(_) => {
                    metrics.drop_reason("write_timeout");
                    Written::Closing(Close::WriteTimeout)
                }
            },
            () = outbox.wait() => match outbox.closing() {
                Some(reason) => break Written::Closing(reason),
                None => woken = true,
            },
        }
    };
    if woken {
        outbox.rewake();
    }
    result
}

/// Writes a batch of pre-encoded frames straight to the socket, all of them
/// in as few vectored writes as the kernel takes: no per-session framing or
/// copy. tungstenite's own buffer is flushed first, so its frames (hello,
/// pongs, errors) and these never interleave.
async fn write_batch<S>(
    ws: &mut WebSocketStream<S>,
    frames: VecDeque<Outgoing>,
    metrics: &Metrics,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    ws.flush().await?;
    let io = ws.get_mut();
    let mut slices: Vec<std::io::IoSlice<'_>> = frames
        .iter()
        .map(|f| std::io::IoSlice::new(f.bytes()))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = io.write_vectored(rest).await?;
        if n == 0 {
            return Err(WsError::Io(std::io::ErrorKind::WriteZero.into()));
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    io.flush().await?;
    // Each frame is timed at the write that sent it.
    metrics
        .latency
        .observe_written(frames.iter().map(Outgoing::born));
    Ok(())
}

/// Acks go to the events stream (and end resending for must-acknowledge
/// messages, or a campaign's `until`) without holding up the loop; events
/// feed campaigns.
fn on_client_frame(
    ctx: &SessionCtx,
    session: &Arc<crate::hub::Session>,
    frame: ClientFrame,
    feeds_campaigns: bool,
) {
    let user = &session.user;
    let sid = session.sid;
    match frame {
        ClientFrame::Ack(ack) => {
            tracing::debug!(%user, sid, msg_id = %ack.id, status = ack.status.as_str(), "ack");
            let (engine, user, sid) = (ctx.campaigns.clone(), user.clone(), ctx.hub.sid_text(sid));
            ctx.background.spawn("ack", async move {
                if let Err(e) = engine.on_ack(&user, &sid, &ack).await {
                    static NOT_RECORDED: Repeated = Repeated::new("ack not recorded");
                    if NOT_RECORDED.first(|| format!("user={user} msg_id={} error={e}", ack.id)) {
                        tracing::warn!(%user, msg_id = %ack.id, error = %e, "ack not recorded");
                    }
                }
            });
        }
        ClientFrame::Event(ev) => {
            tracing::debug!(%user, sid, event = %ev.name, "event");
            if feeds_campaigns {
                ctx.campaigns.fire(
                    session.clone(),
                    Occurrence::Event {
                        name: ev.name,
                        props: ev.props,
                    },
                );
            }
        }
        ClientFrame::Ping | ClientFrame::Auth { .. } => {}
    }
}
