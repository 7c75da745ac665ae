//! Tokens to identities. Knows JWTs, nothing of sockets.
//!
//! The algorithm is pinned by the key that verifies it: the HS256 secret only
//! ever verifies HS256, a PEM or JWKS key only its own RS256 / ES256. `alg:
//! none` and every other algorithm are refused, so an RSA public key can never
//! be replayed as an HMAC secret. Keys from a JWKS URL live in [`jwks`].

pub mod jwks;

use crate::config::AuthConfig;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Who a session belongs to, from the token's claims.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: Arc<str>,
    pub segments: Box<[Box<str>]>,
    /// String, number or boolean values, as a CEL map for audience filters.
    pub attrs: cel::Value,
    /// Token expiry, unix seconds.
    pub exp: u64,
    /// Picks `locales` variants: the `locale` query parameter, else `attrs.locale`.
    pub locale: Option<Box<str>>,
}

impl Identity {
    pub fn in_segment(&self, segment: &str) -> bool {
        self.segments.iter().any(|s| &**s == segment)
    }

    /// An attribute rendered as text, for personalization.
    pub fn attr_text(&self, name: &str) -> Option<String> {
        let cel::Value::Map(map) = &self.attrs else {
            return None;
        };
        match map
            .map
            .get(&cel::objects::Key::String(Arc::new(name.to_owned())))?
        {
            cel::Value::String(s) => Some(s.to_string()),
            cel::Value::Int(i) => Some(i.to_string()),
            cel::Value::UInt(u) => Some(u.to_string()),
            cel::Value::Float(f) => Some(f.to_string()),
            cel::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token: pass ?token= or Authorization: Bearer")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token names a `kid` no configured or fetched key has.
    #[error("invalid token: no key with kid {0:?}")]
    UnknownKid(String),
}

#[derive(Debug, thiserror::Error)]
#[error("auth config: {0}")]
pub struct KeyError(String);

/// The claims Herald reads; others are ignored.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    /// Issued at (unix seconds); a token issued in the future is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<serde_json::Map<String, serde_json::Value>>,
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens with the configured keys.
pub struct Verifier {
    keys: Vec<Key>,
    /// `auth.jwks_url`'s last good key set.
    remote: Option<Arc<jwks::Remote>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    /// The checks for each algorithm a key may have, built once (a
    /// `Validation` is several allocations: claim, audience and issuer sets).
    validations: Vec<Validation>,
}

/// Every algorithm a configured or fetched key can have, by family (the
/// library's own lists).
const FAMILIES: [AlgorithmFamily; 4] = [
    AlgorithmFamily::Hmac,
    AlgorithmFamily::Rsa,
    AlgorithmFamily::Ec,
    AlgorithmFamily::Ed,
];

impl Verifier {
    /// Builds a verifier from config. With no key configured, `dev_secret`
    /// (dev mode) is used as the HS256 secret.
    pub fn new(cfg: &AuthConfig, dev_secret: Option<&str>) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        if let Some(secret) = cfg.hs256_secret.as_deref().or(dev_secret) {
            keys.push(Key {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        if let Some(path) = &cfg.public_key_pem_file {
            let pem =
                std::fs::read(path).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
            let (alg, key) = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                (Algorithm::RS256, k)
            } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                (Algorithm::ES256, k)
            } else {
                return Err(KeyError(format!(
                    "{}: not an RSA or EC public key in PEM",
                    path.display()
                )));
            };
            keys.push(Key {
                kid: None,
                alg,
                key,
            });
        }
        if let Some(path) = &cfg.jwks_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
            keys.extend(
                jwks::keys_of(&text, true)
                    .map_err(|e| KeyError(format!("{}: {e}", path.display())))?,
            );
        }
        let remote = match &cfg.jwks_url {
            Some(url) => {
                let ca_pem = match &cfg.jwks_ca_file {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        KeyError(format!("auth.jwks_ca_file {}: {e}", path.display()))
                    })?),
                    None => None,
                };
                let remote = jwks::Remote::new(jwks::RemoteConfig {
                    url,
                    ca_pem,
                    refresh: cfg.jwks_refresh,
                    unknown_kid_interval: cfg.jwks_unknown_kid_interval,
                })
                .map_err(|e| KeyError(format!("auth.jwks_url: {e}")))?;
                Some(Arc::new(remote))
            }
            None => None,
        };
        if keys.is_empty() && remote.is_none() {
            return Err(KeyError("no JWT key configured".into()));
        }
        let mut verifier = Self {
            keys,
            remote,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: cfg.leeway.as_secs(),
            validations: Vec::new(),
        };
        verifier.validations = FAMILIES
            .iter()
            .flat_map(AlgorithmFamily::algorithms)
            .map(|&alg| verifier.validation(alg))
            .collect();
        Ok(verifier)
    }

    /// What a token signed with `alg` must satisfy besides its signature.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        validation
    }

    /// Counts JWKS fetches in these metrics.
    pub fn with_metrics(self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        if let Some(remote) = &self.remote {
            remote.set_metrics(metrics);
        }
        self
    }

    /// The JWKS URL's key set, when one is configured: loaded at start and
    /// refreshed by its [`jwks::Remote::run`].
    pub fn remote(&self) -> Option<&Arc<jwks::Remote>> {
        self.remote.as_ref()
    }

    /// [`Verifier::verify`], and when the token names a `kid` no key has,
    /// the JWKS URL fetched again (coalesced and rate limited) and one more try.
    pub async fn verify_fresh(&self, token: &str) -> Result<Identity, AuthError> {
        match self.verify(token) {
            Err(AuthError::UnknownKid(kid)) => match &self.remote {
                Some(remote) if remote.refresh_for_unknown_kid().await => self.verify(token),
                _ => Err(AuthError::UnknownKid(kid)),
            },
            other => other,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let fits = |k: &&Key| {
            k.alg == header.alg && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
        };
        let fetched = self.remote.as_ref().map(|r| r.keys());
        let key = self
            .keys
            .iter()
            .find(fits)
            .or_else(|| fetched.as_deref().and_then(|keys| keys.iter().find(fits)));
        let Some(key) = key else {
            return Err(match (&header.kid, &self.remote) {
                (Some(kid), Some(_)) => AuthError::UnknownKid(kid.clone()),
                _ => AuthError::Invalid(format!("algorithm {:?} is not accepted", header.alg)),
            });
        };
        self.decode(token, key)
    }

    fn decode(&self, token: &str, key: &Key) -> Result<Identity, AuthError> {
        let built;
        let validation = match self.validations.iter().find(|v| v.algorithms == [key.alg]) {
            Some(v) => v,
            None => {
                built = self.validation(key.alg);
                &built
            }
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                    _ => AuthError::Invalid(e.to_string()),
                }
            })?;
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > unix_now().saturating_add(self.leeway))
        {
            return Err(AuthError::Invalid("iat: issued in the future".into()));
        }
        identity_from_claims(data.claims)
    }
}

