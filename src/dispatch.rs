//! From a received envelope to frames in outboxes: the node's delivery step.
//!
//! Every path ends here: the HTTP API and CLI in embedded mode, and the Redis
//! subscriber in Redis mode. A message is serialized once here and the same
//! bytes are shared by every recipient on this node.

use crate::audience::Audience;
use crate::envelope::{
    self, Action, Command, Envelope, EnvelopeError, Kind, Position, Priority, Publish,
};
use crate::hub::outbox::Outgoing;
use crate::hub::{Hub, Target};
use crate::metrics::{Metrics, Source};
use crate::protocol::ServerFrame;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Where a message came from on the bus, which bounds whom it may reach.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// The broadcast channel, or a local publish: the audience decides.
    Broadcast,
    /// A per-user channel: only that user's sessions, if the audience agrees.
    User(&'a str),
}

pub struct Dispatcher {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    max_envelope_bytes: usize,
    everyone: Audience,
}

impl Dispatcher {
    pub fn new(hub: Arc<Hub>, metrics: Arc<Metrics>, max_envelope_bytes: usize) -> Self {
        let everyone = Audience::compile(&serde_json::Value::String("all".into()))
            .unwrap_or_else(|_| unreachable!("\"all\" always compiles"));
        Self {
            hub,
            metrics,
            max_envelope_bytes,
            everyone,
        }
    }

    /// Parses, checks and delivers an envelope received from the bus.
    /// A refused envelope is counted and logged once here; the caller may
    /// record it further (the `dead` stream).
    pub fn receive(
        &self,
        source: &'static str,
        route: Route<'_>,
        payload: &[u8],
    ) -> Result<usize, EnvelopeError> {
        let born = Instant::now();
        match envelope::parse(payload, self.max_envelope_bytes, crate::auth::unix_now_ms()) {
            Ok(cmd) => {
                self.metrics
                    .messages
                    .get_or_create(&Source { source })
                    .inc();
                Ok(self.apply(&cmd, route, born))
            }
            Err(e) => {
                self.metrics
                    .invalid_envelopes
                    .get_or_create(&Source { source })
                    .inc();
                tracing::warn!(source, error = %e, "envelope refused");
                Err(e)
            }
        }
    }

    /// Delivers a checked command to the matching sessions on this node.
    pub fn apply(&self, cmd: &Command, route: Route<'_>, born: Instant) -> usize {
        match cmd {
            Command::Publish(p) => self.publish(p, route, born),
            Command::Retract { id } => {
                let text = Utf8Bytes::from(ServerFrame::Retract { id }.to_json());
                let target = match route {
                    Route::Broadcast => Target::Everyone,
                    Route::User(u) => Target::User(u),
                };
                self.hub.deliver(target, &self.everyone, |_| Outgoing {
                    text: text.clone(),
                    born,
                })
            }
            Command::Disconnect { users } => match route {
                Route::User(u) => self.hub.disconnect_user(u),
                Route::Broadcast => users.iter().map(|u| self.hub.disconnect_user(u)).sum(),
            },
        }
    }

    fn publish(&self, p: &Publish, route: Route<'_>, born: Instant) -> usize {
        if p.expired(crate::auth::unix_now_ms()) {
            self.metrics.drop_reason("expired");
            return 0;
        }
        let text = Utf8Bytes::from(msg_frame(&p.envelope, None, "push"));
        let target = match (route, p.audience.users()) {
            (Route::User(u), _) => Target::User(u),
            (Route::Broadcast, Some(users)) => Target::Users(users),
            (Route::Broadcast, None) => Target::Everyone,
        };
        let n = self.hub.deliver(target, &p.audience, |_| Outgoing {
            text: text.clone(),
            born,
        });
        tracing::debug!(msg_id = p.id(), delivered = n, "message delivered");
        n
    }
}

/// The `msg` frame: the envelope's content fields, without `to`, `op` and
/// `fallback`, plus `pos` and `reason`.
#[derive(Serialize)]
struct MsgFrame<'a> {
    t: &'static str,
    id: &'a str,
    kind: Option<Kind>,
    priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    actions: &'a [Action],
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anchor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    theme: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    sticky: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    collapse_key: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    require_ack: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pos: Option<&'a str>,
    reason: &'a str,
}

pub fn msg_frame(e: &Envelope, pos: Option<&str>, reason: &str) -> String {
    let frame = MsgFrame {
        t: "msg",
        id: e.id.as_deref().unwrap_or_default(),
        kind: e.kind,
        priority: e.priority,
        title: e.title.as_deref(),
        body: e.body.as_deref(),
        image_url: e.image_url.as_deref(),
        actions: &e.actions,
        position: e.position,
        anchor: e.anchor.as_deref(),
        theme: e.theme.as_ref(),
        data: e.data.as_ref(),
        expires_at: e.expires_at,
        sticky: e.sticky,
        collapse_key: e.collapse_key.as_deref(),
        require_ack: e.require_ack,
        campaign: e.campaign.as_deref(),
        pos,
        reason,
    };
    serde_json::to_string(&frame).unwrap_or_default()
}
