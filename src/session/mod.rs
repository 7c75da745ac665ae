//! The per-connection loop. It owns the socket; protocol decisions come from
//! [`state::SessionState`], deliveries from the session's [`Outbox`].

mod setup;
mod socket;
pub mod state;

pub use setup::{Upgraded, start};
pub use socket::Socket;

use crate::campaigns::Occurrence;
use crate::config::SessionConfig;
use crate::hub::Registration;
use crate::hub::outbox::{Batch, Outgoing, PING_FRAME};
use crate::logs::Repeated;
use crate::metrics::{FrameType, Metrics, Reason};
use crate::protocol::{ClientFrame, Close};
use state::SessionState;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
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
/// - the hub's ticker, through the outbox: the next keepalive ping, the
///   token's expiry, or the next idle threshold of a campaign, whichever
///   comes first ([`crate::hub::Hub::run_ticker`]: one walk over the
///   sessions per tick instead of a timer in each). A peer silent for two
///   heartbeats is dropped.
///
/// Every idle session holds this future, so its size is memory per
/// session: it is a function returning an `async move` block rather than
/// an `async fn` (which keeps its arguments twice, as captured and as moved
/// into the body: 400 bytes at the time, the socket alone is 296 now), the
/// branches of `select!` only decide a [`Step`] and every await happens
/// outside it in a boxed future (so that a parsed client frame or a drained
/// batch is not kept in every idle session's state), times are ms on the
/// hub's clock, and settings are read from `ctx` rather than copied into
/// locals: 504 bytes, a 640-byte task cell (`-Zprint-type-sizes`).
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice in every idle session"
)]
pub fn run(
    mut ws: Socket,
    reg: Registration,
    ctx: Arc<SessionCtx>,
    first: Vec<u8>,
    replayed_upto: u64,
) -> impl std::future::Future<Output = ()> {
    async move {
        let session = &reg.session;
        let started = ctx.hub.now_ms();
        let mut clocks = Clocks {
            expires: deadline_of(started, session.identity().exp),
            last_seen: started,
            next_ping: started.saturating_add(ms(ctx.cfg.heartbeat)),
            idle_since: started,
            idle_done_s: 0,
        };
        let mut state = SessionState::new(&ctx.cfg, started);

        // `first` (the upgrade response and `hello`) is sent from this task,
        // not the setup's: the socket keeps the waker of the last task that
        // waited on it, and a setup task's waker kept its whole (finished)
        // task allocated (1.3 KB a session).
        if Box::pin(send(&mut ws, &first, ctx.cfg.write_timeout))
            .await
            .is_err()
        {
            return;
        }
        drop(first);
        tracing::debug!(user = %session.user, sid = session.sid, "session open");

        ctx.hub.wake_at(session, clocks.deadline(&ctx));

        let end: End = loop {
            let step = tokio::select! {
                () = session.outbox.wait() => Step::Drain,
                incoming = std::future::poll_fn(|cx| ws.poll_next(cx)) => on_incoming(&ctx, session, &mut state, &mut clocks, incoming),
            };
            match step {
                Step::Nothing => {}
                Step::End(end) => break end,
                Step::Drain => {
                    let drain = drain(&mut ws, &session.outbox, &ctx, replayed_upto);
                    if let Err(end) = Box::pin(drain).await {
                        break end;
                    }
                    if !session.outbox.take_tick() {
                        continue;
                    }
                    // The ticker: something of the session's own is due.
                    let now = ctx.hub.now_ms();
                    if now >= clocks.expires {
                        break End::Close(Close::TokenExpired);
                    }
                    if now.saturating_sub(clocks.last_seen)
                        >= ms(ctx.cfg.heartbeat).saturating_mul(2)
                    {
                        ctx.metrics
                            .closes
                            .get_or_create(&Reason { reason: "timeout" })
                            .inc();
                        tracing::debug!(user = %session.user, sid = session.sid, "peer silent for two heartbeats");
                        break End::Gone;
                    }
                    if now >= clocks.next_ping {
                        if let Err(end) =
                            Box::pin(send(&mut ws, PING_FRAME, ctx.cfg.write_timeout)).await
                        {
                            break end;
                        }
                        clocks.next_ping = now.saturating_add(ms(ctx.cfg.heartbeat));
                    }
                    if let Some((at, seconds)) = clocks.next_idle(&ctx)
                        && now >= at
                    {
                        clocks.idle_done_s = seconds;
                        ctx.campaigns
                            .fire(session.clone(), Occurrence::Idle { seconds });
                    }
                    ctx.hub.wake_at(session, clocks.deadline(&ctx));
                }
                Step::Respond(respond) => {
                    match Box::pin(answer(&mut ws, &ctx, session, *respond)).await {
                        Ok(Some(exp)) => {
                            clocks.expires = deadline_of(ctx.hub.now_ms(), exp);
                            ctx.hub.wake_at(session, clocks.deadline(&ctx));
                        }
                        Ok(None) => {}
                        Err(end) => break end,
                    }
                }
            }
        };

        if let End::Close(close) = end {
            ctx.metrics
                .closes
                .get_or_create(&Reason {
                    reason: close.label(),
                })
                .inc();
            tracing::debug!(user = %session.user, sid = session.sid, code = close.code().code(), reason = close.reason(), "closing session");
        }
        // Nothing more is written but the close; the session stays registered
        // (and a drain waits for it) until its close frame is out.
        session.outbox.seal();
        Box::pin(finish(&mut ws, end)).await;
        tracing::debug!(user = %session.user, sid = session.sid, "session closed");
        drop(reg);
    }
}

