//! Poison input: what an attacker with publish rights, Redis access, a
//! campaign author's key or a client socket could send to kill a node or
//! hold it. Each is refused with a reason or bounded, and the node (and
//! every other session) keeps working: every test ends on a control.

mod support;

use futures::SinkExt;
use redis::AsyncCommands;
use serde_json::{Value, json};
use support::*;

/// About 2.8 KB, under the 4 KiB length limit: compiled naively, it
/// overflows the stack when evaluated.
fn deep_where() -> String {
    format!("{} > 0", vec!["1"; 1400].join("+"))
}

/// 370 bytes, 64,000 iterations per evaluation.
fn expensive_where() -> String {
    let l: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let l = format!("[{}]", l.join(","));
    format!("{l}.all(a, {l}.all(b, {l}.all(c, a+b+c >= 0)))")
}

fn poison_banner(id: &str, expr: &str) -> Value {
    json!({"id": id, "to": {"where": expr}, "kind": "banner", "title": "poison", "sticky": true})
}

fn poison_campaigns() -> [(String, Value); 2] {
    [
        (
            "deep-audience".into(),
            json!({"id": "deep-audience", "trigger": {"connect": true},
                   "audience": {"where": deep_where()},
                   "message": {"kind": "toast", "title": "poison"}}),
        ),
        (
            "deep-trigger".into(),
            json!({"id": "deep-trigger", "trigger": {"event": "opened", "where": deep_where().replace('1', "props.n")},
                   "message": {"kind": "toast", "title": "poison"}}),
        ),
    ]
}

#[tokio::test]
async fn deep_and_expensive_expressions_are_refused_with_the_reason() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("ada").await;
    for (expr, why) in [
        (deep_where(), "too deeply nested"),
        (expensive_where(), "too expensive"),
        ("user.matches(attrs.pattern)".into(), "string literal"),
        ("user.matches('(a{100}){100}')".into(), "matches:"),
    ] {
        let (status, body) = h
            .post("/v1/messages", &poison_banner("p", &expr).to_string())
            .await;
        assert_eq!(status, 400, "{expr}: {body}");
        let reason = body["error"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("to.where:") && reason.contains(why),
            "{reason}"
        );
        for campaign in [
            json!({"trigger": {"connect": true}, "audience": {"where": expr}, "message": {"kind": "toast", "title": "x"}}),
            json!({"trigger": {"event": "e", "where": expr.replace("user", "name")}, "message": {"kind": "toast", "title": "x"}}),
        ] {
            let (status, body) = h.put("/v1/campaigns/c", &campaign.to_string()).await;
            assert_eq!(status, 400, "{campaign}: {body}");
            assert!(
                body["error"].as_str().unwrap_or_default().contains(why),
                "{body}"
            );
        }
    }
    // Positive control: a bounded expression with a literal regex is
    // accepted and delivered to whom it matches.
    h.publish(json!({"to": {"where": "user.matches('^a[a-z]+$') && [1, 2, 3].exists(x, x == 2)"}, "kind": "toast", "title": "matched"}))
        .await;
    assert_eq!(c.recv_title().await, "matched");
    h.expect_control_next(&mut c, "ada").await;
    h.stop().await;
}

