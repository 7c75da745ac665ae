//! Token checks at the handshake with every key kind: HS256 secret,
//! RS256/ES256 PEM keys and a JWKS file. Keys are test fixtures.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn body(sub: &str) -> Value {
    json!({"sub": sub, "exp": herald::auth::unix_now() + 600})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read("rsa_private.pem")).expect("rsa key")
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(&read("ec_private.pem")).expect("ec key")
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

fn no_secret() -> herald::config::Config {
    let mut c = config();
    c.auth.hs256_secret = None;
    c
}

#[tokio::test]
async fn rs256_public_key_and_algorithm_confusion() {
    let mut cfg = no_secret();
    cfg.auth.public_key_pem_file = Some(fixture("rsa_public.pem"));
    let h = Herald::start(cfg).await;
    assert_eq!(
        status(&h, &sign(Algorithm::RS256, None, &rsa(), &body("a"))).await,
        101
    );
    // The public key used as an HMAC secret: the classic confusion attack.
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&read("rsa_public.pem")),
        &body("a"),
    );
    assert_eq!(status(&h, &forged).await, 401);
    // alg: none, and a key of another kind.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    assert_eq!(status(&h, none).await, 401);
    assert_eq!(
        status(&h, &sign(Algorithm::ES256, None, &ec(), &body("a"))).await,
        401
    );
    // Dev mode is off once a key is configured.
    let dev = reqwest::get(format!("http://{}/dev/token?sub=x", h.public))
        .await
        .expect("get");
    assert_eq!(dev.status().as_u16(), 404);
    h.stop().await;
}

#[tokio::test]
async fn es256_public_key() {
    let mut cfg = no_secret();
    cfg.auth.public_key_pem_file = Some(fixture("ec_public.pem"));
    let h = Herald::start(cfg).await;
    assert_eq!(
        status(&h, &sign(Algorithm::ES256, None, &ec(), &body("a"))).await,
        101
    );
    assert_eq!(
        status(&h, &sign(Algorithm::RS256, None, &rsa(), &body("a"))).await,
        401
    );
    h.stop().await;
}

#[tokio::test]
async fn jwks_keys_are_picked_by_kid() {
    let mut cfg = no_secret();
    cfg.auth.jwks_file = Some(fixture("jwks.json"));
    let h = Herald::start(cfg).await;
    assert_eq!(
        status(
            &h,
            &sign(Algorithm::RS256, Some("rsa-1"), &rsa(), &body("a"))
        )
        .await,
        101
    );
    assert_eq!(
        status(&h, &sign(Algorithm::ES256, Some("ec-1"), &ec(), &body("a"))).await,
        101
    );
    assert_eq!(
        status(
            &h,
            &sign(Algorithm::RS256, Some("rsa-2"), &rsa(), &body("a"))
        )
        .await,
        401,
        "unknown kid"
    );
    assert_eq!(
        status(
            &h,
            &sign(Algorithm::RS256, Some("ec-1"), &rsa(), &body("a"))
        )
        .await,
        401,
        "kid of another key"
    );
    h.stop().await;
}

#[tokio::test]
async fn nbf_iss_aud_and_sub_are_checked() {
    let mut cfg = config();
    cfg.auth.issuer = Some("https://auth.example.com".into());
    cfg.auth.audience = Some("herald".into());
    cfg.auth.leeway = std::time::Duration::ZERO;
    let h = Herald::start(cfg).await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let now = herald::auth::unix_now();
    let good =
        json!({"sub": "a", "exp": now + 600, "iss": "https://auth.example.com", "aud": "herald"});
    assert_eq!(
        status(&h, &sign(Algorithm::HS256, None, &key, &good)).await,
        101
    );
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        sign(Algorithm::HS256, None, &key, &c)
    };
    assert_eq!(
        status(&h, &with("iss", json!("https://evil.example.com"))).await,
        401
    );
    assert_eq!(status(&h, &with("aud", json!("someone-else"))).await, 401);
    assert_eq!(status(&h, &with("nbf", json!(now + 3600))).await, 401);
    assert_eq!(status(&h, &with("sub", json!(""))).await, 401);
    assert_eq!(status(&h, &with("sub", json!("x".repeat(257)))).await, 401);
    assert_eq!(status(&h, &with("sub", json!("x".repeat(256)))).await, 101);
    assert_eq!(
        status(&h, &with("attrs", json!({"nested": {"no": 1}}))).await,
        401
    );
    let mut no_exp = good.clone();
    no_exp.as_object_mut().expect("obj").remove("exp");
    assert_eq!(
        status(&h, &sign(Algorithm::HS256, None, &key, &no_exp)).await,
        401
    );
    h.stop().await;
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    let h = Herald::start(config()).await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let now = herald::auth::unix_now();
    let future = json!({"sub": "a", "exp": now + 7200, "iat": now + 3600});
    assert_eq!(
        status(&h, &sign(Algorithm::HS256, None, &key, &future)).await,
        401
    );
    let (_, reason) = h
        .refused(
            &format!(
                "{}?token={}",
                h.ws_url(),
                sign(Algorithm::HS256, None, &key, &future)
            ),
            &[],
        )
        .await;
    assert!(reason.contains("iat"), "{reason}");
    // Within the leeway, and in the past: accepted (positive control).
    for iat in [now + 5, now - 60] {
        let ok = json!({"sub": "a", "exp": now + 7200, "iat": iat});
        assert_eq!(
            status(&h, &sign(Algorithm::HS256, None, &key, &ok)).await,
            101
        );
    }
    h.stop().await;
}