/// When the session next has something to do on its own, and why: times
/// in ms since the hub's epoch ([`crate::hub::Hub::now_ms`]), 8 bytes each
/// in every session where an `Instant` takes 16.
struct Clocks {
    /// The token's expiry.
    expires: u64,
    /// The last frame from the peer (two heartbeats without one: gone).
    last_seen: u64,
    next_ping: u64,
    /// Idle campaigns: the start of this quiet stretch (no client event or
    /// ack since), and the largest idle threshold already fired in it.
    idle_since: u64,
    idle_done_s: u64,
}

impl Clocks {
    fn next_idle(&self, ctx: &SessionCtx) -> Option<(u64, u64)> {
        ctx.campaigns
            .registry
            .next_idle_after(self.idle_done_s)
            .map(|s| (self.idle_since.saturating_add(s.saturating_mul(1000)), s))
    }

    /// When the session next needs the ticker: ping, expiry or idle threshold.
    fn deadline(&self, ctx: &SessionCtx) -> u64 {
        let d = self.next_ping.min(self.expires);
        self.next_idle(ctx).map_or(d, |(at, _)| d.min(at))
    }
}

/// A duration in whole ms.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A token's `exp` as a deadline on the hub's clock, `now_ms` being now
/// (at most [`MAX_SESSION`] away).
fn deadline_of(now_ms: u64, exp: u64) -> u64 {
    let left = Duration::from_secs(exp.saturating_sub(crate::auth::unix_now())).min(MAX_SESSION);
    now_ms.saturating_add(ms(left))
}

/// What the loop does after one of its inputs woke it.
enum Step {
    /// The outbox has frames, a close request or a tick.
    Drain,
    /// A client frame was handled; its reply, refresh or close remains.
    Respond(Box<Respond>),
    End(End),
    Nothing,
}

/// What a client frame leaves to do with the socket or the verifier.
struct Respond {
    /// An `auth` frame's token, verified before the reply.
    token: Option<String>,
    reply: Option<String>,
    close: Option<Close>,
}

