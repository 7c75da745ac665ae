//! A session's start, between the upgrade and its loop: the WebSocket over
//! the upgraded connection, the user's channel ready, what the client
//! missed (a resume, all or nothing), the active messages, the `hello`,
//! and the connect campaigns; then the loop, as a task of its own.

use super::SessionCtx;
use super::Socket;
use crate::bus::Store as _;
use crate::campaigns::Occurrence;
use crate::hub::Registration;
use crate::protocol::ServerFrame;
use std::sync::Arc;
use tokio::net::TcpStream;

/// The upgraded connection, as the HTTP server leaves it.
pub struct Upgraded {
    pub tcp: TcpStream,
    /// The `101 Switching Protocols` response, held back to leave in one
    /// write with `hello` (see `http::coalesce`); empty if already sent.
    pub response: Vec<u8>,
    /// Bytes the HTTP parser read past the request (usually none).
    pub read: bytes::Bytes,
}

/// Starts a registered session on an upgraded connection. `since` is the
/// client's resume position.
pub async fn start(
    upgraded: Upgraded,
    reg: Registration,
    ctx: Arc<SessionCtx>,
    since: Option<String>,
) {
    let Upgraded {
        tcp,
        response: mut first,
        read,
    } = upgraded;
    let ws = Socket::new(tcp, &read, ctx.ws);
    // Frees hyper's read buffer, which `read` shares.
    drop(read);
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
    // The active messages and the history's position, read together: two
    // independent reads, sent back to back on the shared connection, so
    // a connect waits for one round trip to Redis instead of two.
    let (active, head) = futures::join!(
        Box::pin(ctx.bus.replay_for(&identity)),
        Box::pin(ctx.bus.head())
    );
    drop(identity);
    let missed = resumed.as_ref().map_or(&[][..], |r| &r.messages[..]);
    let retracted = resumed.as_ref().map_or(&[][..], |r| &r.retracted[..]);
    session.outbox.prepend(
        ctx.dispatcher
            .connect_frames(session, missed, retracted, &active),
    );
    let replayed_upto = resumed.as_ref().map_or(0, |r| r.upto());
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
    first.reserve(hello.len() + 10);
    crate::hub::outbox::put_text_frame(&mut first, hello.as_bytes());
    drop(hello);
    // The session runs as a task of its own: this setup task (its locals,
    // its futures) is freed, and every idle session holds only the loop.
    tokio::spawn(super::run(ws, reg, ctx, first, replayed_upto));
}