/// Most segments, and most attributes, a token may carry: audience
/// expressions are costed for lists of at most this size
/// ([`crate::expr::ASSUMED_RANGE`]).
pub const MAX_CLAIM_ENTRIES: usize = crate::expr::ASSUMED_RANGE as usize;
/// Longest segment name, attribute name or attribute string value.
pub const MAX_CLAIM_TEXT: usize = 1024;

fn identity_from_claims(c: Claims) -> Result<Identity, AuthError> {
    if c.sub.is_empty() || c.sub.len() > 256 {
        return Err(AuthError::Invalid("sub must be 1 to 256 bytes".into()));
    }
    let segments = c.segments.unwrap_or_default();
    if segments.len() > MAX_CLAIM_ENTRIES {
        return Err(AuthError::Invalid(format!(
            "segments: at most {MAX_CLAIM_ENTRIES}"
        )));
    }
    if segments.iter().any(|s| s.len() > MAX_CLAIM_TEXT) {
        return Err(AuthError::Invalid(format!(
            "segments: each at most {MAX_CLAIM_TEXT} bytes"
        )));
    }
    let claimed = c.attrs.unwrap_or_default();
    if claimed.len() > MAX_CLAIM_ENTRIES {
        return Err(AuthError::Invalid(format!(
            "attrs: at most {MAX_CLAIM_ENTRIES}"
        )));
    }
    let mut attrs = std::collections::HashMap::new();
    for (k, v) in claimed {
        if k.len() > MAX_CLAIM_TEXT || v.as_str().is_some_and(|s| s.len() > MAX_CLAIM_TEXT) {
            return Err(AuthError::Invalid(format!(
                "attrs: names and strings at most {MAX_CLAIM_TEXT} bytes"
            )));
        }
        let value = match v {
            serde_json::Value::String(s) => cel::Value::String(Arc::new(s)),
            serde_json::Value::Bool(b) => cel::Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => cel::Value::Int(i),
                None => cel::Value::Float(n.as_f64().unwrap_or_default()),
            },
            _ => {
                return Err(AuthError::Invalid(format!(
                    "attrs.{k}: must be a string, number or boolean"
                )));
            }
        };
        attrs.insert(cel::objects::Key::String(Arc::new(k)), value);
    }
    let locale = match attrs.get(&cel::objects::Key::String(Arc::new("locale".into()))) {
        Some(cel::Value::String(s)) => Some(Box::from(s.as_str())),
        _ => None,
    };
    // Most tokens carry no attributes: their sessions share one empty map
    // instead of allocating one each.
    static NO_ATTRS: std::sync::LazyLock<cel::objects::Map> =
        std::sync::LazyLock::new(|| cel::objects::Map {
            map: Arc::new(std::collections::HashMap::new()),
        });
    let attrs = if attrs.is_empty() {
        NO_ATTRS.clone()
    } else {
        cel::objects::Map {
            map: Arc::new(attrs),
        }
    };
    Ok(Identity {
        locale,
        user: Arc::from(c.sub),
        segments: segments.into_iter().map(String::into_boxed_str).collect(),
        attrs: cel::Value::Map(attrs),
        exp: c.exp,
    })
}

