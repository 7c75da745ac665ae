//! The stored campaign (a public boundary, like the envelope) and its
//! checks: [`Campaign`] as the API takes it, [`Compiled`] once checked.

use super::experiment::Arm;
use super::timing::QuietSpan;
use crate::audience::Audience;
use crate::auth::Identity;
use crate::envelope::{self, Command, Envelope, Priority, Publish};
use crate::error::FieldError;
use crate::expr::Filter;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A campaign as stored and as the admin API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// Letters, digits, `-`, `_`, `.`; taken from the path when absent.
    #[serde(default)]
    pub id: String,
    /// Exactly one of `event` (with an optional `where`), `connect`, `idle_s`.
    pub trigger: Trigger,
    /// Who may receive it, like an envelope's `to`; absent: everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::audience::schema")]
    pub audience: Option<serde_json::Value>,
    /// The message: an envelope without `to` (the triggering user is the
    /// audience). Exactly one of `message` and `variants`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Envelope>,
    /// An experiment's messages, each shown to a share of users by weight
    /// (SPEC §10.4); instead of `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<Variant>>,
    /// Percent of users (0 to 50) assigned to the holdout: shown nothing,
    /// counted for comparison.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub holdout_pct: f64,
    /// What counts as a conversion: a client event within `within_s` of exposure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// Unix milliseconds; before it the campaign does not fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<u64>,
    /// Unix milliseconds; from it on the campaign does not fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<u64>,
    /// Local times (the user's `attrs.tz`, else `campaigns.default_tz`) when
    /// a non-urgent campaign does not fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// Per-user limits; absent: no limit but the global cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<Frequency>,
    /// Seconds to wait before delivering (at most 86400).
    #[serde(default)]
    pub delay_s: u64,
    /// Arbitration between campaigns on one trigger; `urgent` skips the global cap.
    #[serde(default)]
    pub priority: Priority,
    /// An inactive campaign is kept but never fires.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// One arm of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Letters, digits, `-`, `_`, `.`; not `holdout`; unique in the campaign.
    pub id: String,
    /// Relative share of the users not held out; positive.
    pub weight: f64,
    /// Like the campaign's `message`.
    pub message: Envelope,
}

/// An experiment's goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    /// The client `event` name that counts as a conversion.
    #[serde(default)]
    pub event: String,
    /// Seconds after exposure within which the event counts (1 to 7776000).
    #[serde(default = "a_day")]
    pub within_s: u64,
}

fn a_day() -> u64 {
    86_400
}

/// `{"from":"22:00","to":"08:00"}`: from inclusive, to exclusive; may wrap midnight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, 24-hour.
    pub from: String,
    /// `HH:MM`, 24-hour.
    pub to: String,
}

/// Exactly one of: an event (with an optional CEL filter over its props),
/// the connect of a session, or `idle_s` seconds without client events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The client `event` name that fires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// CEL over the event's `props` (and `name`), e.g. props.feature == "export".
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Fires when a session connects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<bool>,
    /// Fires after this many seconds without a client event or ack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Until {
    Clicked,
    Dismissed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Frequency {
    /// At most this many displays per user per `per_s` seconds.
    pub max: u32,
    /// The window; absent: for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_s: Option<u64>,
    /// Stop for a user once they clicked (or dismissed) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Until>,
}

/// What happened in a session, for matching triggers.
#[derive(Debug, Clone)]
pub enum Occurrence {
    Event {
        name: String,
        props: serde_json::Map<String, serde_json::Value>,
    },
    Connect,
    Idle {
        seconds: u64,
    },
}

/// A campaign ready to evaluate.
pub struct Compiled {
    pub campaign: Campaign,
    audience: Audience,
    filter: Option<Filter>,
    /// The quiet hours in minutes of the day.
    pub(super) quiet: Option<QuietSpan>,
    /// The variants (an experiment) or the one message, with their weights.
    pub(super) arms: Vec<Arm>,
}

const MAX_ID: usize = 128;
const MAX_VARIANTS: usize = 16;

fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
}

