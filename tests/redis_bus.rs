//! Redis mode against a real redis-server the test starts on a free port:
//! raw PUBLISH, per-user channels, subscriptions that follow sessions,
//! presence across nodes, and surviving a Redis outage.

mod support;

use serde_json::json;
use std::time::Duration;
use support::*;

fn banner(to: serde_json::Value, title: &str) -> String {
    json!({"to": to, "kind": "banner", "title": title}).to_string()
}

#[tokio::test]
async fn plain_redis_publish_on_broadcast_and_user_channels_is_delivered() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;

    assert_eq!(
        redis
            .publish(
                "herald:broadcast",
                &banner(json!("all"), "Payments degraded")
            )
            .await,
        1
    );
    assert_eq!(alice.recv_title().await, "Payments degraded");
    assert_eq!(bob.recv_title().await, "Payments degraded");

    // One node holds alice: PUBLISH answers 1. Nobody holds carol: 0.
    assert_eq!(
        redis
            .publish(
                "herald:user:alice",
                &banner(json!({"users": ["alice"]}), "for alice")
            )
            .await,
        1
    );
    assert_eq!(
        redis
            .publish(
                "herald:user:carol",
                &banner(json!({"users": ["carol"]}), "for carol")
            )
            .await,
        0
    );
    assert_eq!(alice.recv_title().await, "for alice");
    // Bob's next frame is the control: nothing for alice reached him.
    redis
        .publish(
            "herald:user:bob",
            &banner(json!({"users": ["bob"]}), "control"),
        )
        .await;
    assert_eq!(bob.recv_title().await, "control");
    h.stop().await;
}

#[tokio::test]
async fn a_user_channel_carries_only_its_users_messages() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    // Published on alice's channel, but addressed to bob: the channel bounds
    // delivery to alice, and the audience excludes her, so nobody gets it.
    redis
        .publish(
            "herald:user:alice",
            &banner(json!({"users": ["bob"]}), "misrouted"),
        )
        .await;
    redis
        .publish("herald:broadcast", &banner(json!("all"), "control"))
        .await;
    assert_eq!(alice.recv_title().await, "control");
    assert_eq!(bob.recv_title().await, "control");
    h.stop().await;
}

#[tokio::test]
async fn http_publish_routes_users_per_channel_and_reports_who_is_online() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut alice = h.connect("alice").await;
    let r = h
        .publish(json!({"to": {"users": ["alice", "ghost"]}, "kind": "toast", "title": "hi"}))
        .await;
    assert_eq!(r["online"], json!(["alice"]));
    assert_eq!(r["offline"], json!(["ghost"]));
    assert_eq!(alice.recv_title().await, "hi");
    h.stop().await;
}

#[tokio::test]
async fn subscriptions_follow_sessions_and_nothing_is_left_behind() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    assert_eq!(
        redis.channels().await,
        ["herald:broadcast", "herald:preview"]
    );
    let a1 = h.connect("alice").await;
    let a2 = h.connect("alice").await;
    // The hello frame comes after the subscription, so this holds at once.
    assert_eq!(
        redis.channels().await,
        ["herald:broadcast", "herald:preview", "herald:user:alice"]
    );
    drop(a1);
    eventually("one alice session left", || async {
        h.get_json("/v1/stats").await["sessions"] == 1
    })
    .await;
    assert_eq!(
        redis.channels().await,
        ["herald:broadcast", "herald:preview", "herald:user:alice"],
        "still one session"
    );
    drop(a2);
    eventually("alice's channel is unsubscribed", || async {
        redis.channels().await == ["herald:broadcast", "herald:preview"]
    })
    .await;
    let presence = h.get_json("/v1/presence/alice").await;
    assert_eq!(
        presence,
        json!({"user": "alice", "online": false, "sessions": 0})
    );
    h.stop().await;
}

#[tokio::test]
async fn presence_counts_sessions_across_nodes() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    let _a = n1.connect("alice").await;
    let _b = n2.connect("alice").await;
    let _c = n2.connect("alice").await;
    eventually("presence sees 3 sessions from either node", || async {
        n1.get_json("/v1/presence/alice").await
            == json!({"user": "alice", "online": true, "sessions": 3})
            && n2.get_json("/v1/presence/alice").await["sessions"] == 3
    })
    .await;
    // A message published on node 1 reaches alice's sessions on node 2.
    let mut d = n2.connect("dave").await;
    let r = n1
        .publish(json!({"to": {"users": ["dave"]}, "kind": "card", "title": "cross-node"}))
        .await;
    assert_eq!(r["online"], json!(["dave"]));
    assert_eq!(d.recv_title().await, "cross-node");
    n2.stop().await;
    eventually("node 2's sessions leave presence", || async {
        n1.get_json("/v1/presence/alice").await["sessions"] == 1
    })
    .await;
    n1.stop().await;
}

