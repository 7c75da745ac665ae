//! In-app message lifecycle and feedback (SPEC §3–§7): sticky replay,
//! retraction, collapse, dedupe, locales, personalization, acks, require_ack,
//! fallback, and the events / undelivered / dead streams.

mod support;

use serde_json::{Value, json};
use support::*;

async fn stream(h: &Herald, name: &str) -> Vec<Value> {
    h.get_json(&format!("/v1/streams/{name}?count=1000")).await["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn sticky_messages_reach_sessions_that_connect_later() {
    let h = Herald::start(config()).await;
    let id = h
        .publish(
            json!({"to": "all", "kind": "banner", "title": "Payments degraded", "sticky": true}),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    h.publish(json!({"to": {"segments": ["admins"]}, "kind": "banner", "title": "admins only", "sticky": true})).await;
    let mut late = h.connect("late").await;
    let f = late.recv().await;
    assert_eq!(
        (
            f["id"].as_str(),
            f["reason"].as_str(),
            f["sticky"].as_bool()
        ),
        (Some(id.as_str()), Some("sticky"), Some(true))
    );
    // The admins-only sticky is not for this session: the next frame is the control.
    h.expect_control_next(&mut late, "late").await;
    let mut admin = h
        .connect_claims(claims_with("boss", &["admins"], json!({})))
        .await;
    let mut titles = vec![admin.recv_title().await, admin.recv_title().await];
    titles.sort();
    assert_eq!(titles, ["Payments degraded", "admins only"]);
    let active = h.get_json("/v1/messages/active").await;
    assert_eq!(active["messages"].as_array().map(Vec::len), Some(2));
    h.stop().await;
}

#[tokio::test]
async fn retraction_reaches_holders_and_removes_from_the_sticky_set() {
    let h = Herald::start(config()).await;
    let mut a = h.connect("a").await;
    let id = h
        .publish(json!({"to": "all", "kind": "banner", "title": "incident", "sticky": true}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(a.recv_title().await, "incident");
    let (s, _) = h.delete(&format!("/v1/messages/{id}")).await;
    assert_eq!(s, 202);
    assert_eq!(a.recv().await, json!({"t": "retract", "id": id}));
    assert_eq!(
        h.get_json("/v1/messages/active").await["messages"],
        json!([])
    );
    let mut b = h.connect("b").await;
    // a retracted sticky is not replayed
    h.expect_control_next(&mut b, "b").await;
    // op: retract in an envelope works the same way.
    let id2 = h
        .publish(json!({"to": "all", "kind": "banner", "title": "second", "sticky": true}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(b.recv_title().await, "second");
    h.publish(json!({"op": "retract", "id": id2})).await;
    assert_eq!(b.recv().await, json!({"t": "retract", "id": id2}));
    h.stop().await;
}

#[tokio::test]
async fn collapse_key_replaces_the_active_message() {
    let h = Herald::start(config()).await;
    h.publish(json!({"to": "all", "kind": "banner", "title": "v1", "sticky": true, "collapse_key": "incident"})).await;
    h.publish(json!({"to": "all", "kind": "banner", "title": "v2", "sticky": true, "collapse_key": "incident"})).await;
    let active = h.get_json("/v1/messages/active").await;
    let titles: Vec<&str> = active["messages"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["title"].as_str())
        .collect();
    assert_eq!(titles, ["v2"]);
    let mut c = h.connect("c").await;
    let f = c.recv().await;
    assert_eq!(
        (f["title"].as_str(), f["collapse_key"].as_str()),
        (Some("v2"), Some("incident"))
    );
    h.expect_control_next(&mut c, "c").await;
    h.stop().await;
}

#[tokio::test]
async fn expired_sticky_is_not_replayed() {
    let h = Herald::start(config()).await;
    let soon = herald::auth::unix_now_ms() + 300;
    h.publish(json!({"to": "all", "kind": "banner", "title": "short", "sticky": true, "expires_at": soon})).await;
    h.publish(
        json!({"to": "all", "kind": "banner", "title": "long", "sticky": true, "ttl_s": 3600}),
    )
    .await;
    eventually("the short sticky expires", || async {
        h.get_json("/v1/messages/active").await["messages"]
            .as_array()
            .map(Vec::len)
            == Some(1)
    })
    .await;
    let mut c = h.connect("c").await;
    assert_eq!(c.recv_title().await, "long");
    h.expect_control_next(&mut c, "c").await;
    h.stop().await;
}

#[tokio::test]
async fn a_repeated_id_is_delivered_once() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("c").await;
    let env = json!({"id": "order-42", "to": "all", "kind": "toast", "title": "Order shipped"});
    h.publish(env.clone()).await;
    h.publish(env).await;
    assert_eq!(c.recv_title().await, "Order shipped");
    h.expect_control_next(&mut c, "c").await;
    h.stop().await;
}

#[tokio::test]
async fn locales_and_personalization() {
    let h = Herald::start(config()).await;
    let mut fr = Client::connect(&format!(
        "{}?locale=fr-CA&token={}",
        h.ws_url(),
        token(&claims_with("fr", &[], json!({"name": "Zoé"})))
    ))
    .await;
    let mut pt = h
        .connect_claims(claims_with(
            "pt",
            &[],
            json!({"locale": "pt-BR", "name": "João"}),
        ))
        .await;
    let mut base = h.connect_claims(claims_with("en", &[], json!({}))).await;
    h.publish(json!({
        "to": "all", "kind": "modal",
        "title": "Hello {{attrs.name|there}}", "body": "Your trial ends soon",
        "actions": [{"id": "up", "label": "Upgrade, {{attrs.name|friend}}"}],
        "locales": {
            "fr": {"title": "Bonjour {{attrs.name|toi}}", "actions": [{"id": "up", "label": "Passer à Pro"}]},
            "pt-BR": {"title": "Olá {{attrs.name}}", "body": "Seu teste termina logo"}
        }
    }))
    .await;
    let f = fr.recv().await;
    assert_eq!(
        (f["title"].as_str(), f["body"].as_str()),
        (Some("Bonjour Zoé"), Some("Your trial ends soon"))
    );
    assert_eq!(f["actions"][0]["label"], "Passer à Pro");
    assert!(f.get("locales").is_none());
    let p = pt.recv().await;
    assert_eq!(
        (p["title"].as_str(), p["body"].as_str()),
        (Some("Olá João"), Some("Seu teste termina logo"))
    );
    assert_eq!(p["actions"][0]["label"], "Upgrade, João");
    let b = base.recv().await;
    assert_eq!(
        (b["title"].as_str(), b["actions"][0]["label"].as_str()),
        (Some("Hello there"), Some("Upgrade, friend"))
    );
    // A malformed placeholder is refused at publish, naming the field.
    let (s, r) = h
        .post(
            "/v1/messages",
            &json!({"to": "all", "kind": "toast", "title": "Hi {{user.name}}"}).to_string(),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        r["error"].as_str().is_some_and(|e| e.starts_with("title:")),
        "{r}"
    );
    h.stop().await;
}

#[tokio::test]
async fn acks_and_deliveries_are_recorded_in_the_events_stream() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("alice").await;
    h.publish(
        json!({"id": "m1", "to": "all", "kind": "modal", "title": "x", "campaign": "spring",
        "actions": [{"id": "buy", "label": "Buy"}]}),
    )
    .await;
    c.recv().await;
    c.send(r#"{"t":"ack","id":"m1","status":"displayed"}"#)
        .await;
    c.send(r#"{"t":"ack","id":"m1","status":"clicked","action":"buy"}"#)
        .await;
    eventually("delivered, displayed and clicked recorded", || async {
        stream(&h, "events").await.len() >= 3
    })
    .await;
    let events = stream(&h, "events").await;
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
        (Some("m1"), Some("alice"), Some("buy"))
    );
    assert_eq!(clicked["campaign"], "spring");
    assert!(clicked["node"].as_str().is_some() && clicked["ts"].as_str().is_some());
    // A broadcast audience: one delivered record per node, with the count.
    let delivered = events
        .iter()
        .find(|e| e["type"] == "delivered")
        .expect("delivered");
    assert_eq!(
        (delivered["msg"].as_str(), delivered["count"].as_str()),
        (Some("m1"), Some("1"))
    );
    assert!(events.iter().any(|e| e["type"] == "displayed"));
    h.stop().await;
}

#[tokio::test]
async fn deliveries_to_named_users_are_recorded_per_session() {
    let h = Herald::start(config()).await;
    let mut a1 = h.connect("alice").await;
    let mut a2 = h.connect("alice").await;
    h.publish(json!({"id": "m2", "to": {"users": ["alice"]}, "kind": "toast", "title": "x"}))
        .await;
    a1.recv().await;
    a2.recv().await;
    let records = stream(&h, "events").await;
    let delivered: Vec<&Value> = records
        .iter()
        .filter(|e| e["type"] == "delivered" && e["msg"] == "m2")
        .collect();
    assert_eq!(delivered.len(), 2, "{records:?}");
    assert!(
        delivered
            .iter()
            .all(|e| e["user"] == "alice" && e["sid"].as_str().is_some())
    );
    h.stop().await;
}

#[tokio::test]
async fn global_require_ack_is_tracked_per_user() {
    let h = Herald::start(config()).await;
    require_ack_tracked_per_user(&h, || async {
        stream(&h, "events")
            .await
            .iter()
            .any(|e| e["type"] == "dismissed" && e["user"] == "a")
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn require_ack_is_resent_on_connect_until_acknowledged() {
    let h = Herald::start(config()).await;
    h.publish(json!({"id": "terms-v2", "to": {"users": ["alice"]}, "kind": "modal", "title": "New terms", "require_ack": true})).await;
    let mut c1 = h.connect("alice").await;
    let f = c1.recv().await;
    assert_eq!(
        (f["id"].as_str(), f["require_ack"].as_bool()),
        (Some("terms-v2"), Some(true))
    );
    c1.send(r#"{"t":"ack","id":"terms-v2","status":"displayed"}"#)
        .await;
    drop(c1);
    // Displayed is not an acknowledgement: it comes again.
    let mut c2 = h.connect("alice").await;
    assert_eq!(c2.recv().await["id"], "terms-v2");
    c2.send(r#"{"t":"ack","id":"terms-v2","status":"dismissed"}"#)
        .await;
    eventually("the dismissal is recorded", || async {
        stream(&h, "events")
            .await
            .iter()
            .any(|e| e["type"] == "dismissed")
    })
    .await;
    let mut c3 = h.connect("alice").await;
    // acknowledged: not sent again
    h.expect_control_next(&mut c3, "alice").await;
    h.stop().await;
}

#[tokio::test]
async fn fallback_records_offline_recipients() {
    let h = Herald::start(config()).await;
    let _online = h.connect("on").await;
    let r = h.publish(json!({"to": {"users": ["on", "off"]}, "kind": "card", "title": "Payment failed", "fallback": true})).await;
    assert_eq!(r["offline"], json!(["off"]));
    let undelivered = stream(&h, "undelivered").await;
    assert_eq!(undelivered.len(), 1, "{undelivered:?}");
    assert_eq!(
        (
            undelivered[0]["user"].as_str(),
            undelivered[0]["msg"].as_str()
        ),
        (Some("off"), r["id"].as_str())
    );
    // Without fallback nothing is recorded.
    h.publish(json!({"to": {"users": ["off2"]}, "kind": "card", "title": "x"}))
        .await;
    assert_eq!(stream(&h, "undelivered").await.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn streams_endpoint_refuses_unknown_names() {
    let h = Herald::start(config()).await;
    let (s, body) = h.get("/v1/streams/secrets").await;
    assert_eq!(s, 404, "{body}");
    h.stop().await;
}
