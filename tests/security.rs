//! Security properties users rely on: identities never cross, tokens never
//! reach the logs, the admin API stays private by default.

mod support;

use serde_json::json;
use support::*;

const ODD_IDS: &[&str] = &[
    "*",
    "a:b",
    "a",
    "user:a",
    "line\nbreak",
    "héllo-世界-🙂",
    "a*",
    "herald:broadcast",
    " ",
];

fn long_id() -> String {
    "x".repeat(256)
}

async fn never_cross(h: &Herald) {
    let mut ids: Vec<String> = ODD_IDS.iter().map(|s| s.to_string()).collect();
    ids.push(long_id());
    let mut clients = Vec::new();
    for id in &ids {
        clients.push(h.connect(id).await);
    }
    for (i, id) in ids.iter().enumerate() {
        h.publish(json!({"to": {"users": [id]}, "kind": "toast", "title": format!("for #{i}")}))
            .await;
    }
    // Each client's first message is its own, and then the broadcast
    // control: nothing for anyone else came in between.
    h.publish(json!({"to": "all", "kind": "toast", "title": "control"}))
        .await;
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.recv_title().await,
            format!("for #{i}"),
            "user {:?}",
            ids[i]
        );
        assert_eq!(
            c.recv_title().await,
            "control",
            "user {:?} got someone else's message",
            ids[i]
        );
    }
}

#[tokio::test]
async fn odd_user_ids_never_cross() {
    let h = Herald::start(config()).await;
    never_cross(&h).await;
    h.stop().await;
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    never_cross(&h).await;
    // A plain PUBLISH on a glob-looking channel reaches only that exact user.
    let mut star = h.connect("*").await;
    let mut plain = h.connect("a").await;
    redis
        .publish(
            "herald:user:*",
            &json!({"to": {"users": ["*"]}, "kind": "toast", "title": "star"}).to_string(),
        )
        .await;
    assert_eq!(star.recv_title().await, "star");
    h.expect_control_next(&mut plain, "a").await;
    h.stop().await;
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let node = NodeProcess::spawn(
        &[],
        &[
            ("HERALD_AUTH__HS256_SECRET", SECRET),
            ("HERALD_LOG__LEVEL", "trace"),
            ("HERALD_LOG__FORMAT", "json"),
        ],
        true,
    )
    .await;
    let good = token(&claims("alice"));
    let mut expired = claims("bob");
    expired.exp = herald::auth::unix_now() - 3600;
    let bad = token(&expired);
    let url = format!("ws://{}/v1/ws", node.public);
    let mut c = Client::connect(&format!("{url}?token={good}")).await;
    c.send(r#"{"t":"ack","id":"m1","status":"displayed"}"#)
        .await;
    c.send(r#"{"t":"ping"}"#).await;
    assert_eq!(c.recv().await["t"], "pong");
    let refused = tokio_tungstenite::connect_async(format!("{url}?token={bad}")).await;
    assert!(refused.is_err(), "the expired token is refused");
    drop(c);
    let (_, logs) = node.terminate().await;
    assert!(
        logs.contains("session open") && logs.contains("handshake refused"),
        "trace logs were written: {logs}"
    );
    for (name, t) in [("valid", &good), ("expired", &bad)] {
        let signature = t.rsplit('.').next().expect("jwt");
        assert!(
            !logs.contains(signature),
            "the {name} token's signature is in the logs"
        );
        assert!(
            !logs.contains(t.as_str()),
            "the {name} token is in the logs"
        );
    }
}

#[tokio::test]
async fn client_text_cannot_forge_a_log_line() {
    let node = NodeProcess::spawn(
        &[],
        &[
            ("HERALD_AUTH__HS256_SECRET", SECRET),
            ("HERALD_LOG__LEVEL", "info,herald=debug"),
            ("HERALD_LOG__FORMAT", "text"),
        ],
        true,
    )
    .await;
    let forger = "mallory\nERROR herald: FORGED admin logged in";
    let url = format!("ws://{}/v1/ws", node.public);
    let mut c = Client::connect(&format!("{url}?token={}", token(&claims(forger)))).await;
    c.send(r#"{"t":"event","name":"x\r\nERROR herald: FORGED event"}"#)
        .await;
    c.send(r#"{"t":"ping"}"#).await;
    assert_eq!(c.recv().await["t"], "pong");
    drop(c);
    let (_, logs) = node.terminate().await;
    assert!(
        logs.contains("mallory\\nERROR herald: FORGED admin"),
        "the user id is logged, escaped: {logs}"
    );
    assert!(
        logs.contains("x\\r\\nERROR herald: FORGED event"),
        "the event name is logged, escaped: {logs}"
    );
    assert!(
        !logs.lines().any(|l| l.starts_with("ERROR herald: FORGED")),
        "a forged line: {logs}"
    );
}

#[test]
fn the_admin_listener_is_private_by_default() {
    let c = herald::config::Config::default();
    assert!(c.admin_listen.ip().is_loopback());
    assert!(c.auth.api_keys.is_empty());
    let err =
        herald::config::Config::from_toml("admin_listen = \"0.0.0.0:9090\"").expect_err("refused");
    assert!(err.to_string().contains("api_keys"));
}

#[tokio::test]
async fn a_slow_or_incomplete_handshake_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config();
    cfg.limits.handshake_timeout = std::time::Duration::from_millis(300);
    let h = Herald::start(cfg).await;
    // Half a request head, then nothing: the server hangs up.
    let mut slow = tokio::net::TcpStream::connect(h.public).await.expect("tcp");
    slow.write_all(b"GET /v1/ws?token=x HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(PATIENCE, slow.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(read.is_ok(), "the server closed the slow connection");
    // Positive control: a normal client is served.
    let c = h.connect("alice").await;
    assert_eq!(c.hello["user"], "alice");
    h.stop().await;
}

#[tokio::test]
async fn events_beyond_the_campaign_rate_trigger_nothing() {
    let mut cfg = config();
    cfg.session.campaign_events_per_s = 1;
    cfg.session.campaign_events_burst = 2;
    let h = Herald::start(cfg).await;
    let clicky =
        json!({"trigger": {"event": "click"}, "message": {"kind": "toast", "title": "campaign"}});
    assert_eq!(
        h.put("/v1/campaigns/clicky", &clicky.to_string()).await.0,
        200
    );
    let mut c = h.connect("u").await;
    for _ in 0..5 {
        c.send(r#"{"t":"event","name":"click"}"#).await;
    }
    // The burst of 2 triggers; the other 3 are accepted but feed nothing.
    assert_eq!(c.recv_title().await, "campaign");
    assert_eq!(c.recv_title().await, "campaign");
    eventually("three events held back", || async {
        h.metric("herald_drops_total{reason=\"campaign_events_rate\"}")
            .await
            == 3.0
    })
    .await;
    h.expect_control_next(&mut c, "u").await;
    h.stop().await;
}
