//! Audience preview (SPEC §10.5): `POST /v1/audience/preview` counts who an
//! audience reaches now, on every node, and delivers nothing.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;

fn with_redis(redis: &Redis) -> herald::config::Config {
    let mut c = redis_config(redis);
    c.redis.heartbeat = Duration::from_millis(100);
    c
}

async fn preview(h: &Herald, to: Value) -> Value {
    let (status, body) = h
        .post("/v1/audience/preview", &json!({ "to": to }).to_string())
        .await;
    assert_eq!(status, 200, "preview answered {status}: {body}");
    body
}

fn sample(p: &Value) -> Vec<String> {
    let mut s: Vec<String> = p["sample"]
        .as_array()
        .expect("a sample")
        .iter()
        .map(|u| u.as_str().unwrap_or_default().to_owned())
        .collect();
    s.sort();
    s
}

#[tokio::test]
async fn preview_counts_over_two_nodes_and_delivers_nothing() {
    let redis = Redis::start();
    let a = Herald::start(with_redis(&redis)).await;
    let b = Herald::start(with_redis(&redis)).await;
    let pro = |u: &str| claims_with(u, &["pro"], json!({"plan": "pro"}));
    let mut ada_a = a.connect_claims(pro("ada")).await;
    let mut ada_b = b.connect_claims(pro("ada")).await;
    let mut bob_b = b.connect_claims(pro("bob")).await;
    let mut cyd_a = a
        .connect_claims(claims_with("cyd", &["free"], json!({"plan": "free"})))
        .await;

    let to = json!({"segments": ["pro"]});
    for node in [&a, &b] {
        let p = preview(node, to.clone()).await;
        assert_eq!(p["sessions"], 3, "{p}");
        assert_eq!(p["users"], 2, "ada on two nodes counts once: {p}");
        assert_eq!(sample(&p), ["ada", "bob"]);
        assert_eq!(
            (p["nodes"].as_u64(), p["complete"].as_bool()),
            (Some(2), Some(true)),
            "{p}"
        );
    }
    let p = preview(&a, json!({"where": "attrs.plan == \"free\""})).await;
    assert_eq!(
        (p["sessions"].as_u64(), p["users"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(sample(&p), ["cyd"]);
    let p = preview(&b, json!({"users": ["bob", "zed"]})).await;
    assert_eq!(
        (p["sessions"].as_u64(), p["users"].as_u64()),
        (Some(1), Some(1))
    );

    // Nothing was delivered: each session's next frame is its control.
    // (ada's control reaches both of her sessions.)
    a.expect_control_next(&mut ada_a, "ada").await;
    let f = ada_b.recv().await;
    assert_eq!(f["title"], "control", "expected the control next, got {f}");
    b.expect_control_next(&mut bob_b, "bob").await;
    a.expect_control_next(&mut cyd_a, "cyd").await;

    // The same audience, published, does arrive, and only there.
    a.publish(json!({"to": to, "kind": "toast", "title": "for pro"}))
        .await;
    for c in [&mut ada_a, &mut ada_b, &mut bob_b] {
        assert_eq!(c.recv_title().await, "for pro");
    }
    a.expect_control_next(&mut cyd_a, "cyd").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn embedded_preview_samples_at_most_ten_and_refuses_a_bad_audience() {
    let h = Herald::start(config()).await;
    let mut clients = Vec::new();
    for i in 0..12 {
        clients.push(h.connect(&format!("u{i:02}")).await);
    }
    let p = preview(&h, json!("all")).await;
    assert_eq!(
        (p["sessions"].as_u64(), p["users"].as_u64()),
        (Some(12), Some(12))
    );
    assert_eq!(p["sample"].as_array().map(Vec::len), Some(10));
    h.expect_control_next(&mut clients[0], "u00").await;

    for (body, field) in [
        (json!({}), "to"),
        (json!({"to": "everyone"}), "to"),
        (json!({"to": {"where": "attrs.plan =="}}), "to.where"),
        (json!({"to": "all", "extra": 1}), "extra"),
    ] {
        let (status, answer) = h.post("/v1/audience/preview", &body.to_string()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let reason = answer["error"].as_str().unwrap_or_default();
        assert!(reason.starts_with(field), "{body}: {reason}");
    }
    h.stop().await;
}