/// A locale chosen on the connection (`?locale=`) outranks the token's,
/// also after a refresh; without one, the refreshed token's locale holds.
#[tokio::test]
async fn a_connections_locale_outranks_a_refreshed_tokens() {
    let h = Herald::start(config()).await;
    let now = herald::auth::unix_now();
    let mut pinned = Client::connect(&format!(
        "{}?locale=fr&token={}",
        h.ws_url(),
        token(&claims_with("ana", &[], json!({"locale": "de"})))
    ))
    .await;
    let mut plain = h
        .connect_claims(claims_with("bo", &[], json!({"locale": "de"})))
        .await;
    for (c, user) in [(&mut pinned, "ana"), (&mut plain, "bo")] {
        let mut fresh = claims_with(user, &[], json!({"locale": "pt-BR"}));
        fresh.exp = now + 3600;
        c.send(&json!({"t": "auth", "token": token(&fresh)}).to_string())
            .await;
        assert_eq!(c.recv().await, json!({"t": "auth", "exp": now + 3600}));
    }
    h.publish(json!({
        "to": "all", "kind": "toast", "title": "Hello",
        "locales": {"fr": {"title": "Bonjour"}, "pt-BR": {"title": "Olá"}, "de": {"title": "Hallo"}}
    }))
    .await;
    assert_eq!(pinned.recv_title().await, "Bonjour");
    // Positive control: the same refresh without `?locale=` changes it.
    assert_eq!(plain.recv_title().await, "Olá");
    h.stop().await;
}

/// SPEC §10.2: a fresh token over the open socket.
#[tokio::test]
async fn a_session_refreshes_its_token_without_reconnecting() {
    let h = Herald::start(config()).await;
    let now = herald::auth::unix_now();
    let mut first = claims_with("ada", &["free"], json!({"plan": "free"}));
    first.exp = now + 2;
    let mut c = h.connect_claims(first).await;
    let vip = json!({"to": {"segments": ["vip"]}, "kind": "toast", "title": "for vip"});
    // Not a vip yet: the control comes first.
    h.publish(vip.clone()).await;
    h.expect_control_next(&mut c, "ada").await;
    let mut second = claims_with("ada", &["vip"], json!({"plan": "pro"}));
    second.exp = now + 3600;
    c.send(&json!({"t": "auth", "token": token(&second)}).to_string())
        .await;
    assert_eq!(c.recv().await, json!({"t": "auth", "exp": now + 3600}));
    // The new segments and attributes hold from now on.
    h.publish(vip).await;
    assert_eq!(c.recv_title().await, "for vip");
    h.publish(json!({"to": {"where": "attrs.plan == 'pro'"}, "kind": "toast", "title": "pro"}))
        .await;
    assert_eq!(c.recv_title().await, "pro");
    // The first token's expiry passes; the session lives on.
    eventually("the first token expired", || async {
        herald::auth::unix_now() > now + 3
    })
    .await;
    h.expect_control_next(&mut c, "ada").await;
    h.stop().await;
}

#[tokio::test]
async fn a_bad_refresh_gets_auth_failed_and_changes_nothing() {
    let h = Herald::start(config()).await;
    let now = herald::auth::unix_now();
    let mut first = claims("ada");
    first.exp = now + 3;
    let mut c = h.connect_claims(first).await;
    let mut other = claims("bob");
    other.exp = now + 3600;
    let mut expired = claims("ada");
    expired.exp = now - 3600;
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "ada", "exp": now + 3600}),
        &EncodingKey::from_secret(b"another-secret-entirely"),
    )
    .expect("sign");
    for (what, t) in [
        ("another user", token(&other)),
        ("expired", token(&expired)),
        ("wrong key", wrong_key),
        ("not a JWT", "nope".into()),
    ] {
        c.send(&json!({"t": "auth", "token": t}).to_string()).await;
        let f = c.recv().await;
        assert_eq!(f["t"], "error", "{what}: {f}");
        assert_eq!(f["code"], "auth_failed", "{what}: {f}");
    }
    // Still ada's session, and still ending at the first token's expiry.
    h.expect_control_next(&mut c, "ada").await;
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    h.stop().await;
}
