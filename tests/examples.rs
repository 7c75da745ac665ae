//! The examples in `examples/` as a product team would use them: every
//! envelope and campaign passes `herald validate`, and the Python and Node
//! publishing snippets, run as real processes against a live node, publish
//! messages that clients receive and store campaigns that fire.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use support::*;

const API_KEY: &str = "examples-test-key-0123456789";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.json` file under `dir`, recursively, in a stable order.
fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
    out.sort();
}

#[test]
fn every_example_passes_herald_validate() {
    let examples = repo().join("examples");
    // The messages and campaigns; publish/ holds the snippets' package files.
    let mut files = Vec::new();
    json_files(&examples.join("envelopes"), &mut files);
    json_files(&examples.join("campaigns"), &mut files);
    assert!(
        files.len() >= 14,
        "expected at least 14 example files under {}, found {}",
        examples.display(),
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("validate")
            .arg(file)
            .output()
            .expect("run herald validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let rel = file.strip_prefix(&examples).unwrap_or(file);
        // Campaign files are named after their id (publish.sh relies on it);
        // files elsewhere are envelopes (or retractions).
        let expected = if rel.starts_with("campaigns") {
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
            format!("ok (campaign {stem:?})")
        } else if text.contains("ok (retract") {
            "ok (retract".to_owned()
        } else {
            "ok (envelope".to_owned()
        };
        if !out.status.success() || !text.contains(&expected) {
            failures.push(format!(
                "herald validate {} ({}; expected {expected:?}):\n{text}",
                rel.display(),
                out.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs a publishing snippet (`python3 publish.py FILE`, `node publish.mjs
/// FILE`) against a node's admin API, as HERALD_API_URL and HERALD_API_KEY
/// tell it. Returns the exit code, stdout and stderr.
async fn snippet(
    h: &Herald,
    key: Option<&str>,
    program: &str,
    script: &str,
    file: &str,
) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(script)
        .arg(file)
        .current_dir(repo())
        .env("HERALD_API_URL", format!("http://{}", h.admin))
        .env_remove("HERALD_API_KEY")
        .kill_on_drop(true);
    if let Some(key) = key {
        cmd.env("HERALD_API_KEY", key);
    }
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {script} {file} did not finish in time"))
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program} ({e}); install it (apt-get install -y python3 nodejs), then \
                 python3 -m venv clients/python/.venv && clients/python/.venv/bin/pip install -e 'clients/python[redis,test]', \
                 and npm ci --prefix examples/publish (scripts/test does both)"
            )
        });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a snippet that must succeed; returns Herald's answer it printed.
async fn publish_with(h: &Herald, program: &str, script: &str, file: &str) -> Value {
    let (code, stdout, stderr) = snippet(h, h.api_key.as_deref(), program, script, file).await;
    assert_eq!(
        code, 0,
        "{program} {script} {file} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON answer ({e}): {stdout}"))
}

/// The Python with `herald-client` installed: the virtualenv that
/// scripts/test and .ci/run make (`HERALD_PYTHON` overrides it).
fn python_bin() -> String {
    std::env::var("HERALD_PYTHON").unwrap_or_else(|_| {
        repo()
            .join("clients/python/.venv/bin/python")
            .display()
            .to_string()
    })
}

async fn python(h: &Herald, file: &str) -> Value {
    publish_with(h, &python_bin(), "examples/publish/publish.py", file).await
}

async fn node(h: &Herald, file: &str) -> Value {
    publish_with(h, "node", "examples/publish/publish.mjs", file).await
}

#[tokio::test]
async fn python_snippet_publishes_a_personalized_localized_where_audience() {
    let h = Herald::start(config()).await;
    let mut ada = h
        .connect_claims(claims_with(
            "u_123",
            &[],
            json!({"plan": "trial", "trial_days_left": 2, "name": "Ada", "locale": "fr"}),
        ))
        .await;
    let mut anonymous = h
        .connect_claims(claims_with(
            "u_456",
            &[],
            json!({"plan": "trial", "trial_days_left": 1}),
        ))
        .await;
    let mut pro = h
        .connect_claims(claims_with("u_789", &[], json!({"plan": "pro"})))
        .await;

    let answer = python(&h, "examples/envelopes/trial-expiry.json").await;
    let id = answer["id"].as_str().expect("an id in the answer");

    let f = ada.recv().await;
    assert_eq!(
        (f["t"].as_str(), f["id"].as_str(), f["reason"].as_str()),
        (Some("msg"), Some(id), Some("push")),
        "{f}"
    );
    assert_eq!(f["title"], "Bonjour Ada, votre essai se termine bientôt");
    assert_eq!(f["actions"][0]["label"], "Choisir une offre");
    assert_eq!(f["campaign"], "trial-conversion");
    assert_eq!(
        anonymous.recv_title().await,
        "Hi there, your trial is almost over"
    );
    h.expect_control_next(&mut pro, "u_789").await;
    h.stop().await;
}

