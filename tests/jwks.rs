//! `auth.jwks_url` against a real local HTTP issuer that rotates its keys:
//! fetched at start, on a schedule, once for an unknown `kid` (and not
//! again for a flood of forged ones), with the last good keys kept while
//! the issuer is down or serves garbage.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture's RSA public key (kid `rsa-1`) and EC one (`ec-1`).
fn fixture_keys() -> (Value, Value) {
    let set: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).expect("jwks"))
            .expect("json");
    let find = |kid: &str| {
        set["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == kid)
            .cloned()
            .expect("fixture key")
    };
    (find("rsa-1"), find("ec-1"))
}

/// The RSA key under another `kid`: what an issuer rotating kids publishes.
fn rsa_as(kid: &str) -> Value {
    let mut k = fixture_keys().0;
    k["kid"] = kid.into();
    k
}

fn rsa_signer() -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).expect("pem"))
        .expect("rsa")
}

fn ec_signer() -> EncodingKey {
    EncodingKey::from_ec_pem(&std::fs::read(fixture("ec_private.pem")).expect("pem")).expect("ec")
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, sub: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    let claims = json!({"sub": sub, "exp": herald::auth::unix_now() + 600});
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

/// What the issuer answers.
#[derive(Clone)]
enum Serve {
    Keys(Vec<Value>),
    Status(u16),
    Body(&'static str),
}

/// A JWKS endpoint on a loopback port, counting the requests it gets.
struct Issuer {
    url: String,
    serve: Arc<Mutex<Serve>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Issuer {
    async fn start(keys: Vec<Value>) -> Self {
        let serve = Arc::new(Mutex::new(Serve::Keys(keys)));
        let requests = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get({
                let (serve, requests) = (serve.clone(), requests.clone());
                move || {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let now = serve.lock().expect("lock").clone();
                    async move {
                        use axum::response::IntoResponse;
                        match now {
                            Serve::Keys(keys) => {
                                axum::Json(json!({ "keys": keys })).into_response()
                            }
                            Serve::Status(s) => axum::http::StatusCode::from_u16(s)
                                .expect("status")
                                .into_response(),
                            Serve::Body(b) => b.into_response(),
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            serve,
            requests,
            task,
        }
    }

    fn set(&self, serve: Serve) {
        *self.serve.lock().expect("lock") = serve;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The issuer goes down: nothing listens on its port any more.
    fn stop(&self) {
        self.task.abort();
    }
}

fn jwks_config(
    issuer: &Issuer,
    refresh: Duration,
    unknown_kid: Duration,
) -> herald::config::Config {
    let mut c = config();
    c.auth.hs256_secret = None;
    c.auth.jwks_url = Some(issuer.url.clone());
    c.auth.jwks_refresh = refresh;
    c.auth.jwks_unknown_kid_interval = unknown_kid;
    c
}

/// 101 or the refusal status for this token.
async fn status(h: &Herald, token: &str) -> u16 {
    let url = format!("{}?token={token}", h.ws_url());
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_rotated_kid_is_fetched_once_and_forged_kids_do_not_hammer_the_issuer() {
    let issuer = Issuer::start(vec![rsa_as("rsa-1")]).await;
    let h = Herald::start(jwks_config(&issuer, HOUR, HOUR)).await;
    let old = sign(Algorithm::RS256, Some("rsa-1"), &rsa_signer(), "a");
    // The node serves once the start's fetch is done.
    assert_eq!(status(&h, &old).await, 101);
    assert_eq!(issuer.requests(), 1, "fetched at start, once");

    // The issuer rotates: a new kid, the old one retired.
    issuer.set(Serve::Keys(vec![rsa_as("rsa-2")]));
    let new = sign(Algorithm::RS256, Some("rsa-2"), &rsa_signer(), "a");
    assert_eq!(
        status(&h, &new).await,
        101,
        "the unknown kid fetched the new set"
    );
    assert_eq!(issuer.requests(), 2);
    assert_eq!(status(&h, &old).await, 401, "the retired kid is gone");

    // A flood of forged kids, at once: refused, and the issuer is not asked
    // again within the interval.
    let forged: Vec<String> = (0..40)
        .map(|i| {
            sign(
                Algorithm::RS256,
                Some(&format!("forged-{i}")),
                &rsa_signer(),
                "x",
            )
        })
        .collect();
    let answers = futures::future::join_all(forged.iter().map(|t| status(&h, t))).await;
    assert!(answers.iter().all(|s| *s == 401), "{answers:?}");
    assert_eq!(
        issuer.requests(),
        2,
        "no fetch for forged kids within the interval"
    );
    assert!(
        h.metric("herald_jwks_fetches_total{trigger=\"unknown_kid\",result=\"gated\"}")
            .await
            >= 1.0
    );
    // Positive control: the good new token still connects.
    assert_eq!(status(&h, &new).await, 101);
    h.stop().await;
}

#[tokio::test]
async fn the_schedule_picks_up_added_and_retired_keys() {
    let (_, ec) = fixture_keys();
    let issuer = Issuer::start(vec![rsa_as("rsa-1")]).await;
    let h = Herald::start(jwks_config(&issuer, Duration::from_secs(1), HOUR)).await;
    // Tokens without a kid: only the schedule, never an unknown-kid fetch,
    // can change what verifies them.
    let rsa = sign(Algorithm::RS256, None, &rsa_signer(), "a");
    let es = sign(Algorithm::ES256, None, &ec_signer(), "a");
    assert_eq!(status(&h, &rsa).await, 101);
    assert_eq!(status(&h, &es).await, 401, "no EC key yet");

    issuer.set(Serve::Keys(vec![ec]));
    let hh = &h;
    eventually("the EC key is fetched on schedule", || async {
        status(hh, &es).await == 101
    })
    .await;
    assert_eq!(status(&h, &rsa).await, 401, "the RSA key was retired");
    assert!(
        h.metric("herald_jwks_fetches_total{trigger=\"schedule\",result=\"ok\"}")
            .await
            >= 1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn issuer_errors_garbage_and_downtime_keep_the_last_good_keys() {
    let issuer = Issuer::start(vec![rsa_as("rsa-1")]).await;
    let h = Herald::start(jwks_config(&issuer, Duration::from_secs(1), HOUR)).await;
    let good = sign(Algorithm::RS256, Some("rsa-1"), &rsa_signer(), "a");
    assert_eq!(status(&h, &good).await, 101);

    let failures = [
        (Serve::Status(500), "http_status"),
        (Serve::Body("this is not a JWKS document"), "bad_document"),
        (Serve::Body(r#"{"keys":[]}"#), "bad_document"),
        (
            Serve::Keys(vec![
                json!({"kty":"RSA","kid":"broken","n":"!!","e":"AQAB"}),
            ]),
            "bad_document",
        ),
    ];
    for (serve, result) in failures {
        let before = h
            .metric(&format!(
                "herald_jwks_fetches_total{{trigger=\"schedule\",result=\"{result}\"}}"
            ))
            .await;
        issuer.set(serve);
        let hh = &h;
        eventually(
            &format!("a failed fetch counted as {result}"),
            || async move {
                hh.metric(&format!(
                    "herald_jwks_fetches_total{{trigger=\"schedule\",result=\"{result}\"}}"
                ))
                .await
                    > before
            },
        )
        .await;
        assert_eq!(status(&h, &good).await, 101, "old keys kept after {result}");
    }

    issuer.stop();
    eventually("an unreachable issuer is counted", || async {
        h.metric("herald_jwks_fetches_total{trigger=\"schedule\",result=\"unreachable\"}")
            .await
            >= 1.0
    })
    .await;
    assert_eq!(
        status(&h, &good).await,
        101,
        "old keys kept while the issuer is down"
    );
    let forged = sign(Algorithm::RS256, Some("other"), &rsa_signer(), "a");
    assert_eq!(status(&h, &forged).await, 401);
    h.stop().await;
}

#[tokio::test]
async fn an_issuer_down_at_start_is_retried() {
    // A port held (bound, not listening) so no other test takes it:
    // connecting is refused there until the issuer listens on it.
    let held = tokio::net::TcpSocket::new_v4().expect("socket");
    held.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let port = held.local_addr().expect("addr").port();
    let mut cfg = config();
    cfg.auth.hs256_secret = None;
    cfg.auth.jwks_url = Some(format!("http://127.0.0.1:{port}/.well-known/jwks.json"));
    cfg.auth.jwks_refresh = Duration::from_secs(1);
    cfg.auth.jwks_unknown_kid_interval = HOUR;
    let h = Herald::start(cfg).await;
    let token = sign(Algorithm::RS256, None, &rsa_signer(), "a");
    assert_eq!(status(&h, &token).await, 401, "no key yet");
    assert!(
        h.metric("herald_jwks_fetches_total{trigger=\"start\",result=\"unreachable\"}")
            .await
            >= 1.0
    );
    // The issuer comes up on that port.
    let listener = held.listen(64).expect("listening on the held port");
    let keys = json!({ "keys": [rsa_as("rsa-1")] });
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let keys = keys.clone();
            async move { axum::Json(keys) }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let hh = &h;
    let token = &token;
    eventually(
        "the keys are loaded once the issuer answers",
        || async move { status(hh, token).await == 101 },
    )
    .await;
    server.abort();
    h.stop().await;
}

#[test]
fn jwks_url_must_be_https_beyond_loopback() {
    let err = herald::config::Config::from_toml(
        "[auth]\njwks_url = \"http://issuer.example/.well-known/jwks.json\"\n",
    )
    .expect_err("refused");
    assert!(err.to_string().contains("auth.jwks_url"), "{err}");
    herald::config::Config::from_toml(
        "mode = \"production\"\n[auth]\njwks_url = \"https://issuer.example/.well-known/jwks.json\"\n",
    )
    .expect("https is accepted and counts as a key");
    herald::config::Config::from_toml("[auth]\njwks_url = \"http://127.0.0.1:8000/jwks\"\n")
        .expect("http on loopback is accepted");
}

/// A CA and a certificate for `localhost` / 127.0.0.1 signed by it, made
/// with the openssl command, in a directory of the test's own.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl ({e}); install it with `apt-get install -y openssl`")
            });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=herald-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&csr);
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// An https issuer on loopback with the certificate of `make_certs`.
async fn https_issuer(dir: &std::path::Path, keys: Value) -> (u16, tokio::task::JoinHandle<()>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("srv.pem"))
        .expect("pem")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(dir.join("srv.key")).expect("key");
    let tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let body = keys.to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(axum::body::Body::from(body))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn https_issuers_are_trusted_through_the_configured_ca_only() {
    let dir = std::env::temp_dir().join(format!("herald-jwks-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    make_certs(&dir);
    let (port, server) = https_issuer(&dir, json!({ "keys": [rsa_as("rsa-1")] })).await;
    let token = sign(Algorithm::RS256, Some("rsa-1"), &rsa_signer(), "a");
    let https = |ca: Option<std::path::PathBuf>| {
        let mut c = config();
        c.auth.hs256_secret = None;
        c.auth.jwks_url = Some(format!("https://localhost:{port}/.well-known/jwks.json"));
        c.auth.jwks_ca_file = ca;
        c.auth.jwks_unknown_kid_interval = HOUR;
        c
    };

    // The system roots do not know the test CA: the fetch fails, nothing verifies.
    let h = Herald::start(https(None)).await;
    assert_eq!(status(&h, &token).await, 401);
    assert!(
        h.metric("herald_jwks_fetches_total{trigger=\"start\",result=\"unreachable\"}")
            .await
            >= 1.0
    );
    h.stop().await;

    // With the CA configured, the same issuer is trusted.
    let h = Herald::start(https(Some(dir.join("ca.pem")))).await;
    assert_eq!(status(&h, &token).await, 101);
    assert!(
        h.metric("herald_jwks_fetches_total{trigger=\"start\",result=\"ok\"}")
            .await
            >= 1.0
    );
    h.stop().await;
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
