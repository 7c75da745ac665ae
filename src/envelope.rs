//! The publish envelope (SPEC §4): what backends, SREs and campaigns publish.
//!
//! One of Herald's two public serialized boundaries (the other is
//! [`crate::protocol`]). [`parse`] is the only way in: it checks size, shape
//! and every field, compiles the audience, and fixes the id and the absolute
//! expiry, so every node that receives the result agrees on both.

use crate::audience::Audience;
use crate::auth::Identity;
use crate::error::FieldError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const MAX_ID: usize = 128;
const MAX_ACTIONS: usize = 3;
const MAX_TEXT: usize = 8 * 1024;
const MAX_SHORT: usize = 256;
/// Longest title, body and action label, as published and as rendered for
/// a recipient (placeholders filled in never make them longer).
pub const MAX_TITLE: usize = MAX_SHORT * 2;
pub const MAX_BODY: usize = MAX_TEXT;
pub const MAX_LABEL: usize = MAX_SHORT;
const MAX_URL: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    #[default]
    Publish,
    Retract,
    /// Operator action: close every session of `to.users` with 1008.
    Disconnect,
    /// Internal: campaign `id` was stored, changed or deleted; nodes reload it.
    Campaign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Banner,
    Modal,
    Card,
    Toast,
    Tooltip,
    Fullscreen,
    Custom,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Top,
    Bottom,
    Center,
}

/// A button: `clicked` acks carry its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub id: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocaleVariant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<Action>>,
}

