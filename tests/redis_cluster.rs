//! Herald on a real Redis Cluster (three masters started by the test with
//! `redis-server --cluster-enabled yes` and `redis-cli --cluster create`):
//! user channels are sharded (`SSUBSCRIBE`/`SPUBLISH`) and grouped on one
//! connection per Redis node, broadcasts still work by plain `PUBLISH`, and
//! Herald's own keys share one hash tag so its atomic steps stay on one slot.

mod support;

use serde_json::json;
use support::*;

async fn node(cluster: &RedisCluster) -> Herald {
    let mut cfg = config();
    cfg.redis.url = Some(cluster.seed());
    cfg.redis.cluster = true;
    cfg.redis.heartbeat = std::time::Duration::from_millis(100);
    Herald::start(cfg).await
}

/// `per` users for each master (`u{i}`, whose channel `herald:user:u{i}`
/// lives there), round-robin: the first `masters` entries cover each master
/// once, the next ones again, and so on.
async fn users_per_master(cluster: &RedisCluster, per: usize) -> Vec<(String, u16)> {
    let ports: Vec<u16> = cluster.masters.iter().map(|m| m.port).collect();
    let mut by_master: Vec<Vec<String>> = vec![Vec::new(); ports.len()];
    for i in 0.. {
        if by_master.iter().all(|u| u.len() >= per) {
            break;
        }
        let user = format!("u{i}");
        let port = cluster.owner(&format!("herald:user:{user}")).await.port;
        let m = ports.iter().position(|p| *p == port).expect("a master");
        if by_master[m].len() < per {
            by_master[m].push(user);
        }
    }
    (0..per)
        .flat_map(|round| {
            by_master
                .iter()
                .zip(&ports)
                .map(move |(users, port)| (users[round].clone(), *port))
        })
        .collect()
}

async fn messages_in(h: &Herald) -> f64 {
    h.metric("herald_messages_total{source=\"redis\"}").await
}

async fn cmd<T: redis::FromRedisValue>(r: &Redis, c: &mut redis::Cmd) -> T {
    c.query_async(&mut r.conn().await)
        .await
        .expect("redis command")
}

/// Clients of one master holding sharded subscriptions, and how many.
async fn shard_subscribers(r: &Redis) -> Vec<u64> {
    let list: String = cmd(r, redis::cmd("CLIENT").arg("LIST")).await;
    list.lines()
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("ssub="))
                .and_then(|n| n.parse().ok())
        })
        .filter(|n| *n > 0)
        .collect()
}

