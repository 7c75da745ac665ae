//! The web console's server side (SPEC §10.6): served on the admin listener
//! and never on the public one, its files embedded and served with their
//! types, the page needing no key while the API behind it does, and
//! `POST /v1/validate` (the API's checks without publishing or storing).

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn the_console_is_served_on_the_admin_listener_only() {
    let mut cfg = config();
    cfg.auth.api_keys = vec!["console-key-0123456789".into()];
    let h = Herald::start(cfg).await;
    let http = reqwest::Client::new();

    // The page and its files: no key needed (they hold no data).
    let page = http
        .get(format!("http://{}/console", h.admin))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("test")
            .starts_with("text/html")
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("test");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().await.expect("test");
    assert!(html.contains("/console/app.js"), "{html}");
    for (file, kind, within) in [
        ("app.js", "text/javascript", "render("),
        ("style.css", "text/css", "--accent"),
        ("vendor/preact-htm.js", "text/javascript", "useState"),
        (
            "sdk/herald-render.js",
            "text/javascript",
            "export function renderPreview",
        ),
    ] {
        let res = http
            .get(format!("http://{}/console/{file}", h.admin))
            .send()
            .await
            .expect("asset");
        assert_eq!(res.status(), 200, "{file}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .expect("test")
                .starts_with(kind),
            "{file}"
        );
        assert!(res.text().await.expect("test").contains(within), "{file}");
    }
    // The renderer is the SDK's very file.
    let served = http
        .get(format!("http://{}/console/sdk/herald-render.js", h.admin))
        .send()
        .await
        .expect("test")
        .text()
        .await
        .expect("test");
    let on_disk = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/js/herald-render.js"),
    )
    .expect("test");
    assert_eq!(served, on_disk);
    let missing = http
        .get(format!("http://{}/console/../Cargo.toml", h.admin))
        .send()
        .await
        .expect("test");
    assert_eq!(missing.status(), 404);
    let unknown = http
        .get(format!("http://{}/console/nope.js", h.admin))
        .send()
        .await
        .expect("test");
    assert_eq!(unknown.status(), 404);

    // The API behind it still needs the key.
    let stats = http
        .get(format!("http://{}/v1/stats", h.admin))
        .send()
        .await
        .expect("test");
    assert_eq!(stats.status(), 401);

    // Never on the public listener; the public one still serves its own pages.
    for path in [
        "/console",
        "/console/app.js",
        "/console/sdk/herald-render.js",
    ] {
        let res = http
            .get(format!("http://{}{path}", h.public))
            .send()
            .await
            .expect("test");
        assert_eq!(res.status(), 404, "{path} on the public listener");
    }
    let demo = http
        .get(format!("http://{}/", h.public))
        .send()
        .await
        .expect("test");
    assert_eq!(demo.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn validate_checks_like_the_publishing_routes_and_changes_nothing() {
    let mut cfg = config();
    cfg.auth.api_keys = vec!["console-key-0123456789".into()];
    let h = Herald::start(cfg).await;

    let (status, body) = h
        .post(
            "/v1/validate",
            &json!({"to": {"where": "attrs.plan == \"free\""}, "kind": "toast", "title": "x"})
                .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"valid": true, "kind": "envelope"}));

    // A CEL mistake: the same reason POST /v1/messages gives, naming the field.
    let bad = json!({"to": {"where": "attrs.plan =="}, "kind": "toast", "title": "x"}).to_string();
    let (status, body) = h.post("/v1/validate", &bad).await;
    assert_eq!(status, 400);
    let (pstatus, pbody) = h.post("/v1/messages", &bad).await;
    assert_eq!(pstatus, 400);
    assert_eq!(body, pbody);
    assert!(
        body["error"]
            .as_str()
            .expect("test")
            .starts_with("to.where: "),
        "{body}"
    );
    let (status, body) = h
        .post(
            "/v1/validate",
            &json!({"to": {"where": "atrs.plan == 1"}, "kind": "toast", "title": "x"}).to_string(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().expect("test").contains("\"atrs\""),
        "{body}"
    );
    // What only Herald sets is refused, as on the publishing route.
    let (status, body) = h
        .post(
            "/v1/validate",
            &json!({"to": "all", "kind": "toast", "title": "x", "sid": "s"}).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = h.post("/v1/validate", "{not json").await;
    assert_eq!(status, 400);

    // Campaigns: checked and compiled like PUT, and not stored.
    let camp = json!({"id": "check-me", "trigger": {"connect": true}, "audience": {"where": "attrs.level >= 3"}, "message": {"kind": "toast", "title": "hi"}});
    let (status, body) = h.post("/v1/validate", &camp.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"valid": true, "kind": "campaign"}));
    let bad_camp = json!({"id": "check-me", "trigger": {"event": "x", "where": "props.a +"}, "message": {"kind": "toast", "title": "hi"}});
    let (status, body) = h.post("/v1/validate", &bad_camp.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .expect("test")
            .starts_with("trigger.where: "),
        "{body}"
    );
    let (status, _) = h.get("/v1/campaigns/check-me").await;
    assert_eq!(status, 404, "validate stored nothing");
    let campaigns = h.get_json("/v1/campaigns").await;
    assert_eq!(campaigns["campaigns"], json!([]));

    // Nothing was published either: a session sees the control first.
    let mut c = h.connect("alice").await;
    let (status, _) = h
        .post(
            "/v1/validate",
            &json!({"to": {"users": ["alice"]}, "kind": "toast", "title": "not sent"}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    h.expect_control_next(&mut c, "alice").await;

    // Without the key: 401, like every API route.
    let res = reqwest::Client::new()
        .post(format!("http://{}/v1/validate", h.admin))
        .body(camp.to_string())
        .send()
        .await
        .expect("test");
    assert_eq!(res.status(), 401);
    h.stop().await;
}
