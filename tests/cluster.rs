//! Three nodes on one Redis: messages, presence, stats and campaigns are
//! cluster-wide; a per-user publish reaches only the nodes holding the user;
//! a node killed leaves the others' sessions untouched.

mod support;

use serde_json::json;
use support::*;

async fn three(redis: &Redis) -> [Herald; 3] {
    let start = || {
        let mut cfg = redis_config(redis);
        cfg.redis.heartbeat = std::time::Duration::from_millis(100);
        Herald::start(cfg)
    };
    [start().await, start().await, start().await]
}

async fn messages_in(h: &Herald) -> f64 {
    h.metric("herald_messages_total{source=\"redis\"}").await
}

#[tokio::test]
async fn three_nodes_share_messages_presence_and_stats() {
    let redis = Redis::start();
    let [a, b, c] = three(&redis).await;
    let mut on_b = b.connect("bea").await;
    let mut also_c = c.connect("bea").await;
    let _other = a.connect("al").await;

    // Published to node A's API and by plain redis-cli: the user on B and C gets both.
    a.publish(json!({"to": {"users": ["bea"]}, "kind": "toast", "title": "from A's API"}))
        .await;
    redis
        .publish(
            "herald:broadcast",
            &json!({"to": "all", "kind": "banner", "title": "from redis-cli"}).to_string(),
        )
        .await;
    for s in [&mut on_b, &mut also_c] {
        assert_eq!(s.recv_title().await, "from A's API");
        assert_eq!(s.recv_title().await, "from redis-cli");
    }
    // Presence and stats are cluster-wide from any node.
    for n in [&a, &b, &c] {
        assert_eq!(
            n.get_json("/v1/presence/bea").await,
            json!({"user": "bea", "online": true, "sessions": 2})
        );
    }
    eventually("cluster stats count every node's sessions", || async {
        let s = c.get_json("/v1/stats").await;
        s["cluster"]["sessions"] == 3
            && s["cluster"]["nodes"]
                .as_object()
                .is_some_and(|n| n.len() == 3)
    })
    .await;
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test]
async fn a_per_user_publish_reaches_only_the_nodes_holding_the_user() {
    let redis = Redis::start();
    let [a, b, c] = three(&redis).await;
    let mut on_b = b.connect("bea").await;
    let mut on_c = c.connect("cid").await;
    // Positive control: a broadcast reaches every node.
    a.publish(json!({"to": "all", "kind": "toast", "title": "everyone"}))
        .await;
    assert_eq!(on_b.recv_title().await, "everyone");
    assert_eq!(on_c.recv_title().await, "everyone");
    eventually("all three nodes received the broadcast", || async {
        messages_in(&a).await == 1.0 && messages_in(&b).await == 1.0 && messages_in(&c).await == 1.0
    })
    .await;
    let r = a
        .publish(json!({"to": {"users": ["bea"]}, "kind": "toast", "title": "just bea"}))
        .await;
    assert_eq!(r["online"], json!(["bea"]));
    assert_eq!(on_b.recv_title().await, "just bea");
    // Only node B received it; the next frame at C is the control, and A and
    // C counted nothing more.
    a.expect_control_next(&mut on_c, "cid").await;
    assert_eq!(messages_in(&b).await, 2.0);
    assert_eq!(
        messages_in(&c).await,
        2.0,
        "C got the broadcast and its own control, not bea's message"
    );
    assert_eq!(
        messages_in(&a).await,
        1.0,
        "A holds nobody: only the broadcast reached it"
    );
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test]
async fn a_campaign_change_reaches_every_node_and_a_killed_node_leaves_the_others_alone() {
    let redis = Redis::start();
    let [a, b, c] = three(&redis).await;
    let hello =
        json!({"trigger": {"event": "opened"}, "message": {"kind": "toast", "title": "hi"}});
    assert_eq!(
        a.put("/v1/campaigns/hello", &hello.to_string()).await.0,
        200
    );
    for n in [&b, &c] {
        eventually("the campaign reached the node", || async {
            n.get("/v1/campaigns/hello").await.0 == 200
        })
        .await;
    }
    let mut doomed = NodeProcess::start(&redis).await;
    let mut on_doomed = doomed.connect("ann").await;
    let doomed_id = on_doomed.hello["sid"]
        .as_str()
        .and_then(|sid| sid.split('.').next())
        .expect("sid is node.n")
        .to_owned();
    eventually("the doomed node's presence is written", || async {
        let n: i64 = redis::cmd("EXISTS")
            .arg(format!("herald:nodepresence:{doomed_id}"))
            .query_async(&mut redis.conn().await)
            .await
            .expect("EXISTS");
        n == 1
    })
    .await;
    let mut on_b = b.connect("bob").await;
    let mut on_c = c.connect("cat").await;
    on_c.send(r#"{"t":"event","name":"opened"}"#).await;
    assert_eq!(on_c.recv_title().await, "hi");

    // A node process dies: its session ends; the others keep theirs and keep receiving.
    doomed.kill();
    on_doomed.ended().await;
    b.publish(json!({"to": "all", "kind": "banner", "title": "still here"}))
        .await;
    assert_eq!(on_b.recv_title().await, "still here");
    assert_eq!(on_c.recv_title().await, "still here");
    assert_eq!(b.get_json("/v1/stats").await["sessions"], 1);
    assert_eq!(c.get_json("/v1/stats").await["sessions"], 1);
    eventually("presence forgets the dead node", || async {
        b.get_json("/v1/presence/ann").await["sessions"] == 0
    })
    .await;
    // Nothing of it stays in Redis: the live nodes forget it in their
    // heartbeats, and its presence hash expires.
    let dead = doomed_id;
    eventually("the dead node's keys are gone", || async {
        let mut conn = redis.conn().await;
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg("herald:nodes")
            .arg(&dead)
            .query_async(&mut conn)
            .await
            .expect("ZSCORE");
        let keys: i64 = redis::cmd("EXISTS")
            .arg(format!("herald:nodepresence:{dead}"))
            .arg("herald:presence:ann")
            .query_async(&mut conn)
            .await
            .expect("EXISTS");
        let stats: bool = redis::cmd("HEXISTS")
            .arg("herald:nodestats")
            .arg(&dead)
            .query_async(&mut conn)
            .await
            .expect("HEXISTS");
        score.is_none() && keys == 0 && !stats
    })
    .await;
    // Positive control: the live nodes' own entries are there.
    let live: i64 = redis::cmd("ZCARD")
        .arg("herald:nodes")
        .query_async(&mut redis.conn().await)
        .await
        .expect("ZCARD");
    assert_eq!(live, 3);
    a.stop().await;
    b.stop().await;
    c.stop().await;
}
