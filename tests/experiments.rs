//! Campaigns in time and experiments (SPEC §10.4), their counts and the
//! user trace (SPEC §10.5), over real sockets: embedded, and on two nodes
//! sharing one real Redis. Time-dependent rules (windows, quiet hours, the
//! goal's `within_s`, hourly buckets) run on a manual clock the test moves.

mod support;

use herald::campaigns::{Arm, assign};
use herald::clock::Clock;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

/// 2026-12-03 12:00 UTC.
const NOON: u64 = 1_796_299_200_000;
const HOUR: u64 = 3_600_000;

/// Two nodes and a Redis, or one embedded node standing in for both.
struct Pair {
    a: Herald,
    b: Option<Herald>,
    _redis: Option<Redis>,
}

impl Pair {
    async fn start(redis: bool, clock: &Clock) -> Self {
        match redis {
            false => Self {
                a: Herald::start_with_clock(config(), clock.clone()).await,
                b: None,
                _redis: None,
            },
            true => {
                let r = Redis::start();
                let a = Herald::start_with_clock(redis_config(&r), clock.clone()).await;
                let b = Herald::start_with_clock(redis_config(&r), clock.clone()).await;
                Self {
                    a,
                    b: Some(b),
                    _redis: Some(r),
                }
            }
        }
    }

    /// The other node (embedded: the same one).
    fn b(&self) -> &Herald {
        self.b.as_ref().unwrap_or(&self.a)
    }

    /// Stores a campaign through node a, and waits until node b applies it.
    async fn put(&self, id: &str, c: Value) {
        let (s, body) = self
            .a
            .put(&format!("/v1/campaigns/{id}"), &c.to_string())
            .await;
        assert_eq!(s, 200, "PUT {id}: {body}");
        let want = body.clone();
        eventually("node b applies the campaign", || async {
            let (s, body) = self.b().get(&format!("/v1/campaigns/{id}")).await;
            s == 200 && serde_json::from_str::<Value>(&body).ok() == Some(want.clone())
        })
        .await;
    }

    async fn stop(self) {
        self.a.stop().await;
        if let Some(b) = self.b {
            b.stop().await;
        }
    }
}

/// Sends an event then a ping; returns the frames up to the pong.
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

const OPENED: &str = r#"{"t":"event","name":"opened"}"#;

/// Waits until the user's newest decision about `campaign` is `decision`.
async fn traced(h: &Herald, user: &str, campaign: &str, decision: &str) -> Value {
    let newest = || async {
        let t = h.get_json(&format!("/v1/users/{user}/trace")).await;
        t["decisions"]
            .as_array()
            .and_then(|d| d.iter().find(|e| e["campaign"] == campaign).cloned())
            .unwrap_or(Value::Null)
    };
    eventually(&format!("{user}: {decision} for {campaign}"), || async {
        newest().await["decision"] == decision
    })
    .await;
    newest().await
}