#[test]
fn herald_validate_refuses_a_deep_expression() {
    let dir = std::env::temp_dir().join(format!("herald-poison-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("dir");
    let poison = dir.join("poison.json");
    let fine = dir.join("fine.json");
    std::fs::write(&poison, poison_banner("p", &deep_where()).to_string()).expect("write");
    std::fs::write(
        &fine,
        poison_banner("f", "attrs.plan == 'free'").to_string(),
    )
    .expect("write");
    let out = herald_cli(&["validate", poison.to_str().expect("path")]);
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("too deeply nested"), "{said}");
    let out = herald_cli(&["validate", fine.to_str().expect("path")]);
    assert!(out.status.success(), "positive control: {out:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_publish_through_plain_redis_is_dead_lettered_and_every_node_survives() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    let mut a = n1.connect("a").await;
    let mut b = n2.connect("b").await;
    for (id, expr) in [("deep", deep_where()), ("costly", expensive_where())] {
        redis
            .publish("herald:broadcast", &poison_banner(id, &expr).to_string())
            .await;
    }
    eventually("both refusals in herald:dead", || async {
        redis.xrange("herald:dead").await.len() == 2
    })
    .await;
    let dead = redis.xrange("herald:dead").await;
    assert!(
        dead[0]["reason"].contains("too deeply nested"),
        "{:?}",
        dead[0]
    );
    assert!(dead[1]["reason"].contains("too expensive"), "{:?}", dead[1]);
    n1.expect_control_next(&mut a, "a").await;
    n2.expect_control_next(&mut b, "b").await;
    // Nothing was stored: a new session gets no sticky poison.
    let mut c = n2.connect("c").await;
    n2.expect_control_next(&mut c, "c").await;
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn a_node_restarted_on_a_redis_that_holds_poison_survives() {
    let redis = Redis::start();
    let mut conn = redis.conn().await;
    // What an older node, or anyone with Redis access, left behind: a
    // sticky message and two campaigns with deep expressions.
    let () = conn
        .hset(
            "herald:active",
            "deep",
            poison_banner("deep", &deep_where()).to_string(),
        )
        .await
        .expect("HSET");
    for (id, c) in poison_campaigns() {
        let () = conn
            .hset("herald:campaigns", id, c.to_string())
            .await
            .expect("HSET");
    }
    let node = NodeProcess::start(&redis).await;
    let mut c = node.connect("ada").await;
    c.send(r#"{"t":"event","name":"opened","props":{"n":1}}"#)
        .await;
    // Neither the sticky poison, nor a campaign, nor a crash: the control.
    node.expect_control_next(&mut c, "ada").await;
    let mut again = node.connect("ada").await;
    node.expect_control_next(&mut again, "ada").await;
}

#[tokio::test]
async fn a_resume_over_a_poisoned_history_skips_the_poison() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let first = h.connect("ada").await;
    let since = first.hello["pos"].as_str().expect("pos").to_owned();
    drop(first);
    h.publish(json!({"to": "all", "kind": "banner", "title": "before"}))
        .await;
    // The poison, written into the broadcast history right after it.
    let mut conn = redis.conn().await;
    let last: redis::streams::StreamRangeReply = conn
        .xrevrange_count("herald:history", "+", "-", 1)
        .await
        .expect("XREVRANGE");
    let id = &last.ids[0].id;
    let (ms, seq) = id.split_once('-').expect("stream id");
    let seq: u64 = seq.parse().expect("seq");
    let poison = poison_banner("deep", &deep_where()).to_string();
    let _: String = redis::cmd("XADD")
        .arg("herald:history")
        .arg(format!("{ms}-{}", seq + 1))
        .arg("e")
        .arg(&poison)
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let _: i64 = conn.incr("herald:history:seq", 1).await.expect("INCR");
    let mut c = h.connect_since("ada", &since).await;
    assert_eq!(c.hello["recovered"], true, "{}", c.hello);
    assert_eq!(c.recv_title().await, "before");
    h.expect_control_next(&mut c, "ada").await;
    h.stop().await;
}

#[tokio::test]
async fn user_ids_that_look_like_other_keys_do_not_collide() {
    let redis = Redis::start();
    let mut cfg = redis_config(&redis);
    cfg.history.max_per_stream = 2;
    let h = Herald::start(cfg).await;
    let to =
        |user: &str, title: &str| json!({"to": {"users": [user]}, "kind": "toast", "title": title});
    // carol's history is trimmed: it has a trim marker now.
    for i in 0..3 {
        h.publish(to("carol", &format!("c{i}"))).await;
    }
    let (status, body) = h
        .post("/v1/messages", &to("carol:trimmed", "hi").to_string())
        .await;
    assert_eq!(status, 202, "{body}");
    // erin resumes across a publish to a user named after her marker.
    let first = h.connect("erin").await;
    let since = first.hello["pos"].as_str().expect("pos").to_owned();
    drop(first);
    h.publish(to("erin:trimmed", "not for erin")).await;
    h.publish(to("erin", "missed")).await;
    let mut erin = h.connect_since("erin", &since).await;
    assert_eq!(erin.hello["recovered"], true, "{}", erin.hello);
    assert_eq!(erin.recv_title().await, "missed");
    h.expect_control_next(&mut erin, "erin").await;
    h.stop().await;
}

#[tokio::test]
async fn a_token_that_expires_beyond_any_clock_opens_a_working_session() {
    let h = Herald::start(config()).await;
    let mut forever = claims("forever");
    forever.exp = u64::MAX - 1;
    let mut c = h.connect_claims(forever).await;
    h.expect_control_next(&mut c, "forever").await;
    h.stop().await;
}

#[tokio::test]
async fn personalized_text_is_never_larger_than_its_field() {
    let h = Herald::start(config()).await;
    let bio = "b".repeat(herald::auth::MAX_CLAIM_TEXT);
    let mut c = h
        .connect_claims(claims_with("ada", &[], json!({ "bio": bio })))
        .await;
    let template = "{{attrs.bio}}".repeat(herald::envelope::MAX_BODY / 13);
    assert!(template.len() <= herald::envelope::MAX_BODY);
    h.publish(json!({"to": "all", "kind": "card", "title": "Hi {{attrs.bio}}", "body": template}))
        .await;
    let f = c.recv().await;
    let body = f["body"].as_str().expect("body");
    assert!(
        body.len() <= herald::envelope::MAX_BODY,
        "{} bytes",
        body.len()
    );
    assert!(
        body.len() > herald::envelope::MAX_BODY - 16,
        "filled to the limit"
    );
    assert!(f["title"].as_str().expect("title").len() <= herald::envelope::MAX_TITLE);
    h.expect_control_next(&mut c, "ada").await;
    h.stop().await;
}

#[tokio::test]
async fn tokens_and_events_over_their_size_bounds_are_refused_with_the_reason() {
    let h = Herald::start(config()).await;
    let segments: Vec<String> = (0..=herald::auth::MAX_CLAIM_ENTRIES)
        .map(|i| format!("s{i}"))
        .collect();
    let many = claims_with(
        "ada",
        &segments.iter().map(String::as_str).collect::<Vec<_>>(),
        json!({}),
    );
    let (status, body) = h
        .refused(&format!("{}?token={}", h.ws_url(), token(&many)), &[])
        .await;
    assert_eq!(status, 401);
    assert!(body.contains("segments: at most"), "{body}");
    let mut c = h.connect("ada").await;
    let items: Vec<u32> = (0..=herald::protocol::MAX_PROPS_ENTRIES as u32).collect();
    c.send(&json!({"t": "event", "name": "e", "props": {"items": items}}).to_string())
        .await;
    let f = c.recv().await;
    assert_eq!(f["code"], "bad_field", "{f}");
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("props:"),
        "{f}"
    );
    h.expect_control_next(&mut c, "ada").await;
    // A client frame is answered, the session stays: positive control on the socket.
    c.ws.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"t":"ping"}"#.into(),
    ))
    .await
    .expect("send");
    assert_eq!(c.recv().await, json!({"t": "pong"}));
    h.stop().await;
}