#[tokio::test]
async fn nodes_on_a_redis_cluster_share_messages_over_sharded_pubsub() {
    let cluster = RedisCluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    // Two users per master on node B; the first three get the messages.
    let all = users_per_master(&cluster, 2).await;
    let mut on_b = Vec::new();
    for (u, _) in &all {
        on_b.push(b.connect(u).await);
    }
    let users = &all[..cluster.masters.len()];
    let mut al = a.connect("al").await;

    // Published to node A's API: each user on B gets theirs, whichever
    // master their channel lives on; A's reply knows they are online.
    for ((u, _), c) in users.iter().zip(&mut on_b) {
        let r = a
            .publish(json!({"to": {"users": [u]}, "kind": "toast", "title": format!("for {u}")}))
            .await;
        assert_eq!(r["online"], json!([u]));
        assert_eq!(c.recv_title().await, format!("for {u}"));
    }
    // redis-cli: SPUBLISH on the master owning the channel, and a plain
    // PUBLISH on the broadcast channel on any master.
    for ((u, port), c) in users.iter().zip(&mut on_b) {
        let owner = cluster
            .masters
            .iter()
            .find(|m| m.port == *port)
            .expect("owner");
        let env = json!({"to": {"users": [u]}, "kind": "toast", "title": "by SPUBLISH"});
        let n: i64 = cmd(
            owner,
            redis::cmd("SPUBLISH")
                .arg(format!("herald:user:{u}"))
                .arg(env.to_string()),
        )
        .await;
        assert_eq!(n, 1, "one node holds {u}");
        assert_eq!(c.recv_title().await, "by SPUBLISH");
    }
    let env = json!({"to": "all", "kind": "banner", "title": "by PUBLISH"});
    cluster.masters[2]
        .publish("herald:broadcast", &env.to_string())
        .await;
    for c in on_b.iter_mut().chain([&mut al]) {
        assert_eq!(c.recv_title().await, "by PUBLISH");
    }

    // Grouped: on each master, a node holds all its sharded subscriptions
    // on one connection: B's two channels there share one, and no more
    // connections subscribe than there are Herald nodes.
    for m in &cluster.masters {
        let channels: Vec<String> = cmd(
            m,
            redis::cmd("PUBSUB")
                .arg("SHARDCHANNELS")
                .arg("herald:user:*"),
        )
        .await;
        for (u, _) in all.iter().filter(|(_, p)| *p == m.port) {
            assert!(
                channels.contains(&format!("herald:user:{u}")),
                "{channels:?}"
            );
        }
        let subscribers = shard_subscribers(m).await;
        assert!(subscribers.len() <= 2, "{subscribers:?} on :{}", m.port);
        assert!(
            subscribers.iter().any(|n| *n >= 2),
            "{subscribers:?} on :{}",
            m.port
        );
        assert_eq!(subscribers.iter().sum::<u64>(), channels.len() as u64);
    }
    // Both nodes listen to the broadcast channel on the Redis node owning
    // its slot, where API broadcasts are published: no cluster-bus hop puts
    // a broadcast behind the per-user message published after it.
    let owner = cluster.owner("herald:broadcast").await;
    let (_, listeners): (String, u64) = cmd(
        owner,
        redis::cmd("PUBSUB").arg("NUMSUB").arg("herald:broadcast"),
    )
    .await;
    assert_eq!(listeners, 2, "on :{}", owner.port);

    // A per-user publish reaches only the node holding the user. The user
    // is on the master of A's user `al`, so a copy wrongly sent to A would
    // come on the connection that then brings A the control for `al`.
    let (before_a, before_b) = (messages_in(&a).await, messages_in(&b).await);
    let al_master = cluster.owner("herald:user:al").await.port;
    let i = users
        .iter()
        .position(|(_, port)| *port == al_master)
        .expect("a user on al's master");
    let (u0, _) = &users[i];
    a.publish(json!({"to": {"users": [u0]}, "kind": "toast", "title": "only B"}))
        .await;
    assert_eq!(on_b[i].recv_title().await, "only B");
    eventually("node B counted it", || async {
        messages_in(&b).await == before_b + 1.0
    })
    .await;
    a.expect_control_next(&mut al, "al").await;
    assert_eq!(
        messages_in(&a).await,
        before_a + 1.0,
        "node A saw only al's"
    );

    // Presence is cluster-wide; the disconnect endpoint reaches the user's node.
    assert_eq!(
        a.get_json(&format!("/v1/presence/{u0}")).await,
        json!({"user": u0, "online": true, "sessions": 1})
    );
    let (u1, _) = &users[1];
    let (status, _) = a.post(&format!("/v1/users/{u1}/disconnect"), "").await;
    assert_eq!(status, 202);
    assert_eq!(on_b[1].closed().await.0, 1008);

    // Sticky: stored in the cluster, replayed to a session that connects later.
    a.publish(json!({"id": "incident-1", "to": "all", "kind": "banner", "title": "sticky", "sticky": true}))
        .await;
    assert_eq!(al.recv_title().await, "sticky");
    let mut late = b.connect("late").await;
    assert_eq!(late.recv_title().await, "sticky");

    // Herald's own keys share the hash tag {herald}: all on one master, so
    // its scripts stay on one slot; other masters hold only public streams.
    let tagged_owner = cluster.owner("{herald}").await.port;
    for m in &cluster.masters {
        let keys: Vec<String> = cmd(m, redis::cmd("KEYS").arg("*")).await;
        for k in &keys {
            let public = [
                "herald:events",
                "herald:undelivered",
                "herald:dead",
                "herald:ingress",
            ];
            assert!(
                public.contains(&k.as_str())
                    || (k.starts_with("{herald}:") && m.port == tagged_owner),
                "key {k} on :{}",
                m.port
            );
        }
    }
    let tagged: Vec<String> = cmd(
        cluster.owner("{herald}").await,
        redis::cmd("KEYS").arg("{herald}:*"),
    )
    .await;
    assert!(tagged.contains(&"{herald}:active".to_owned()), "{tagged:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn campaigns_resume_fallback_ingress_and_the_cli_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);

    // A campaign stored through A fires on B; its counter is shared.
    drop(a.campaign_counter_shared_with(&b, "cora").await);
    let mut c = b.connect("cora").await;

    // Resume: per-user and broadcast messages missed while away come back.
    a.publish(json!({"to": {"users": ["cora"]}, "kind": "toast", "title": "seen"}))
        .await;
    let seen = c.recv().await;
    assert_eq!(seen["title"], "seen");
    let pos = seen["pos"].as_str().expect("pos").to_owned();
    drop(c);
    eventually("cora is gone", || async {
        a.get_json("/v1/presence/cora").await["sessions"] == 0
    })
    .await;
    a.publish(json!({"to": {"users": ["cora"]}, "kind": "toast", "title": "missed 1"}))
        .await;
    a.publish(json!({"to": "all", "kind": "toast", "title": "missed 2"}))
        .await;
    let mut back = b.connect_since("cora", &pos).await;
    assert_eq!(back.hello["recovered"], true);
    assert_eq!(back.recv_title().await, "missed 1");
    assert_eq!(back.recv_title().await, "missed 2");

    // Fallback: an offline user is recorded in the undelivered stream.
    let r = a
        .publish(json!({"id": "pay-1", "to": {"users": ["ghost", "cora"]}, "kind": "toast", "title": "paid", "fallback": true}))
        .await;
    assert_eq!(r["offline"], json!(["ghost"]));
    assert_eq!(back.recv_title().await, "paid");
    // With every user online there is nothing to record, and no error.
    let r = a
        .publish(json!({"to": {"users": ["cora"]}, "kind": "toast", "title": "paid again", "fallback": true}))
        .await;
    assert_eq!(r["online"], json!(["cora"]));
    assert_eq!(back.recv_title().await, "paid again");
    eventually("ghost is in the undelivered stream", || async {
        let s = a.get_json("/v1/streams/undelivered").await;
        s["records"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["user"] == "ghost" && e["msg"] == "pay-1")
        })
    })
    .await;

    // Durable ingress: XADD on the master owning herald:ingress.
    let env = json!({"to": {"users": ["cora"]}, "kind": "toast", "title": "via ingress"});
    let _: String = cmd(
        cluster.owner("herald:ingress").await,
        redis::cmd("XADD")
            .arg("herald:ingress")
            .arg("*")
            .arg("e")
            .arg(env.to_string()),
    )
    .await;
    assert_eq!(back.recv_title().await, "via ingress");

    // The CLI publishes straight to the cluster.
    let out = herald_cli_async(
        [
            "publish",
            "--redis",
            &cluster.seed(),
            "--redis-cluster",
            "--to",
            "user:cora",
            "--kind",
            "toast",
            "--title",
            "from the CLI",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(back.recv_title().await, "from the CLI");
    a.stop().await;
    b.stop().await;
}

// Multi-threaded: the restart blocks its thread while the master is down,
// and the nodes must keep running meanwhile to notice the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_master_serves_its_users_again() {
    let mut cluster = RedisCluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    let users = users_per_master(&cluster, 1).await;
    let (user, port) = &users[0];
    let i = cluster
        .masters
        .iter()
        .position(|m| m.port == *port)
        .expect("owner");
    let mut c = b.connect(user).await;
    let to_user = json!({"to": {"users": [user]}, "kind": "toast", "title": "before"});
    a.publish(to_user).await;
    assert_eq!(c.recv_title().await, "before");

    cluster.restart(i);
    // Node B notices the loss (its bus starts over: what is published until
    // it has subscribed again is for resume to recover), subscribes again
    // where the user's channel lives, and is ready; then a publish through
    // A reaches the user again.
    eventually("node B started its bus over and is ready", || async {
        b.metric("herald_bus_reconnects_total").await >= 1.0
            && b.get("/readyz").await.0 == 200
            && cmd::<(String, i64)>(
                &cluster.masters[i],
                redis::cmd("PUBSUB")
                    .arg("SHARDNUMSUB")
                    .arg(format!("herald:user:{user}")),
            )
            .await
            .1 == 1
    })
    .await;
    eventually("node A publishes again", || async {
        a.post(
            "/v1/messages",
            &json!({"to": {"users": [user]}, "kind": "toast", "title": "after"}).to_string(),
        )
        .await
        .0 == 202
    })
    .await;
    assert_eq!(c.recv_title().await, "after");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_user_channel_whose_slot_moves_is_subscribed_where_it_lives_now() {
    let cluster = RedisCluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    let users = users_per_master(&cluster, 1).await;
    let (user, port) = &users[0];
    let channel = format!("herald:user:{user}");
    let mut c = b.connect(user).await;
    a.publish(json!({"to": {"users": [user]}, "kind": "toast", "title": "before"}))
        .await;
    assert_eq!(c.recv_title().await, "before");

    // Reshard: the channel's slot goes to another master, which drops the
    // sharded subscription on the old one (Redis sends SUNSUBSCRIBE).
    let to = cluster
        .masters
        .iter()
        .position(|m| m.port != *port)
        .expect("another master");
    cluster.move_slot(&channel, to).await;
    eventually(
        "node B subscribes the channel on its new master",
        || async {
            cmd::<(String, i64)>(
                &cluster.masters[to],
                redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(&channel),
            )
            .await
            .1 == 1
        },
    )
    .await;
    eventually("node B started its bus over and is ready", || async {
        b.metric("herald_bus_reconnects_total").await >= 1.0 && b.get("/readyz").await.0 == 200
    })
    .await;
    a.publish(json!({"to": {"users": [user]}, "kind": "toast", "title": "after"}))
        .await;
    assert_eq!(c.recv_title().await, "after");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn reconnects_during_a_publish_stream_on_a_redis_cluster_lose_and_repeat_nothing() {
    let cluster = RedisCluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    // Its channel on another Redis node than the broadcast channel: the two
    // kinds of message reach a Herald node over different connections.
    let broadcast_on = cluster.owner("herald:broadcast").await.port;
    let (user, _) = users_per_master(&cluster, 1)
        .await
        .into_iter()
        .find(|(_, port)| *port != broadcast_on)
        .expect("a master without the broadcast channel");
    reconnect_during_a_publish_stream([&a, &b], &user, Pace::OneInFlight).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn experiments_counts_and_traces_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    let ab = json!({"trigger": {"event": "opened"}, "holdout_pct": 50,
        "variants": [{"id": "a", "weight": 1, "message": {"kind": "toast", "title": "A"}}],
        "goal": {"event": "bought", "within_s": 3600}});
    assert_eq!(a.put("/v1/campaigns/ab", &ab.to_string()).await.0, 200);
    eventually("node b applies it", || async {
        b.get("/v1/campaigns/ab").await.0 == 200
    })
    .await;
    // Users on both sides of the holdout, on node b.
    let mut shown = 0;
    let mut clients = Vec::new();
    for i in 0..12 {
        let user = format!("x{i}");
        let mut c = b.connect(&user).await;
        c.send(r#"{"t":"event","name":"opened"}"#).await;
        c.send(r#"{"t":"ping"}"#).await;
        loop {
            let f = c.recv().await;
            if f["t"] == "pong" {
                break;
            }
            assert_eq!(f["variant"], "a", "{f}");
            shown += 1;
        }
        clients.push(c);
    }
    assert!(
        (1..12).contains(&shown),
        "both arms drawn: {shown} of 12 shown"
    );
    eventually("exposures counted across the cluster", || async {
        let v = a.get_json("/v1/campaigns/ab/stats").await["variants"].clone();
        v["a"]["exposed"] == shown && v["holdout"]["exposed"] == 12 - shown
    })
    .await;
    // Exposed, everyone buys: one conversion each, for their arm.
    for c in &mut clients {
        c.send(r#"{"t":"event","name":"bought"}"#).await;
    }
    eventually("conversions counted across the cluster", || async {
        let v = a.get_json("/v1/campaigns/ab/stats").await["variants"].clone();
        v["a"]["converted"] == shown && v["holdout"]["converted"] == 12 - shown
    })
    .await;
    // The holdout users' traces say why they saw nothing.
    let mut held = 0;
    for i in 0..12 {
        let t = a.get_json(&format!("/v1/users/x{i}/trace")).await;
        if t["decisions"]
            .as_array()
            .is_some_and(|d| d.iter().any(|e| e["decision"] == "holdout"))
        {
            held += 1;
        }
    }
    assert_eq!(held, 12 - shown);
    a.stop().await;
    b.stop().await;
}
