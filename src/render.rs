//! Per-recipient content: locale variants and `{{attrs.NAME|fallback}}`
//! placeholders in titles, bodies and action labels.
//!
//! A message with neither is serialized once per node; one with locales
//! only, once per locale; one with placeholders, once per recipient.

use crate::auth::Identity;
use crate::envelope::{Action, Envelope, EnvelopeError, MAX_BODY, MAX_LABEL, MAX_TITLE};

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
/// takes its fallback, or nothing. The result is cut to `max` bytes (at a
/// character boundary): attributes never make a field longer than a
/// publisher could have written it, however many placeholders it holds.
pub fn fill(template: &str, id: &Identity, max: usize) -> String {
    if !has_placeholder(template) {
        return cut(template, max).to_owned();
    }
    let Ok(parts) = parse(template) else {
        return cut(template, max).to_owned();
    };
    let mut out = String::with_capacity(template.len().min(max));
    for part in parts {
        let piece = match part {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(p) => match id.attr_text(p.attr) {
                Some(v) => std::borrow::Cow::Owned(v),
                None => std::borrow::Cow::Borrowed(p.fallback.unwrap_or_default()),
            },
        };
        out.push_str(cut(&piece, max - out.len()));
        if out.len() + 4 > max {
            break;
        }
    }
    out
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
    let fill = |s: &str, max: usize| match id {
        Some(id) => fill(s, id, max),
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
            fill("Hi {{attrs.name}}, level {{ attrs.level }}", &id, 100),
            "Hi Ada, level 3"
        );
        assert_eq!(fill("Hi {{attrs.nick|there}}!", &id, 100), "Hi there!");
        assert_eq!(fill("Hi {{attrs.nick}}!", &id, 100), "Hi !");
        assert_eq!(fill("no placeholders", &id, 100), "no placeholders");
    }

    #[test]
    fn filled_text_never_outgrows_its_field() {
        let long = "é".repeat(600);
        let id = identity(&[("bio", cel::Value::String(Arc::new(long)))]);
        let template = "{{attrs.bio}}".repeat(700);
        let body = fill(&template, &id, MAX_BODY);
        assert!(
            body.len() <= MAX_BODY && body.len() > MAX_BODY - 8,
            "{}",
            body.len()
        );
        assert!(body.chars().all(|c| c == 'é'));
        // Positive control: a short fill is whole.
        assert_eq!(fill("{{attrs.bio}}", &id, MAX_BODY).len(), 1200);
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
