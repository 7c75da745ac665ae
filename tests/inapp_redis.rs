//! In-app lifecycle across nodes sharing a real Redis: the sticky set, per-user
//! pending messages, acknowledgements, and the Redis streams.

mod support;

use redis::AsyncCommands;
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn a_sticky_published_on_one_node_reaches_sessions_connecting_to_another() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let id = n1
        .publish(
            json!({"to": "all", "kind": "banner", "title": "Payments degraded", "sticky": true}),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A node started afterwards loads the sticky set from Redis.
    let n2 = Herald::start(redis_config(&redis)).await;
    let mut c = n2.connect("late").await;
    let f = c.recv().await;
    assert_eq!(
        (f["id"].as_str(), f["reason"].as_str()),
        (Some(id.as_str()), Some("sticky"))
    );
    assert_eq!(
        n2.get_json("/v1/messages/active").await["messages"][0]["id"],
        id.as_str()
    );

    // Retract on node 2: gone from Redis, and from node 1's replay.
    let (s, _) = n2.delete(&format!("/v1/messages/{id}")).await;
    assert_eq!(s, 202);
    assert_eq!(c.recv().await, json!({"t": "retract", "id": id}));
    let stored: Vec<(String, String)> = redis
        .conn()
        .await
        .hgetall("herald:active")
        .await
        .expect("HGETALL");
    assert!(stored.is_empty());
    let mut d = n1.connect("later").await;
    n1.expect_control_next(&mut d, "later").await;
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn a_sticky_raised_by_plain_publish_is_kept_for_later_sessions() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut first = h.connect("first").await;
    redis
        .publish("herald:broadcast", &json!({"id": "inc-7", "to": "all", "kind": "banner", "title": "Outage", "sticky": true}).to_string())
        .await;
    assert_eq!(first.recv_title().await, "Outage");
    eventually("the node stored it in Redis", || async {
        let v: Option<String> = redis
            .conn()
            .await
            .hget("herald:active", "inc-7")
            .await
            .expect("HGET");
        v.is_some()
    })
    .await;
    let n2 = Herald::start(redis_config(&redis)).await;
    let mut second = n2.connect("second").await;
    assert_eq!(second.recv_title().await, "Outage");
    h.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn require_ack_for_an_offline_user_waits_and_holds_across_nodes() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    let r = n1
        .publish(json!({"id": "kyc-1", "to": {"users": ["alice"]}, "kind": "modal", "title": "Verify your identity", "require_ack": true}))
        .await;
    assert_eq!(r["offline"], json!(["alice"]));
    let mut a = n2.connect("alice").await;
    assert_eq!(a.recv().await["id"], "kyc-1");
    a.send(r#"{"t":"ack","id":"kyc-1","status":"clicked","action":"verify"}"#)
        .await;
    eventually("the acknowledgement reached Redis", || async {
        let v: Option<String> = redis
            .conn()
            .await
            .hget("herald:pending:alice", "kyc-1")
            .await
            .expect("HGET");
        v.is_none()
    })
    .await;
    let mut again = n1.connect("alice").await;
    // acknowledged on node 2: not resent by node 1
    n1.expect_control_next(&mut again, "alice").await;
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn global_require_ack_is_tracked_per_user() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    require_ack_tracked_per_user(&h, || async {
        redis
            .conn()
            .await
            .sismember::<_, _, bool>("herald:acked:tos", "a")
            .await
            .expect("SISMEMBER")
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn events_undelivered_and_dead_streams_in_redis() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    let mut c = n1.connect("alice").await;
    n2.publish(json!({"id": "pay-1", "to": {"users": ["alice", "bob"]}, "kind": "card", "title": "Payment failed", "fallback": true, "campaign": "billing"}))
        .await;
    c.recv().await;
    c.send(r#"{"t":"ack","id":"pay-1","status":"clicked","action":"retry"}"#)
        .await;
    eventually("delivered and clicked in herald:events", || async {
        let events = redis.xrange("herald:events").await;
        events.iter().any(|e| e["type"] == "delivered")
            && events.iter().any(|e| e["type"] == "clicked")
    })
    .await;
    let events = redis.xrange("herald:events").await;
    let clicked = events
        .iter()
        .find(|e| e["type"] == "clicked")
        .expect("clicked");
    assert_eq!(
        (
            clicked["msg"].as_str(),
            clicked["user"].as_str(),
            clicked["action"].as_str()
        ),
        ("pay-1", "alice", "retry")
    );
    let undelivered = redis.xrange("herald:undelivered").await;
    assert_eq!(undelivered.len(), 1);
    assert_eq!(
        (
            undelivered[0]["user"].as_str(),
            undelivered[0]["campaign"].as_str()
        ),
        ("bob", "billing")
    );

    // A bad envelope on the broadcast channel reaches both nodes, and is
    // recorded once, with the reason.
    redis
        .publish("herald:broadcast", r#"{"to":"all","kind":"banner"}"#)
        .await;
    eventually("the refusal is in herald:dead", || async {
        !redis.xrange("herald:dead").await.is_empty()
    })
    .await;
    eventually("both nodes counted it", || async {
        n1.metric("herald_invalid_envelopes_total").await == 1.0
            && n2.metric("herald_invalid_envelopes_total").await == 1.0
    })
    .await;
    let dead = redis.xrange("herald:dead").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0]["reason"].contains("title"), "{:?}", dead[0]);
    assert_eq!(dead[0]["envelope"], r#"{"to":"all","kind":"banner"}"#);
    // The API reads the same streams.
    let via_api: Value = n2.get_json("/v1/streams/dead").await;
    assert_eq!(via_api["records"].as_array().map(Vec::len), Some(1));
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn a_repeated_id_on_a_user_channel_is_delivered_once() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h.connect("alice").await;
    let env = json!({"id": "dup", "to": {"users": ["alice"]}, "kind": "toast", "title": "once"})
        .to_string();
    redis.publish("herald:user:alice", &env).await;
    redis.publish("herald:user:alice", &env).await;
    assert_eq!(c.recv_title().await, "once");
    h.expect_control_next(&mut c, "alice").await;
    h.stop().await;
}

/// A refused payload that is not UTF-8 is still recorded, cut to 64 KiB at
/// a character boundary (its invalid bytes shown as U+FFFD, three bytes
/// each, so the cut can fall inside one).
#[tokio::test]
async fn a_refused_payload_that_is_not_utf8_is_recorded_cut_to_64_kib() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let _: i64 = redis::cmd("PUBLISH")
        .arg("herald:broadcast")
        .arg(vec![0xffu8; 70_000])
        .query_async(&mut redis.conn().await)
        .await
        .expect("PUBLISH");
    eventually("the refusal is in herald:dead", || async {
        !redis.xrange("herald:dead").await.is_empty()
    })
    .await;
    let dead = redis.xrange("herald:dead").await;
    let envelope = &dead[0]["envelope"];
    assert!(envelope.len() <= 64 * 1024, "{} bytes", envelope.len());
    assert!(envelope.len() > 60 * 1024, "{} bytes", envelope.len());
    assert!(envelope.chars().all(|c| c == '\u{fffd}'));
    h.stop().await;
}

async fn active_ids(h: &Herald) -> Vec<String> {
    h.get_json("/v1/messages/active").await["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The SRE incident path: a banner raised and retracted with nothing but
/// `redis-cli PUBLISH` ends in the same state as through the API: out of
/// the sticky set, and not shown again after a node restart.
#[tokio::test]
async fn a_retraction_by_plain_publish_takes_the_banner_out_of_the_sticky_set() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut a = h.connect("ada").await;
    let banner = |id: &str| {
        json!({"to": "all", "kind": "banner", "title": "Payments degraded", "sticky": true, "id": id})
            .to_string()
    };
    redis.publish("herald:broadcast", &banner("inc-1")).await;
    redis.publish("herald:broadcast", &banner("other")).await;
    assert_eq!(a.recv().await["id"], "inc-1");
    assert_eq!(a.recv().await["id"], "other");
    eventually("both stored", || async { active_ids(&h).await.len() == 2 }).await;
    redis
        .publish("herald:broadcast", r#"{"op":"retract","id":"inc-1"}"#)
        .await;
    assert_eq!(a.recv().await, json!({"t": "retract", "id": "inc-1"}));
    eventually("the retracted one leaves the sticky set", || async {
        active_ids(&h).await == ["other"]
    })
    .await;
    // After a restart, a new session gets the one still active, not the
    // retracted one.
    h.stop().await;
    let h = Herald::start(redis_config(&redis)).await;
    let mut b = h.connect("bob").await;
    assert_eq!(b.recv().await["id"], "other");
    h.expect_control_next(&mut b, "bob").await;
    h.stop().await;
}

/// A flood of refused payloads costs a bounded number of background jobs:
/// past the limit they are shed and counted, and the node keeps delivering.
#[tokio::test]
async fn a_flood_of_bad_publishes_is_bounded_background_work() {
    let redis = Redis::start();
    let mut cfg = redis_config(&redis);
    cfg.limits.background_jobs = 4;
    let h = Herald::start(cfg).await;
    let mut a = h.connect("ada").await;
    let mut conn = redis.conn().await;
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("PUBLISH")
            .arg("herald:broadcast")
            .arg(format!(r#"{{"to":"all","kind":"banner","n":{i}}}"#))
            .ignore();
    }
    let () = pipe.query_async(&mut conn).await.expect("PUBLISH");
    eventually("refusals counted", || async {
        h.metric("herald_invalid_envelopes_total{source=\"redis\"}")
            .await
            >= 2000.0
    })
    .await;
    assert!(
        h.metric("herald_background_shed_total{job=\"dead_record\"}")
            .await
            > 0.0,
        "jobs past the limit are shed and counted"
    );
    // Some were recorded (positive control), and the node still delivers.
    assert!(!redis.xrange("herald:dead").await.is_empty());
    h.expect_control_next(&mut a, "ada").await;
    h.stop().await;
}