/// The envelope as written on the wire. Unknown fields are refused, so a
/// typo (`titel`, `ttl`) is an error rather than a silently plain message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// `publish` (default), `retract` (takes `id` only), `disconnect` (operator: closes `to.users`' sessions).
    #[serde(default, skip_serializing_if = "is_publish")]
    pub op: Op,
    /// Up to 128 bytes; generated (a ULID) when absent. Publishing an id twice within the dedupe window delivers once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The audience: "all", or an object of `users`, `segments` and/or `where` (CEL), all of which must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::audience::schema")]
    pub to: Option<serde_json::Value>,
    /// How the SDK draws it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// `urgent` bypasses the global per-user campaign cap.
    #[serde(default)]
    pub priority: Priority,
    /// Text (never HTML). At least one of title and body, except for `custom`. `{{attrs.NAME|fallback}}` placeholders allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Text (never HTML); placeholders allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// An http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Up to 3 buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// Where the SDK places it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// CSS selector or view id; required for `tooltip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
    /// Free-form styling hints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theme: Option<serde_json::Map<String, serde_json::Value>>,
    /// Free-form payload for the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    /// Variants by locale tag, picked by the recipient's locale (`?locale=`, then `attrs.locale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locales: Option<std::collections::BTreeMap<String, LocaleVariant>>,
    /// Seconds to live from publishing (from `send_at` when scheduled); turned into `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// Unix milliseconds: held and published at that time, once for the whole cluster. In the past: published now; at most 30 days ahead.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "send_at_ms"
    )]
    pub send_at: Option<u64>,
    /// Unix milliseconds after which it is never delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Stays active until it expires or is retracted; sessions that connect meanwhile receive it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sticky: bool,
    /// A new message with the same key replaces the active one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
    /// Sent again on each connect until the user clicks or dismisses it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_ack: bool,
    /// `false`: no close control in the SDK; only a click acknowledges it (absent: `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dismissible: Option<bool>,
    /// User audiences: recipients with no live session go to the `undelivered` stream.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fallback: bool,
    /// Set by Herald on recoverable messages (the resume position); publishers leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<String>,
    /// Set by Herald on the retraction a user's click or dismissal sends to
    /// their other sessions: the session that acknowledged; publishers leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Grouping for analytics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// Set by Herald on an experiment's message: the campaign variant the
    /// user was assigned (SPEC §10.4), for the counts per variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Envelope {
    /// Whether a `dismissed` ack acknowledges it (SPEC §10.1).
    pub fn dismissible(&self) -> bool {
        self.dismissible != Some(false)
    }

    /// Does the envelope need rendering per recipient? Also checks that every
    /// placeholder is well formed, naming the field when one is not.
    pub fn check_templates(&self) -> Result<bool, FieldError> {
        let e = self;
        let mut any = false;
        let mut check = |field: String, s: Option<&str>| -> Result<(), FieldError> {
            if let Some(s) = s.filter(|s| s.contains("{{")) {
                crate::render::check(s).map_err(|r| FieldError::new(field, r))?;
                any = true;
            }
            Ok(())
        };
        check("title".into(), e.title.as_deref())?;
        check("body".into(), e.body.as_deref())?;
        for (i, a) in e.actions.iter().enumerate() {
            check(format!("actions[{i}].label"), Some(&a.label))?;
        }
        for (tag, v) in e.locales.iter().flatten() {
            check(format!("locales.{tag}.title"), v.title.as_deref())?;
            check(format!("locales.{tag}.body"), v.body.as_deref())?;
            for (i, a) in v.actions.iter().flatten().enumerate() {
                check(format!("locales.{tag}.actions[{i}].label"), Some(&a.label))?;
            }
        }
        Ok(any)
    }

    /// The locale variant key for a recipient: an exact tag first, then the
    /// primary language (`fr-CA` falls back to `fr`), compared case-insensitively.
    pub fn pick_locale(&self, locale: Option<&str>) -> Option<&str> {
        let locales = self.locales.as_ref()?;
        let wanted = locale?;
        let primary = wanted.split(['-', '_']).next().unwrap_or(wanted);
        locales
            .keys()
            .find(|k| k.eq_ignore_ascii_case(wanted))
            .or_else(|| locales.keys().find(|k| k.eq_ignore_ascii_case(primary)))
            .map(String::as_str)
    }

    /// Title, body and actions for a recipient: the locale variant's where it
    /// has them, the base fields otherwise, placeholders filled when asked.
    pub fn content(
        &self,
        locale: Option<&str>,
        id: Option<&Identity>,
    ) -> (Option<String>, Option<String>, Vec<Action>) {
        let e = self;
        let variant = e
            .pick_locale(locale)
            .and_then(|k| e.locales.as_ref()?.get(k));
        let title = variant
            .and_then(|v| v.title.as_deref())
            .or(e.title.as_deref());
        let body = variant
            .and_then(|v| v.body.as_deref())
            .or(e.body.as_deref());
        let actions = variant
            .and_then(|v| v.actions.as_ref())
            .unwrap_or(&e.actions);
        let fill = |s: &str, max: usize| match id {
            Some(id) => crate::render::fill(s, id, max),
            None => s.to_owned(),
        };
        (
            title.map(|t| fill(t, MAX_TITLE)),
            body.map(|b| fill(b, MAX_BODY)),
            actions
                .iter()
                .map(|a| Action {
                    label: fill(&a.label, MAX_LABEL),
                    ..a.clone()
                })
                .collect(),
        )
    }
}

/// `send_at` as unix milliseconds, refused by name otherwise (serde's own
/// message for a wrong type would not say which field).
fn send_at_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(_) => Err(serde::de::Error::custom(
            "field `send_at`: must be unix milliseconds, a whole number of 0 or more",
        )),
    }
}

/// How far ahead `send_at` may be (SPEC §10.3).
pub const MAX_SCHEDULE_AHEAD_MS: u64 = 30 * 24 * 3600 * 1000;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_publish(op: &Op) -> bool {
    *op == Op::Publish
}

/// A checked envelope, ready to route and deliver.
#[derive(Debug)]
pub enum Command {
    Publish(Arc<Publish>),
    /// `pos`: where the retraction sits in the history (set by Herald), so
    /// a resuming session drops the live copy of a retraction it replayed.
    Retract {
        id: String,
        pos: Option<String>,
        /// On a user's channel: the session that acknowledged it, which
        /// does not need the frame.
        except: Option<String>,
    },
    Disconnect {
        users: Vec<Arc<str>>,
    },
    Campaign {
        id: String,
    },
}