impl Compiled {
    /// Checks and compiles a campaign; every refusal names the field.
    pub fn new(mut c: Campaign, id_from_path: Option<&str>) -> Result<Self, FieldError> {
        if let Some(path_id) = id_from_path {
            if !c.id.is_empty() && c.id != path_id {
                return Err(FieldError::new(
                    "id",
                    format!("{:?} does not match the path id {path_id:?}", c.id),
                ));
            }
            c.id = path_id.to_owned();
        }
        if !is_id(&c.id) {
            return Err(FieldError::new(
                "id",
                "1 to 128 characters of letters, digits, - _ .",
            ));
        }
        let t = &c.trigger;
        let kinds = usize::from(t.event.is_some())
            + usize::from(t.connect == Some(true))
            + usize::from(t.idle_s.is_some());
        if kinds != 1 {
            return Err(FieldError::new(
                "trigger",
                "exactly one of event, connect: true, idle_s",
            ));
        }
        if let Some(name) = &t.event {
            if name.is_empty() || name.len() > MAX_ID {
                return Err(FieldError::new("trigger.event", "1 to 128 bytes"));
            }
        } else if t.filter.is_some() {
            return Err(FieldError::new("trigger.where", "only for event triggers"));
        }
        if t.idle_s == Some(0) {
            return Err(FieldError::new("trigger.idle_s", "must be at least 1"));
        }
        let filter = t
            .filter
            .as_deref()
            .map(|src| Filter::compile("trigger.where", src, &["props", "name"]))
            .transpose()?;
        let audience = match &c.audience {
            Some(a) => Audience::compile(a)
                .map_err(|e| FieldError::new(e.field.replacen("to", "audience", 1), e.reason))?,
            None => Audience::compile(&serde_json::Value::String("all".into()))?,
        };
        let arms = Self::arms(&c)?;
        if let Some(f) = &c.frequency {
            if f.max == 0 {
                return Err(FieldError::new("frequency.max", "must be at least 1"));
            }
            if f.per_s == Some(0) {
                return Err(FieldError::new("frequency.per_s", "must be at least 1"));
            }
        }
        if c.delay_s > 86_400 {
            return Err(FieldError::new("delay_s", "at most 86400"));
        }
        if let (Some(from), Some(to)) = (c.starts_at, c.ends_at)
            && to <= from
        {
            return Err(FieldError::new("ends_at", "must be after starts_at"));
        }
        let quiet = c
            .quiet_hours
            .as_ref()
            .map(|q| QuietSpan::parse(&q.from, &q.to))
            .transpose()?;
        if !(0.0..=50.0).contains(&c.holdout_pct) {
            return Err(FieldError::new("holdout_pct", "from 0 to 50"));
        }
        if let Some(g) = &c.goal {
            if g.event.is_empty() || g.event.len() > MAX_ID {
                return Err(FieldError::new(
                    "goal.event",
                    "required: the client event name, 1 to 128 bytes",
                ));
            }
            if g.within_s == 0 || g.within_s > 90 * 86_400 {
                return Err(FieldError::new("goal.within_s", "from 1 to 7776000"));
            }
        }
        Ok(Self {
            campaign: c,
            audience,
            filter,
            quiet,
            arms,
        })
    }

    /// The message or the variants, checked, with their weights.
    fn arms(c: &Campaign) -> Result<Vec<Arm>, FieldError> {
        let arms: Vec<(String, String, f64, &Envelope)> = match (&c.message, &c.variants) {
            (Some(m), None) => vec![(Arm::DEFAULT.to_owned(), "message".to_owned(), 1.0, m)],
            (None, Some(vs)) => {
                if vs.is_empty() || vs.len() > MAX_VARIANTS {
                    return Err(FieldError::new("variants", "1 to 16 variants"));
                }
                let mut arms = Vec::new();
                for (i, v) in vs.iter().enumerate() {
                    let at = format!("variants[{i}]");
                    if !is_id(&v.id) || v.id == Arm::HOLDOUT {
                        return Err(FieldError::new(
                            format!("{at}.id"),
                            "1 to 128 characters of letters, digits, - _ . (not \"holdout\")",
                        ));
                    }
                    if vs[..i].iter().any(|o| o.id == v.id) {
                        return Err(FieldError::new(format!("{at}.id"), "used twice"));
                    }
                    if !(v.weight.is_finite() && v.weight > 0.0) {
                        return Err(FieldError::new(format!("{at}.weight"), "must be positive"));
                    }
                    arms.push((v.id.clone(), format!("{at}.message"), v.weight, &v.message));
                }
                arms
            }
            _ => {
                return Err(FieldError::new(
                    "message",
                    "exactly one of message and variants",
                ));
            }
        };
        arms.into_iter()
            .map(|(id, field, weight, m)| {
                if m.to.is_some() || m.id.is_some() || m.op != envelope::Op::Publish {
                    return Err(FieldError::new(
                        field,
                        "an envelope without to, id or op: the campaign sets them",
                    ));
                }
                if m.send_at.is_some() {
                    return Err(FieldError::new(
                        format!("{field}.send_at"),
                        "a campaign's message is shown when it fires; schedule messages with POST /v1/messages",
                    ));
                }
                if m.priority != Priority::Normal {
                    return Err(FieldError::new(
                        format!("{field}.priority"),
                        "set priority on the campaign; it applies to its message",
                    ));
                }
                if m.variant.is_some() {
                    return Err(FieldError::new(
                        format!("{field}.variant"),
                        "set by Herald; leave it out",
                    ));
                }
                let arm = Arm {
                    id,
                    weight,
                    message: m.clone(),
                };
                // The message must be a valid envelope once addressed.
                let probe = arm.address(c, "probe", "probe", false);
                envelope::check(probe, 0)
                    .map_err(|e| FieldError::new(format!("{field}.{}", e.field), e.reason))?;
                Ok(arm)
            })
            .collect()
    }

