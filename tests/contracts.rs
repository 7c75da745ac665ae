//! The machine-readable contracts: JSON Schemas and the OpenAPI document are
//! what the code generates, the OpenAPI paths are the admin routes, and
//! `herald validate` says exactly what is wrong.

mod support;

use serde_json::Value;
use std::process::Command;
use support::*;

fn repo(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn kept_documents_equal_the_generated_ones() {
    for (path, generated, cmd) in [
        (
            "schemas/envelope.schema.json",
            herald::schema::envelope(),
            "envelope",
        ),
        (
            "schemas/campaign.schema.json",
            herald::schema::campaign(),
            "campaign",
        ),
        ("docs/openapi.json", herald::schema::openapi(), "openapi"),
    ] {
        assert_eq!(
            repo(path),
            herald::schema::pretty(&generated),
            "{path} is stale: regenerate it with `cargo run -- schema {cmd} > {path}`"
        );
    }
}

/// Every `.route("…")` of the admin router, read from its source.
fn admin_routes() -> Vec<String> {
    repo("src/http/admin.rs")
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn openapi_paths_are_exactly_the_admin_routes_and_each_answers() {
    let doc: Value = serde_json::from_str(&repo("docs/openapi.json")).expect("openapi");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<&String> = paths.keys().collect();
    documented.sort();
    let mut routed = admin_routes();
    routed.sort();
    assert_eq!(
        documented,
        routed.iter().collect::<Vec<_>>(),
        "OpenAPI paths and admin routes differ"
    );

    let h = Herald::start(config()).await;
    let served: Value = h.get_json("/v1/openapi.json").await;
    assert_eq!(served, doc, "the node serves the kept document");
    let http = reqwest::Client::new();
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", "some-id")
            .replace("{user}", "alice")
            .replace("{name}", "events");
        for method in ops.as_object().expect("ops").keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let res = http
                .request(m, format!("http://{}{concrete}", h.admin))
                .body("{}")
                .send()
                .await
                .expect("request");
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert!(
                !body.contains("no such route"),
                "{method} {path} is documented but not routed"
            );
            let documented = ops[method]["responses"].as_object().expect("responses");
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {path} answered {status}, which is not documented: {body}"
            );
        }
    }
    h.stop().await;
}

fn validate(files: &[&std::path::Path]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("validate")
        .args(files)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn validate_names_the_field_and_the_reason() {
    let dir = std::env::temp_dir().join(format!("herald-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let good = write("good.json", r#"{"to":"all","kind":"banner","title":"ok"}"#);
    let camp = write(
        "camp.json",
        r#"{"id":"c1","trigger":{"connect":true},"message":{"kind":"toast","title":"hi"}}"#,
    );
    let (ok, out) = validate(&[&good, &camp]);
    assert!(ok, "{out}");
    assert!(
        out.contains("good.json: ok (envelope, kind banner)")
            && out.contains("camp.json: ok (campaign \"c1\")"),
        "{out}"
    );

    let typo = write("typo.json", r#"{"to":"all","kind":"banner","titel":"x"}"#);
    let (ok, out) = validate(&[&good, &typo]);
    assert!(!ok);
    assert!(
        out.contains("typo.json: envelope titel: unknown field `titel`"),
        "{out}"
    );
    assert!(out.contains("1 of 2 files invalid"), "{out}");
    let bad_cel = write(
        "cel.json",
        r#"{"id":"c","trigger":{"event":"x","where":"props.a =="},"message":{"kind":"toast","title":"x"}}"#,
    );
    let (ok, out) = validate(&[&bad_cel]);
    assert!(!ok);
    assert!(
        out.contains("cel.json: campaign trigger.where: invalid CEL"),
        "{out}"
    );
    let array = write(
        "campaigns.json",
        r#"[{"id":"a","trigger":{"connect":true},"message":{"kind":"toast","title":"a"}},{"id":"b","trigger":{"idle_s":0},"message":{"kind":"toast","title":"b"}}]"#,
    );
    let (ok, out) = validate(&[&array]);
    assert!(!ok);
    assert!(
        out.contains("campaigns.json: [1]: campaign trigger.idle_s: must be at least 1"),
        "{out}"
    );
    let not_json = write("nj.json", "{oops");
    let (ok, out) = validate(&[&not_json]);
    assert!(!ok && out.contains("nj.json: not JSON"), "{out}");
}

fn schema_validator(path: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&repo(path)).expect("schema");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

#[test]
fn the_schemas_accept_every_example_and_refuse_what_validate_refuses() {
    let envelope = schema_validator("schemas/envelope.schema.json");
    let campaign = schema_validator("schemas/campaign.schema.json");
    let dir = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for sub in ["envelopes", "campaigns"] {
        let v = if sub == "campaigns" {
            &campaign
        } else {
            &envelope
        };
        for entry in std::fs::read_dir(format!("{dir}/{sub}")).expect("examples") {
            let path = entry.expect("entry").path();
            let doc: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 14, "only {checked} examples");
    for bad in [
        r#"{"to":"all","kind":"banner"}"#,
        r#"{"kind":"banner","title":"x"}"#,
        r#"{"to":"all","kind":"tooltip","title":"x"}"#,
        r#"{"to":"all","kind":"banner","titel":"x"}"#,
        r#"{"op":"retract"}"#,
        r#"{"to":"all","kind":"modal","title":"x","actions":[{"id":"a","label":"A"},{"id":"b","label":"B"},{"id":"c","label":"C"},{"id":"d","label":"D"}]}"#,
        r#"{"to":"all","kind":"modal","title":"x","actions":[{"id":"a","label":"A","url":"javascript:alert(1)"}]}"#,
    ] {
        let doc: Value = serde_json::from_str(bad).expect("JSON");
        assert!(!envelope.is_valid(&doc), "the schema accepts {bad}");
        assert!(
            herald::cli::validate::check_text(bad).is_err(),
            "validate accepts {bad}"
        );
    }
    for bad in [
        r#"{"id":"c","trigger":{"event":"x","connect":true},"message":{"kind":"toast","title":"x"}}"#,
        r#"{"id":"c","trigger":{"event":"x"},"message":{"kind":"toast","title":"x","to":"all"}}"#,
    ] {
        let doc: Value = serde_json::from_str(bad).expect("JSON");
        assert!(!campaign.is_valid(&doc), "the schema accepts {bad}");
        assert!(
            herald::cli::validate::check_text(bad).is_err(),
            "validate accepts {bad}"
        );
    }
}
