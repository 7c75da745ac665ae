//! SPEC §10.1: what a user clicked or dismissed stays dismissed: it leaves
//! their other sessions on every node, and is never sent to them again
//! (sticky, resume, any device); a `collapse_key` replacement is new; a
//! `dismissible: false` message is acknowledged only by a click.

mod support;

use serde_json::{Value, json};
use support::*;

/// Reads frames until the control message, returning what came before it.
async fn until_control(h: &Herald, c: &mut Client, user: &str) -> Vec<Value> {
    h.publish(json!({"to": {"users": [user]}, "kind": "toast", "title": "control"}))
        .await;
    let mut before = Vec::new();
    loop {
        let f = c.recv().await;
        if f["title"] == "control" {
            return before;
        }
        before.push(f);
    }
}

/// The next frame that is not a control message meant for another session
/// of the same user.
async fn next_not_control(c: &mut Client) -> Value {
    loop {
        let f = c.recv().await;
        if f["title"] != "control" {
            return f;
        }
    }
}

fn msg_ids(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .filter(|f| f["t"] == "msg")
        .filter_map(|f| f["id"].as_str())
        .collect()
}

/// `nodes[0]` and `nodes[1]` may be the same node (embedded).
async fn dismissed_stays_dismissed(nodes: [&Herald; 2]) {
    let [n1, n2] = nodes;
    let before = n1.connect("ada").await;
    let since = before.hello["pos"].as_str().expect("pos").to_owned();
    drop(before);
    let mut a1 = n1.connect("ada").await;
    let mut a2 = n2.connect("ada").await;
    let mut bob = n2.connect("bob").await;
    n1.publish(
        json!({"id": "inc-1", "to": "all", "kind": "banner", "title": "Payments degraded",
                      "sticky": true, "collapse_key": "incident"}),
    )
    .await;
    for c in [&mut a1, &mut a2, &mut bob] {
        assert_eq!(c.recv().await["id"], "inc-1");
    }
    a1.send(r#"{"t":"ack","id":"inc-1","status":"dismissed"}"#)
        .await;
    // Off ada's other session, on another node too; not sent back to the
    // session that dismissed it.
    assert_eq!(a2.recv().await, json!({"t": "retract", "id": "inc-1"}));
    assert!(until_control(n1, &mut a1, "ada").await.is_empty());
    assert_eq!(
        a2.recv().await["title"],
        "control",
        "ada's control reaches a2 too"
    );
    // Not off bob's: the control comes first.
    assert!(until_control(n1, &mut bob, "bob").await.is_empty());
    // Ada's next page load, phone, or resume: not again.
    let mut a3 = n2.connect("ada").await;
    assert!(msg_ids(&until_control(n1, &mut a3, "ada").await).is_empty());
    let mut resumed = n1.connect_since("ada", &since).await;
    assert_eq!(resumed.hello["recovered"], true);
    let replayed = until_control(n1, &mut resumed, "ada").await;
    assert!(!msg_ids(&replayed).contains(&"inc-1"), "{replayed:?}");
    // Bob's next session still gets it: positive control.
    let mut bob2 = n1.connect("bob").await;
    assert_eq!(bob2.recv().await["id"], "inc-1");
    // A replacement by collapse_key is a new message, shown to ada.
    n2.publish(
        json!({"id": "inc-2", "to": "all", "kind": "banner", "title": "Payments still degraded",
                      "sticky": true, "collapse_key": "incident"}),
    )
    .await;
    assert_eq!(next_not_control(&mut a2).await["id"], "inc-2");
    let mut a4 = n1.connect("ada").await;
    assert_eq!(a4.recv().await["id"], "inc-2");
    // The incident is over.
    assert_eq!(n1.delete("/v1/messages/inc-2").await.0, 202);
}

async fn only_a_click_acknowledges_a_non_dismissible_message(nodes: [&Herald; 2]) {
    let [n1, n2] = nodes;
    let mut a1 = n1.connect("cy").await;
    let mut a2 = n2.connect("cy").await;
    n1.publish(
        json!({"id": "tos", "to": "all", "kind": "modal", "title": "Terms changed",
                      "sticky": true, "dismissible": false,
                      "actions": [{"id": "accept", "label": "Accept"}]}),
    )
    .await;
    let f = a1.recv().await;
    assert_eq!(f["dismissible"], false, "{f}");
    assert_eq!(a2.recv().await["id"], "tos");
    a1.send(r#"{"t":"ack","id":"tos","status":"dismissed"}"#)
        .await;
    // A dismissal does not count: nothing leaves the other session...
    assert!(until_control(n1, &mut a2, "cy").await.is_empty());
    // ...and the next session still gets it.
    let mut a3 = n2.connect("cy").await;
    assert_eq!(a3.recv().await["id"], "tos");
    a1.send(r#"{"t":"ack","id":"tos","status":"clicked","action":"accept"}"#)
        .await;
    assert_eq!(
        next_not_control(&mut a2).await,
        json!({"t": "retract", "id": "tos"})
    );
    let mut a4 = n1.connect("cy").await;
    assert!(msg_ids(&until_control(n1, &mut a4, "cy").await).is_empty());
}

#[tokio::test]
async fn embedded_dismissed_stays_dismissed() {
    let h = Herald::start(config()).await;
    dismissed_stays_dismissed([&h, &h]).await;
    only_a_click_acknowledges_a_non_dismissible_message([&h, &h]).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dismissed_stays_dismissed_on_every_node() {
    let redis = Redis::start();
    let n1 = Herald::start(redis_config(&redis)).await;
    let n2 = Herald::start(redis_config(&redis)).await;
    dismissed_stays_dismissed([&n1, &n2]).await;
    only_a_click_acknowledges_a_non_dismissible_message([&n1, &n2]).await;
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn a_dismissal_of_a_message_seen_only_live_holds_for_a_resume() {
    // Not sticky: only the history could bring it back.
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let first = h.connect("dee").await;
    let since = first.hello["pos"].as_str().expect("pos").to_owned();
    drop(first);
    let mut live = h.connect("dee").await;
    h.publish(json!({"id": "promo", "to": "all", "kind": "card", "title": "New plans"}))
        .await;
    h.publish(json!({"id": "keep", "to": "all", "kind": "card", "title": "Kept"}))
        .await;
    assert_eq!(live.recv().await["id"], "promo");
    assert_eq!(live.recv().await["id"], "keep");
    live.send(r#"{"t":"ack","id":"promo","status":"clicked","action":"open"}"#)
        .await;
    // The session that clicked has it off already: no retraction for it.
    assert!(until_control(&h, &mut live, "dee").await.is_empty());
    let mut resumed = h.connect_since("dee", &since).await;
    let frames = until_control(&h, &mut resumed, "dee").await;
    // The other one is replayed (positive control), the clicked one is not.
    assert_eq!(msg_ids(&frames), ["keep"], "{frames:?}");
    h.stop().await;
}
