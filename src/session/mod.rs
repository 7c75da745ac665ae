//! The per-connection loop. It owns the socket; protocol decisions come from
//! [`state::SessionState`], deliveries from the session's [`Outbox`].

pub mod state;

use crate::campaigns::Occurrence;
use crate::config::SessionConfig;
use crate::hub::Registration;
use crate::hub::outbox::{CloseReason, Outgoing};
use crate::metrics::{FrameType, Metrics, Reason};
use crate::protocol::{ClientFrame, CloseCode};
use futures::{SinkExt, StreamExt};
use state::SessionState;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// What every session loop shares.
pub struct SessionCtx {
    pub cfg: SessionConfig,
    pub metrics: Arc<Metrics>,
    pub hub: Arc<crate::hub::Hub>,
    pub campaigns: Arc<crate::campaigns::Engine>,
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
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let session = reg.session.clone();
    let user = session.identity.user.clone();
    let sid = session.sid;
    let metrics = &ctx.metrics;
    let heartbeat = ctx.cfg.heartbeat;
    let started = Instant::now();
    let expires =
        started + Duration::from_secs(session.identity.exp.saturating_sub(crate::auth::unix_now()));
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
    let deadline = |next_ping: Instant, idle: Option<(Instant, u64)>| {
        let d = next_ping.min(expires);
        idle.map_or(d, |(at, _)| d.min(at))
    };

    if ws.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    tracing::debug!(%user, sid, "session open");

    let timer = tokio::time::sleep_until(deadline(next_ping, next_idle(idle_since, idle_done_s)));
    tokio::pin!(timer);

    let close: Option<(CloseCode, &'static str)> = loop {
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
                        Written::SocketGone => break None,
                        Written::Closing(reason) => break Some((reason.code(), reason.text())),
                    }
                }
                if let Some(reason) = close {
                    break Some((reason.code(), reason.text()));
                }
            }
            incoming = ws.next() => {
                let msg = match incoming {
                    None => break None,
                    Some(Ok(msg)) => msg,
                    Some(Err(WsError::Capacity(_))) => break Some((CloseCode::TooBig, "frame too big")),
                    Some(Err(WsError::Utf8(_))) => break Some((CloseCode::InvalidPayload, "invalid UTF-8")),
                    Some(Err(_)) => break None,
                };
                last_seen = Instant::now();
                let outcome = match msg {
                    Message::Text(text) => state.on_text(&text, last_seen.into_std()),
                    Message::Binary(_) => state.on_binary(last_seen.into_std()),
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                if let Some(frame) = outcome.frame {
                    metrics.client_frames.get_or_create(&FrameType { r#type: frame.kind() }).inc();
                    if !matches!(frame, ClientFrame::Ping) {
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
                if let Some(reply) = outcome.reply
                    && ws.send(Message::Text(reply.into())).await.is_err()
                {
                    break None;
                }
                if let Some(close) = outcome.close {
                    break Some(close);
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if now >= expires {
                    break Some((CloseCode::Policy, "token expired"));
                }
                if now.duration_since(last_seen) >= heartbeat * 2 {
                    metrics.closes.get_or_create(&Reason { reason: "timeout" }).inc();
                    tracing::debug!(%user, sid, "peer silent for two heartbeats");
                    break None;
                }
                if now >= next_ping {
                    if ws.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                    next_ping = now + heartbeat;
                }
                if let Some((at, seconds)) = next_idle(idle_since, idle_done_s)
                    && now >= at
                {
                    idle_done_s = seconds;
                    ctx.campaigns.fire(session.clone(), Occurrence::Idle { seconds });
                }
                timer.as_mut().reset(deadline(next_ping, next_idle(idle_since, idle_done_s)));
            }
        }
    };

    if let Some((code, reason)) = close {
        metrics
            .closes
            .get_or_create(&Reason {
                reason: close_label(code),
            })
            .inc();
        tracing::debug!(%user, sid, code = code.code(), reason, "closing session");
        let frame = CloseFrame {
            code: code.code().into(),
            reason: reason.into(),
        };
        // A peer that will not take the close frame does not hold the node.
        let _ = Box::pin(tokio::time::timeout(
            Duration::from_secs(1),
            ws.close(Some(frame)),
        ))
        .await;
    }
    drop(reg);
    tracing::debug!(%user, sid, "session closed");
}

enum Written {
    Done,
    SocketGone,
    /// Abandoned: the hub asked to close, or the peer took too long.
    Closing(CloseReason),
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
                    Written::Closing(CloseReason::SlowConsumer)
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
    let user = &session.identity.user;
    let sid = session.sid;
    match frame {
        ClientFrame::Ack(ack) => {
            tracing::debug!(%user, sid, msg_id = %ack.id, status = ack.status.as_str(), "ack");
            let (engine, user, sid) = (ctx.campaigns.clone(), user.clone(), ctx.hub.sid_text(sid));
            tokio::spawn(async move {
                if let Err(e) = engine.on_ack(&user, &sid, &ack).await {
                    tracing::warn!(%user, msg_id = %ack.id, error = %e, "ack not recorded");
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
        ClientFrame::Ping => {}
    }
}

fn close_label(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Normal => "normal",
        CloseCode::InvalidPayload => "invalid_payload",
        CloseCode::Policy => "policy",
        CloseCode::TooBig => "too_big",
        CloseCode::Internal => "internal",
        CloseCode::Restart => "draining",
        CloseCode::Abuse => "abuse",
        CloseCode::SlowConsumer => "slow_consumer",
        CloseCode::RateLimited => "rate_limited",
    }
}