#[tokio::test]
async fn invalid_envelopes_on_redis_are_counted_and_harm_nothing() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h.connect("alice").await;
    redis.publish("herald:broadcast", "{not json").await;
    redis
        .publish("herald:broadcast", r#"{"to":"all","title":"no kind"}"#)
        .await;
    redis
        .publish(
            "herald:broadcast",
            r#"{"kind":"banner","title":"no audience"}"#,
        )
        .await;
    redis
        .publish("herald:broadcast", &banner(json!("all"), "valid"))
        .await;
    assert_eq!(c.recv_title().await, "valid");
    assert_eq!(
        h.metric("herald_invalid_envelopes_total{source=\"redis\"}")
            .await,
        3.0
    );
    h.stop().await;
}

#[tokio::test]
async fn disconnect_reaches_the_user_on_another_node() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    let mut alice = n2.connect("alice").await;
    let mut bob = n2.connect("bob").await;
    let (s, _) = n1.post("/v1/users/alice/disconnect", "").await;
    assert_eq!(s, 202);
    assert_eq!(alice.closed().await.0, 1008);
    n1.publish(json!({"to": "all", "kind": "toast", "title": "bob stays"}))
        .await;
    assert_eq!(bob.recv_title().await, "bob stays");
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn redis_outage_keeps_sessions_reports_not_ready_and_restores_subscriptions() {
    let mut redis = Redis::start();
    let port = redis.port;
    let h = Herald::start(redis_config(&redis)).await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    assert_eq!(h.get("/readyz").await.0, 200);

    redis.kill();
    eventually("readyz reports the bus down", || async {
        h.get("/readyz").await == (503, r#"{"error":"redis bus down"}"#.into())
    })
    .await;
    // Publishing during the outage is refused, never a silent 202.
    let (s, body) = h.post("/v1/messages", &banner(json!("all"), "lost?")).await;
    assert_eq!(s, 503, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("redis")));
    // Sessions stay up; a new one is still admitted.
    assert_eq!(h.get_json("/v1/stats").await["sessions"], 2);
    let mut carol = h.connect("carol").await;

    let redis = Redis::start_on(port);
    eventually("readyz recovers", || async {
        h.get("/readyz").await.0 == 200
    })
    .await;
    eventually("every subscription restored", || async {
        redis.channels().await
            == [
                "herald:broadcast",
                "herald:preview",
                "herald:user:alice",
                "herald:user:bob",
                "herald:user:carol",
            ]
    })
    .await;
    redis
        .publish("herald:broadcast", &banner(json!("all"), "after outage"))
        .await;
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(c.recv_title().await, "after outage");
    }
    assert_eq!(
        redis
            .publish(
                "herald:user:bob",
                &banner(json!({"users": ["bob"]}), "bob again")
            )
            .await,
        1
    );
    assert_eq!(bob.recv_title().await, "bob again");
    assert_eq!(h.get_json("/v1/presence/carol").await["sessions"], 1);
    h.stop().await;
}

