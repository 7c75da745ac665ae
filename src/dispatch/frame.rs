//! The `msg` frame sent to clients, serialized from an envelope, and why
//! a frame is sent.

use crate::auth::Identity;
use crate::envelope::{Action, Envelope, Kind, Position, Priority};
use serde::Serialize;

/// Why a frame is sent, as the `reason` field says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Push,
    Sticky,
    Replay,
    Trigger,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Sticky => "sticky",
            Self::Replay => "replay",
            Self::Trigger => "trigger",
        }
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
    /// Only `false` is sent (the default is `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    dismissible: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pos: Option<&'a str>,
    reason: &'a str,
}

/// Serializes a `msg` frame for a recipient's locale, filling placeholders
/// from `identity` when one is given.
pub fn msg_frame(
    e: &Envelope,
    locale: Option<&str>,
    identity: Option<&Identity>,
    reason: Reason,
) -> String {
    msg_frame_at(e, locale, identity, reason, true)
}

/// [`msg_frame`], without the resume position unless `with_pos`: a
/// message that overtakes one not yet delivered must not move the
/// client's position past it.
pub fn msg_frame_at(
    e: &Envelope,
    locale: Option<&str>,
    identity: Option<&Identity>,
    reason: Reason,
    with_pos: bool,
) -> String {
    let rendered = (e.locales.is_some() || identity.is_some()).then(|| e.content(locale, identity));
    let (title, body, actions) = match &rendered {
        Some((title, body, actions)) => (title.as_deref(), body.as_deref(), &actions[..]),
        None => (e.title.as_deref(), e.body.as_deref(), &e.actions[..]),
    };
    let frame = MsgFrame {
        t: "msg",
        id: e.id.as_deref().unwrap_or_default(),
        kind: e.kind,
        priority: e.priority,
        title,
        body,
        image_url: e.image_url.as_deref(),
        actions,
        position: e.position,
        anchor: e.anchor.as_deref(),
        theme: e.theme.as_ref(),
        data: e.data.as_ref(),
        expires_at: e.expires_at,
        sticky: e.sticky,
        collapse_key: e.collapse_key.as_deref(),
        require_ack: e.require_ack,
        dismissible: (!e.dismissible()).then_some(false),
        campaign: e.campaign.as_deref(),
        variant: e.variant.as_deref(),
        pos: e.pos.as_deref().filter(|_| with_pos),
        reason: reason.as_str(),
    };
    serde_json::to_string(&frame).unwrap_or_default()
}