/// The costliest `where` the cost bound accepts (a comprehension over the
/// longest written-out list it lets through), true for every session.
fn costliest_accepted_where() -> String {
    let shape = |n: usize| {
        let l: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        format!("![{}].exists(x, x == size(user) + 100000)", l.join(","))
    };
    herald::expr::largest_accepted(&["user", "segments", "attrs"], shape)
}

/// A crowd connected first, then `ada`: the costly broadcast reaches her
/// last, as sessions are evaluated in the order they connected.
async fn crowd_then_ada(h: &Herald, crowd: usize) -> (Vec<Client>, Client) {
    let mut clients = Vec::with_capacity(crowd);
    for i in 0..crowd {
        clients.push(h.connect(&format!("crowd-{i}")).await);
    }
    (clients, h.connect("ada").await)
}

/// What 16.4 asks beside the cost bound: a broadcast whose audience costs
/// all the bound allows is evaluated in slices, so a per-user message
/// published after it reaches its user first, without a resume position
/// (the client must not resume past the broadcast it has not had yet);
/// a broadcast published after it still comes after it, and everyone gets
/// both.
async fn a_costly_audience_lets_per_user_messages_through(h: &Herald) {
    let (mut crowd, mut ada) = crowd_then_ada(h, 300).await;
    let costly = json!({"id": "costly", "to": {"where": costliest_accepted_where()},
                        "kind": "banner", "title": "costly"});
    assert_eq!(h.post("/v1/messages", &costly.to_string()).await.0, 202);
    let direct =
        json!({"id": "direct", "to": {"users": ["ada"]}, "kind": "toast", "title": "direct"});
    assert_eq!(h.post("/v1/messages", &direct.to_string()).await.0, 202);
    let after = json!({"id": "after", "to": "all", "kind": "toast", "title": "after"});
    assert_eq!(h.post("/v1/messages", &after.to_string()).await.0, 202);

    let first = ada.recv().await;
    assert_eq!(
        first["id"], "direct",
        "the per-user message overtakes: {first}"
    );
    assert!(
        first.get("pos").is_none(),
        "sent without a position: {first}"
    );
    let second = ada.recv().await;
    assert_eq!(second["id"], "costly", "{second}");
    assert!(
        second["pos"].is_string(),
        "the broadcast keeps its position: {second}"
    );
    assert_eq!(ada.recv().await["id"], "after");
    for c in &mut crowd {
        assert_eq!(c.recv_title().await, "costly");
        assert_eq!(c.recv_title().await, "after");
    }
    // Once nothing is pending, a per-user message has its position again.
    assert_eq!(
        h.post(
            "/v1/messages",
            &direct.to_string().replace("direct", "again")
        )
        .await
        .0,
        202
    );
    let again = ada.recv().await;
    assert_eq!(again["id"], "again");
    assert!(again["pos"].is_string(), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_audience_lets_per_user_messages_through_embedded() {
    let h = Herald::start(config()).await;
    a_costly_audience_lets_per_user_messages_through(&h).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_audience_lets_per_user_messages_through_redis() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    a_costly_audience_lets_per_user_messages_through(&h).await;
    h.stop().await;
}