/// A checked publish: `envelope.id` and `envelope.expires_at` are set (the
/// latter when the message expires), `ttl_s` is folded into `expires_at`.
#[derive(Debug)]
pub struct Publish {
    pub envelope: Envelope,
    pub audience: Audience,
    /// Holds `{{attrs.…}}` placeholders: rendered per recipient.
    pub personalized: bool,
}

impl Publish {
    pub fn id(&self) -> &str {
        self.envelope.id.as_deref().unwrap_or_default()
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.envelope.expires_at.is_some_and(|at| at <= now_ms)
    }

    /// When it is to be published, if that is later than `now_ms`.
    pub fn send_later(&self, now_ms: u64) -> Option<u64> {
        self.envelope.send_at.filter(|at| *at > now_ms)
    }

    /// The envelope as nodes pass it on: id and absolute expiry fixed.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.envelope).unwrap_or_default()
    }

    /// Kept after publishing for sessions that connect later: sticky
    /// messages, and those that must be acknowledged.
    pub fn persistent(&self) -> bool {
        self.envelope.sticky || self.envelope.require_ack
    }

    /// Rendered differently for some recipients (locales or placeholders).
    pub fn varies(&self) -> bool {
        self.personalized || self.envelope.locales.is_some()
    }
}

/// A fresh time-ordered message id.
pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Parses and checks an envelope. `now_ms` turns `ttl_s` into `expires_at`.
pub fn parse(bytes: &[u8], max_bytes: usize, now_ms: u64) -> Result<Command, FieldError> {
    check(decode(bytes, max_bytes)?, now_ms)
}

/// Deserializes an envelope of at most `max_bytes`, unchecked.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Envelope, FieldError> {
    if bytes.len() > max_bytes {
        return Err(FieldError::new(
            "envelope",
            format!("{} bytes is over the {max_bytes}-byte limit", bytes.len()),
        ));
    }
    serde_json::from_slice(bytes).map_err(FieldError::from_serde)
}

/// Refuses what only Herald sets, in an envelope from a publisher (the
/// API, the CLI, `herald validate`, the ingress stream): `pos`, on
/// messages and retractions, and the internal `op: campaign`.
pub fn from_publisher(e: &Envelope) -> Result<(), FieldError> {
    if e.pos.is_some() {
        return Err(FieldError::new("pos", "set by Herald; leave it out"));
    }
    if e.sid.is_some() {
        return Err(FieldError::new("sid", "set by Herald; leave it out"));
    }
    if e.variant.is_some() {
        return Err(FieldError::new(
            "variant",
            "set by Herald on an experiment's message; leave it out",
        ));
    }
    if e.op == Op::Campaign {
        return Err(FieldError::new(
            "op",
            "campaign is Herald's own notice between nodes; store campaigns with PUT /v1/campaigns/{id}",
        ));
    }
    Ok(())
}

