//! A session's start, between the upgrade and its loop: the WebSocket over
//! the upgraded connection, the user's channel ready, what the client
//! missed (a resume, all or nothing), the active messages, the `hello`,
//! and the connect campaigns; then the loop, as a task of its own.

use super::SessionCtx;
use crate::bus::Store as _;
use crate::campaigns::Occurrence;
use crate::hub::Registration;
use crate::protocol::ServerFrame;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Starts a registered session on an upgraded connection. `since` is the
/// client's resume position; `query_locale` its `?locale=`, which outranks
/// the token's on every refresh.
pub async fn start<S>(
    io: S,
    reg: Registration,
    ctx: Arc<SessionCtx>,
    since: Option<String>,
    query_locale: Option<Box<str>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ctx.ws)).await;
    let session = &reg.session;
    // Setup futures are boxed so the session task keeps only the loop's state.
    Box::pin(ctx.bus.user_ready(&session.user)).await;
    let identity = session.identity().clone();
    // After hello, before anything live: what the client missed since its
    // last position (all of it or nothing), then the active messages.
    let resumed = match &since {
        Some(since) => Some(Box::pin(ctx.bus.resume(&identity, since)).await),
        None => None,
    };
    let active = Box::pin(ctx.bus.replay_for(&identity)).await;
    drop(identity);
    let missed = resumed.as_ref().map_or(&[][..], |r| &r.messages[..]);
    let retracted = resumed.as_ref().map_or(&[][..], |r| &r.retracted[..]);
    session.outbox.prepend(
        ctx.dispatcher
            .connect_frames(session, missed, retracted, &active),
    );
    let replayed_upto = resumed.as_ref().map_or(0, |r| r.upto());
    let head = Box::pin(ctx.bus.head()).await;
    ctx.campaigns.fire(session.clone(), Occurrence::Connect);
    let sid = ctx.hub.sid_text(session.sid);
    let hello = ServerFrame::Hello {
        sid: &sid,
        user: &session.user,
        heartbeat_s: ctx.cfg.heartbeat.as_secs().max(1),
        recovered: resumed.as_ref().map(|r| r.recovered),
        pos: head.as_deref(),
        link_schemes: ctx.dispatcher.link_schemes(),
    }
    .to_json();
    // The session runs as a task of its own: this setup task (its locals,
    // its futures) is freed, and every idle session holds only the loop.
    tokio::spawn(super::run(ws, reg, ctx, hello, replayed_upto, query_locale));
}