/// Handles what the socket gave, without waiting for anything.
fn on_incoming(
    ctx: &SessionCtx,
    session: &Arc<crate::hub::Session>,
    state: &mut SessionState,
    clocks: &mut Clocks,
    incoming: Option<Result<Message, WsError>>,
) -> Step {
    let msg = match incoming {
        None => return Step::End(End::Gone),
        Some(Ok(msg)) => msg,
        Some(Err(WsError::Capacity(_))) => return Step::End(End::Close(Close::TooBig)),
        Some(Err(WsError::Utf8(_))) => return Step::End(End::Close(Close::InvalidUtf8)),
        Some(Err(WsError::Protocol(_))) => return Step::End(End::Close(Close::Protocol)),
        Some(Err(_)) => return Step::End(End::Gone),
    };
    let now = ctx.hub.now_ms();
    clocks.last_seen = now;
    let outcome = match msg {
        Message::Text(text) => state.on_text(&ctx.cfg, &text, now),
        Message::Binary(_) => state.on_binary(&ctx.cfg, now),
        Message::Close(_) => return Step::End(End::PeerClosed),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Step::Nothing,
    };
    let metrics = &ctx.metrics;
    let mut token = None;
    if let Some(frame) = outcome.frame {
        metrics
            .client_frames
            .get_or_create(&FrameType {
                r#type: frame.kind(),
            })
            .inc();
        if !matches!(frame, ClientFrame::Ping | ClientFrame::Auth { .. }) {
            clocks.idle_since = now;
            clocks.idle_done_s = 0;
        }
        let feeds_campaigns =
            matches!(frame, ClientFrame::Event(_)) && state.campaign_event_allowed(&ctx.cfg, now);
        if matches!(frame, ClientFrame::Event(_)) && !feeds_campaigns {
            metrics.drop_reason("campaign_events_rate");
        }
        match frame {
            // A fresh token: verified as at the handshake, for the same
            // user; the session then ends at its expiry.
            ClientFrame::Auth { token: fresh } => token = Some(fresh),
            frame => on_client_frame(ctx, session, frame, feeds_campaigns),
        }
    }
    if let Some(code) = outcome.error {
        metrics
            .client_errors
            .get_or_create(&Reason { reason: code })
            .inc();
    }
    if token.is_none() && outcome.reply.is_none() && outcome.close.is_none() {
        return Step::Nothing;
    }
    Step::Respond(Box::new(Respond {
        token,
        reply: outcome.reply,
        close: outcome.close,
    }))
}

/// Refreshes the identity if a token came, then sends the reply (bounded
/// like every write: a peer that sends but never reads cannot hold the
/// loop on it) and ends the session if the frame asked to. Returns the new
/// expiry after a refresh.
async fn answer(
    ws: &mut Socket,
    ctx: &SessionCtx,
    session: &crate::hub::Session,
    respond: Respond,
) -> Result<Option<u64>, End> {
    let Respond {
        token,
        mut reply,
        close,
    } = respond;
    let mut refreshed = None;
    if let Some(token) = token {
        let (answer, exp) = refresh(&ctx.verifier, session, &token).await;
        reply = Some(answer);
        refreshed = exp;
    }
    if let Some(reply) = reply {
        let frame = crate::hub::outbox::encode_text_frame(reply.as_bytes());
        send(ws, &frame, ctx.cfg.write_timeout).await?;
    }
    match close {
        Some(close) => Err(End::Close(close)),
        None => Ok(refreshed),
    }
}

