//! Configuration: one [`Config`] struct with documented defaults.
//!
//! Layers, later wins: built-in defaults, the TOML file, `HERALD_…`
//! environment variables, command-line flags. Unknown keys are refused by
//! name in every layer. This is the only module that reads the environment.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod sentinel;
mod validate;
use std::time::Duration;

/// Environment variables that belong to the CLI, not to the server config.
const CLI_ONLY_ENV: &[&str] = &["HERALD_API_KEY", "HERALD_API_URL", "HERALD_LOG"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Without a JWT key Herald generates one and serves `/dev/token`.
    #[default]
    Dev,
    /// Refuses to start without a JWT key.
    Production,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mode: Mode,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Name of this node in presence, stats and analytics; random when empty.
    pub node_id: String,
    /// How long a draining node waits for its sessions to close.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Proxies (CIDRs or single addresses) whose `Forwarded` /
    /// `X-Forwarded-For` headers name the client: its address then counts
    /// for per-address limits and logs. Others' headers are ignored.
    pub trusted_proxies: Vec<String>,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub session: SessionConfig,
    pub limits: LimitsConfig,
    pub messages: MessagesConfig,
    pub history: HistoryConfig,
    pub ingress: IngressConfig,
    pub campaigns: CampaignsConfig,
    pub stats: StatsConfig,
    pub schedule: ScheduleConfig,
    pub log: LogConfig,
    pub sdk: SdkConfig,
    /// The wall clock scheduled messages are due by when embedded (Redis
    /// mode uses Redis's), and campaigns and counts read; not configurable,
    /// tests set a manual one.
    #[serde(skip)]
    pub clock: crate::clock::Clock,
}

/// Scheduled messages (`send_at`, SPEC §10.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// How often every node claims due scheduled messages: the most a
    /// message is published after its time.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Scheduled messages claimed at once (claiming again at once while full).
    pub batch: usize,
    /// Scheduled messages that may wait at once (cluster-wide with Redis);
    /// more are refused with 503.
    pub max_pending: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            batch: 100,
            max_pending: 100_000,
        }
    }
}

/// What the SDK is told by the node (in `hello`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SdkConfig {
    /// App schemes (e.g. `myapp`) action URLs may use beside http(s) and
    /// paths, for apps showing Herald in a web view. `javascript` and
    /// `data` are refused whatever this says.
    pub allowed_link_schemes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Absent: embedded mode, one node, state in memory.
    /// One server's URL; with `cluster`, one or more seed nodes of a Redis
    /// Cluster separated by commas.
    pub url: Option<String>,
    /// A Redis Cluster (Redis >= 7): sharded pub/sub for user channels,
    /// Herald's own keys under the hash tag `{prefix}`.
    pub cluster: bool,
    /// Redis Sentinel, instead of `url`: the sentinels (`"host:port"`),
    /// asked for the master at every (re)connection and after a
    /// `READONLY` answer, so the node follows a failover.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the master under
    /// (`sentinel monitor <name> …`); goes with `sentinels`.
    pub sentinel_master: Option<String>,
    /// Under Sentinel: the master's (and replicas') password; with `url`
    /// it goes in the URL instead.
    pub password: Option<String>,
    /// The sentinels' own password (their `requirepass`).
    pub sentinel_password: Option<String>,
    pub prefix: String,
    /// Node heartbeat in Redis and liveness check of the pub/sub connection;
    /// presence ignores nodes silent for three heartbeats.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How often the node publishes a probe on its own channel and expects
    /// it back through its subscription; a subscription that stays open
    /// but delivers nothing (a failover, a stuck proxy) is replaced.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// How long a probe may take to come back.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// With a `rediss://` URL: the CA certificate (PEM) the server's must
    /// chain to; unset, the system's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM), for servers that require one; with
    /// `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub hs256_secret: Option<String>,
    /// RS256 or ES256 public key (PEM).
    pub public_key_pem_file: Option<PathBuf>,
    /// A JWKS document with RS256 / ES256 keys, selected by `kid`.
    pub jwks_file: Option<PathBuf>,
    /// The issuer's JWKS endpoint (https, or http on loopback): fetched at
    /// start, every `jwks_refresh`, and on a token with an unknown `kid`.
    /// A failed fetch keeps the last good keys.
    pub jwks_url: Option<String>,
    /// PEM certificates trusted beside the system roots for `jwks_url`.
    pub jwks_ca_file: Option<PathBuf>,
    /// How often `jwks_url` is fetched again.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Tokens naming an unknown `kid` fetch `jwks_url` at most once per
    /// this interval, so forged `kid`s cannot make Herald hammer the issuer.
    #[serde(with = "humantime_serde")]
    pub jwks_unknown_kid_interval: Duration,
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Required `aud` claim, when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Bearer keys for the admin API; empty: no key, loopback only.
    pub api_keys: Vec<String>,
    /// Allowed `Origin` values for WebSocket upgrades; empty: any origin.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// WebSocket ping interval; a session silent for two intervals is closed.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Frames waiting for one socket; overflow closes it with 4008.
    pub outbound_queue: usize,
    /// Bytes of the frames waiting for one socket; overflow closes it with 4008.
    pub outbound_queue_bytes: usize,
    /// Largest client frame accepted; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// A socket that cannot take our bytes for this long is a slow consumer.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// tungstenite read buffer per connection (its default is 128 KiB).
    pub read_buffer_bytes: usize,
    /// tungstenite write buffer target; frames queued together share a write.
    pub write_buffer_bytes: usize,
    /// Client frames per second allowed per session (token bucket refill).
    pub client_frames_per_s: u32,
    /// Burst of client frames allowed above the rate.
    pub client_frames_burst: u32,
    /// Consecutive bad frames before closing with 4000.
    pub max_bad_frames: u32,
    /// Rate-limited frames tolerated (each answered `rate_limited`) before 4029.
    pub max_rate_limited: u32,
    /// Client events per second per session that may trigger campaigns;
    /// beyond it events are still accepted but trigger nothing.
    pub campaign_events_per_s: u32,
    /// Burst of events above that rate.
    pub campaign_events_burst: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Sessions on this node; over it, upgrades get 503.
    pub max_connections: usize,
    /// Sessions per user on this node; over it, 429.
    pub max_connections_per_user: usize,
    /// Sessions per client address on this node; over it, 429.
    pub max_connections_per_ip: usize,
    /// Largest publish envelope, in bytes.
    pub max_envelope_bytes: usize,
    /// A client must send its whole HTTP request head within this time.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// An admin API client must send its whole request body within this time.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Background jobs running at once (storing what arrived by plain
    /// PUBLISH, dead records, acknowledgements, campaign checks); more are
    /// shed and counted.
    pub background_jobs: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// A message id seen again within this window is not delivered again.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// Record a `delivered` entry in the events stream per session reached.
    pub record_deliveries: bool,
    /// Approximate MAXLEN of the events, undelivered and dead streams.
    pub stream_maxlen: usize,
    /// Records waiting for the Redis stream writer; beyond it they are dropped and counted.
    pub stream_queue: usize,
    /// Embedded mode: records kept per stream for the admin API.
    pub embedded_stream_len: usize,
}

