//! `Config::validate`: what types alone cannot check, each refusal naming
//! its key.

use super::{Config, ConfigError, Mode, parse_net};
use std::time::Duration;

impl Config {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if jiff::tz::TimeZone::get(&self.campaigns.default_tz).is_err() {
            return bad(format!(
                "campaigns.default_tz = {:?} is not an IANA time zone (e.g. \"UTC\", \"Europe/Paris\")",
                self.campaigns.default_tz
            ));
        }
        if self.schedule.poll_interval < Duration::from_millis(10) || self.schedule.batch == 0 {
            return bad(
                "schedule.poll_interval must be at least 10ms and schedule.batch at least 1".into(),
            );
        }
        if self.redis.probe_interval < Duration::from_millis(50)
            || self.redis.probe_timeout < Duration::from_millis(50)
        {
            return bad(
                "redis.probe_interval and redis.probe_timeout must be at least 50ms".into(),
            );
        }
        if self.stats.trace_per_user == 0 || self.stats.trace_users == 0 {
            return bad("stats.trace_per_user and stats.trace_users must be at least 1".into());
        }
        if self.mode == Mode::Production && !self.auth.has_key() {
            return bad(
                "mode = \"production\" needs a JWT key: set auth.hs256_secret, auth.public_key_pem_file, auth.jwks_file or auth.jwks_url".into(),
            );
        }
        if self.auth.api_keys.is_empty() && !self.admin_listen.ip().is_loopback() {
            return bad(format!(
                "admin_listen = {} is beyond loopback but auth.api_keys is empty; set API keys or bind 127.0.0.1",
                self.admin_listen
            ));
        }
        if self.auth.api_keys.iter().any(|k| k.len() < 16) {
            return bad("auth.api_keys: every key must be at least 16 characters".into());
        }
        if matches!(&self.auth.hs256_secret, Some(s) if s.len() < 16) {
            return bad("auth.hs256_secret must be at least 16 bytes".into());
        }
        if self.session.outbound_queue == 0 {
            return bad("session.outbound_queue must be at least 1".into());
        }
        if self.session.heartbeat < Duration::from_millis(100) {
            return bad("session.heartbeat must be at least 100ms".into());
        }
        if let Some(url) = &self.auth.jwks_url {
            check_jwks_url(url)?;
        }
        if self.auth.jwks_refresh < Duration::from_secs(1) {
            return bad("auth.jwks_refresh must be at least 1s".into());
        }
        for entry in &self.trusted_proxies {
            if parse_net(entry).is_none() {
                return bad(format!(
                    "trusted_proxies: {entry:?} is not a CIDR or an IP address (e.g. \"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.1\")"
                ));
            }
        }
        for scheme in &self.sdk.allowed_link_schemes {
            if let Err(why) = crate::links::check_scheme_entry(scheme) {
                return bad(format!("sdk.allowed_link_schemes: {scheme:?} {why}"));
            }
        }
        if self.redis.prefix.is_empty() {
            return bad("redis.prefix must not be empty".into());
        }
        if let Some(url) = &self.redis.url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return bad(format!(
                "redis.url must start with redis:// or rediss://, got {url:?}"
            ));
        }
        let r = &self.redis;
        super::sentinel::check(r)?;
        let tls_url = r.url.as_deref().is_some_and(|u| {
            u.split(',')
                .all(|seed| seed.trim().starts_with("rediss://"))
        });
        for (key, file) in [
            ("redis.tls_ca_file", &r.tls_ca_file),
            ("redis.tls_cert_file", &r.tls_cert_file),
            ("redis.tls_key_file", &r.tls_key_file),
        ] {
            let Some(file) = file else { continue };
            if !tls_url {
                return bad(format!(
                    "{key} is set but redis.url is not TLS: it must start with rediss://"
                ));
            }
            if let Err(e) = std::fs::metadata(file) {
                return bad(format!("{key}: {}: {e}", file.display()));
            }
        }
        if r.tls_cert_file.is_some() != r.tls_key_file.is_some() {
            return bad(
                "redis.tls_cert_file and redis.tls_key_file go together: set both or neither"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `auth.jwks_url`: https, or plain http to a loopback host only (keys
/// fetched in clear text over a network could be replaced on the way).
fn check_jwks_url(url: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        Err(ConfigError::Invalid(format!(
            "auth.jwks_url = {url:?}: {why}"
        )))
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad("not an URL (expected https://…)");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return bad("no host");
    }
    match scheme {
        "https" => Ok(()),
        "http"
            if host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback()) =>
        {
            Ok(())
        }
        "http" => bad("plain http only to a loopback host; use https"),
        _ => bad("must be https:// (or http:// on loopback)"),
    }
}
