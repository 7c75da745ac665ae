//! The admin HTTP API (SPEC §6) in embedded mode: answers, refusals with
//! reasons, API keys, stats and metrics.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn invalid_envelopes_get_400_naming_the_field() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("alice").await;
    for (body, field) in [
        ("{not json", "envelope"),
        (r#"{"kind":"banner","title":"x"}"#, "to"),
        (r#"{"to":"all","title":"x"}"#, "kind"),
        (
            r#"{"to":"all","kind":"popup","title":"x"}"#,
            "unknown variant",
        ),
        (r#"{"to":"all","kind":"banner","titel":"x"}"#, "titel"),
        (
            r#"{"to":{"where":"attrs.plan =="},"kind":"banner","title":"x"}"#,
            "to.where",
        ),
        (
            r#"{"to":{"users":[]},"kind":"banner","title":"x"}"#,
            "to.users",
        ),
    ] {
        let (s, r) = h.post("/v1/messages", body).await;
        assert_eq!(s, 400, "{body}");
        let err = r["error"].as_str().unwrap_or_default();
        assert!(err.contains(field), "{body}: {err}");
    }
    let big =
        json!({"to": "all", "kind": "banner", "title": "x", "data": {"pad": "y".repeat(70_000)}})
            .to_string();
    let (s, r) = h.post("/v1/messages", &big).await;
    assert_eq!(s, 400);
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("65536-byte limit")),
        "{r}"
    );
    // None of those reached the session: the next frame is the valid one.
    h.publish(json!({"to": "all", "kind": "banner", "title": "valid"}))
        .await;
    assert_eq!(c.recv_title().await, "valid");
    h.stop().await;
}

#[tokio::test]
async fn an_id_given_is_kept_and_echoed() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("alice").await;
    let r = h
        .publish(json!({"id": "incident-42", "to": "all", "kind": "banner", "title": "x"}))
        .await;
    assert_eq!(r, json!({"id": "incident-42"}));
    assert_eq!(c.recv().await["id"], "incident-42");
    h.stop().await;
}

#[tokio::test]
async fn api_keys_guard_every_route_but_readyz() {
    let mut cfg = config();
    cfg.auth.api_keys = vec![
        "key-0123456789abcdef".into(),
        "key-second-0123456789".into(),
    ];
    let mut h = Herald::start(cfg).await;
    assert_eq!(h.get("/readyz").await.0, 200);
    h.api_key = None;
    for path in ["/v1/stats", "/metrics", "/v1/presence/alice"] {
        let (s, body) = h.get(path).await;
        assert_eq!(
            (s, body.as_str()),
            (401, r#"{"error":"missing or invalid API key"}"#),
            "{path}"
        );
    }
    h.api_key = Some("key-0123456789abcdeX".into());
    assert_eq!(h.post("/v1/messages", "{}").await.0, 401);
    assert_eq!(h.get("/readyz").await.0, 200);
    // Positive control: each configured key works.
    for key in ["key-0123456789abcdef", "key-second-0123456789"] {
        h.api_key = Some(key.into());
        assert_eq!(h.get("/v1/stats").await.0, 200);
    }
    h.stop().await;
}

#[tokio::test]
async fn stats_presence_and_metrics() {
    let h = Herald::start(config()).await;
    let mut a = h.connect("alice").await;
    let _a2 = h.connect("alice").await;
    let _b = h.connect("bob").await;
    assert_eq!(
        h.get_json("/v1/presence/alice").await,
        json!({"user": "alice", "online": true, "sessions": 2})
    );
    assert_eq!(
        h.get_json("/v1/presence/nobody").await,
        json!({"user": "nobody", "online": false, "sessions": 0})
    );
    h.publish(json!({"to": "all", "kind": "toast", "title": "x"}))
        .await;
    a.recv().await;
    let stats = h.get_json("/v1/stats").await;
    assert_eq!(
        (stats["sessions"].as_u64(), stats["users"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(stats["deliveries"], 3);
    assert_eq!(
        (stats["mode"].as_str(), stats["bus_up"].as_bool()),
        (Some("embedded"), Some(true))
    );
    let (s, text) = h.get("/metrics").await;
    assert_eq!(s, 200);
    for name in [
        "herald_sessions 3",
        "herald_users 2",
        "herald_deliveries_total 3",
        "herald_bus_up 1",
        "herald_publish_to_socket_seconds_bucket",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    h.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_bad_paths_answer_json_errors() {
    let h = Herald::start(config()).await;
    let (s, body) = h.get("/v1/nothing").await;
    assert_eq!((s, body.as_str()), (404, r#"{"error":"no such route"}"#));
    let long = "x".repeat(300);
    let (s, body) = h.get(&format!("/v1/presence/{long}")).await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = h.delete(&format!("/v1/messages/{long}")).await;
    assert_eq!(s, 400);
    h.stop().await;
}

#[tokio::test]
async fn public_listener_serves_health_demo_sdk_and_dev_token_only_in_dev_mode() {
    let h = Herald::start(config()).await;
    let get = |path: &str| {
        let url = format!("http://{}{path}", h.public);
        async move {
            let r = reqwest::get(url).await.expect("GET");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(get("/").await.0, 200);
    assert_eq!(get("/sdk/herald.js").await.0, 200);
    for page in ["/pricing", "/product", "/checkout"] {
        assert_eq!(get(page).await.0, 200, "the demo serves {page}");
    }
    let sdk = reqwest::get(format!("http://{}/sdk/herald.js", h.public))
        .await
        .expect("GET");
    assert_eq!(sdk.headers()["access-control-allow-origin"], "*");
    // A key is configured in these tests: no dev tokens.
    assert_eq!(get("/dev/token?sub=x").await.0, 404);
    let (s, body) = get("/v1/ws").await;
    assert_eq!(s, 400, "a plain GET is not an upgrade: {body}");
    h.stop().await;

    let mut dev = config();
    dev.auth.hs256_secret = None;
    let h = Herald::start(dev).await;
    let r: serde_json::Value = reqwest::get(format!(
        "http://{}/dev/token?sub=demo&segments=beta&attrs=plan=free",
        h.public
    ))
    .await
    .expect("GET")
    .json()
    .await
    .expect("json");
    let c = Client::connect(&format!(
        "{}?token={}",
        h.ws_url(),
        r["token"].as_str().expect("token")
    ))
    .await;
    assert_eq!(c.hello["user"], "demo");
    h.stop().await;
}

#[tokio::test]
async fn a_request_body_sent_slowly_is_cut_off_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config();
    cfg.limits.body_timeout = std::time::Duration::from_millis(500);
    let h = Herald::start(cfg).await;
    let slow = tokio::net::TcpStream::connect(h.admin).await.expect("tcp");
    let (mut read, mut write) = slow.into_split();
    write
        .write_all(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("write");
    // One byte now and then, never the whole body.
    let trickle = tokio::spawn(async move {
        while write.write_all(b" ").await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n{") {
        let n = tokio::time::timeout(PATIENCE, read.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("request body not received within"),
        "{answer}"
    );
    trickle.abort();
    // The same request sent at once is answered: positive control.
    let (status, body) = h
        .post(
            "/v1/messages",
            r#"{"to":"all","kind":"toast","title":"quick"}"#,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    h.stop().await;
}
