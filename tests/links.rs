//! App links (`sdk.allowed_link_schemes`): action URLs may use the listed
//! app schemes, the SDK learns the list in `hello`, and `javascript:` /
//! `data:` stay refused whatever the list says.

mod support;

use serde_json::json;
use support::*;

fn modal(url: &str) -> String {
    json!({"to": {"users": ["u1"]}, "kind": "modal", "title": "Open the app",
           "actions": [{"id": "open", "label": "Open", "url": url}]})
    .to_string()
}

#[tokio::test]
async fn listed_app_schemes_are_delivered_and_told_to_the_sdk() {
    let mut cfg = config();
    cfg.sdk.allowed_link_schemes = vec!["myapp://".into(), "com.example.shop".into()];
    let h = Herald::start(cfg).await;
    let mut c = h.connect("u1").await;
    assert_eq!(
        c.hello["link_schemes"],
        json!(["myapp", "com.example.shop"])
    );

    let (status, body) = h.post("/v1/messages", &modal("myapp://orders/42")).await;
    assert_eq!(status, 202, "{body}");
    let msg = c.recv().await;
    assert_eq!(msg["actions"][0]["url"], "myapp://orders/42");

    let (status, body) = h.post("/v1/messages", &modal("otherapp://x")).await;
    assert_eq!(status, 400);
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("actions[0].url:") && error.contains("sdk.allowed_link_schemes"),
        "{error}"
    );
    for bad in [
        "javascript:alert(1)",
        "data:text/html,<script>x</script>",
        "JAVASCRIPT:alert(1)",
    ] {
        let (status, body) = h.post("/v1/messages", &modal(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains("never"),
            "{body}"
        );
    }
    // Localized actions are held to the same list.
    let localized = json!({"to": "all", "kind": "modal", "title": "x",
        "locales": {"fr": {"actions": [{"id": "o", "label": "Ouvrir", "url": "evil://x"}]}}});
    let (status, body) = h.post("/v1/messages", &localized.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("locales.fr.actions[0].url"),
        "{body}"
    );
    // Campaign messages too.
    let campaign = |url: &str| {
        json!({"trigger": {"event": "opened"},
               "message": {"kind": "modal", "title": "x", "actions": [{"id": "o", "label": "O", "url": url}]}})
        .to_string()
    };
    let (status, body) = h.put("/v1/campaigns/c1", &campaign("evil://x")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("message.actions[0].url"),
        "{body}"
    );
    let (status, body) = h.put("/v1/campaigns/c1", &campaign("myapp://x")).await;
    assert_eq!(status, 200, "{body}");
    // Positive control: the session still receives after the refusals.
    let (status, _) = h
        .post("/v1/messages", &modal("https://shop.example/orders/42"))
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        c.recv().await["actions"][0]["url"],
        "https://shop.example/orders/42"
    );
    h.stop().await;
}

#[tokio::test]
async fn without_a_list_only_web_links_pass() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("u1").await;
    assert!(c.hello.get("link_schemes").is_none(), "{}", c.hello);
    let (status, body) = h.post("/v1/messages", &modal("myapp://orders/42")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("actions[0].url"),
        "{body}"
    );
    let (status, _) = h.post("/v1/messages", &modal("/orders/42")).await;
    assert_eq!(status, 202);
    assert_eq!(c.recv().await["actions"][0]["url"], "/orders/42");
    h.stop().await;
}

#[test]
fn the_list_cannot_allow_script_schemes() {
    for bad in ["javascript", "data:", "not a scheme"] {
        let err = herald::config::Config::from_toml(&format!(
            "[sdk]\nallowed_link_schemes = [{bad:?}]\n"
        ))
        .expect_err("refused");
        assert!(
            err.to_string().contains("sdk.allowed_link_schemes"),
            "{err}"
        );
    }
    herald::config::Config::from_toml("[sdk]\nallowed_link_schemes = [\"myapp\"]\n")
        .expect("an app scheme");
}