/// Checks a deserialized envelope (the HTTP API and CLI build them too).
pub fn check(mut e: Envelope, now_ms: u64) -> Result<Command, FieldError> {
    if let Some(id) = &e.id {
        if id.is_empty() || id.len() > MAX_ID {
            return Err(FieldError::new(
                "id",
                format!("must be 1 to {MAX_ID} bytes"),
            ));
        }
        if id.chars().any(char::is_control) {
            return Err(FieldError::new("id", "must not contain control characters"));
        }
    }
    if e.send_at.is_some() && e.op != Op::Publish {
        return Err(FieldError::new(
            "send_at",
            "only messages are scheduled, not retract, disconnect or campaign ops",
        ));
    }
    if e.op == Op::Retract {
        let id =
            e.id.ok_or_else(|| FieldError::new("id", "required for op retract"))?;
        return Ok(Command::Retract {
            id,
            pos: e.pos,
            except: e.sid,
        });
    }
    if e.op == Op::Campaign {
        let id =
            e.id.ok_or_else(|| FieldError::new("id", "required for op campaign"))?;
        return Ok(Command::Campaign { id });
    }
    let to =
        e.to.as_ref()
            .ok_or_else(|| FieldError::new("to", "required: \"all\", users, segments or where"))?;
    let audience = Audience::compile(to)?;
    if e.op == Op::Disconnect {
        let users = audience
            .users()
            .ok_or_else(|| FieldError::new("to.users", "required for op disconnect"))?;
        return Ok(Command::Disconnect {
            users: users.to_vec(),
        });
    }
    let kind = e.kind.ok_or_else(|| {
        FieldError::new(
            "kind",
            "required: banner, modal, card, toast, tooltip, fullscreen or custom",
        )
    })?;
    if kind != Kind::Custom && e.title.is_none() && e.body.is_none() {
        return Err(FieldError::new("title", "a title or a body is required"));
    }
    text("title", e.title.as_deref(), MAX_TITLE)?;
    text("body", e.body.as_deref(), MAX_BODY)?;
    text("anchor", e.anchor.as_deref(), MAX_SHORT)?;
    text("campaign", e.campaign.as_deref(), MAX_ID)?;
    text("variant", e.variant.as_deref(), MAX_ID)?;
    text("collapse_key", e.collapse_key.as_deref(), MAX_ID)?;
    if let Some(url) = &e.image_url {
        check_url("image_url", url, true)?;
    }
    if kind == Kind::Tooltip && e.anchor.is_none() {
        return Err(FieldError::new("anchor", "required for kind tooltip"));
    }
    check_actions("actions", &e.actions)?;
    if let Some(locales) = &e.locales {
        for (tag, variant) in locales {
            if tag.is_empty()
                || tag.len() > 35
                || !tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(FieldError::new(
                    format!("locales.{tag}"),
                    "not a locale tag (e.g. fr, pt-BR)",
                ));
            }
            text(
                &format!("locales.{tag}.title"),
                variant.title.as_deref(),
                MAX_TITLE,
            )?;
            text(
                &format!("locales.{tag}.body"),
                variant.body.as_deref(),
                MAX_BODY,
            )?;
            if let Some(actions) = &variant.actions {
                check_actions(&format!("locales.{tag}.actions"), actions)?;
            }
        }
    }
    if e.ttl_s == Some(0) {
        return Err(FieldError::new("ttl_s", "must be at least 1"));
    }
    if let Some(at) = e.send_at
        && at > now_ms.saturating_add(MAX_SCHEDULE_AHEAD_MS)
    {
        return Err(FieldError::new(
            "send_at",
            "more than 30 days ahead (unix milliseconds)",
        ));
    }
    // A scheduled message lives from its send time.
    let from = e.send_at.map_or(now_ms, |at| at.max(now_ms));
    if let Some(ttl) = e.ttl_s.take() {
        let at = from.saturating_add(ttl.saturating_mul(1000));
        e.expires_at = Some(e.expires_at.map_or(at, |x| x.min(at)));
    }
    if let (Some(send), Some(exp)) = (e.send_at, e.expires_at)
        && exp <= send
        && send > now_ms
    {
        return Err(FieldError::new(
            "expires_at",
            "must be after send_at: it would expire before it is sent",
        ));
    }
    let personalized = e.check_templates()?;
    if e.fallback && audience.users().is_none() {
        return Err(FieldError::new(
            "fallback",
            "only for audiences naming users",
        ));
    }
    if e.id.is_none() {
        e.id = Some(new_id());
    }
    Ok(Command::Publish(Arc::new(Publish {
        envelope: e,
        audience,
        personalized,
    })))
}

fn text(field: &str, value: Option<&str>, max: usize) -> Result<(), FieldError> {
    match value {
        Some(v) if v.len() > max => Err(FieldError::new(
            field,
            format!("{} bytes is over the {max}-byte limit", v.len()),
        )),
        _ => Ok(()),
    }
}

