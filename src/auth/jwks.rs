//! Keys from a JWKS document: a file read once at start, or `auth.jwks_url`
//! fetched at start, on a schedule, and when a token names a `kid` the set
//! does not hold.
//!
//! A fetch that fails (issuer down, an error status, a document that does
//! not parse or holds no usable key) keeps the last good set, is logged and
//! counted in `herald_jwks_fetches_total{trigger,result}`. Fetches for
//! unknown `kid`s are coalesced (concurrent handshakes wait for one fetch)
//! and gated: at most one per `auth.jwks_unknown_kid_interval`, so a flood
//! of forged `kid`s costs the issuer one request per interval.

use super::Key;
use crate::metrics::{JwksFetch, Metrics};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Largest JWKS document read from the issuer.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// One fetch, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// While no key set was ever loaded, the schedule retries this often.
const RETRY_EMPTY: Duration = Duration::from_secs(5);

/// Keys of a JWKS document. With `strict` (a file the operator wrote), a key
/// of another type is an error; from an issuer it is skipped, as issuers
/// may publish encryption or HMAC keys beside the signing ones.
pub(super) fn keys_of(text: &str, strict: bool) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
            _ if strict => return Err("only RSA and EC keys are supported".into()),
            _ => continue,
        };
        let key = match DecodingKey::from_jwk(jwk) {
            Ok(k) => k,
            Err(e) if strict => return Err(e.to_string()),
            Err(_) => continue,
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err("no RSA or EC key in the document".into());
    }
    Ok(keys)
}

/// Lets a fetch for an unknown `kid` through at most once per `every`.
/// Time is given, so tests drive it with their own clock.
#[derive(Debug)]
pub struct Gate {
    every: Duration,
    last: Option<Instant>,
}

impl Gate {
    pub fn new(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// Whether a fetch may start at `now`; if so, it is counted.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// Where the remote keys come from and how often they are refreshed.
pub struct RemoteConfig<'a> {
    pub url: &'a str,
    /// PEM bundle trusted beside the system roots, for an https issuer with
    /// a private CA.
    pub ca_pem: Option<Vec<u8>>,
    pub refresh: Duration,
    pub unknown_kid_interval: Duration,
}

/// The key set of `auth.jwks_url`, the last good one.
pub struct Remote {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<[Key]>>,
    /// One fetch at a time; waiters see `attempts` move and retry.
    fetching: tokio::sync::Mutex<()>,
    attempts: AtomicU64,
    gate: Mutex<Gate>,
    refresh: Duration,
    metrics: RwLock<Arc<Metrics>>,
}

impl Remote {
    pub fn new(cfg: RemoteConfig<'_>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &cfg.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            url: cfg.url.to_owned(),
            client: builder.build().map_err(|e| e.to_string())?,
            keys: RwLock::new(Arc::from(Vec::new())),
            fetching: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            gate: Mutex::new(Gate::new(cfg.unknown_kid_interval)),
            refresh: cfg.refresh,
            metrics: RwLock::new(Arc::new(Metrics::default())),
        })
    }

    pub(super) fn set_metrics(&self, metrics: Arc<Metrics>) {
        *self.metrics.write().unwrap_or_else(|e| e.into_inner()) = metrics;
    }

    /// The last good key set (empty until a fetch succeeded).
    pub(super) fn keys(&self) -> Arc<[Key]> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches now, whatever the gate says: at start.
    pub async fn load(&self) {
        let _one = self.fetching.lock().await;
        self.fetch("start").await;
    }

    /// A token named a `kid` the set lacks: fetch, unless another fetch
    /// ran meanwhile or the gate is closed. Returns whether the set may have
    /// changed (so verifying again is worth it).
    pub(super) async fn refresh_for_unknown_kid(&self) -> bool {
        let seen = self.attempts.load(Ordering::Acquire);
        let _one = self.fetching.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            return true;
        }
        let allowed = self
            .gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(Instant::now());
        if !allowed {
            self.count("unknown_kid", "gated");
            return false;
        }
        self.fetch("unknown_kid").await;
        true
    }

    /// Refreshes every `auth.jwks_refresh` (sooner while no set was ever
    /// loaded) until `stopped`.
    pub async fn run(self: Arc<Self>, stopped: impl Future<Output = ()>) {
        tokio::pin!(stopped);
        loop {
            let wait = if self.keys().is_empty() {
                self.refresh.min(RETRY_EMPTY)
            } else {
                self.refresh
            };
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(wait) => {}
            }
            let _one = self.fetching.lock().await;
            self.fetch("schedule").await;
        }
    }

    fn count(&self, trigger: &'static str, result: &'static str) {
        self.metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .jwks_fetches
            .get_or_create(&JwksFetch { trigger, result })
            .inc();
    }

    /// One fetch; the caller holds `fetching`.
    async fn fetch(&self, trigger: &'static str) {
        let outcome = self.get().await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(keys) => {
                let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
                tracing::info!(url = %self.url, trigger, ?kids, "JWKS loaded");
                drop(kids);
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(keys);
                self.count(trigger, "ok");
            }
            Err((result, why)) => {
                let kept = self.keys().len();
                tracing::warn!(url = %self.url, trigger, error = %why, kept_keys = kept, "JWKS fetch failed; keeping the last good keys");
                self.count(trigger, result);
            }
        }
    }

    async fn get(&self) -> Result<Vec<Key>, (&'static str, String)> {
        // reqwest's message alone hides the cause (refused, TLS, timeout).
        let unreachable = |e: reqwest::Error| {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            ("unreachable", why)
        };
        let mut res = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(unreachable)?;
        if !res.status().is_success() {
            return Err(("http_status", format!("answered {}", res.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(("bad_document", format!("over {MAX_DOCUMENT} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|_| ("bad_document", "not UTF-8".into()))?;
        keys_of(&text, false).map_err(|e| ("bad_document", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_one_fetch_through_per_interval() {
        let t0 = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(30));
        assert!(gate.allow(t0), "the first unknown kid fetches");
        assert!(!gate.allow(t0 + Duration::from_secs(1)));
        assert!(!gate.allow(t0 + Duration::from_secs(29)));
        assert!(
            gate.allow(t0 + Duration::from_secs(30)),
            "the interval is over"
        );
        assert!(!gate.allow(t0 + Duration::from_secs(31)));
    }

    #[test]
    fn issuer_documents_skip_foreign_keys_files_refuse_them() {
        let doc = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"},
            {"kty":"EC","crv":"P-256","kid":"e","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        let keys = keys_of(doc, false).expect("the EC key is kept");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("e"));
        assert!(keys_of(doc, true).is_err());
        assert!(keys_of("{\"keys\":[]}", false).is_err(), "no key at all");
        assert!(keys_of("not json", false).is_err());
    }
}
