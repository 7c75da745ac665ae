//! The browser protocol (SPEC §3): frames in both directions and close codes.
//!
//! One of Herald's two public serialized boundaries (the other is
//! [`crate::envelope`]). Server frames other than `msg` are small and built
//! here; `msg` frames are built once per message in [`crate::dispatch`].

use serde::{Deserialize, Serialize};

/// What a client may send.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Ack(Ack),
    Event(Event),
    Ping,
    /// A fresh token for this session (SPEC §10.2).
    Auth {
        token: String,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ack {
    pub id: String,
    pub status: AckStatus,
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    Displayed,
    Clicked,
    Dismissed,
    Suppressed,
}

impl AckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Displayed => "displayed",
            Self::Clicked => "clicked",
            Self::Dismissed => "dismissed",
            Self::Suppressed => "suppressed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    pub name: String,
    #[serde(default)]
    pub props: serde_json::Map<String, serde_json::Value>,
}

/// Why a client frame was refused; each maps to an `error` frame code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    BadJson(String),
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    #[error("{0}")]
    BadField(String),
    #[error("binary frames are not supported; send JSON text frames")]
    Binary,
}

impl FrameError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::UnknownType(_) => "unknown_type",
            Self::BadField(_) => "bad_field",
            Self::Binary => "unsupported",
        }
    }
}

/// Longest event name and ack id accepted.
const MAX_NAME: usize = 128;
/// Longest token an `auth` frame may carry.
const MAX_TOKEN: usize = 8 * 1024;
/// Most entries in any object or list of an event's `props`, and how deep
/// they may nest: campaign `trigger.where` expressions are costed for lists
/// of at most [`crate::expr::ASSUMED_RANGE`] entries.
pub const MAX_PROPS_ENTRIES: usize = crate::expr::ASSUMED_RANGE as usize;
pub const MAX_PROPS_DEPTH: usize = 8;

/// Refuses props with a list or object over [`MAX_PROPS_ENTRIES`] entries
/// or nested over [`MAX_PROPS_DEPTH`] levels (walked without recursion).
fn check_props(props: &serde_json::Map<String, serde_json::Value>) -> Result<(), FrameError> {
    let too_big = || {
        FrameError::BadField(format!(
            "props: at most {MAX_PROPS_ENTRIES} entries in any object or list, {MAX_PROPS_DEPTH} levels deep"
        ))
    };
    if props.len() > MAX_PROPS_ENTRIES {
        return Err(too_big());
    }
    let mut stack: Vec<(&serde_json::Value, usize)> = props.values().map(|v| (v, 1)).collect();
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(a) if a.len() <= MAX_PROPS_ENTRIES => Box::new(a.iter()),
            serde_json::Value::Object(o) if o.len() <= MAX_PROPS_ENTRIES => Box::new(o.values()),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => return Err(too_big()),
            _ => continue,
        };
        if depth >= MAX_PROPS_DEPTH {
            return Err(too_big());
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(())
}

impl ClientFrame {
    /// Parses one text frame. Unknown fields are ignored; an unknown `t` is
    /// an error the session answers without closing.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| FrameError::BadJson(format!("invalid JSON: {e}")))?;
        let serde_json::Value::Object(ref map) = value else {
            return Err(FrameError::BadJson("a frame must be a JSON object".into()));
        };
        let t = match map.get("t") {
            Some(serde_json::Value::String(t)) => t.as_str(),
            Some(_) => return Err(FrameError::BadField("t: must be a string".into())),
            None => return Err(FrameError::BadField("t: missing".into())),
        };
        let field = |e: serde_json::Error| FrameError::BadField(e.to_string());
        match t {
            "ping" => Ok(Self::Ping),
            "auth" => match map.get("token") {
                Some(serde_json::Value::String(t)) if !t.is_empty() && t.len() <= MAX_TOKEN => {
                    Ok(Self::Auth { token: t.clone() })
                }
                _ => Err(FrameError::BadField(format!(
                    "token: a JWT of 1 to {MAX_TOKEN} bytes"
                ))),
            },
            "ack" => {
                let ack: Ack = serde_json::from_value(value).map_err(field)?;
                if ack.id.is_empty() || ack.id.len() > MAX_NAME {
                    return Err(FrameError::BadField(format!("id: 1 to {MAX_NAME} bytes")));
                }
                if ack.status == AckStatus::Clicked && ack.action.is_none() {
                    return Err(FrameError::BadField(
                        "action: required when status is clicked".into(),
                    ));
                }
                Ok(Self::Ack(ack))
            }
            "event" => {
                let event: Event = serde_json::from_value(value).map_err(field)?;
                if event.name.is_empty() || event.name.len() > MAX_NAME {
                    return Err(FrameError::BadField(format!("name: 1 to {MAX_NAME} bytes")));
                }
                check_props(&event.props)?;
                Ok(Self::Event(event))
            }
            other => Err(FrameError::UnknownType(other.chars().take(64).collect())),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ack(_) => "ack",
            Self::Event(_) => "event",
            Self::Ping => "ping",
            Self::Auth { .. } => "auth",
        }
    }
}

