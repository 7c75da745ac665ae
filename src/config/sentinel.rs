//! `redis.sentinels` and the keys that go with them: what the bus is given
//! (`RedisConfig::bus_url`), and the checks of `Config::validate`.

use super::{ConfigError, RedisConfig};

impl RedisConfig {
    /// What the bus connects to: `url`, or under Sentinel
    /// `redis+sentinel://host:port,…/master-name`; `None` is embedded mode.
    pub fn bus_url(&self) -> Option<String> {
        match (&self.url, &self.sentinel_master) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(name)) if !self.sentinels.is_empty() => {
                let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
                let query: Vec<String> = [
                    ("password", &self.password),
                    ("sentinel_password", &self.sentinel_password),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| format!("{k}={}", hex(v))))
                .collect();
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", query.join("&"))
                };
                Some(format!(
                    "redis+sentinel://{}/{name}{query}",
                    self.sentinels.join(",")
                ))
            }
            _ => None,
        }
    }
}

/// `redis.sentinels` and `redis.sentinel_master`: both or neither, and
/// not with another way to reach Redis.
pub(super) fn check(r: &RedisConfig) -> Result<(), ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(m));
    match (r.sentinels.is_empty(), &r.sentinel_master) {
        (true, None) => {
            for (key, v) in [
                ("redis.password", &r.password),
                ("redis.sentinel_password", &r.sentinel_password),
            ] {
                if v.is_some() {
                    return bad(format!(
                        "{key} is for Redis Sentinel (with redis.sentinels); with redis.url put the password in the URL (redis://user:password@host)"
                    ));
                }
            }
            return Ok(());
        }
        (false, None) => {
            return bad(
                "redis.sentinels is set but redis.sentinel_master is not: name the master the sentinels monitor (sentinel monitor <name> ...)".into(),
            );
        }
        (true, Some(_)) => {
            return bad(
                "redis.sentinel_master is set but redis.sentinels is empty: list the sentinels as [\"host:port\", ...]".into(),
            );
        }
        (false, Some(name)) => {
            if name.is_empty() || name.contains(['/', ',', ' ']) {
                return bad(format!(
                    "redis.sentinel_master = {name:?}: a master name, without '/', ',' or spaces"
                ));
            }
        }
    }
    if r.url.is_some() {
        return bad(
            "redis.sentinels and redis.url exclude each other: under Sentinel the sentinels name the master; unset redis.url".into(),
        );
    }
    if r.cluster {
        return bad(
            "redis.sentinels and redis.cluster exclude each other: a Redis Cluster fails over by itself; unset one".into(),
        );
    }
    for entry in &r.sentinels {
        let port = entry
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0 && !host.contains(['/', ',', '@']))
        {
            return bad(format!(
                "redis.sentinels: {entry:?} is not host:port (e.g. \"10.0.0.5:26379\")"
            ));
        }
    }
    for (key, file) in [
        ("redis.tls_ca_file", &r.tls_ca_file),
        ("redis.tls_cert_file", &r.tls_cert_file),
        ("redis.tls_key_file", &r.tls_key_file),
    ] {
        if file.is_some() {
            return bad(format!(
                "{key} is set with redis.sentinels, but connections under Sentinel are plain (no TLS yet); unset {key}"
            ));
        }
    }
    Ok(())
}
