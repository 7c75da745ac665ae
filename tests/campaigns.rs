//! Campaigns (SPEC §5) over real sockets: triggers on events, connect and
//! idle; audience; frequency, `until` and the global cap; arbitration; and
//! changes reaching every node through Redis.

mod support;

use serde_json::{Value, json};
use support::*;

async fn put(h: &Herald, id: &str, c: Value) {
    let (status, body) = put_status(h, id, c).await;
    assert_eq!(status, 200, "PUT campaign {id}: {body}");
}

async fn put_status(h: &Herald, id: &str, c: Value) -> (u16, Value) {
    h.put(&format!("/v1/campaigns/{id}"), &c.to_string()).await
}

fn upsell() -> Value {
    json!({
        "trigger": {"event": "feature_used", "where": "props.feature == \"export\""},
        "audience": {"where": "attrs.plan == \"free\""},
        "message": {"kind": "modal", "title": "Export more with Pro", "actions": [{"id": "upgrade", "label": "Upgrade", "url": "/billing"}]},
        "frequency": {"max": 2, "per_s": 604800, "until": "clicked"}
    })
}

const EXPORT: &str = r#"{"t":"event","name":"feature_used","props":{"feature":"export"}}"#;

/// Sends an event then a ping; returns the frames up to the pong. Frames are
/// handled in order, so the event was evaluated when the pong comes back.
async fn event_then_pong(c: &mut Client, event: &str) -> Vec<Value> {
    c.send(event).await;
    c.send(r#"{"t":"ping"}"#).await;
    let mut frames = Vec::new();
    loop {
        let f = c.recv().await;
        if f["t"] == "pong" {
            return frames;
        }
        frames.push(f);
    }
}

async fn decisions(h: &Herald, verdict: &str) -> f64 {
    h.metric(&format!(
        "herald_campaign_decisions_total{{reason=\"{verdict}\"}}"
    ))
    .await
}

#[tokio::test]
async fn event_trigger_with_audience_frequency_and_until() {
    let h = Herald::start(config()).await;
    put(&h, "upsell-export", upsell()).await;
    let mut free = h
        .connect_claims(claims_with("free1", &[], json!({"plan": "free"})))
        .await;
    let mut pro = h
        .connect_claims(claims_with("pro1", &[], json!({"plan": "pro"})))
        .await;

    // Wrong props and wrong audience: no candidate at all.
    assert!(
        event_then_pong(
            &mut free,
            r#"{"t":"event","name":"feature_used","props":{"feature":"import"}}"#
        )
        .await
        .is_empty()
    );
    assert!(event_then_pong(&mut pro, EXPORT).await.is_empty());
    h.expect_control_next(&mut pro, "pro1").await;

    free.send(EXPORT).await;
    let f = free.recv().await;
    assert_eq!(
        (
            f["title"].as_str(),
            f["reason"].as_str(),
            f["campaign"].as_str()
        ),
        (
            Some("Export more with Pro"),
            Some("trigger"),
            Some("upsell-export")
        )
    );
    free.send(EXPORT).await;
    let second = free.recv().await;
    assert_eq!(second["campaign"], "upsell-export");
    // max 2 per week: the third is held back.
    free.send(EXPORT).await;
    eventually("the third display is refused", || async {
        decisions(&h, "frequency").await == 1.0
    })
    .await;
    h.expect_control_next(&mut free, "free1").await;
    h.stop().await;
}

#[tokio::test]
async fn until_clicked_ends_the_campaign_for_that_user() {
    let h = Herald::start(config()).await;
    let mut c = upsell();
    c["frequency"] = json!({"max": 10, "until": "clicked"});
    put(&h, "upsell", c).await;
    let mut u = h
        .connect_claims(claims_with("u", &[], json!({"plan": "free"})))
        .await;
    u.send(EXPORT).await;
    let f = u.recv().await;
    let id = f["id"].as_str().expect("id").to_owned();
    u.send(&json!({"t": "ack", "id": id, "status": "clicked", "action": "upgrade"}).to_string())
        .await;
    eventually("the click is recorded", || async {
        h.get_json("/v1/streams/events").await["records"]
            .as_array()
            .is_some_and(|r| {
                r.iter()
                    .any(|e| e["type"] == "clicked" && e["campaign"] == "upsell")
            })
    })
    .await;
    // The until marker is written before the click is recorded.
    u.send(EXPORT).await;
    eventually("refused: the user clicked", || async {
        decisions(&h, "until").await == 1.0
    })
    .await;
    h.expect_control_next(&mut u, "u").await;
    h.stop().await;
}

#[tokio::test]
async fn the_highest_priority_wins_and_the_global_cap_holds_except_urgent() {
    let mut cfg = config();
    cfg.campaigns.global_cap_per_hour = 2;
    let h = Herald::start(cfg).await;
    for (id, prio) in [("low", "low"), ("high", "high")] {
        put(&h, id, json!({"trigger": {"event": "purchase"}, "priority": prio, "message": {"kind": "toast", "title": id}})).await;
    }
    put(&h, "urgent", json!({"trigger": {"event": "outage_seen"}, "priority": "urgent", "message": {"kind": "banner", "title": "urgent"}})).await;
    let mut u = h.connect("buyer").await;
    u.send(r#"{"t":"event","name":"purchase"}"#).await;
    assert_eq!(
        u.recv_title().await,
        "high",
        "one message per trigger: the highest priority"
    );
    u.send(r#"{"t":"event","name":"purchase"}"#).await;
    assert_eq!(u.recv_title().await, "high");
    // Two campaign messages this hour: the cap of 2 holds for both campaigns.
    u.send(r#"{"t":"event","name":"purchase"}"#).await;
    eventually("both refused by the cap", || async {
        decisions(&h, "global_cap").await == 2.0
    })
    .await;
    h.expect_control_next(&mut u, "buyer").await;
    // Urgent campaigns are exempt.
    u.send(r#"{"t":"event","name":"outage_seen"}"#).await;
    assert_eq!(u.recv_title().await, "urgent");
    h.stop().await;
}

#[tokio::test]
async fn connect_idle_and_delay_triggers() {
    let h = Herald::start(config()).await;
    put(&h, "welcome", json!({"trigger": {"connect": true}, "audience": {"segments": ["new"]}, "message": {"kind": "tooltip", "title": "Start here", "anchor": "#new-project"}})).await;
    put(&h, "nudge", json!({"trigger": {"idle_s": 1}, "message": {"kind": "toast", "title": "Still there?"}, "frequency": {"max": 1}})).await;
    put(&h, "later", json!({"trigger": {"event": "signup"}, "delay_s": 1, "message": {"kind": "card", "title": "Welcome aboard"}})).await;

    let mut newbie = h
        .connect_claims(claims_with("n", &["new"], json!({})))
        .await;
    let f = newbie.recv().await;
    assert_eq!(
        (f["title"].as_str(), f["reason"].as_str()),
        (Some("Start here"), Some("trigger"))
    );
    // Idle for a second without events: the nudge, once.
    assert_eq!(newbie.recv_title().await, "Still there?");
    newbie.send(r#"{"t":"event","name":"signup"}"#).await;
    assert_eq!(newbie.recv_title().await, "Welcome aboard");

    // Not in the segment: no welcome on connect; the nudge is the first message.
    let mut other = h.connect("o").await;
    assert_eq!(other.recv_title().await, "Still there?");
    h.stop().await;
}

#[tokio::test]
async fn invalid_or_inactive_campaigns() {
    let h = Herald::start(config()).await;
    let (s, r) = put_status(&h, "bad", json!({"trigger": {"event": "x", "where": "props.a =="}, "message": {"kind": "toast", "title": "x"}})).await;
    assert_eq!(s, 400);
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("trigger.where:")),
        "{r}"
    );
    let (s, r) = put_status(
        &h,
        "bad",
        json!({"trigger": {"event": "x"}, "message": {"kind": "toast"}}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("message.title:")),
        "{r}"
    );
    let (s, r) = put_status(&h, "bad", json!({"trigger": {"event": "x"}, "mesage": {}})).await;
    assert_eq!(s, 400, "{r}");
    assert_eq!(
        h.get("/v1/campaigns/bad").await.0,
        404,
        "nothing was stored"
    );

    put(&h, "off", json!({"trigger": {"event": "ping_me"}, "active": false, "message": {"kind": "toast", "title": "off"}})).await;
    put(
        &h,
        "on",
        json!({"trigger": {"event": "ping_me2"}, "message": {"kind": "toast", "title": "on"}}),
    )
    .await;
    let listed = h.get_json("/v1/campaigns").await;
    assert_eq!(listed["campaigns"].as_array().map(Vec::len), Some(2));
    let mut u = h.connect("u").await;
    assert!(
        event_then_pong(&mut u, r#"{"t":"event","name":"ping_me"}"#)
            .await
            .is_empty(),
        "inactive: no candidate"
    );
    u.send(r#"{"t":"event","name":"ping_me2"}"#).await;
    assert_eq!(u.recv_title().await, "on", "positive control");
    let (s, _) = h.delete("/v1/campaigns/on").await;
    assert_eq!(s, 200);
    assert_eq!(h.delete("/v1/campaigns/on").await.0, 404);
    assert!(
        event_then_pong(&mut u, r#"{"t":"event","name":"ping_me2"}"#)
            .await
            .is_empty(),
        "deleted: no candidate"
    );
    h.stop().await;
}

#[tokio::test]
async fn campaigns_and_their_counters_are_shared_by_every_node() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    drop(n1.campaign_counter_shared_with(&n2, "alice").await);
    // A deactivation reaches every node.
    put(&n2, "once", json!({"trigger": {"event": "opened"}, "active": false, "message": {"kind": "toast", "title": "once"}})).await;
    eventually("node 1 sees it inactive", || async {
        n1.get_json("/v1/campaigns/once").await["active"] == false
    })
    .await;
    let (s, _) = n1.delete("/v1/campaigns/once").await;
    assert_eq!(s, 200);
    eventually("node 2 forgets it", || async {
        n2.get("/v1/campaigns/once").await.0 == 404
    })
    .await;
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn campaigns_file_is_loaded_at_start() {
    let dir = std::env::temp_dir().join(format!("herald-campaigns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("campaigns.json");
    let mut c = upsell();
    c["id"] = json!("from-file");
    std::fs::write(&file, json!([c]).to_string()).expect("write");
    let mut cfg = config();
    cfg.campaigns.file = Some(file.clone());
    let h = Herald::start(cfg).await;
    assert_eq!(
        h.get_json("/v1/campaigns/from-file").await["id"],
        "from-file"
    );
    h.stop().await;
    // An invalid campaign in the file stops the start, naming it.
    let mut bad = upsell();
    bad["id"] = json!("broken");
    bad["trigger"]["where"] = json!("props.x ==");
    std::fs::write(&file, json!([bad]).to_string()).expect("write");
    let mut cfg = config();
    cfg.campaigns.file = Some(file);
    let listeners = herald::Listeners::bind(&cfg).await.expect("bind");
    let err = herald::run(cfg, listeners, async {})
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("broken") && err.to_string().contains("trigger.where"),
        "{err}"
    );
}
