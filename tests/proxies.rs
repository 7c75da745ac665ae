//! `trusted_proxies`: behind a trusted proxy the client named in
//! `Forwarded` / `X-Forwarded-For` is the address per-address limits count;
//! from anyone else those headers are ignored. A bad entry stops `herald
//! serve` naming the key.

mod support;

use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Upgrades with extra headers; the socket is kept open (it holds its
/// address's slot) until the returned stream drops.
async fn upgrade(
    h: &Herald,
    headers: &[(&str, &str)],
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let url = format!("{}?token={}", h.ws_url(), token(&claims("u")));
    let mut req = url.into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().append(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

fn one_per_address(trusted: &[&str]) -> herald::config::Config {
    let mut c = config();
    c.limits.max_connections_per_ip = 1;
    c.trusted_proxies = trusted.iter().map(|s| s.to_string()).collect();
    c
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    // The test connects from 127.0.0.1: that is the proxy.
    let h = Herald::start(one_per_address(&["127.0.0.0/8"])).await;
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];
    let _a = upgrade(&h, &xff("203.0.113.7"))
        .await
        .expect("first client");
    assert_eq!(
        upgrade(&h, &xff("203.0.113.7")).await.err(),
        Some(429),
        "the same client again is over its limit"
    );
    let _b = upgrade(&h, &xff("203.0.113.8"))
        .await
        .expect("another client has its own slot");
    // A client cannot escape its limit by prepending a forged hop: the
    // nearest untrusted hop counts.
    assert_eq!(
        upgrade(&h, &xff("198.51.100.99, 203.0.113.7")).await.err(),
        Some(429)
    );
    // Forwarded (RFC 7239) is read too, and wins over X-Forwarded-For.
    let _c = upgrade(
        &h,
        &[
            ("forwarded", "for=\"[2001:db8::1]:4711\";proto=https"),
            ("x-forwarded-for", "203.0.113.7"),
        ],
    )
    .await
    .expect("the Forwarded client");
    assert_eq!(
        upgrade(&h, &[("forwarded", "for=\"[2001:db8::1]\"")])
            .await
            .err(),
        Some(429)
    );
    h.stop().await;
}

#[tokio::test]
async fn headers_from_an_untrusted_peer_are_ignored() {
    let h = Herald::start(one_per_address(&["10.0.0.0/8"])).await;
    let _a = upgrade(&h, &[("x-forwarded-for", "203.0.113.7")])
        .await
        .expect("first connection from 127.0.0.1");
    // Another claimed client, same real peer: the header does not count.
    assert_eq!(
        upgrade(&h, &[("x-forwarded-for", "203.0.113.8")])
            .await
            .err(),
        Some(429)
    );
    assert_eq!(
        upgrade(&h, &[("forwarded", "for=203.0.113.9")]).await.err(),
        Some(429)
    );
    drop(_a);
    // Positive control: with the slot freed the same peer connects again.
    let hh = &h;
    eventually("the address's slot is free again", || async move {
        upgrade(hh, &[]).await.is_ok()
    })
    .await;
    h.stop().await;
}

#[test]
fn an_entry_that_is_not_a_cidr_stops_serve_naming_the_key() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("HERALD_TRUSTED_PROXIES", "10.0.0.0/8, 10.0.0.0/33")
        .env_remove("HERALD_REDIS__URL")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run herald");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("trusted_proxies") && err.contains("10.0.0.0/33"),
        "{err}"
    );
    // Positive control: good entries load.
    herald::config::Config::from_toml(
        "trusted_proxies = [\"10.0.0.0/8\", \"::1\", \"192.168.1.7\"]",
    )
    .expect("CIDRs and single addresses");
}