fn check_actions(field: &str, actions: &[Action]) -> Result<(), FieldError> {
    if actions.len() > MAX_ACTIONS {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_ACTIONS} actions"),
        ));
    }
    for (i, a) in actions.iter().enumerate() {
        if a.id.is_empty() || a.id.len() > MAX_SHORT / 4 {
            return Err(FieldError::new(
                format!("{field}[{i}].id"),
                "must be 1 to 64 bytes",
            ));
        }
        if a.label.is_empty() || a.label.len() > MAX_LABEL {
            return Err(FieldError::new(
                format!("{field}[{i}].label"),
                format!("must be 1 to {MAX_LABEL} bytes"),
            ));
        }
        if let Some(url) = &a.url {
            check_url(&format!("{field}[{i}].url"), url, false)?;
        }
    }
    Ok(())
}

/// Absolute http(s) URLs, or (for actions) app-relative paths and app
/// links (`scheme:…`; which schemes a node allows is
/// [`Envelope::check_links`]'s business, `javascript:` and `data:` never).
fn check_url(field: &str, url: &str, absolute_only: bool) -> Result<(), FieldError> {
    let clean = url.len() <= MAX_URL
        && !url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if absolute_only {
        if clean && (url.starts_with("https://") || url.starts_with("http://")) {
            return Ok(());
        }
        return Err(FieldError::new(field, "must be an http(s) URL"));
    }
    if !clean {
        return Err(FieldError::new(
            field,
            "must be an http(s) URL, a path starting with /, or an app link",
        ));
    }
    crate::links::classify(url)
        .map(drop)
        .map_err(|why| FieldError::new(field, why))
}