#[tokio::test]
async fn a_node_starts_while_redis_is_down_and_becomes_ready_when_it_appears() {
    let port = free_port();
    let mut cfg = config();
    cfg.redis.url = Some(format!("redis://127.0.0.1:{port}"));
    let listeners = herald::Listeners::bind(&cfg).await.expect("bind");
    let admin = listeners.admin.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(herald::run(cfg, listeners, async {
        let _ = rx.await;
    }));
    let ready = || async move {
        reqwest::get(format!("http://{admin}/readyz"))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    eventually("not ready without redis", || async { ready().await == 503 }).await;
    let _redis = Redis::start_on(port);
    eventually("ready once redis is up", || async { ready().await == 200 }).await;
    let _ = tx.send(());
    task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn the_bus_stays_connected_across_heartbeats() {
    let redis = Redis::start();
    let mut cfg = redis_config(&redis);
    cfg.redis.heartbeat = std::time::Duration::from_millis(100);
    let h = Herald::start(cfg).await;
    let node = h.get_json("/v1/stats").await["node"]
        .as_str()
        .expect("node")
        .to_owned();
    let seen = || async {
        let v: Option<f64> = redis::cmd("ZSCORE")
            .arg("herald:nodes")
            .arg(&node)
            .query_async(&mut redis.conn().await)
            .await
            .expect("ZSCORE");
        v.unwrap_or(0.0)
    };
    let first = seen().await;
    // Several heartbeats (each also pings the pub/sub connection) go by...
    eventually("five heartbeats later", || async {
        seen().await >= first + 500.0
    })
    .await;
    // ...without the pub/sub connection ever being dropped.
    assert_eq!(h.metric("herald_bus_reconnects_total").await, 0.0);
    assert_eq!(h.metric("herald_bus_up").await, 1.0);
    h.stop().await;
}

#[tokio::test]
async fn a_slow_redis_does_not_slow_live_sessions() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h.connect("alice").await;
    // Redis stops answering for a while.
    let sleeper = {
        let url = redis.url();
        tokio::spawn(async move {
            // No client-side timeout: this connection waits out the sleep.
            let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
            let client = redis::Client::open(url).expect("url");
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .expect("conn");
            let _: redis::RedisResult<()> = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(5)
                .query_async(&mut conn)
                .await;
        })
    };
    // Wait until Redis is asleep: a PING from another client stops coming back.
    eventually("Redis is asleep", || async {
        tokio::time::timeout(std::time::Duration::from_millis(200), async {
            let mut probe = redis.conn().await;
            redis::cmd("PING").query_async::<String>(&mut probe).await
        })
        .await
        .is_err()
    })
    .await;
    // The session still answers, and the node still reports, while Redis sleeps.
    c.send(r#"{"t":"ping"}"#).await;
    assert_eq!(c.recv().await["t"], "pong");
    assert_eq!(h.get_json("/v1/stats").await["sessions"], 1);
    let still_asleep = tokio::time::timeout(std::time::Duration::from_millis(200), async {
        let mut probe = redis.conn().await;
        redis::cmd("PING").query_async::<String>(&mut probe).await
    })
    .await
    .is_err();
    assert!(
        still_asleep,
        "all of that happened while Redis was still asleep"
    );
    sleeper.await.expect("join");
    // Afterwards, messages flow again.
    eventually("the bus is up", || async {
        h.get("/readyz").await.0 == 200
    })
    .await;
    redis
        .publish("herald:broadcast", &banner(json!("all"), "after the stall"))
        .await;
    assert_eq!(c.recv_title().await, "after the stall");
    h.stop().await;
}

/// A subscription that stays open but delivers nothing (Redis's replies
/// stop on the subscriber's connection; commands still flow): the node's
/// probe does not come back, so it says 503 on /readyz, counts it, and
/// resubscribes on a fresh connection; what was published meanwhile is read
/// back from the history once it is subscribed again.
#[tokio::test]
async fn a_subscription_that_delivers_nothing_is_found_by_the_probe_and_replaced() {
    let redis = Redis::start();
    let proxy = StallingProxy::start(redis.port).await;
    let mut cfg = config();
    cfg.redis.url = Some(proxy.url());
    cfg.redis.probe_interval = Duration::from_millis(200);
    cfg.redis.probe_timeout = Duration::from_millis(500);
    // The heartbeat's ping would find it too, but only much later.
    cfg.redis.heartbeat = Duration::from_secs(60);
    let h = Herald::start(cfg).await;
    eventually("ready", || async { h.get("/readyz").await.0 == 200 }).await;
    let mut ada = h.connect("ada").await;
    // The positive control: delivered through the subscription.
    let (s, body) = h
        .post("/v1/messages", &banner(json!("all"), "before"))
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(ada.recv_title().await, "before");
    assert_eq!(h.metric("herald_bus_probe_failures_total").await, 0.0);
    assert_eq!(
        redis.probe_channels().await.len(),
        1,
        "the node's probe channel"
    );

    proxy.stall(true);
    eventually("the probe finds it: not ready, counted", || async {
        h.get("/readyz").await.0 == 503 && h.metric("herald_bus_probe_failures_total").await >= 1.0
    })
    .await;
    // Published meanwhile (the ingress stream, straight into Redis): in the
    // history, but no subscription hears it.
    let _: String = redis::AsyncCommands::xadd(
        &mut redis.conn().await,
        "herald:ingress",
        "*",
        &[(
            "e",
            json!({"id": "during", "to": "all", "kind": "banner", "title": "during the stall"})
                .to_string(),
        )],
    )
    .await
    .expect("XADD");
    eventually("consumed into the history", || async {
        redis::AsyncCommands::xlen::<_, i64>(&mut redis.conn().await, "herald:history")
            .await
            .expect("XLEN")
            >= 2
    })
    .await;

    proxy.stall(false);
    eventually("ready again", || async { h.get("/readyz").await.0 == 200 }).await;
    assert_eq!(ada.recv_title().await, "during the stall");
    let (s, body) = h.post("/v1/messages", &banner(json!("all"), "after")).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(ada.recv_title().await, "after");
    h.stop().await;
}