    /// Whether the campaign assigns users and records exposures: it has
    /// variants, a holdout or a goal.
    pub fn is_experiment(&self) -> bool {
        self.campaign.variants.is_some()
            || self.campaign.holdout_pct > 0.0
            || self.campaign.goal.is_some()
    }

    /// The message (the first variant's) for one user, checked and ready to deliver.
    pub fn message_for(&self, user: &str) -> Option<Arc<Publish>> {
        self.message_of(user, self.arms.first()?, crate::auth::unix_now_ms())
    }

    /// The message of `arm` for one user, checked and ready to deliver.
    pub fn message_of(&self, user: &str, arm: &Arm, now_ms: u64) -> Option<Arc<Publish>> {
        let e = arm.address(
            &self.campaign,
            user,
            &envelope::new_id(),
            self.is_experiment(),
        );
        match envelope::check(e, now_ms) {
            Ok(Command::Publish(p)) => Some(p),
            _ => None,
        }
    }

    /// Whether the trigger matches (audience aside).
    pub(super) fn triggered_by(&self, what: &Occurrence) -> bool {
        let t = &self.campaign.trigger;
        match what {
            Occurrence::Connect => t.connect == Some(true),
            Occurrence::Idle { seconds } => t.idle_s == Some(*seconds),
            Occurrence::Event { name, props } => {
                t.event.as_deref() == Some(name.as_str())
                    && self.filter.as_ref().is_none_or(|f| {
                        f.eval(|ctx| {
                            ctx.add_variable_from_value(
                                "name",
                                cel::Value::String(Arc::new(name.clone())),
                            );
                            ctx.add_variable_from_value("props", props_to_cel(props));
                        })
                    })
            }
        }
    }

    pub(super) fn audience_has(&self, id: &Identity) -> bool {
        self.audience.matches(id)
    }
}
/// An event's `props` as the CEL map a trigger's `where` reads.
pub fn props_to_cel(props: &serde_json::Map<String, serde_json::Value>) -> cel::Value {
    cel::Value::Map(cel::objects::Map {
        map: Arc::new(
            props
                .iter()
                .map(|(k, v)| {
                    (
                        cel::objects::Key::String(Arc::new(k.clone())),
                        json_to_cel(v),
                    )
                })
                .collect(),
        ),
    })
}

fn json_to_cel(v: &serde_json::Value) -> cel::Value {
    use serde_json::Value as J;
    match v {
        J::Null => cel::Value::Null,
        J::Bool(b) => cel::Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => cel::Value::String(Arc::new(s.clone())),
        J::Array(a) => cel::Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        J::Object(o) => props_to_cel(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn campaign(v: serde_json::Value) -> Result<Compiled, FieldError> {
        Compiled::new(serde_json::from_value(v).expect("shape"), None)
    }

    #[test]
    fn the_spec_example_compiles() {
        let c = campaign(json!({
            "id": "upsell-export",
            "trigger": {"event": "feature_used", "where": "props.feature == \"export\""},
            "audience": {"where": "attrs.plan == \"free\""},
            "message": {"kind": "modal", "title": "Export more with Pro", "actions": [{"id": "upgrade", "label": "Upgrade", "url": "/billing"}]},
            "frequency": {"max": 2, "per_s": 604800, "until": "clicked"},
            "delay_s": 0, "priority": "normal", "active": true
        }))
        .expect("compiles");
        assert_eq!(c.campaign.id, "upsell-export");
        let p = c.message_for("u1").expect("message");
        assert_eq!(p.envelope.campaign.as_deref(), Some("upsell-export"));
        assert_eq!(p.audience.users().map(|u| u.len()), Some(1));
    }

    #[test]
    fn refusals_name_the_field() {
        let base = json!({"id": "c", "trigger": {"connect": true}, "message": {"kind": "toast", "title": "x"}});
        let with = |path: &str, v: serde_json::Value| {
            let mut c = base.clone();
            let mut cur = &mut c;
            let parts: Vec<&str> = path.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                cur = &mut cur[*p];
            }
            cur[parts[parts.len() - 1]] = v;
            campaign(c).err().map(|e| e.field)
        };
        assert_eq!(
            with("trigger", json!({"event": "x", "where": "props.a =="})),
            Some("trigger.where".into())
        );
        assert_eq!(
            with("trigger", json!({"event": "x", "connect": true})),
            Some("trigger".into())
        );
        assert_eq!(
            with("trigger", json!({"connect": true, "where": "true"})),
            Some("trigger.where".into())
        );
        assert_eq!(
            with("audience", json!({"where": "attrs.plan =="})),
            Some("audience.where".into())
        );
        assert_eq!(
            with("message", json!({"kind": "toast"})),
            Some("message.title".into())
        );
        assert_eq!(with("message.to", json!("all")), Some("message".into()));
        assert_eq!(
            with("frequency", json!({"max": 0})),
            Some("frequency.max".into())
        );
        assert_eq!(with("id", json!("bad id!")), Some("id".into()));
        assert_eq!(campaign(base).err(), None, "positive control");
    }
}