#[tokio::test]
async fn node_and_python_snippets_publish_to_a_user_with_an_api_key() {
    let mut cfg = config();
    cfg.auth.api_keys = vec![API_KEY.into()];
    let h = Herald::start(cfg).await;
    let mut c = h.connect("u_123").await;

    let answer = node(&h, "examples/envelopes/transaction-confirmation.json").await;
    assert_eq!(answer["online"], json!(["u_123"]), "{answer}");
    let f = c.recv().await;
    assert_eq!(
        (f["title"].as_str(), f["id"].as_str()),
        (Some("Transfer sent"), answer["id"].as_str()),
        "{f}"
    );
    assert_eq!(f["data"]["transaction_id"], "txn_7Hq2Lm");

    let answer = python(&h, "examples/envelopes/success-toast.json").await;
    assert_eq!(answer["online"], json!(["u_123"]), "{answer}");
    assert_eq!(c.recv_title().await, "Export ready");

    // Without the key the node refuses, and the snippets say so and fail.
    let py = python_bin();
    for (program, script) in [
        (py.as_str(), "examples/publish/publish.py"),
        ("node", "examples/publish/publish.mjs"),
    ] {
        let (code, _, stderr) = snippet(
            &h,
            None,
            program,
            script,
            "examples/envelopes/error-toast.json",
        )
        .await;
        assert_eq!(code, 1, "{script} without a key: {stderr}");
        assert!(stderr.contains("401"), "{script} without a key: {stderr}");
    }
    h.expect_control_next(&mut c, "u_123").await;
    h.stop().await;
}

/// Sends an event then a ping; returns the frames before the pong. Frames
/// are handled in order, so the event was evaluated when the pong comes back.
async fn event_then_pong(c: &mut Client, event: &Value) -> Vec<Value> {
    c.send(&event.to_string()).await;
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

#[tokio::test]
async fn snippets_store_campaigns_that_fire() {
    let h = Herald::start(config()).await;
    let stored = python(&h, "examples/campaigns/plan-limit-upgrade.json").await;
    assert_eq!(stored["id"], "plan-limit-upgrade", "{stored}");
    let stored = node(&h, "examples/campaigns/trial-expiry-on-connect.json").await;
    assert_eq!(stored["id"], "trial-expiry-on-connect", "{stored}");
    let listed = h.get_json("/v1/campaigns").await;
    assert_eq!(listed["campaigns"].as_array().map(Vec::len), Some(2));

    // The plan-limit prompt: an event whose props pass the trigger's CEL,
    // from an owner on a small plan.
    let limit = json!({"t": "event", "name": "limit_reached",
        "props": {"resource": "projects", "used": 3, "limit": 3}});
    let mut member = h
        .connect_claims(claims_with(
            "u_456",
            &[],
            json!({"plan": "starter", "role": "member"}),
        ))
        .await;
    assert!(
        event_then_pong(&mut member, &limit).await.is_empty(),
        "members cannot upgrade: not in the audience"
    );
    let mut owner = h
        .connect_claims(claims_with(
            "u_123",
            &[],
            json!({"plan": "starter", "role": "owner"}),
        ))
        .await;
    let under = json!({"t": "event", "name": "limit_reached",
        "props": {"resource": "projects", "used": 2, "limit": 3}});
    assert!(
        event_then_pong(&mut owner, &under).await.is_empty(),
        "under the limit: the trigger's where does not hold"
    );
    owner.send(&limit.to_string()).await;
    let f = owner.recv().await;
    assert_eq!(
        (
            f["title"].as_str(),
            f["reason"].as_str(),
            f["campaign"].as_str(),
            f["priority"].as_str()
        ),
        (
            Some("You've reached your project limit"),
            Some("trigger"),
            Some("plan-limit-upgrade"),
            Some("high")
        ),
        "{f}"
    );
    // At most once a day.
    assert!(event_then_pong(&mut owner, &limit).await.is_empty());
    h.expect_control_next(&mut owner, "u_123").await;

    // The trial banner on connect, personalized and in the user's language.
    let mut trial = h
        .connect_claims(claims_with(
            "u_789",
            &[],
            json!({"plan": "trial", "trial_days_left": 1, "name": "Ada", "locale": "de"}),
        ))
        .await;
    let f = trial.recv().await;
    assert_eq!(
        (f["title"].as_str(), f["campaign"].as_str()),
        (
            Some("Hallo Ada, Ihre Testphase endet bald"),
            Some("trial-expiry-on-connect")
        ),
        "{f}"
    );
    h.expect_control_next(&mut member, "u_456").await;
    h.stop().await;
}