/// The resume window: what a reconnecting client with `since` can recover.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Keep a history of published messages for resume.
    pub enabled: bool,
    /// How far back a client can resume.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Entries per history stream (the broadcast one, and one per user).
    pub max_per_stream: usize,
}

/// Durable publishing through the `{prefix}:ingress` stream (Redis mode).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Consume the ingress stream on this node.
    pub enabled: bool,
    /// Entries a node read but did not acknowledge for this long are claimed by another.
    #[serde(with = "humantime_serde")]
    pub claim_after: Duration,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            claim_after: Duration::from_secs(30),
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(120),
            max_per_stream: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignsConfig {
    /// Campaign messages per user per hour, across campaigns; urgent ones are exempt.
    pub global_cap_per_hour: u32,
    /// A JSON array of campaigns stored at start (each replaces its id).
    pub file: Option<PathBuf>,
    /// Campaign messages waiting out their `delay_s` on this node at once;
    /// more are dropped and counted.
    pub max_delayed: usize,
    /// The IANA time zone of `quiet_hours` for users whose token has no
    /// (known) `attrs.tz`.
    pub default_tz: String,
}

/// Message and campaign counts (`/v1/…/stats`) and the user trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// How long the counts of a message or campaign are kept after their last change.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Decisions kept per user in the trace (newest first).
    pub trace_per_user: usize,
    /// How long a user's trace is kept after its last decision.
    #[serde(with = "humantime_serde")]
    pub trace_ttl: Duration,
    /// Users whose trace is kept (the least recently traced go first).
    pub trace_users: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 86_400),
            trace_per_user: 50,
            trace_ttl: Duration::from_secs(7 * 86_400),
            trace_users: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `herald=debug`.
    pub level: String,
    /// Repeated warnings (refused payloads, failed accepts): the first is
    /// logged, then one line per interval with the count and the last one.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Dev,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            node_id: String::new(),
            shutdown_grace: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            redis: RedisConfig::default(),
            auth: AuthConfig::default(),
            session: SessionConfig::default(),
            limits: LimitsConfig::default(),
            messages: MessagesConfig::default(),
            history: HistoryConfig::default(),
            ingress: IngressConfig::default(),
            campaigns: CampaignsConfig::default(),
            stats: StatsConfig::default(),
            schedule: ScheduleConfig::default(),
            log: LogConfig::default(),
            sdk: SdkConfig::default(),
            clock: crate::clock::Clock::system(),
        }
    }
}