async fn windows_and_quiet_hours(redis: bool) {
    let clock = Clock::manual(NOON);
    let p = Pair::start(redis, &clock).await;
    p.put(
        "later",
        json!({"trigger": {"event": "opened"}, "starts_at": NOON + HOUR, "ends_at": NOON + 3 * HOUR,
               "message": {"kind": "toast", "title": "in the window"}}),
    )
    .await;
    let mut u = p.b().connect("win").await;
    assert!(event_then_pong(&mut u, OPENED).await.is_empty());
    let t = traced(&p.a, "win", "later", "outside_window").await;
    assert!(
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("starts at")),
        "{t}"
    );
    p.b().expect_control_next(&mut u, "win").await;
    clock.advance(Duration::from_millis(2 * HOUR));
    u.send(OPENED).await;
    assert_eq!(u.recv_title().await, "in the window");
    clock.advance(Duration::from_millis(HOUR));
    assert!(event_then_pong(&mut u, OPENED).await.is_empty(), "ended");
    traced(&p.a, "win", "later", "outside_window").await;
    drop(u);

    // 22:00 to 08:00 in the user's zone. At 14:00 UTC it is 23:00 in Tokyo.
    clock.set(NOON + 2 * HOUR);
    let quiet = json!({"from": "22:00", "to": "08:00"});
    p.put("night", json!({"trigger": {"event": "night"}, "quiet_hours": quiet, "message": {"kind": "toast", "title": "night"}})).await;
    p.put("alarm", json!({"trigger": {"event": "alarm"}, "quiet_hours": quiet, "priority": "urgent", "message": {"kind": "banner", "title": "alarm"}})).await;
    let mut tokyo = p
        .b()
        .connect_claims(claims_with("tokyo", &[], json!({"tz": "Asia/Tokyo"})))
        .await;
    assert!(
        event_then_pong(&mut tokyo, r#"{"t":"event","name":"night"}"#)
            .await
            .is_empty()
    );
    let t = traced(&p.a, "tokyo", "night", "quiet_hours").await;
    assert!(
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Asia/Tokyo")),
        "{t}"
    );
    // Urgent campaigns are exempt.
    tokyo.send(r#"{"t":"event","name":"alarm"}"#).await;
    assert_eq!(tokyo.recv_title().await, "alarm");
    // A zone where it is day (14:00 UTC = 09:00 in New York): shown.
    let mut ny =
        p.a.connect_claims(claims_with("ny", &[], json!({"tz": "America/New_York"})))
            .await;
    ny.send(r#"{"t":"event","name":"night"}"#).await;
    assert_eq!(ny.recv_title().await, "night");
    // An unknown zone falls back to the default (UTC, 14:00: not quiet) and is counted.
    let mut mars =
        p.a.connect_claims(claims_with("mars", &[], json!({"tz": "Mars/Olympus_Mons"})))
            .await;
    mars.send(r#"{"t":"event","name":"night"}"#).await;
    assert_eq!(mars.recv_title().await, "night");
    assert!(p.a.metric("herald_campaign_unknown_tz_total").await >= 1.0);
    // The quiet trigger is counted as suppressed.
    eventually("suppressed counted", || async {
        let s = p.b().get_json("/v1/campaigns/night/stats").await;
        s["suppressed"] == 1 && s["delivered"] == 2
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn windows_and_quiet_hours_embedded() {
    windows_and_quiet_hours(false).await;
}

#[tokio::test]
async fn windows_and_quiet_hours_on_two_nodes() {
    windows_and_quiet_hours(true).await;
}

/// The first user (`u0`, `u1`, …) the hash puts in `arm`.
fn user_in(
    campaign: &str,
    holdout_pct: f64,
    arms: &[(&str, f64)],
    arm: &str,
    skip: usize,
) -> String {
    let arms: Vec<Arm> = arms
        .iter()
        .map(|(id, w)| Arm {
            id: (*id).to_owned(),
            weight: *w,
            message: serde_json::from_value(json!({"kind": "toast", "title": "x"}))
                .expect("envelope"),
        })
        .collect();
    (0..)
        .map(|i| format!("{arm}-user{i}"))
        .filter(|u| assign(campaign, u, holdout_pct, &arms) == arm)
        .nth(skip)
        .expect("some user")
}

fn upsell(weight_b: f64) -> Value {
    json!({
        "trigger": {"event": "opened"},
        "variants": [
            {"id": "a", "weight": 50, "message": {"kind": "modal", "title": "Pro: A", "actions": [{"id": "upgrade", "label": "Upgrade"}]}},
            {"id": "b", "weight": weight_b, "message": {"kind": "modal", "title": "Pro: B", "actions": [{"id": "upgrade", "label": "Upgrade"}]}}
        ],
        "holdout_pct": 20,
        "goal": {"event": "purchase", "within_s": 3600}
    })
}

async fn ab_test_with_holdout_and_goal(redis: bool) {
    let clock = Clock::manual(NOON);
    let p = Pair::start(redis, &clock).await;
    p.put("upsell", upsell(50.0)).await;
    let weights = [("a", 50.0), ("b", 50.0)];
    let in_a = user_in("upsell", 20.0, &weights, "a", 0);
    let late = user_in("upsell", 20.0, &weights, "a", 1);
    let held = user_in("upsell", 20.0, &weights, "holdout", 0);

    // Variant a, on node b: shown, displayed, clicked, converted.
    let mut a = p.b().connect(&in_a).await;
    a.send(OPENED).await;
    let m = a.recv().await;
    assert_eq!(
        (m["title"].as_str(), m["variant"].as_str()),
        (Some("Pro: A"), Some("a")),
        "{m}"
    );
    let id = m["id"].as_str().expect("id").to_owned();
    a.send(&json!({"t": "ack", "id": id, "status": "displayed"}).to_string())
        .await;
    a.send(&json!({"t": "ack", "id": id, "status": "clicked", "action": "upgrade"}).to_string())
        .await;
    a.send(r#"{"t":"event","name":"purchase"}"#).await;
    a.send(r#"{"t":"event","name":"purchase"}"#).await;

    // The holdout user, on node a: nothing shown, exposure and conversion counted.
    let mut h = p.a.connect(&held).await;
    assert!(event_then_pong(&mut h, OPENED).await.is_empty());
    traced(p.b(), &held, "upsell", "holdout").await;
    p.a.expect_control_next(&mut h, &held).await;
    h.send(r#"{"t":"event","name":"purchase"}"#).await;

    // Exposed now, buying after within_s: no conversion.
    let mut l = p.a.connect(&late).await;
    l.send(OPENED).await;
    assert_eq!(l.recv_title().await, "Pro: A");

    eventually("counts of the experiment", || async {
        let s = p.a.get_json("/v1/campaigns/upsell/stats").await;
        let v = &s["variants"];
        v["a"]["exposed"] == 2
            && v["a"]["displayed"] == 1
            && v["a"]["clicked"] == 1
            && v["a"]["converted"] == 1
            && v["holdout"]["exposed"] == 1
            && v["holdout"]["converted"] == 1
            && v["b"]["exposed"] == 0
    })
    .await;
    clock.advance(Duration::from_millis(2 * HOUR));
    l.send(r#"{"t":"event","name":"purchase"}"#).await;
    // Changing the weights moves nobody already exposed (b gets nearly all new users).
    p.put("upsell", upsell(1_000_000.0)).await;
    a.send(OPENED).await;
    assert_eq!(a.recv_title().await, "Pro: A", "still variant a");
    assert!(
        event_then_pong(&mut h, OPENED).await.is_empty(),
        "still held out"
    );
    // The late purchase was not counted; a's second trigger was no new exposure.
    p.b().expect_control_next(&mut l, &late).await;
    eventually("no late conversion, no second exposure", || async {
        let s = p.b().get_json("/v1/campaigns/upsell/stats?by=hour").await;
        let v = &s["variants"];
        v["a"]["converted"] == 1 && v["a"]["exposed"] == 2 && s["delivered"] == 3
    })
    .await;
    let s = p.b().get_json("/v1/campaigns/upsell/stats?by=hour").await;
    assert_eq!(s["variants"]["a"]["conversion_rate"], 0.5);
    assert_eq!(s["variants"]["holdout"]["conversion_rate"], 1.0);
    let vs = &s["variants"]["a"]["vs_holdout"];
    assert_eq!(vs["difference"], -0.5);
    let (lo, hi) = (
        vs["ci95"][0].as_f64().expect("lo"),
        vs["ci95"][1].as_f64().expect("hi"),
    );
    assert!(lo < -0.5 && hi > -0.5, "{vs}");
    assert!(s["variants"]["holdout"].get("vs_holdout").is_none());
    let hours = s["hours"].as_array().expect("hours");
    assert_eq!(hours[0]["hour"], NOON);
    assert_eq!(hours[0]["delivered"], 2);
    assert_eq!(hours.last().expect("last")["hour"], NOON + 2 * HOUR);

    // The message's own counts.
    let m = p.a.get_json(&format!("/v1/messages/{id}/stats")).await;
    assert_eq!(
        (
            m["delivered"].as_i64(),
            m["displayed"].as_i64(),
            m["clicked"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{m}"
    );
    assert_eq!(m["actions"]["upgrade"], 1);
    assert_eq!(m["users"]["clicked"], 1);
    p.stop().await;
}

#[tokio::test]
async fn ab_test_with_holdout_and_goal_embedded() {
    ab_test_with_holdout_and_goal(false).await;
}

#[tokio::test]
async fn ab_test_with_holdout_and_goal_on_two_nodes() {
    ab_test_with_holdout_and_goal(true).await;
}

async fn the_trace_says_why(redis: bool) {
    let clock = Clock::manual(NOON);
    let p = Pair::start(redis, &clock).await;
    p.put("once", json!({"trigger": {"event": "opened"}, "frequency": {"max": 1}, "message": {"kind": "toast", "title": "once"}})).await;
    p.put("pros", json!({"trigger": {"event": "opened"}, "audience": {"segments": ["pro"]}, "message": {"kind": "toast", "title": "pros"}})).await;
    let mut alice = p.b().connect("alice").await;
    alice.send(OPENED).await;
    assert_eq!(alice.recv_title().await, "once");
    assert!(event_then_pong(&mut alice, OPENED).await.is_empty());
    let capped = traced(&p.a, "alice", "once", "capped").await;
    assert!(
        capped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("frequency")),
        "{capped}"
    );
    traced(&p.a, "alice", "pros", "not_in_audience").await;
    // Dismissed once, a campaign `until: dismissed` stays away.
    p.put("tip", json!({"trigger": {"event": "tip"}, "frequency": {"max": 10, "until": "dismissed"}, "message": {"kind": "toast", "title": "tip"}})).await;
    alice.send(r#"{"t":"event","name":"tip"}"#).await;
    let tip = alice.recv().await;
    assert_eq!(tip["title"], "tip");
    alice
        .send(&json!({"t": "ack", "id": tip["id"], "status": "dismissed"}).to_string())
        .await;
    eventually("the dismissal is recorded", || async {
        p.b().get_json("/v1/campaigns/tip/stats").await["dismissed"] == 1
    })
    .await;
    assert!(
        event_then_pong(&mut alice, r#"{"t":"event","name":"tip"}"#)
            .await
            .is_empty()
    );
    traced(&p.a, "alice", "tip", "dismissed_before").await;
    // A direct message the client vetoes; one to someone offline.
    let sent =
        p.a.publish(json!({"to": {"users": ["alice", "bob"]}, "kind": "toast", "title": "direct"}))
            .await;
    let id = sent["id"].as_str().expect("id").to_owned();
    assert_eq!(alice.recv_title().await, "direct");
    alice
        .send(&json!({"t": "ack", "id": id, "status": "suppressed"}).to_string())
        .await;
    let find = |t: &Value, decision: &str| {
        t["decisions"].as_array().is_some_and(|d| {
            d.iter()
                .any(|e| e["message"] == id.as_str() && e["decision"] == decision)
        })
    };
    eventually("alice: delivered, then vetoed", || async {
        let t = p.b().get_json("/v1/users/alice/trace").await;
        find(&t, "delivered") && find(&t, "suppressed_by_client")
    })
    .await;
    eventually("bob: not online", || async {
        find(
            &p.a.get_json("/v1/users/bob/trace?limit=5").await,
            "not_online",
        )
    })
    .await;
    let t = p.a.get_json("/v1/users/alice/trace?limit=1").await;
    assert_eq!(t["decisions"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        t["decisions"][0]["decision"], "suppressed_by_client",
        "newest first"
    );
    assert!(t["decisions"][0]["at"].is_u64());
    eventually("the message's counts", || async {
        let s = p.b().get_json(&format!("/v1/messages/{id}/stats")).await;
        s["delivered"] == 1 && s["suppressed"] == 1
    })
    .await;
    // A sticky banner alice dismissed is not replayed on her next device: traced.
    let banner =
        p.a.publish(
            json!({"to": "all", "kind": "banner", "title": "banner", "sticky": true, "ttl_s": 600}),
        )
        .await;
    let banner = banner["id"].as_str().expect("id").to_owned();
    assert_eq!(alice.recv_title().await, "banner");
    alice
        .send(&json!({"t": "ack", "id": banner, "status": "dismissed"}).to_string())
        .await;
    eventually("the dismissal is recorded", || async {
        p.a.get_json(&format!("/v1/messages/{banner}/stats")).await["dismissed"] == 1
    })
    .await;
    let mut phone = p.a.connect("alice").await;
    p.a.expect_control_next(&mut phone, "alice").await;
    eventually("alice: dismissed before", || async {
        let t = p.b().get_json("/v1/users/alice/trace").await;
        t["decisions"].as_array().is_some_and(|d| {
            d.iter()
                .any(|e| e["message"] == banner.as_str() && e["decision"] == "dismissed_before")
        })
    })
    .await;
    // Someone who did not dismiss it gets it (positive control).
    let mut carol = p.b().connect("carol").await;
    assert_eq!(carol.recv_title().await, "banner");
    p.stop().await;
}

#[tokio::test]
async fn the_trace_says_why_embedded() {
    the_trace_says_why(false).await;
}

#[tokio::test]
async fn the_trace_says_why_on_two_nodes() {
    the_trace_says_why(true).await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let h = Herald::start(config()).await;
    let base = json!({"trigger": {"event": "x"}, "message": {"kind": "toast", "title": "x"}});
    let cases = [
        (
            json!({"variants": [{"id": "a", "weight": 0, "message": {"kind": "toast", "title": "x"}}], "message": null}),
            "variants[0].weight",
        ),
        (json!({"holdout_pct": 60}), "holdout_pct"),
        (
            json!({"quiet_hours": {"from": "25:00", "to": "08:00"}}),
            "quiet_hours.from",
        ),
        (
            json!({"quiet_hours": {"from": "22:00", "to": "8"}}),
            "quiet_hours.to",
        ),
        (json!({"starts_at": 2000, "ends_at": 1000}), "ends_at"),
        (json!({"goal": {"within_s": 60}}), "goal.event"),
    ];
    for (extra, field) in cases {
        let mut c = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        let (s, r) = h.put("/v1/campaigns/bad", &c.to_string()).await;
        assert_eq!(s, 400, "{c}: {r}");
        assert!(
            r["error"]
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("{field}:"))),
            "{field}: {r}"
        );
    }
    let (s, _) = h.put("/v1/campaigns/good", &base.to_string()).await;
    assert_eq!(s, 200, "positive control");
    assert_eq!(h.get("/v1/campaigns/nope/stats").await.0, 404);
    assert_eq!(h.get("/v1/messages/nope/stats").await.0, 404);
    assert_eq!(
        h.get("/v1/campaigns/good/stats").await.0,
        200,
        "known, no counts yet"
    );
    let (s, body) = h.get("/v1/campaigns/good/stats?by=day").await;
    assert_eq!(s, 400);
    assert!(body.contains("by:"), "{body}");
    let (s, body) = h.get("/v1/users/alice/trace?limit=0").await;
    assert_eq!(s, 400);
    assert!(body.contains("limit:"), "{body}");
    h.stop().await;
}

fn example(name: &str) -> Value {
    let path = format!(
        "{}/examples/campaigns/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("example")).expect("json")
}

#[tokio::test]
async fn the_examples_run_as_documented() {
    // January 2027, inside the A/B example's window.
    let jan = 1_798_761_600_000 + 12 * HOUR;
    let clock = Clock::manual(jan);
    let h = Herald::start_with_clock(config(), clock.clone()).await;
    let ab = example("ab-upsell-with-holdout");
    let (s, body) = h
        .put("/v1/campaigns/ab-upsell-with-holdout", &ab.to_string())
        .await;
    assert_eq!(s, 200, "{body}");
    let arms = [("price", 50.0), ("trial", 50.0)];
    let export = r#"{"t":"event","name":"feature_used","props":{"feature":"export"}}"#;
    for arm in ["price", "trial"] {
        let user = user_in("ab-upsell-with-holdout", 10.0, &arms, arm, 0);
        let mut c = h
            .connect_claims(claims_with(&user, &[], json!({"plan": "free"})))
            .await;
        c.send(export).await;
        let m = c.recv().await;
        assert_eq!(m["variant"], arm, "{m}");
        c.send(r#"{"t":"event","name":"purchase"}"#).await;
    }
    let held = user_in("ab-upsell-with-holdout", 10.0, &arms, "holdout", 0);
    let mut c = h
        .connect_claims(claims_with(&held, &[], json!({"plan": "free"})))
        .await;
    assert!(event_then_pong(&mut c, export).await.is_empty());
    h.expect_control_next(&mut c, &held).await;
    eventually("one conversion per variant", || async {
        let v = h
            .get_json("/v1/campaigns/ab-upsell-with-holdout/stats")
            .await["variants"]
            .clone();
        v["price"]["converted"] == 1 && v["trial"]["converted"] == 1 && v["holdout"]["exposed"] == 1
    })
    .await;

    // The digest: 23:00 UTC is quiet for a user without attrs.tz.
    let digest = example("weekly-digest-quiet-hours");
    let (s, body) = h
        .put(
            "/v1/campaigns/weekly-digest-quiet-hours",
            &digest.to_string(),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    clock.set(jan + 11 * HOUR);
    let mut night = h
        .connect_claims(claims_with("night-owl", &["active"], json!({})))
        .await;
    traced(&h, "night-owl", "weekly-digest-quiet-hours", "quiet_hours").await;
    h.expect_control_next(&mut night, "night-owl").await;
    // In Los Angeles it is 15:00: the digest comes (after its delay_s).
    let mut la = h
        .connect_claims(claims_with(
            "la",
            &["active"],
            json!({"tz": "America/Los_Angeles"}),
        ))
        .await;
    assert_eq!(la.recv_title().await, "Your week in review");
    h.stop().await;
}

/// A broadcast to more users than `SKETCH_FROM` (1,024): in Redis mode the
/// node counts its distinct recipients with a sketch it builds during the
/// fan-out; embedded counts them by name. 1,100 users, 100 of them with a
/// second session: 1,200 deliveries, 1,100 distinct users (exactly when
/// embedded, within HyperLogLog's error through Redis).
async fn a_broadcast_to_thousands_counts_its_distinct_users(h: &Herald, exact: bool) {
    let mut clients = Vec::new();
    for i in 0..1100 {
        clients.push(h.connect(&format!("wide-{i}")).await);
    }
    for i in 0..100 {
        clients.push(h.connect(&format!("wide-{i}")).await);
    }
    let id = "wide-banner";
    h.publish(json!({"id": id, "to": "all", "kind": "banner", "title": "to all"}))
        .await;
    for c in &mut clients {
        assert_eq!(c.recv_title().await, "to all");
    }
    let path = format!("/v1/messages/{id}/stats");
    eventually("the deliveries are counted", || async {
        h.get_json(&path).await["delivered"] == 1200
    })
    .await;
    let users = h.get_json(&path).await["users"]["delivered"]
        .as_u64()
        .expect("distinct users");
    if exact {
        assert_eq!(users, 1100);
    } else {
        assert!((1078..=1122).contains(&users), "1,100 within 2 %: {users}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_thousands_counts_its_distinct_users_embedded() {
    let h = Herald::start(config()).await;
    a_broadcast_to_thousands_counts_its_distinct_users(&h, true).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_thousands_counts_its_distinct_users_through_a_sketch() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    a_broadcast_to_thousands_counts_its_distinct_users(&h, false).await;
    h.stop().await;
}