/// `k=v,k2=v2` with numbers and booleans typed, as `herald token --attr` does.
pub fn parse_attrs(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut map = serde_json::Map::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("attrs: expected key=value, got {pair:?}"))?;
        map.insert(k.trim().to_owned(), typed_value(v.trim()));
    }
    Ok(map)
}

pub fn typed_value(v: &str) -> serde_json::Value {
    if let Ok(i) = v.parse::<i64>() {
        i.into()
    } else if let Ok(f) = v.parse::<f64>() {
        f.into()
    } else if let Ok(b) = v.parse::<bool>() {
        b.into()
    } else {
        v.into()
    }
}

/// Mints HS256 tokens: dev mode's `/dev/token` and `herald token`.
#[derive(Clone)]
pub struct Signer {
    key: Arc<EncodingKey>,
}

impl Signer {
    pub fn hs256(secret: &str) -> Self {
        Self {
            key: Arc::new(EncodingKey::from_secret(secret.as_bytes())),
        }
    }

    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.key)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A random secret for dev mode.
pub fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(secret: &str) -> Verifier {
        let cfg = AuthConfig {
            hs256_secret: Some(secret.into()),
            ..Default::default()
        };
        Verifier::new(&cfg, None).expect("verifier")
    }

    fn claims(exp: u64) -> Claims {
        let mut attrs = serde_json::Map::new();
        attrs.insert("plan".into(), "free".into());
        attrs.insert("level".into(), 3.into());
        Claims {
            sub: "u1".into(),
            exp,
            iat: None,
            segments: Some(vec!["beta".into()]),
            attrs: Some(attrs),
        }
    }

    #[test]
    fn accepts_a_good_token_and_reads_claims() {
        let secret = "0123456789abcdef0123";
        let token = Signer::hs256(secret)
            .mint(&claims(unix_now() + 60))
            .expect("mint");
        let id = verifier(secret).verify(&token).expect("valid");
        assert_eq!(&*id.user, "u1");
        assert!(id.in_segment("beta"));
        assert_eq!(id.attr_text("level").as_deref(), Some("3"));
    }

    #[test]
    fn refuses_wrong_secret_expired_and_alg_none() {
        let good = "0123456789abcdef0123";
        let v = verifier(good);
        let wrong = Signer::hs256("another-secret-entirely")
            .mint(&claims(unix_now() + 60))
            .expect("mint");
        assert!(matches!(v.verify(&wrong), Err(AuthError::Invalid(_))));
        let expired = Signer::hs256(good)
            .mint(&claims(unix_now() - 3600))
            .expect("mint");
        assert!(matches!(v.verify(&expired), Err(AuthError::Expired)));
        // alg: none, header {"alg":"none","typ":"JWT"}, no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1MSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(v.verify(none).is_err());
    }
}