/// The TLS files of `redis.*`, as the bus reads them.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFiles<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

impl RedisConfig {
    pub fn tls_files(&self) -> TlsFiles<'_> {
        TlsFiles {
            ca: self.tls_ca_file.as_deref(),
            cert: self.tls_cert_file.as_deref(),
            key: self.tls_key_file.as_deref(),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            cluster: false,
            sentinels: Vec::new(),
            sentinel_master: None,
            password: None,
            sentinel_password: None,
            prefix: "herald".into(),
            heartbeat: Duration::from_secs(5),
            probe_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(3),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            public_key_pem_file: None,
            jwks_file: None,
            jwks_url: None,
            jwks_ca_file: None,
            jwks_refresh: Duration::from_secs(300),
            jwks_unknown_kid_interval: Duration::from_secs(30),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            api_keys: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(25),
            outbound_queue: 256,
            outbound_queue_bytes: 1024 * 1024,
            max_frame_bytes: 16 * 1024,
            write_timeout: Duration::from_secs(10),
            read_buffer_bytes: 128,
            write_buffer_bytes: 0,
            client_frames_per_s: 20,
            client_frames_burst: 40,
            max_bad_frames: 10,
            max_rate_limited: 10,
            campaign_events_per_s: 5,
            campaign_events_burst: 10,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_connections_per_user: 32,
            max_connections_per_ip: 20_000,
            max_envelope_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            background_jobs: 1024,
        }
    }
}

impl Default for MessagesConfig {
    fn default() -> Self {
        Self {
            dedupe_window: Duration::from_secs(600),
            record_deliveries: true,
            stream_maxlen: 100_000,
            stream_queue: 65_536,
            embedded_stream_len: 1000,
        }
    }
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        Self {
            global_cap_per_hour: 5,
            file: None,
            max_delayed: 100_000,
            default_tz: "UTC".into(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            repeat_interval: Duration::from_secs(10),
        }
    }
}

/// Command-line overrides; `None` leaves the lower layers in force.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub redis: Option<String>,
}

impl Config {
    /// Loads file, environment and flags, then validates.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env, flags)
    }

    /// [`Config::load`] with the environment given, for tests.
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    ConfigError::Invalid(format!("{}: {}", path.display(), e.message()))
                })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        if let Some(listen) = flags.listen {
            config.listen = listen;
        }
        if let Some(admin) = flags.admin_listen {
            config.admin_listen = admin;
        }
        if let Some(url) = &flags.redis {
            config.redis.url = Some(url.clone());
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document alone (no environment, no flags).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }
}

/// A `trusted_proxies` entry: a CIDR, or one address (a /32 or /128).
pub(crate) fn parse_net(entry: &str) -> Option<ipnet::IpNet> {
    let entry = entry.trim();
    entry.parse::<ipnet::IpNet>().ok().or_else(|| {
        entry
            .parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

impl Config {
    /// `trusted_proxies`, parsed (validated at load).
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|e| parse_net(e))
            .collect()
    }

    /// `sdk.allowed_link_schemes`, normalized (`myapp://` and `MyApp` are `myapp`).
    pub fn link_schemes(&self) -> Vec<String> {
        self.sdk
            .allowed_link_schemes
            .iter()
            .map(|s| crate::links::normalize_scheme(s))
            .collect()
    }
}

impl AuthConfig {
    pub fn has_key(&self) -> bool {
        self.hs256_secret.is_some()
            || self.public_key_pem_file.is_some()
            || self.jwks_file.is_some()
            || self.jwks_url.is_some()
    }
}

/// Writes `HERALD_SECTION__KEY=value` variables into the TOML table. Values
/// take the type of the key's default (numbers, booleans, comma-separated
/// lists); keys without a default are strings.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default())
        .map_err(|e| ConfigError::Invalid(format!("defaults: {e}")))?;
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("HERALD_") else {
            continue;
        };
        if CLI_ONLY_ENV.contains(&name.as_str()) {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let unknown = || ConfigError::Invalid(format!("unknown key in environment: {name}"));
        let default = lookup(&defaults, &path);
        if default.is_none() && !is_optional_key(&path) {
            return Err(unknown());
        }
        let value = match default {
            Some(toml::Value::Integer(_)) => raw
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| {
                    ConfigError::Invalid(format!("{name}: expected an integer, got {raw:?}"))
                })?,
            Some(toml::Value::Boolean(_)) => raw
                .trim()
                .parse::<bool>()
                .map(toml::Value::Boolean)
                .map_err(|_| {
                ConfigError::Invalid(format!("{name}: expected true or false, got {raw:?}"))
            })?,
            Some(toml::Value::Array(_)) => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            ),
            _ => toml::Value::String(raw.clone()),
        };
        let (last, parents) = path.split_last().ok_or_else(unknown)?;
        let mut cursor = &mut *table;
        for part in parents {
            let entry = cursor
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = entry.as_table_mut().ok_or_else(unknown)?;
        }
        cursor.insert(last.clone(), value);
    }
    Ok(())
}

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(first)?;
    if rest.is_empty() {
        Some(value)
    } else {
        lookup(value.as_table()?, rest)
    }
}

