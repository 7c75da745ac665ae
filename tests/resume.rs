//! Resume (SPEC §3 `pos`, `since`, `recovered`): a client that reconnects
//! with its last position gets every message it missed, in order, with reason
//! `replay`, or `recovered: false` and nothing; on the same node, on another
//! node, after a node is killed, after a drain.

mod support;

use redis::AsyncCommands;
use serde_json::{Value, json};
use support::*;

fn banner(to: Value, title: &str) -> Value {
    json!({"to": to, "kind": "banner", "title": title})
}

/// Publishes and waits for `c` to receive it; returns its position.
async fn received_pos(h: &Herald, c: &mut Client, to: Value, title: &str) -> String {
    h.publish(banner(to, title)).await;
    let f = c.recv().await;
    assert_eq!(f["title"], title);
    f["pos"]
        .as_str()
        .expect("a recoverable message has a pos")
        .to_owned()
}

async fn missed_then_resume(h1: &Herald, h2: &Herald) {
    let mut c = h1.connect("alice").await;
    assert!(
        c.hello.get("recovered").is_none(),
        "no since: no recovered field"
    );
    let pos = received_pos(h1, &mut c, json!("all"), "seen").await;
    drop(c);
    eventually("alice is gone", || async {
        h1.get_json("/v1/presence/alice").await["sessions"] == 0
    })
    .await;

    h1.publish(banner(json!("all"), "missed 1")).await;
    h1.publish(banner(json!({"users": ["alice"]}), "missed 2 (just alice)"))
        .await;
    h1.publish(banner(json!({"users": ["bob"]}), "for bob"))
        .await;
    h1.publish(banner(json!({"segments": ["admins"]}), "for admins"))
        .await;
    h1.publish(banner(json!("all"), "missed 3")).await;

    let mut back = h2.connect_since("alice", &pos).await;
    assert_eq!(back.hello["recovered"], true);
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = back.recv().await;
        assert_eq!(f["reason"], "replay", "{f}");
        got.push(f["title"].as_str().expect("title").to_owned());
    }
    assert_eq!(got, ["missed 1", "missed 2 (just alice)", "missed 3"]);
    // Nothing else was replayed: the next frame is a live control.
    h2.publish(banner(json!({"users": ["alice"]}), "live"))
        .await;
    let f = back.recv().await;
    assert_eq!(
        (f["title"].as_str(), f["reason"].as_str()),
        (Some("live"), Some("push"))
    );
}

#[tokio::test]
async fn embedded_resume_replays_what_was_missed_in_order() {
    let h = Herald::start(config()).await;
    missed_then_resume(&h, &h).await;
    h.stop().await;
}

