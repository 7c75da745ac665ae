//! Durable publishing through the `herald:ingress` stream: consumed by the
//! group `herald`, published, acknowledged; nothing lost while nodes are down
//! or die mid-way, nothing shown twice.

mod support;

use redis::AsyncCommands;
use serde_json::json;
use support::*;

async fn xadd(redis: &Redis, envelope: &str) -> String {
    redis
        .conn()
        .await
        .xadd("herald:ingress", "*", &[("e", envelope)])
        .await
        .expect("XADD")
}

async fn pending(redis: &Redis) -> i64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg("herald:ingress")
        .arg("herald")
        .query_async(&mut redis.conn().await)
        .await
        .expect("XPENDING");
    match reply {
        redis::Value::Array(v) => v
            .first()
            .and_then(|n| redis::from_redis_value::<i64>(n.clone()).ok())
            .unwrap_or(0),
        _ => 0,
    }
}

#[tokio::test]
async fn an_ingress_entry_is_published_acknowledged_and_recoverable() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h.connect("alice").await;
    xadd(
        &redis,
        &json!({"to": "all", "kind": "banner", "title": "via ingress"}).to_string(),
    )
    .await;
    let f = c.recv().await;
    assert_eq!(f["title"], "via ingress");
    assert!(
        f["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("ingress-")),
        "{f}"
    );
    assert!(
        f["pos"].as_str().is_some(),
        "recoverable like an API publish"
    );
    eventually("acknowledged and removed", || async {
        pending(&redis).await == 0
            && redis
                .conn()
                .await
                .xlen::<_, i64>("herald:ingress")
                .await
                .expect("XLEN")
                == 0
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn entries_added_while_every_node_is_down_are_published_when_one_comes_back() {
    let redis = Redis::start();
    // Written before any node ever ran: the group does not exist yet.
    xadd(&redis, &json!({"id": "queued-1", "to": {"users": ["alice"]}, "kind": "toast", "title": "queued", "sticky": true}).to_string()).await;
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h.connect("alice").await;
    // Sticky for alice: whether it is published before or after she connects, she gets it.
    let f = c.recv().await;
    assert_eq!(
        (f["id"].as_str(), f["title"].as_str()),
        (Some("queued-1"), Some("queued"))
    );
    h.stop().await;
}

#[tokio::test]
async fn a_dead_nodes_pending_entries_are_claimed_and_delivered_once() {
    let redis = Redis::start();
    let mut cfg = redis_config(&redis);
    cfg.ingress.claim_after = std::time::Duration::from_millis(300);
    let h = Herald::start(cfg).await;
    let mut c = h.connect("alice").await;
    // A node that read an entry and died before acknowledging it.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg("herald:ingress")
        .arg("herald")
        .arg("ghost")
        .query_async(&mut redis.conn().await)
        .await
        .expect("consumer");
    h.stop().await;
    let h = {
        let mut cfg = redis_config(&redis);
        cfg.ingress.enabled = false;
        Herald::start(cfg).await
    };
    xadd(
        &redis,
        &json!({"id": "orphan", "to": "all", "kind": "toast", "title": "orphaned"}).to_string(),
    )
    .await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("herald")
        .arg("ghost")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg("herald:ingress")
        .arg(">")
        .query_async(&mut redis.conn().await)
        .await
        .expect("ghost reads");
    assert_eq!(pending(&redis).await, 1, "the ghost holds it");
    drop(c);
    h.stop().await;
    let mut cfg = redis_config(&redis);
    cfg.ingress.claim_after = std::time::Duration::from_millis(300);
    let h = Herald::start(cfg).await;
    c = h.connect("alice").await;
    let f = c.recv().await;
    assert_eq!(f["id"], "orphan");
    eventually("acknowledged", || async { pending(&redis).await == 0 }).await;
    // The same id again (a producer retry): delivered once.
    xadd(
        &redis,
        &json!({"id": "orphan", "to": "all", "kind": "toast", "title": "orphaned"}).to_string(),
    )
    .await;
    eventually("the retry was consumed", || async {
        redis
            .conn()
            .await
            .xlen::<_, i64>("herald:ingress")
            .await
            .expect("XLEN")
            == 0
    })
    .await;
    h.expect_control_next(&mut c, "alice").await;
    h.stop().await;
}

#[tokio::test]
async fn a_refused_ingress_entry_goes_to_the_dead_stream() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h.connect("alice").await;
    xadd(&redis, r#"{"to":"all","kind":"banner","titel":"typo"}"#).await;
    // A position is Herald's to set, on a retraction too.
    xadd(&redis, r#"{"op":"retract","id":"m1","pos":"e.1-1"}"#).await;
    xadd(
        &redis,
        &json!({"to": "all", "kind": "banner", "title": "fine"}).to_string(),
    )
    .await;
    assert_eq!(c.recv_title().await, "fine");
    eventually("both refusals are in herald:dead", || async {
        let reply: redis::streams::StreamRangeReply = redis
            .conn()
            .await
            .xrange_all("herald:dead")
            .await
            .expect("XRANGE");
        let refused = |why: &str| {
            reply.ids.iter().any(|e| {
                e.get::<String>("reason").is_some_and(|r| r.contains(why))
                    && e.get::<String>("channel").as_deref() == Some("ingress")
            })
        };
        refused("titel") && refused("pos: set by Herald")
    })
    .await;
    eventually("everything acknowledged", || async {
        pending(&redis).await == 0
    })
    .await;
    h.stop().await;
}

/// Entries of the broadcast history, as a node appends them.
async fn history_len(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    conn.xlen("herald:history").await.expect("XLEN")
}

#[tokio::test]
async fn what_is_published_while_the_subscription_is_down_reaches_live_sessions_once() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h.connect("alice").await;
    // Held open: Redis is about to refuse new connections.
    let mut conn = redis.conn().await;
    // The subscription dies and cannot come back (no new connections),
    // while the node's other connections (ingress, commands) stay.
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let connected: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(connected - 1)
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1, "the node's one subscription");
    eventually("the node sees its bus down", || async {
        h.get("/readyz").await.0 == 503
    })
    .await;
    let before = history_len(&mut conn).await;
    let _: String = conn
        .xadd(
            "herald:ingress",
            "*",
            &[(
                "e",
                json!({"id": "gap-1", "to": "all", "kind": "banner", "title": "while down"})
                    .to_string(),
            )],
        )
        .await
        .expect("XADD");
    eventually(
        "published into the history, with no subscription to hear it",
        || {
            let mut held = conn.clone();
            async move { history_len(&mut held).await > before }
        },
    )
    .await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(10_000)
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    // The node reconnects and reads back what it missed: the open session
    // gets it, without reconnecting or resuming.
    let f = c.recv().await;
    assert_eq!(
        (f["id"].clone(), f["title"].clone()),
        (json!("gap-1"), json!("while down"))
    );
    // Once: the next frame is the control, not a repeat.
    let (s, body) = h
        .post(
            "/v1/messages",
            &json!({"to": "all", "kind": "banner", "title": "control"}).to_string(),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(c.recv_title().await, "control");
    h.stop().await;
}