/// Keys whose default is absent (`Option` set to `None`), so they do not
/// appear in the serialized defaults.
fn is_optional_key(path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        path.as_slice(),
        ["redis", "url"]
            | ["redis", "sentinel_master"]
            | ["redis", "password"]
            | ["redis", "sentinel_password"]
            | ["auth", "hs256_secret"]
            | ["auth", "public_key_pem_file"]
            | ["auth", "jwks_file"]
            | ["auth", "jwks_url"]
            | ["auth", "jwks_ca_file"]
            | ["auth", "issuer"]
            | ["auth", "audience"]
            | ["campaigns", "file"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let dir = std::env::temp_dir().join(format!("herald-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1000\"\n[campaigns]\nglobal_cap_per_hour = 2\n",
        )
        .expect("write");
        let e = env(&[
            ("HERALD_CAMPAIGNS__GLOBAL_CAP_PER_HOUR", "7"),
            (
                "HERALD_AUTH__API_KEYS",
                "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb",
            ),
            ("HERALD_REDIS__URL", "redis://127.0.0.1:1"),
            ("HERALD_API_KEY", "ignored: belongs to the CLI"),
            ("PATH", "/bin"),
        ]);
        let flags = Overrides {
            redis: Some("redis://127.0.0.1:2".into()),
            ..Default::default()
        };
        let c = Config::load_from(Some(&file), &e, &flags).expect("loads");
        assert_eq!(c.listen, "127.0.0.1:1000".parse().expect("addr"));
        assert_eq!(c.campaigns.global_cap_per_hour, 7);
        assert_eq!(c.auth.api_keys.len(), 2);
        assert_eq!(c.redis.url.as_deref(), Some("redis://127.0.0.1:2"));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = Config::from_toml("[redis]\nurll = \"x\"\n").expect_err("refused");
        assert!(err.to_string().contains("urll"), "{err}");
        let err = Config::load_from(
            None,
            &env(&[("HERALD_REDIS__URLL", "x")]),
            &Overrides::default(),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("HERALD_REDIS__URLL"), "{err}");
        // Positive control: the right spelling loads.
        Config::load_from(
            None,
            &env(&[("HERALD_REDIS__URL", "redis://x")]),
            &Overrides::default(),
        )
        .expect("loads");
    }

    #[test]
    fn production_without_key_refuses_to_start() {
        let err = Config::from_toml("mode = \"production\"").expect_err("refused");
        assert!(err.to_string().contains("JWT key"), "{err}");
        Config::from_toml("mode = \"production\"\n[auth]\nhs256_secret = \"0123456789abcdef\"\n")
            .expect("with a key it starts");
    }

    #[test]
    fn admin_beyond_loopback_needs_api_keys() {
        let err = Config::from_toml("admin_listen = \"0.0.0.0:9090\"").expect_err("refused");
        assert!(err.to_string().contains("api_keys"), "{err}");
        Config::from_toml(
            "admin_listen = \"0.0.0.0:9090\"\n[auth]\napi_keys = [\"0123456789abcdef\"]\n",
        )
        .expect("with keys it starts");
    }

    #[test]
    fn durations_take_units() {
        let c = Config::from_toml("shutdown_grace = \"3s\"\n[session]\nheartbeat = \"1m\"\n")
            .expect("ok");
        assert_eq!(c.shutdown_grace, Duration::from_secs(3));
        assert_eq!(c.session.heartbeat, Duration::from_secs(60));
    }

    #[test]
    fn the_default_time_zone_must_be_known() {
        let err =
            Config::from_toml("[campaigns]\ndefault_tz = \"Mars/Olympus\"\n").expect_err("refused");
        assert!(err.to_string().contains("campaigns.default_tz"), "{err}");
        let c = Config::from_toml("[campaigns]\ndefault_tz = \"Europe/Paris\"\n").expect("known");
        assert_eq!(c.campaigns.default_tz, "Europe/Paris");
    }
}