/// Small server frames; `msg` frames are serialized by the dispatcher.
#[derive(Debug, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Hello {
        sid: &'a str,
        user: &'a str,
        heartbeat_s: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// The history's position at connect: resuming from it later
        /// recovers what was published meanwhile (absent without history).
        #[serde(skip_serializing_if = "Option::is_none")]
        pos: Option<&'a str>,
        /// `sdk.allowed_link_schemes`: the app schemes the renderer may
        /// open from an action (absent when none).
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        link_schemes: &'a [String],
    },
    Retract {
        id: &'a str,
    },
    Error {
        code: &'a str,
        message: &'a str,
    },
    Pong,
    /// A token refresh was accepted: the session now ends at `exp`.
    Auth {
        exp: u64,
    },
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Close codes of SPEC §3, plus 1002 (a WebSocket protocol error, such as
/// an invalid close code) and 1007 (invalid UTF-8), mandated by RFC 6455.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    Normal = 1000,
    Protocol = 1002,
    InvalidPayload = 1007,
    Policy = 1008,
    TooBig = 1009,
    Internal = 1011,
    Restart = 1012,
    Abuse = 4000,
    SlowConsumer = 4008,
    RateLimited = 4029,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// Why Herald ends a session: each knows its close code, the reason sent
/// in the close frame, and its `herald_closes_total` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The token's `exp` passed (1008).
    TokenExpired,
    /// An operator disconnected the user (1008).
    Disconnected,
    /// A client frame over `session.max_frame_bytes` (1009).
    TooBig,
    /// A text frame that is not UTF-8 (1007).
    InvalidUtf8,
    /// A WebSocket protocol violation, such as an invalid close code (1002).
    Protocol,
    /// The node is draining (1012).
    Draining,
    /// Repeated bad frames (4000).
    Abuse,
    /// The outbox overflowed (4008).
    SlowConsumer,
    /// The socket took nothing for `session.write_timeout` (4008).
    WriteTimeout,
    /// Too many client frames (4029).
    RateLimited,
}

impl Close {
    pub fn code(self) -> CloseCode {
        match self {
            Self::TokenExpired | Self::Disconnected => CloseCode::Policy,
            Self::TooBig => CloseCode::TooBig,
            Self::InvalidUtf8 => CloseCode::InvalidPayload,
            Self::Protocol => CloseCode::Protocol,
            Self::Draining => CloseCode::Restart,
            Self::Abuse => CloseCode::Abuse,
            Self::SlowConsumer | Self::WriteTimeout => CloseCode::SlowConsumer,
            Self::RateLimited => CloseCode::RateLimited,
        }
    }