impl Envelope {
    /// Every action URL (the locales' too) is http(s), a path, or an app
    /// link whose scheme is in `allowed` (`sdk.allowed_link_schemes`,
    /// normalized).
    pub fn check_links(&self, allowed: &[String]) -> Result<(), FieldError> {
        let lists = std::iter::once(("actions".to_owned(), &self.actions)).chain(
            self.locales.iter().flatten().filter_map(|(tag, v)| {
                v.actions
                    .as_ref()
                    .map(|a| (format!("locales.{tag}.actions"), a))
            }),
        );
        for (field, actions) in lists {
            for (i, a) in actions.iter().enumerate() {
                if let Some(url) = &a.url {
                    crate::links::check_action_url(url, allowed)
                        .map_err(|why| FieldError::new(format!("{field}[{i}].url"), why))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(json: &str) -> FieldError {
        match parse(json.as_bytes(), 65536, 1_000) {
            Err(e) => e,
            Ok(c) => panic!("accepted {json}: {c:?}"),
        }
    }

    #[test]
    fn accepts_a_banner_and_fills_id_and_expiry() {
        let Ok(Command::Publish(p)) = parse(
            br#"{"to":"all","kind":"banner","title":"Payments degraded","ttl_s":60}"#,
            65536,
            1_000,
        ) else {
            panic!("refused")
        };
        assert_eq!(p.id().len(), 26, "a ULID");
        assert_eq!(p.envelope.expires_at, Some(61_000));
        assert_eq!(p.envelope.ttl_s, None);
        assert!(!p.expired(60_999) && p.expired(61_000));
    }

    #[test]
    fn retract_needs_only_an_id() {
        assert!(
            matches!(parse(br#"{"op":"retract","id":"m1"}"#, 65536, 0), Ok(Command::Retract { id, pos: None, .. }) if id == "m1")
        );
        assert_eq!(refuse(r#"{"op":"retract"}"#).field, "id");
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(refuse(r#"{"kind":"banner","title":"x"}"#).field, "to");
        assert_eq!(refuse(r#"{"to":"all","title":"x"}"#).field, "kind");
        assert_eq!(
            refuse(r#"{"to":"all","kind":"popup","title":"x"}"#).field,
            "envelope"
        );
        assert_eq!(refuse(r#"{"to":"all","kind":"banner"}"#).field, "title");
        assert_eq!(
            refuse(r#"{"to":"all","kind":"banner","titel":"x"}"#).field,
            "titel"
        );
        assert_eq!(
            refuse(r#"{"to":"everyone","kind":"banner","title":"x"}"#).field,
            "to"
        );
        assert_eq!(
            refuse(r#"{"to":{"users":[]},"kind":"banner","title":"x"}"#).field,
            "to.users"
        );
        assert_eq!(
            refuse(r#"{"to":{"where":"attrs.plan =="},"kind":"banner","title":"x"}"#).field,
            "to.where"
        );
        assert_eq!(
            refuse(r#"{"to":"all","kind":"tooltip","title":"x"}"#).field,
            "anchor"
        );
        assert_eq!(
            refuse(r#"{"to":"all","kind":"banner","title":"x","ttl_s":0}"#).field,
            "ttl_s"
        );
        assert_eq!(
            refuse(r#"{"to":"all","kind":"banner","title":"x","fallback":true}"#).field,
            "fallback"
        );
        assert_eq!(
            refuse(r#"{"to":"all","kind":"banner","title":"x","image_url":"javascript:alert(1)"}"#)
                .field,
            "image_url"
        );
        assert_eq!(
            refuse(r#"{"to":"all","kind":"modal","title":"x","actions":[{"id":"a","label":"A","url":"/\\evil.example/x"}]}"#).field,
            "actions[0].url"
        );
        let four = r#"{"to":"all","kind":"modal","title":"x","actions":[{"id":"a","label":"A"},{"id":"b","label":"B"},{"id":"c","label":"C"},{"id":"d","label":"D"}]}"#;
        assert_eq!(refuse(four).field, "actions");
        let id = format!(
            r#"{{"id":"{}","to":"all","kind":"banner","title":"x"}}"#,
            "x".repeat(129)
        );
        assert_eq!(refuse(&id).field, "id");
    }

    #[test]
    fn size_limit_is_checked_before_parsing() {
        let big = format!(
            r#"{{"to":"all","kind":"banner","title":"{}"}}"#,
            "x".repeat(100)
        );
        let err = parse(big.as_bytes(), 64, 0).expect_err("too big");
        assert_eq!(err.field, "envelope");
        assert!(parse(big.as_bytes(), 65536, 0).is_ok());
    }

    #[test]
    fn custom_needs_no_text() {
        assert!(parse(br#"{"to":"all","kind":"custom","data":{"x":1}}"#, 65536, 0).is_ok());
    }
    #[test]
    fn malformed_placeholders_are_refused_with_the_field() {
        let mut e = Envelope {
            title: Some("Hi {{user.name}}".into()),
            ..Default::default()
        };
        assert_eq!(e.check_templates().expect_err("refused").field, "title");
        e.title = Some("Hi {{attrs.name".into());
        assert_eq!(e.check_templates().expect_err("refused").field, "title");
        e.title = Some("Hi {{attrs.name|friend}}".into());
        assert!(e.check_templates().expect("ok"));
        e.title = Some("Hi".into());
        assert!(!e.check_templates().expect("ok"));
    }

    #[test]
    fn locale_exact_then_language_then_base() {
        let e: Envelope = serde_json::from_value(serde_json::json!({
            "title": "Hello", "body": "Base body",
            "locales": {"fr": {"title": "Bonjour"}, "pt-BR": {"title": "Olá", "body": "Corpo"}}
        }))
        .expect("envelope");
        assert_eq!(e.content(Some("fr-CA"), None).0.as_deref(), Some("Bonjour"));
        assert_eq!(
            e.content(Some("fr-CA"), None).1.as_deref(),
            Some("Base body")
        );
        assert_eq!(e.content(Some("pt-br"), None).1.as_deref(), Some("Corpo"));
        assert_eq!(e.content(Some("de"), None).0.as_deref(), Some("Hello"));
        assert_eq!(e.content(None, None).0.as_deref(), Some("Hello"));
    }
}
