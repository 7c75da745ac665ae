//! Scheduled messages (SPEC §10.3): `send_at` holds a message until its
//! time, then it is published once for the whole cluster, whichever node
//! took it and whichever nodes are still alive. Embedded on a manual clock;
//! with Redis on short delays, polled for.

mod support;

use herald::clock::Clock;
use herald::config::Config;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

fn now_ms() -> u64 {
    herald::auth::unix_now_ms()
}

/// Embedded, on a clock that moves only when the test says.
fn embedded(clock: &Clock) -> Config {
    let mut c = config();
    c.clock = clock.clone();
    c.schedule.poll_interval = Duration::from_millis(10);
    c
}

fn with_redis(redis: &Redis) -> Config {
    let mut c = redis_config(redis);
    c.redis.heartbeat = Duration::from_millis(100);
    c.schedule.poll_interval = Duration::from_millis(20);
    c
}

fn banner(id: &str, title: &str, send_at: u64) -> Value {
    json!({"id": id, "to": "all", "kind": "banner", "title": title, "send_at": send_at})
}

async fn scheduled_ids(h: &Herald) -> Vec<String> {
    h.get_json("/v1/messages/scheduled").await["messages"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn published_here(h: &Herald) -> f64 {
    h.metric("herald_scheduled_total{reason=\"published\"}")
        .await
}

/// The nodes' claims, summed, come to `n` (counted right after publishing,
/// so possibly after a client saw the message).
async fn published_by(nodes: &[&Herald], n: f64) {
    let sum = || async {
        let mut s = 0.0;
        for h in nodes {
            s += published_here(h).await;
        }
        s
    };
    eventually("the claims counted", || async { sum().await >= n }).await;
    assert_eq!(sum().await, n);
}

#[tokio::test]
async fn embedded_holds_a_message_until_its_time_then_publishes_it_once() {
    let clock = Clock::manual(now_ms());
    let h = Herald::start(embedded(&clock)).await;
    let mut ada = h.connect("ada").await;
    let at = clock.now_ms() + 3_600_000;
    let mut envelope = banner("maint", "Maintenance at 09:00", at);
    envelope["ttl_s"] = json!(600);
    let answer = h.publish(envelope).await;
    assert_eq!(answer, json!({"id": "maint", "send_at": at}));

    // Waiting: listed as accepted, its ttl counted from send_at.
    let listed = h.get_json("/v1/messages/scheduled").await;
    assert_eq!(listed["messages"][0]["id"], "maint");
    assert_eq!(listed["messages"][0]["expires_at"], at + 600_000);
    // Nothing is sent before its time; the control shows ada does receive.
    h.expect_control_next(&mut ada, "ada").await;

    clock.advance(Duration::from_secs(3600));
    assert_eq!(ada.recv_title().await, "Maintenance at 09:00");
    eventually("no longer waiting", || async {
        scheduled_ids(&h).await.is_empty()
    })
    .await;
    published_by(&[&h], 1.0).await;
    // Once: the next frame is the control, not a second copy.
    clock.advance(Duration::from_secs(3600));
    h.expect_control_next(&mut ada, "ada").await;
    h.stop().await;
}

#[tokio::test]
async fn embedded_cancel_before_the_time_means_nothing_arrives() {
    let clock = Clock::manual(now_ms());
    let h = Herald::start(embedded(&clock)).await;
    let mut ada = h.connect("ada").await;
    let at = clock.now_ms() + 60_000;
    h.publish(banner("cancelled", "never", at)).await;
    h.publish(banner("kept", "kept", at + 1)).await;
    assert_eq!(scheduled_ids(&h).await, ["cancelled", "kept"]);
    let (status, body) = h.delete("/v1/messages/cancelled").await;
    assert_eq!(
        (status, body),
        (200, json!({"id": "cancelled", "cancelled": true}))
    );
    assert_eq!(scheduled_ids(&h).await, ["kept"]);

    clock.advance(Duration::from_secs(120));
    // The positive control: the message scheduled with it arrives, first.
    assert_eq!(ada.recv_title().await, "kept");
    h.expect_control_next(&mut ada, "ada").await;
    // Deleting an id that is not waiting retracts, as it always did.
    assert_eq!(h.delete("/v1/messages/kept").await.0, 202);
    h.stop().await;
}

#[tokio::test]
async fn a_scheduled_message_whose_ttl_ran_out_while_waiting_is_not_published() {
    let clock = Clock::manual(now_ms());
    let h = Herald::start(embedded(&clock)).await;
    let mut ada = h.connect("ada").await;
    let at = clock.now_ms() + 60_000;
    let mut stale = banner("stale", "too late", at);
    stale["ttl_s"] = json!(60);
    h.publish(stale).await;
    h.publish(banner("fresh", "in time", at + 60_000)).await;
    // Both due at once, two minutes on: the first had a minute to live.
    clock.advance(Duration::from_secs(150));
    assert_eq!(ada.recv_title().await, "in time");
    eventually("the stale one counted", || async {
        h.metric("herald_scheduled_total{reason=\"expired\"}").await == 1.0
    })
    .await;
    h.expect_control_next(&mut ada, "ada").await;
    h.stop().await;
}

#[tokio::test]
async fn send_at_is_checked_by_name_and_in_the_past_publishes_now() {
    let clock = Clock::manual(now_ms());
    let h = Herald::start(embedded(&clock)).await;
    let mut ada = h.connect("ada").await;
    let day = 24 * 3_600_000;
    for bad in [
        json!("tomorrow"),
        json!(-1),
        json!(1.5),
        json!(clock.now_ms() + 30 * day + 1000),
    ] {
        let mut e = banner("bad", "bad", 0);
        e["send_at"] = bad.clone();
        let (status, body) = h.post("/v1/messages", &e.to_string()).await;
        assert_eq!(status, 400, "send_at {bad}: {body}");
        let reason = body["error"].as_str().unwrap_or_default();
        assert!(reason.starts_with("send_at"), "send_at {bad}: {reason}");
    }
    assert!(scheduled_ids(&h).await.is_empty());
    // Within 30 days is fine; in the past is published at once.
    let mut e = banner("late", "Published now", clock.now_ms() - 5000);
    e["send_at"] = json!(clock.now_ms() - 5000);
    let answer = h.publish(e).await;
    assert_eq!(answer["id"], "late");
    assert!(answer.get("send_at").is_none(), "{answer}");
    assert_eq!(ada.recv_title().await, "Published now");
    h.stop().await;
}

#[tokio::test]
async fn a_node_that_accepted_a_message_is_killed_and_another_publishes_it_once() {
    let redis = Redis::start();
    let mut accepting = NodeProcess::spawn(
        &["--redis", &redis.url()],
        &[
            ("HERALD_AUTH__HS256_SECRET", SECRET),
            ("HERALD_REDIS__HEARTBEAT", "100ms"),
            ("HERALD_SCHEDULE__POLL_INTERVAL", "20ms"),
        ],
        false,
    )
    .await;
    let survivor = Herald::start(with_redis(&redis)).await;
    let mut ada = survivor.connect("ada").await;
    // Far enough ahead that the survivor still holds it when asked, on a
    // busy machine too.
    let at = now_ms() + 3000;
    let answer = accepting
        .publish(banner("orphan", "From a dead node", at))
        .await;
    assert_eq!(answer["send_at"], at);
    accepting.kill();
    assert_eq!(scheduled_ids(&survivor).await, ["orphan"]);

    assert_eq!(ada.recv_title().await, "From a dead node");
    published_by(&[&survivor], 1.0).await;
    survivor.expect_control_next(&mut ada, "ada").await;
    assert!(scheduled_ids(&survivor).await.is_empty());
    survivor.stop().await;
}

#[tokio::test]
async fn two_nodes_never_both_publish_a_scheduled_message() {
    let redis = Redis::start();
    let a = Herald::start(with_redis(&redis)).await;
    let b = Herald::start(with_redis(&redis)).await;
    let mut on_a = a.connect("ada").await;
    let mut on_b = b.connect("bob").await;
    let at = now_ms() + 1000;
    let ids: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        node.publish(banner(id, id, at + i as u64)).await;
    }
    for c in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for _ in &ids {
            got.push(c.recv_title().await);
        }
        got.sort();
        assert_eq!(got, ids, "each message once, on every node");
    }
    published_by(&[&a, &b], 20.0).await;
    a.expect_control_next(&mut on_a, "ada").await;
    b.expect_control_next(&mut on_b, "bob").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn cancelled_on_one_node_nothing_arrives_on_the_other() {
    let redis = Redis::start();
    let a = Herald::start(with_redis(&redis)).await;
    let b = Herald::start(with_redis(&redis)).await;
    let mut ada = b.connect("ada").await;
    let at = now_ms() + 2000;
    a.publish(banner("gone", "never", at)).await;
    b.publish(banner("stays", "stays", at + 200)).await;
    assert_eq!(b.delete("/v1/messages/gone").await.0, 200);
    assert_eq!(scheduled_ids(&a).await, ["stays"]);
    // The positive control: the one scheduled with it arrives, and first.
    assert_eq!(ada.recv_title().await, "stays");
    b.expect_control_next(&mut ada, "ada").await;
    a.stop().await;
    b.stop().await;
}

/// Payloads on `herald:broadcast` with this id, seen by a plain subscriber.
async fn broadcast_watcher(redis: &Redis) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let client = redis::Client::open(redis.url()).expect("url");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe("herald:broadcast")
        .await
        .expect("subscribe");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut stream = pubsub.into_on_message();
        while let Some(m) = stream.next().await {
            let text: String = m.get_payload().unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<Value>(&text)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn overdue_when_the_only_node_comes_back_is_published_once() {
    let redis = Redis::start();
    let mut watch = broadcast_watcher(&redis).await;
    let first = Herald::start(with_redis(&redis)).await;
    let at = now_ms() + 300;
    first.publish(banner("overdue", "Overdue", at)).await;
    first.stop().await;
    eventually("past its time with no node up", || async {
        now_ms() > at + 300
    })
    .await;

    let back = Herald::start(with_redis(&redis)).await;
    let f = tokio::time::timeout(PATIENCE, watch.recv())
        .await
        .expect("published in time")
        .expect("watching");
    assert_eq!(f["id"], "overdue");
    // Once: the next thing on the channel is a message published later.
    back.publish(json!({"id": "after", "to": "all", "kind": "toast", "title": "after"}))
        .await;
    let next = tokio::time::timeout(PATIENCE, watch.recv())
        .await
        .expect("the later message")
        .expect("watching");
    assert_eq!(
        next["id"], "after",
        "a second copy of the overdue message: {next}"
    );
    assert!(scheduled_ids(&back).await.is_empty());
    back.stop().await;
}

#[tokio::test]
async fn the_cli_schedules_with_at_and_lists_through_redis_and_the_api() {
    let redis = Redis::start();
    let h = Herald::start(with_redis(&redis)).await;
    let mut ada = h.connect("ada").await;
    let later = jiff::Timestamp::from_millisecond((now_ms() + 3_600_000) as i64)
        .expect("time")
        .to_string();
    let api = format!("http://{}", h.admin);
    let out = herald_cli_async(
        [
            "publish",
            "--to",
            "all",
            "--kind",
            "banner",
            "--title",
            "Tonight",
            "--id",
            "cli-1",
            "--at",
            &later,
            "--redis",
            &redis.url(),
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
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cli-1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("scheduled for"));
    let out = herald_cli_async(
        [
            "publish", "--to", "all", "--kind", "banner", "--title", "Tomorrow", "--id", "cli-2",
            "--at", &later, "--api", &api,
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
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cli-2");

    for via in [["--redis", &redis.url()], ["--api", &api]] {
        let out = herald_cli_async(["scheduled", via[0], via[1]].map(String::from).to_vec()).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("cli-1\t") && lines[0].contains("Tonight"),
            "{text}"
        );
        assert!(lines[0].contains(&later), "{text}");
        assert!(lines[1].starts_with("cli-2\t"), "{text}");
    }
    // herald retract cancels a waiting message through Redis too.
    let out = herald_cli_async(
        ["retract", "cli-1", "--redis", &redis.url()]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(out.status.success());
    assert_eq!(scheduled_ids(&h).await, ["cli-2"]);

    // A time soon is published by the node, through either transport.
    let soon = jiff::Timestamp::from_millisecond((now_ms() + 700) as i64)
        .expect("time")
        .to_string();
    let out = herald_cli_async(
        [
            "publish",
            "--to",
            "user:ada",
            "--kind",
            "toast",
            "--title",
            "Soon",
            "--at",
            &soon,
            "--redis",
            &redis.url(),
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
    assert_eq!(ada.recv_title().await, "Soon");

    let out = herald_cli_async(
        [
            "publish",
            "--to",
            "all",
            "--kind",
            "toast",
            "--title",
            "x",
            "--at",
            "next tuesday",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    h.stop().await;
}

#[test]
fn herald_validate_checks_send_at() {
    let dir = std::env::temp_dir().join(format!("herald-validate-sched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let write = |name: &str, send_at: Value| {
        let p = dir.join(name);
        let mut e = banner("v", "v", 0);
        e["send_at"] = send_at;
        std::fs::write(&p, e.to_string()).expect("write");
        p.display().to_string()
    };
    let soon = write("soon.json", json!(now_ms() + 3_600_000));
    let text = write("text.json", json!("2026-12-24"));
    let far = write("far.json", json!(now_ms() + 31 * 24 * 3_600_000));
    let out = herald_cli(&["validate", &soon, &text, &far]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        said.contains("soon.json: ok (envelope, kind banner, scheduled for"),
        "{said}"
    );
    assert!(said.contains("text.json: envelope send_at: "), "{said}");
    assert!(
        said.contains("far.json: envelope send_at: more than 30 days ahead"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_ingress_stream_holds_a_scheduled_envelope_until_its_time() {
    use redis::AsyncCommands;
    let redis = Redis::start();
    let h = Herald::start(with_redis(&redis)).await;
    let mut ada = h.connect("ada").await;
    let e = banner("from-ingress", "From the stream", now_ms() + 3_600_000).to_string();
    let _: String = redis
        .conn()
        .await
        .xadd("herald:ingress", "*", &[("e", e)])
        .await
        .expect("XADD");
    eventually("held, not published", || async {
        scheduled_ids(&h).await == ["from-ingress"]
    })
    .await;
    h.expect_control_next(&mut ada, "ada").await;
    // Cancelled, it never comes; one due soon from the stream does.
    assert_eq!(h.delete("/v1/messages/from-ingress").await.0, 200);
    let soon = banner("soon", "Soon from the stream", now_ms() + 500).to_string();
    let _: String = redis
        .conn()
        .await
        .xadd("herald:ingress", "*", &[("e", soon)])
        .await
        .expect("XADD");
    assert_eq!(ada.recv_title().await, "Soon from the stream");
    h.expect_control_next(&mut ada, "ada").await;
    h.stop().await;
}

#[tokio::test]
async fn on_a_redis_cluster_scheduled_messages_and_previews_work_across_nodes() {
    let cluster = RedisCluster::start();
    let node = || {
        let mut c = config();
        c.redis.url = Some(cluster.seed());
        c.redis.cluster = true;
        c.redis.heartbeat = Duration::from_millis(100);
        c.schedule.poll_interval = Duration::from_millis(20);
        Herald::start(c)
    };
    let (a, b) = (node().await, node().await);
    let mut ada = b.connect("ada").await;
    let mut bob = a.connect("bob").await;
    let p = a
        .post("/v1/audience/preview", &json!({"to": "all"}).to_string())
        .await
        .1;
    assert_eq!(
        (p["sessions"].as_u64(), p["users"].as_u64()),
        (Some(2), Some(2)),
        "{p}"
    );
    a.publish(banner("c-gone", "never", now_ms() + 2000)).await;
    a.publish(banner("c-1", "On the cluster", now_ms() + 2100))
        .await;
    assert_eq!(b.delete("/v1/messages/c-gone").await.0, 200);
    assert_eq!(ada.recv_title().await, "On the cluster");
    assert_eq!(bob.recv_title().await, "On the cluster");
    published_by(&[&a, &b], 1.0).await;
    b.expect_control_next(&mut ada, "ada").await;
    a.expect_control_next(&mut bob, "bob").await;
    a.stop().await;
    b.stop().await;
}

#[test]
fn send_at_is_unix_ms_within_30_days_and_ttl_counts_from_it() {
    let day = 24 * 3600 * 1000;
    let now = 1_000_000;
    let at = |v: &str| format!(r#"{{"to":"all","kind":"banner","title":"x","send_at":{v}}}"#);
    for bad in [r#""tomorrow""#, "-5", "1.5", "true"] {
        let err = herald::envelope::parse(at(bad).as_bytes(), 65536, now).expect_err(bad);
        assert_eq!(err.field, "send_at", "{bad}: {err}");
    }
    let far = (now + 30 * day + 1).to_string();
    assert_eq!(
        herald::envelope::parse(at(&far).as_bytes(), 65536, now)
            .expect_err("too far")
            .field,
        "send_at"
    );
    let Ok(herald::envelope::Command::Publish(p)) = herald::envelope::parse(
        br#"{"to":"all","kind":"banner","title":"x","send_at":5000000,"ttl_s":60}"#,
        65536,
        now,
    ) else {
        panic!("refused")
    };
    assert_eq!(p.envelope.expires_at, Some(5_060_000));
    assert_eq!(p.send_later(now), Some(5_000_000));
    assert_eq!(p.send_later(5_000_000), None);
    // In the past: published now, its ttl from now.
    let Ok(herald::envelope::Command::Publish(p)) = herald::envelope::parse(
        br#"{"to":"all","kind":"banner","title":"x","send_at":0,"ttl_s":60}"#,
        65536,
        now,
    ) else {
        panic!("refused")
    };
    assert_eq!(
        (p.send_later(now), p.envelope.expires_at),
        (None, Some(1_060_000))
    );
    assert_eq!(
        refuse_at(r#"{"op":"retract","id":"m","send_at":5000000}"#, now).field,
        "send_at"
    );
    assert_eq!(
        refuse_at(
            r#"{"to":"all","kind":"banner","title":"x","send_at":5000000,"expires_at":4000000}"#,
            now
        )
        .field,
        "expires_at"
    );
}

fn refuse_at(json: &str, now: u64) -> herald::error::FieldError {
    herald::envelope::parse(json.as_bytes(), 65536, now).expect_err("refused")
}
