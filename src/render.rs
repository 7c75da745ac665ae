//! Per-recipient content: locale variants and `{{attrs.NAME|fallback}}`
//! placeholders in titles, bodies and action labels.
//!
//! A message with neither is serialized once per node; one with locales
//! only, once per locale; one with placeholders, once per recipient.

use crate::auth::Identity;
use crate::envelope::{Action, Envelope, EnvelopeError};

/// One `{{…}}` placeholder: the attribute and its fallback.
#[derive(Debug, PartialEq, Eq)]
struct Placeholder<'a> {
    attr: &'a str,
    fallback: Option<&'a str>,
}

/// Splits a template into literal text and placeholders, refusing anything
/// between `{{` and `}}` that is not `attrs.NAME` or `attrs.NAME|fallback`.
fn parse(template: &str) -> Result<Vec<Result<&str, Placeholder<'_>>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Ok(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| "unclosed {{".to_owned())?;
        let inner = after[..end].trim();
        let (name, fallback) = match inner.split_once('|') {
            Some((n, f)) => (n.trim(), Some(f)),
            None => (inner, None),
        };
        let attr = name
            .strip_prefix("attrs.")
            .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| {
                format!("placeholder {{{{{inner}}}}}: expected attrs.NAME or attrs.NAME|fallback")
            })?;
        parts.push(Err(Placeholder { attr, fallback }));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Ok(rest));
    }
    Ok(parts)
}

fn has_placeholder(s: &str) -> bool {
    s.contains("{{")
}

/// Fills placeholders from the identity's attributes; a missing attribute
/// takes its fallback, or nothing.
pub fn fill(template: &str, id: &Identity) -> String {
    if !has_placeholder(template) {
        return template.to_owned();
    }
    let Ok(parts) = parse(template) else {
        return template.to_owned();
    };
    let mut out = String::with_capacity(template.len());
    for part in parts {
        match part {
            Ok(text) => out.push_str(text),
            Err(p) => match id.attr_text(p.attr) {
                Some(v) => out.push_str(&v),
                None => out.push_str(p.fallback.unwrap_or_default()),
            },
        }
    }
    out
}

/// Does the envelope need rendering per recipient? Also checks that every
/// placeholder is well formed, naming the field when one is not.
pub fn check_templates(e: &Envelope) -> Result<bool, EnvelopeError> {
    let mut any = false;
    let mut check = |field: String, s: Option<&str>| -> Result<(), EnvelopeError> {
        if let Some(s) = s.filter(|s| has_placeholder(s)) {
            parse(s).map_err(|r| EnvelopeError::new(field, r))?;
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
pub fn pick_locale<'a>(e: &'a Envelope, locale: Option<&str>) -> Option<&'a str> {
    let locales = e.locales.as_ref()?;
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
    e: &Envelope,
    locale: Option<&str>,
    id: Option<&Identity>,
) -> (Option<String>, Option<String>, Vec<Action>) {
    let variant = pick_locale(e, locale).and_then(|k| e.locales.as_ref()?.get(k));
    let title = variant
        .and_then(|v| v.title.as_deref())
        .or(e.title.as_deref());
    let body = variant
        .and_then(|v| v.body.as_deref())
        .or(e.body.as_deref());
    let actions = variant
        .and_then(|v| v.actions.as_ref())
        .unwrap_or(&e.actions);
    let fill = |s: &str| match id {
        Some(id) => fill(s, id),
        None => s.to_owned(),
    };
    (
        title.map(fill),
        body.map(fill),
        actions
            .iter()
            .map(|a| Action {
                label: fill(&a.label),
                ..a.clone()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn identity(attrs: &[(&str, cel::Value)]) -> Identity {
        let map = attrs
            .iter()
            .map(|(k, v)| {
                (
                    cel::objects::Key::String(Arc::new((*k).to_owned())),
                    v.clone(),
                )
            })
            .collect();
        Identity {
            user: Arc::from("u"),
            segments: Box::new([]),
            attrs: cel::Value::Map(cel::objects::Map { map: Arc::new(map) }),
            exp: u64::MAX,
            locale: None,
        }
    }

    #[test]
    fn fills_attributes_and_fallbacks() {
        let id = identity(&[
            ("name", cel::Value::String(Arc::new("Ada".into()))),
            ("level", cel::Value::Int(3)),
        ]);
        assert_eq!(
            fill("Hi {{attrs.name}}, level {{ attrs.level }}", &id),
            "Hi Ada, level 3"
        );
        assert_eq!(fill("Hi {{attrs.nick|there}}!", &id), "Hi there!");
        assert_eq!(fill("Hi {{attrs.nick}}!", &id), "Hi !");
        assert_eq!(fill("no placeholders", &id), "no placeholders");
    }

    #[test]
    fn malformed_placeholders_are_refused_with_the_field() {
        let mut e = Envelope {
            title: Some("Hi {{user.name}}".into()),
            ..Default::default()
        };
        assert_eq!(check_templates(&e).expect_err("refused").field, "title");
        e.title = Some("Hi {{attrs.name".into());
        assert_eq!(check_templates(&e).expect_err("refused").field, "title");
        e.title = Some("Hi {{attrs.name|friend}}".into());
        assert!(check_templates(&e).expect("ok"));
        e.title = Some("Hi".into());
        assert!(!check_templates(&e).expect("ok"));
    }

    #[test]
    fn locale_exact_then_language_then_base() {
        let e: Envelope = serde_json::from_value(serde_json::json!({
            "title": "Hello", "body": "Base body",
            "locales": {"fr": {"title": "Bonjour"}, "pt-BR": {"title": "Olá", "body": "Corpo"}}
        }))
        .expect("envelope");
        assert_eq!(
            content(&e, Some("fr-CA"), None).0.as_deref(),
            Some("Bonjour")
        );
        assert_eq!(
            content(&e, Some("fr-CA"), None).1.as_deref(),
            Some("Base body")
        );
        assert_eq!(content(&e, Some("pt-br"), None).1.as_deref(), Some("Corpo"));
        assert_eq!(content(&e, Some("de"), None).0.as_deref(), Some("Hello"));
        assert_eq!(content(&e, None, None).0.as_deref(), Some("Hello"));
    }
}
