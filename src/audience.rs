//! Audiences: `all`, `users`, `segments`, CEL `where`, and their conjunction.
//!
//! Compiled once per message; [`Audience::matches`] then runs per session
//! with no parsing. CEL sees three variables: `user` (string), `segments`
//! (list of strings) and `attrs` (map of the token's attributes).

use crate::auth::Identity;
use crate::error::FieldError;
use crate::expr::Filter;
use std::collections::HashSet;
use std::sync::Arc;

const MAX_USERS: usize = 10_000;
const MAX_SEGMENTS: usize = 100;
const MAX_WHERE: usize = crate::expr::MAX_SOURCE;
const MAX_USER_ID: usize = 256;

/// The JSON Schema of an envelope's `to` (for `schemars`).
pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let list = |desc: &str, max: usize| {
        serde_json::json!({
            "description": desc, "type": "array", "minItems": 1, "maxItems": max,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID}
        })
    };
    schemars::json_schema!({
        "description": "The audience: \"all\", or an object whose conditions must all hold.",
        "oneOf": [
            {"const": "all"},
            {
                "type": "object",
                "additionalProperties": false,
                "minProperties": 1,
                "properties": {
                    "users": list("User ids (the token's sub).", MAX_USERS),
                    "segments": list("Sessions in any of these segments.", MAX_SEGMENTS),
                    "where": {
                        "description": "CEL over user, segments and attrs, e.g. attrs.plan == \"free\" && attrs.level >= 3",
                        "type": "string", "minLength": 1, "maxLength": MAX_WHERE
                    }
                }
            }
        ]
    })
}

/// Who a message is for. `None` conditions hold for everyone.
#[derive(Debug)]
pub struct Audience {
    users: Option<Vec<Arc<str>>>,
    user_set: Option<HashSet<Arc<str>>>,
    segments: Option<Vec<String>>,
    filter: Option<Filter>,
}

fn strings(
    field: &str,
    value: &serde_json::Value,
    max: usize,
    max_len: usize,
) -> Result<Vec<String>, FieldError> {
    let list = value
        .as_array()
        .ok_or_else(|| FieldError::new(field, "must be an array of strings"))?;
    if list.is_empty() || list.len() > max {
        return Err(FieldError::new(
            field,
            format!("must hold 1 to {max} entries"),
        ));
    }
    list.iter()
        .map(|v| match v.as_str() {
            Some(s) if !s.is_empty() && s.len() <= max_len => Ok(s.to_owned()),
            _ => Err(FieldError::new(
                field,
                format!("entries must be strings of 1 to {max_len} bytes"),
            )),
        })
        .collect()
}