#[tokio::test]
async fn redis_resume_works_on_another_node() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    missed_then_resume(&n1, &n2).await;
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn unknown_or_trimmed_positions_recover_nothing() {
    let redis = Redis::start();
    let mut cfg = redis_config(&redis);
    cfg.history.max_per_stream = 3;
    let h = Herald::start(cfg).await;
    let mut c = h.connect("alice").await;
    let pos = received_pos(&h, &mut c, json!("all"), "seen").await;
    drop(c);
    // Far more than the stream keeps: the gap cannot be filled.
    // Each read by a watcher as it goes out, so none arrives live below.
    let mut watcher = h.connect("bob").await;
    for i in 0..300 {
        h.publish(banner(json!("all"), &format!("m{i}"))).await;
        assert_eq!(watcher.recv_title().await, format!("m{i}"));
    }
    let mut back = h.connect_since("alice", &pos).await;
    assert_eq!(back.hello["recovered"], false);
    h.publish(banner(json!({"users": ["alice"]}), "live")).await;
    assert_eq!(back.recv_title().await, "live", "no partial replay");

    for bad in ["garbage", "0000.1-1", "deadbeef.1700000000000-1"] {
        let mut c = h.connect_since("alice", bad).await;
        assert_eq!(c.hello["recovered"], false, "since={bad}");
        h.publish(banner(json!({"users": ["alice"]}), "after"))
            .await;
        assert_eq!(c.recv_title().await, "after");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_history_lost_with_redis_changes_the_epoch() {
    let mut redis = Redis::start();
    let port = redis.port;
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h.connect("alice").await;
    let pos = received_pos(&h, &mut c, json!("all"), "seen").await;
    redis.kill();
    eventually("the node sees Redis gone", || async {
        h.get("/readyz").await.0 == 503
    })
    .await;
    let redis = Redis::start_on(port);
    eventually("ready again", || async { h.get("/readyz").await.0 == 200 }).await;
    h.publish(banner(json!("all"), "after restart")).await;
    let f = c.recv().await;
    assert_eq!(f["title"], "after restart", "{f}");
    drop(c);
    let back = h.connect_since("alice", &pos).await;
    assert_eq!(
        back.hello["recovered"], false,
        "the old position belongs to a lost history"
    );
    drop(redis);
}

#[tokio::test]
async fn plain_redis_publish_has_no_position_and_api_refuses_one() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h.connect("alice").await;
    redis
        .publish("herald:broadcast", &banner(json!("all"), "raw").to_string())
        .await;
    let f = c.recv().await;
    assert_eq!(f["title"], "raw");
    assert!(f.get("pos").is_none(), "at most once: not recoverable");
    for envelope in [
        json!({"to": "all", "kind": "toast", "title": "x", "pos": "e.1-1"}),
        json!({"op": "retract", "id": "m1", "pos": "e.1-1"}),
    ] {
        let (s, r) = h.post("/v1/messages", &envelope.to_string()).await;
        assert_eq!(s, 400, "{envelope}");
        assert!(
            r["error"].as_str().is_some_and(|e| e.starts_with("pos:")),
            "{r}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn a_killed_node_loses_nothing_for_clients_that_resume_elsewhere() {
    let redis = Redis::start();
    let mut doomed = NodeProcess::start(&redis).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    let mut c = doomed.connect("alice").await;
    let pos = received_pos(&n2, &mut c, json!("all"), "before").await;
    // SIGKILL: no drain, the socket just ends.
    doomed.kill();
    c.ended().await;
    n2.publish(banner(json!({"users": ["alice"]}), "while reconnecting"))
        .await;
    let mut back = n2.connect_since("alice", &pos).await;
    assert_eq!(back.hello["recovered"], true);
    assert_eq!(back.recv_title().await, "while reconnecting");
    n2.stop().await;
}

#[tokio::test]
async fn a_drained_client_resumes_elsewhere_with_nothing_lost() {
    let redis = Redis::start();
    let mut n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    let mut c = n1.connect("alice").await;
    let pos = received_pos(&n2, &mut c, json!("all"), "before").await;
    n1.begin_stop();
    assert_eq!(c.closed().await.0, 1012);
    n2.publish(banner(json!("all"), "during the move")).await;
    let mut back = n2.connect_since("alice", &pos).await;
    assert_eq!(back.hello["recovered"], true);
    assert_eq!(back.recv_title().await, "during the move");
    n2.stop().await;
    n1.stop().await;
}

/// Returns the resumed client and the id of the message retracted while
/// it was away.
async fn retractions_while_away(h1: &Herald, h2: &Herald) -> (Client, String) {
    let mut c = h1.connect("alice").await;
    let shown = h1.publish(banner(json!("all"), "shown")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let f = c.recv().await;
    let pos = f["pos"].as_str().expect("pos").to_owned();
    drop(c);
    eventually("alice is gone", || async {
        h1.get_json("/v1/presence/alice").await["sessions"] == 0
    })
    .await;
    let gone = h1
        .publish(banner(json!("all"), "published then retracted"))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    h1.publish(banner(json!("all"), "kept")).await;
    assert_eq!(h1.delete(&format!("/v1/messages/{gone}")).await.0, 202);
    assert_eq!(h1.delete(&format!("/v1/messages/{shown}")).await.0, 202);

    let mut back = h2.connect_since("alice", &pos).await;
    assert_eq!(back.hello["recovered"], true);
    assert_eq!(
        back.recv_title().await,
        "kept",
        "the retracted message is not replayed"
    );
    // Both retractions follow, so what the client showed before leaving goes too.
    let mut retracts = vec![back.recv().await, back.recv().await];
    retracts.sort_by_key(|f| f["id"].as_str().map(String::from));
    let mut expected = vec![
        json!({"t": "retract", "id": gone}),
        json!({"t": "retract", "id": shown}),
    ];
    expected.sort_by_key(|f| f["id"].as_str().map(String::from));
    assert_eq!(retracts, expected);
    h2.publish(banner(json!({"users": ["alice"]}), "live"))
        .await;
    assert_eq!(back.recv_title().await, "live");
    (back, gone)
}

#[tokio::test]
async fn embedded_resume_honours_retractions() {
    let h = Herald::start(config()).await;
    retractions_while_away(&h, &h).await;
    h.stop().await;
}

#[tokio::test]
async fn redis_resume_honours_retractions() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    let (mut back, gone) = retractions_while_away(&n1, &n2).await;

    // The live copy of a replayed retraction can reach the node after the
    // session registered (its subscriber lags the script): it carries the
    // retraction's position and is dropped, not sent a second time.
    let mut conn = redis.conn().await;
    let epoch: String = conn.get("herald:epoch").await.expect("GET epoch");
    let history: redis::streams::StreamRangeReply =
        conn.xrange_all("herald:history").await.expect("XRANGE");
    let entry = history
        .ids
        .iter()
        .find(|e| {
            e.get::<String>("e")
                .is_some_and(|e| e.contains(&gone) && e.contains("retract"))
        })
        .expect("the retraction is in the history");
    let late = json!({"op": "retract", "id": gone, "pos": format!("{epoch}.{}", entry.id)});
    assert_eq!(
        redis.publish("herald:broadcast", &late.to_string()).await,
        2
    );
    n2.publish(banner(json!({"users": ["alice"]}), "after the late copy"))
        .await;
    assert_eq!(back.recv_title().await, "after the late copy");
    n1.stop().await;
    n2.stop().await;
}

async fn resume_from_hello(h: &Herald) {
    let c = h.connect("newcomer").await;
    let pos = c.hello["pos"]
        .as_str()
        .expect("hello carries the current position")
        .to_owned();
    drop(c);
    eventually("gone", || async {
        h.get_json("/v1/presence/newcomer").await["sessions"] == 0
    })
    .await;
    h.publish(banner(
        json!({"users": ["newcomer"]}),
        "while away, before any message",
    ))
    .await;
    let mut back = h.connect_since("newcomer", &pos).await;
    assert_eq!(back.hello["recovered"], true);
    let f = back.recv().await;
    assert_eq!(
        (f["title"].as_str(), f["reason"].as_str()),
        (Some("while away, before any message"), Some("replay"))
    );
}

#[tokio::test]
async fn the_hello_position_lets_a_client_that_saw_nothing_resume() {
    let h = Herald::start(config()).await;
    resume_from_hello(&h).await;
    h.stop().await;
    // With Redis, on a history that does not exist yet.
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    resume_from_hello(&h).await;
    h.stop().await;
}

#[tokio::test]
async fn embedded_reconnects_during_a_publish_stream_lose_and_repeat_nothing() {
    let h = Herald::start(config()).await;
    reconnect_during_a_publish_stream([&h, &h], "alice", Pace::BackToBack).await;
    h.stop().await;
}

/// Live copies can reach a node after the session registered (its
/// subscriber lags Redis): those at or below the client's position or the
/// replay's are dropped. A user leaving and coming back to a node while its
/// channel is being unsubscribed waits for the channel again.
#[tokio::test]
async fn redis_reconnects_during_a_publish_stream_lose_and_repeat_nothing() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    reconnect_during_a_publish_stream([&n1, &n2], "alice", Pace::BackToBack).await;
    n1.stop().await;
    n2.stop().await;
}