    /// The close frame's reason, for the client.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TokenExpired => "token expired",
            Self::Disconnected => "disconnected by operator",
            Self::TooBig => "frame too big",
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::Protocol => "protocol error",
            Self::Draining => "node draining: reconnect elsewhere",
            Self::Abuse => "repeated bad frames",
            Self::SlowConsumer => "slow consumer: outbound queue overflowed",
            Self::WriteTimeout => "slow consumer: socket not draining",
            Self::RateLimited => "rate limited",
        }
    }

    /// The `reason` label of `herald_closes_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::TokenExpired => "token_expired",
            Self::Disconnected => "disconnected",
            Self::TooBig => "too_big",
            Self::InvalidUtf8 => "invalid_payload",
            Self::Protocol => "protocol",
            Self::Draining => "draining",
            Self::Abuse => "abuse",
            Self::SlowConsumer => "slow_consumer",
            Self::WriteTimeout => "write_timeout",
            Self::RateLimited => "rate_limited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_client_frame() {
        assert_eq!(ClientFrame::parse(r#"{"t":"ping"}"#), Ok(ClientFrame::Ping));
        let ack = ClientFrame::parse(
            r#"{"t":"ack","id":"m1","status":"clicked","action":"buy","extra":1}"#,
        )
        .expect("ack");
        assert!(
            matches!(ack, ClientFrame::Ack(Ack { ref id, status: AckStatus::Clicked, action: Some(ref a) }) if id == "m1" && a == "buy")
        );
        let ev =
            ClientFrame::parse(r#"{"t":"event","name":"page_view","props":{"path":"/pricing"}}"#)
                .expect("event");
        assert!(matches!(ev, ClientFrame::Event(ref e) if e.props["path"] == "/pricing"));
    }

    #[test]
    fn refusals_name_their_code() {
        let code = |s: &str| ClientFrame::parse(s).expect_err("refused").code();
        assert_eq!(code("{not json"), "bad_json");
        assert_eq!(code("[1,2]"), "bad_json");
        assert_eq!(code(r#"{"t":"subscribe"}"#), "unknown_type");
        assert_eq!(code(r#"{"t":5}"#), "bad_field");
        assert_eq!(code(r#"{"id":"x"}"#), "bad_field");
        assert_eq!(
            code(r#"{"t":"ack","id":"m1","status":"loved"}"#),
            "bad_field"
        );
        assert_eq!(
            code(r#"{"t":"ack","id":"m1","status":"clicked"}"#),
            "bad_field"
        );
        assert_eq!(code(r#"{"t":"event","name":""}"#), "bad_field");
        assert_eq!(code(r#"{"t":"auth"}"#), "bad_field");
        assert_eq!(code(r#"{"t":"auth","token":""}"#), "bad_field");
        assert_eq!(
            ClientFrame::parse(r#"{"t":"auth","token":"a.b.c"}"#),
            Ok(ClientFrame::Auth {
                token: "a.b.c".into()
            })
        );
    }

    #[test]
    fn event_props_are_bounded_in_size_and_depth() {
        let event = |props: serde_json::Value| {
            ClientFrame::parse(
                &serde_json::json!({"t": "event", "name": "e", "props": props}).to_string(),
            )
        };
        let list: Vec<u32> = (0..MAX_PROPS_ENTRIES as u32).collect();
        assert!(event(serde_json::json!({ "items": list })).is_ok());
        let longer: Vec<u32> = (0..=MAX_PROPS_ENTRIES as u32).collect();
        assert_eq!(
            event(serde_json::json!({ "items": longer })).map_err(|e| e.code()),
            Err("bad_field")
        );
        let mut deep = serde_json::json!(1);
        for _ in 0..MAX_PROPS_DEPTH - 1 {
            deep = serde_json::json!([deep]);
        }
        assert!(event(serde_json::json!({ "d": deep.clone() })).is_ok());
        assert_eq!(
            event(serde_json::json!({ "d": [deep] })).map_err(|e| e.code()),
            Err("bad_field")
        );
    }

    #[test]
    fn server_frames_serialize_with_their_tag() {
        let hello = ServerFrame::Hello {
            sid: "s1",
            user: "u1",
            heartbeat_s: 25,
            recovered: None,
            pos: None,
            link_schemes: &[],
        }
        .to_json();
        assert_eq!(
            hello,
            r#"{"t":"hello","sid":"s1","user":"u1","heartbeat_s":25}"#
        );
        assert_eq!(ServerFrame::Pong.to_json(), r#"{"t":"pong"}"#);
        assert_eq!(
            ServerFrame::Auth { exp: 7 }.to_json(),
            r#"{"t":"auth","exp":7}"#
        );
    }
}