impl Audience {
    /// Compiles the envelope's `to`.
    pub fn compile(to: &serde_json::Value) -> Result<Self, FieldError> {
        let mut audience = Audience {
            users: None,
            user_set: None,
            segments: None,
            filter: None,
        };
        match to {
            serde_json::Value::String(s) if s == "all" => Ok(audience),
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (key, value) in map {
                    match key.as_str() {
                        "users" => {
                            let users: Vec<Arc<str>> =
                                strings("to.users", value, MAX_USERS, MAX_USER_ID)?
                                    .into_iter()
                                    .map(Arc::from)
                                    .collect();
                            audience.user_set = Some(users.iter().cloned().collect());
                            audience.users = Some(users);
                        }
                        "segments" => {
                            audience.segments =
                                Some(strings("to.segments", value, MAX_SEGMENTS, 256)?);
                        }
                        "where" => {
                            let src = value.as_str().ok_or_else(|| {
                                FieldError::new("to.where", "must be a CEL expression string")
                            })?;
                            audience.filter = Some(Filter::compile(
                                "to.where",
                                src,
                                &["user", "segments", "attrs"],
                            )?);
                        }
                        other => {
                            return Err(FieldError::new(
                                format!("to.{other}"),
                                "unknown audience key; use users, segments or where",
                            ));
                        }
                    }
                }
                Ok(audience)
            }
            _ => Err(FieldError::new(
                "to",
                "must be \"all\" or an object with users, segments and/or where",
            )),
        }
    }

    /// The named users, when the audience names them.
    pub fn users(&self) -> Option<&[Arc<str>]> {
        self.users.as_deref()
    }

    pub fn is_all(&self) -> bool {
        self.users.is_none() && self.segments.is_none() && self.filter.is_none()
    }

    /// Whether matching evaluates a `where` expression (whose cost, unlike
    /// the other conditions', grows with the expression).
    pub fn evaluates(&self) -> bool {
        self.filter.is_some()
    }

    /// Does this session belong to the audience? Cheap checks first.
    pub fn matches(&self, id: &Identity) -> bool {
        if let Some(set) = &self.user_set
            && !set.contains(&id.user)
        {
            return false;
        }
        if let Some(segments) = &self.segments
            && !segments.iter().any(|s| id.in_segment(s))
        {
            return false;
        }
        match &self.filter {
            None => true,
            Some(filter) => filter.eval(|ctx| {
                if filter.uses("user") {
                    ctx.add_variable_from_value(
                        "user",
                        cel::Value::String(Arc::new(id.user.to_string())),
                    );
                }
                if filter.uses("segments") {
                    let segs: Vec<cel::Value> = id
                        .segments
                        .iter()
                        .map(|s| cel::Value::String(Arc::new(s.to_string())))
                        .collect();
                    ctx.add_variable_from_value("segments", cel::Value::List(Arc::new(segs)));
                }
                if filter.uses("attrs") {
                    ctx.add_variable_from_value("attrs", id.attrs.clone());
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(user: &str, segments: &[&str], attrs: serde_json::Value) -> Identity {
        let mut map = std::collections::HashMap::new();
        for (k, v) in attrs.as_object().cloned().unwrap_or_default() {
            let v = match v {
                serde_json::Value::String(s) => cel::Value::String(Arc::new(s)),
                serde_json::Value::Bool(b) => cel::Value::Bool(b),
                other => cel::Value::Int(other.as_i64().unwrap_or_default()),
            };
            map.insert(cel::objects::Key::String(Arc::new(k)), v);
        }
        Identity {
            user: Arc::from(user),
            segments: segments.iter().map(|s| Box::from(*s)).collect(),
            attrs: cel::Value::Map(cel::objects::Map { map: Arc::new(map) }),
            exp: u64::MAX,
            locale: None,
        }
    }

    fn compile(v: serde_json::Value) -> Audience {
        Audience::compile(&v).expect("compiles")
    }

    #[test]
    fn all_matches_everyone() {
        assert!(compile(json!("all")).matches(&identity("u1", &[], json!({}))));
    }

    #[test]
    fn users_and_segments() {
        let a = compile(json!({"users": ["u1", "u2"]}));
        assert!(a.matches(&identity("u1", &[], json!({}))));
        assert!(!a.matches(&identity("u3", &[], json!({}))));
        let s = compile(json!({"segments": ["beta", "admins"]}));
        assert!(s.matches(&identity("x", &["admins"], json!({}))));
        assert!(!s.matches(&identity("x", &["free"], json!({}))));
    }

    #[test]
    fn where_over_attrs_segments_and_user() {
        let a = compile(json!({"where": "attrs.plan == \"free\" && attrs.level >= 3"}));
        assert!(a.matches(&identity("u", &[], json!({"plan": "free", "level": 3}))));
        assert!(!a.matches(&identity("u", &[], json!({"plan": "free", "level": 2}))));
        assert!(!a.matches(&identity("u", &[], json!({"plan": "pro", "level": 9}))));
        // A missing attribute is no match, not an error that stops the fan-out.
        assert!(!a.matches(&identity("u", &[], json!({}))));
        let b = compile(json!({"where": "'beta' in segments || user == 'boss'"}));
        assert!(b.matches(&identity("boss", &[], json!({}))));
        assert!(b.matches(&identity("x", &["beta"], json!({}))));
        assert!(!b.matches(&identity("x", &[], json!({}))));
    }

    #[test]
    fn combinations_must_all_hold() {
        let a = compile(
            json!({"users": ["u1", "u2"], "segments": ["beta"], "where": "attrs.role == 'owner'"}),
        );
        assert!(a.matches(&identity("u1", &["beta"], json!({"role": "owner"}))));
        assert!(!a.matches(&identity("u1", &["beta"], json!({"role": "viewer"}))));
        assert!(!a.matches(&identity("u1", &[], json!({"role": "owner"}))));
        assert!(!a.matches(&identity("u9", &["beta"], json!({"role": "owner"}))));
    }

    #[test]
    fn bad_audiences_are_refused_at_compile() {
        let err = |v: serde_json::Value| Audience::compile(&v).expect_err("refused").field;
        assert_eq!(err(json!("everyone")), "to");
        assert_eq!(err(json!({})), "to");
        assert_eq!(err(json!({"users": "u1"})), "to.users");
        assert_eq!(err(json!({"users": [""]})), "to.users");
        assert_eq!(err(json!({"segmnts": ["a"]})), "to.segmnts");
        assert_eq!(err(json!({"where": "attrs.plan =="})), "to.where");
        assert_eq!(err(json!({"where": "account.plan == 'x'"})), "to.where");
        assert_eq!(err(json!({"users": ["x".repeat(257)]})), "to.users");
    }

    #[test]
    fn comprehension_variables_are_not_unknown_variables() {
        let a = Audience::compile(&json!({"where": "segments.exists(s, s.startsWith('be'))"}))
            .expect("compiles");
        assert!(a.matches(&identity("u", &["beta"], json!({}))));
        assert!(!a.matches(&identity("u", &["alpha"], json!({}))));
        // A free variable is still refused.
        assert!(Audience::compile(&json!({"where": "segments.exists(s, s == other)"})).is_err());
    }
}