/// An `auth` frame's token checked and, when it is good and for the same
/// user, made the session's identity. Returns the reply and, on success,
/// the new expiry.
async fn refresh(
    verifier: &crate::auth::Verifier,
    session: &crate::hub::Session,
    token: &str,
) -> (String, Option<u64>) {
    let refused = |why: &str| (state::error_frame("auth_failed", why), None);
    match verifier.verify_fresh(token).await {
        Ok(identity) if identity.user == session.user => {
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

/// Writes encoded frames of the session's own (hello, a ping, a reply)
/// within `within`: a socket that takes nothing for that long is a slow
/// consumer.
async fn send(ws: &mut Socket, frames: &[u8], within: Duration) -> Result<(), End> {
    let write = async {
        use tokio::io::AsyncWriteExt;
        ws.flush().await?;
        ws.tcp().write_all(frames).await?;
        Ok::<_, WsError>(())
    };
    match tokio::time::timeout(within, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => Err(End::Close(Close::WriteTimeout)),
    }
}

/// Ends the connection: echoes the peer's close, or sends Herald's, then
/// lingers (reads and discards, bounded) so that the close frame reaches a
/// peer that is still reading instead of being lost to a reset.
async fn finish(ws: &mut Socket, end: End) {
    let sent = match end {
        End::Gone => return,
        End::PeerClosed => tokio::time::timeout(CLOSE_WRITE, ws.flush()).await,
        End::Close(close) => {
            let frame = CloseFrame {
                code: close.code().code().into(),
                reason: close.reason().into(),
            };
            tokio::time::timeout(CLOSE_WRITE, ws.close(frame)).await
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

/// Writes what the outbox holds and ends the session if it was asked to.
/// A future of its own, boxed: the drained frames are not kept in every
/// idle session's state.
async fn drain(
    ws: &mut Socket,
    outbox: &crate::hub::outbox::Outbox,
    ctx: &SessionCtx,
    replayed_upto: u64,
) -> Result<(), End> {
    let (mut frames, close) = outbox.drain();
    if replayed_upto > 0 {
        // Live copies of what the client had or the resume replayed.
        frames.retain(|f| f.seq() == 0 || f.seq() > replayed_upto);
    }
    if !frames.is_empty() {
        write_watching(ws, frames, outbox, &ctx.cfg, &ctx.metrics).await?;
    }
    match close {
        Some(reason) => Err(End::Close(reason)),
        None => Ok(()),
    }
}

/// Writes a batch while still watching the outbox, so that a close request
/// (a slow consumer overflowing, an operator, a drain) is not stuck behind
/// a socket that does not drain: the write is abandoned with that close
/// (or, past `session.write_timeout`, with the write-timeout close). Wakes for new frames are kept
/// for later.
async fn write_watching(
    ws: &mut Socket,
    frames: Batch,
    outbox: &crate::hub::outbox::Outbox,
    cfg: &SessionConfig,
    metrics: &Metrics,
) -> Result<(), End> {
    let write = tokio::time::timeout(cfg.write_timeout, write_batch(ws, frames, metrics));
    tokio::pin!(write);
    let mut woken = false;
    let result = loop {
        tokio::select! {
            r = &mut write => break match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(End::Gone),
                Err(_) => {
                    metrics.drop_reason("write_timeout");
                    Err(End::Close(Close::WriteTimeout))
                }
            },
            () = outbox.wait() => match outbox.closing() {
                Some(reason) => break Err(End::Close(reason)),
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
/// copy. tungstenite's own buffer is flushed first, so its frames (pongs,
/// the close) and these never interleave.
async fn write_batch(ws: &mut Socket, frames: Batch, metrics: &Metrics) -> Result<(), WsError> {
    use tokio::io::AsyncWriteExt;
    ws.flush().await?;
    let io = ws.tcp();
    // One frame (most writes) needs no vector of slices.
    let mut one: [std::io::IoSlice<'_>; 1];
    let mut many: Vec<std::io::IoSlice<'_>>;
    let mut rest: &mut [std::io::IoSlice<'_>] = match frames.iter().next() {
        Some(f) if frames.len() == 1 => {
            one = [std::io::IoSlice::new(f.bytes())];
            &mut one
        }
        _ => {
            many = frames
                .iter()
                .map(|f| std::io::IoSlice::new(f.bytes()))
                .collect();
            &mut many
        }
    };
    while !rest.is_empty() {
        let n = io.write_vectored(rest).await?;
        if n == 0 {
            return Err(WsError::Io(std::io::ErrorKind::WriteZero.into()));
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
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
