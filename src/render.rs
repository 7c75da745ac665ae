//! `{{attrs.NAME|fallback}}` placeholders: checked when a message is
//! published, filled per recipient from the token's attributes. Knows
//! templates and identities, nothing of envelopes (`envelope` applies it to
//! titles, bodies and action labels, and picks locale variants).

use crate::auth::Identity;

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

/// Checks a template's placeholders; true when it has any (then it is
/// rendered per recipient). The reason names what is malformed.
pub fn check(template: &str) -> Result<bool, String> {
    if !has_placeholder(template) {
        return Ok(false);
    }
    parse(template).map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The body limit (`envelope::MAX_BODY`), here as a number: this module
    /// knows nothing of envelopes.
    const MAX_BODY: usize = 8 * 1024;
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
    fn malformed_placeholders_are_refused() {
        assert!(check("Hi {{user.name}}").is_err());
        assert!(check("Hi {{attrs.name").is_err());
        assert_eq!(check("Hi {{attrs.name|friend}}"), Ok(true));
        assert_eq!(check("Hi"), Ok(false));
    }
}
