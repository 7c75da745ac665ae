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
    },
    Retract {
        id: &'a str,
    },
    Error {
        code: &'a str,
        message: &'a str,
    },
    Pong,
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Close codes of SPEC §3, plus 1007 (invalid UTF-8, mandated by RFC 6455).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    Normal = 1000,
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
    }

    #[test]
    fn server_frames_serialize_with_their_tag() {
        let hello = ServerFrame::Hello {
            sid: "s1",
            user: "u1",
            heartbeat_s: 25,
            recovered: None,
            pos: None,
        }
        .to_json();
        assert_eq!(
            hello,
            r#"{"t":"hello","sid":"s1","user":"u1","heartbeat_s":25}"#
        );
        assert_eq!(ServerFrame::Pong.to_json(), r#"{"t":"pong"}"#);
    }
}
