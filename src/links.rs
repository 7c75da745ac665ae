//! Which links an action may open: http(s) URLs, app-relative paths, and
//! the app schemes of `sdk.allowed_link_schemes` (e.g. `myapp://open/42`,
//! for apps showing Herald in a web view). `javascript:`, `data:` and
//! `vbscript:` run code or smuggle content in the page, and are refused
//! whatever the list says. The SDK's renderer applies the same rule with the
//! list it learns from `hello`.

/// Schemes no configuration can allow.
pub const NEVER: &[&str] = &["javascript", "data", "vbscript"];

/// `myapp://`, `myapp:` and `MyApp` all name the scheme `myapp`.
pub fn normalize_scheme(entry: &str) -> String {
    let s = entry.trim();
    let s = s
        .strip_suffix("://")
        .or_else(|| s.strip_suffix(':'))
        .unwrap_or(s);
    s.to_ascii_lowercase()
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// An `sdk.allowed_link_schemes` entry: a scheme name, not one of [`NEVER`].
pub fn check_scheme_entry(entry: &str) -> Result<(), &'static str> {
    let s = normalize_scheme(entry);
    if !is_scheme(&s) {
        return Err("is not a URL scheme (e.g. \"myapp\")");
    }
    if NEVER.contains(&s.as_str()) {
        return Err("can never be allowed: it runs code in the page");
    }
    Ok(())
}

/// The scheme of an absolute URL, lowercased; `None` for a path or text
/// without one.
pub fn scheme_of(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    is_scheme(scheme).then(|| scheme.to_ascii_lowercase())
}

/// What an action URL is, before any list is consulted.
#[derive(Debug, PartialEq, Eq)]
pub enum Link {
    /// `https://…`, `http://…` or `/path`.
    Web,
    /// `scheme:…` of an app; allowed only when listed.
    App(String),
}

/// Classifies an action URL, refusing what no list can allow.
pub fn classify(url: &str) -> Result<Link, &'static str> {
    if url.starts_with("https://")
        || url.starts_with("http://")
        || (url.starts_with('/') && !url.starts_with("//"))
    {
        return Ok(Link::Web);
    }
    match scheme_of(url) {
        Some(s) if NEVER.contains(&s.as_str()) => {
            Err("javascript:, data: and vbscript: links are never allowed")
        }
        Some(s) if s == "http" || s == "https" => {
            Err("must be an http(s) URL, a path starting with /, or an app link")
        }
        Some(s) => Ok(Link::App(s)),
        None => Err("must be an http(s) URL, a path starting with /, or an app link"),
    }
}

/// An action URL checked against `allowed` (normalized scheme names).
pub fn check_action_url(url: &str, allowed: &[String]) -> Result<(), String> {
    match classify(url)? {
        Link::Web => Ok(()),
        Link::App(s) if allowed.contains(&s) => Ok(()),
        Link::App(s) => Err(format!(
            "scheme {s}: is not in sdk.allowed_link_schemes ({})",
            if allowed.is_empty() {
                "empty: only http(s) URLs and paths".to_owned()
            } else {
                allowed.join(", ")
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_schemes_only_when_listed_and_never_script() {
        let allowed = vec!["myapp".to_owned()];
        assert!(check_action_url("myapp://open/42", &allowed).is_ok());
        assert!(check_action_url("MyApp://open/42", &allowed).is_ok());
        assert!(check_action_url("https://x.example/a", &allowed).is_ok());
        assert!(check_action_url("/pricing", &allowed).is_ok());
        let err = check_action_url("otherapp://x", &allowed).expect_err("unlisted");
        assert!(err.contains("sdk.allowed_link_schemes"), "{err}");
        assert!(check_action_url("myapp://x", &[]).is_err(), "empty list");
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,x",
            "//evil.example",
            "http:/x",
            "plain text",
        ] {
            assert!(check_action_url(bad, &allowed).is_err(), "{bad}");
        }
        let listed = vec!["javascript".to_owned()];
        assert!(
            check_action_url("javascript:alert(1)", &listed).is_err(),
            "even listed"
        );
    }

    #[test]
    fn list_entries_are_scheme_names() {
        assert_eq!(normalize_scheme("MyApp://"), "myapp");
        assert!(check_scheme_entry("myapp://").is_ok());
        assert!(check_scheme_entry("com.example.app").is_ok());
        assert!(check_scheme_entry("javascript").is_err());
        assert!(check_scheme_entry("data:").is_err());
        assert!(check_scheme_entry("1app").is_err());
        assert!(check_scheme_entry("my app").is_err());
    }
}
