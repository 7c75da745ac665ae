//! The `herald` binary as users run it: serve, token, publish, broadcast,
//! retract, and the example config.

mod support;

use serde_json::json;
use std::process::{Command, Output};
use support::*;

/// `herald publish --json FILE --redis URL`.
async fn publish_json(file: &std::path::Path, redis: &Redis) -> Output {
    herald_cli_async(vec![
        "publish".into(),
        "--json".into(),
        file.display().to_string(),
        "--redis".into(),
        redis.url(),
    ])
    .await
}

/// Each case written to `dir` and refused by `herald validate`, naming its
/// field (`<what> <field>:`).
fn validate_refuses<const N: usize>(
    dir: &std::path::Path,
    cases: [(&str, serde_json::Value, &str); N],
    what: &str,
) {
    for (name, body, field) in cases {
        let file = dir.join(name);
        std::fs::write(&file, body.to_string()).expect("write");
        let o = herald_cli(&["validate", file.to_str().expect("path")]);
        assert!(!o.status.success(), "{name} accepted");
        assert!(
            stdout(&o).contains(&format!("{what} {field}:")),
            "{name}: {}",
            stdout(&o)
        );
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

#[test]
fn example_config_parses_and_documents_every_key() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/herald.example.toml"))
        .expect("example");
    let parsed = herald::config::Config::from_toml(&text).expect("the example parses");
    // Every default is the one the example states.
    let defaults = toml::Table::try_from(herald::config::Config::default()).expect("defaults");
    let example = toml::Table::try_from(parsed).expect("example");
    assert_eq!(
        defaults, example,
        "herald.example.toml drifted from the defaults"
    );
    // And every key (commented or not) is named in the file.
    fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in t {
            match v.as_table() {
                Some(sub) => keys(sub, &format!("{prefix}{k}."), out),
                None => out.push(k.clone()),
            }
        }
    }
    let mut all = Vec::new();
    keys(&defaults, "", &mut all);
    all.extend(
        [
            "url",
            "hs256_secret",
            "public_key_pem_file",
            "jwks_file",
            "jwks_url",
            "jwks_ca_file",
            "issuer",
            "audience",
            "file",
        ]
        .map(String::from),
    );
    for k in all {
        assert!(
            text.contains(&format!("{k} =")),
            "herald.example.toml does not document {k}"
        );
    }
}

#[test]
fn every_command_has_help() {
    for cmd in ["serve", "publish", "broadcast", "retract", "token"] {
        let o = herald_cli(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help");
        assert!(
            stdout(&o).contains("Usage: herald"),
            "{cmd}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let o = herald_cli(&[
        "publish",
        "--to",
        "everyone",
        "--kind",
        "banner",
        "--title",
        "x",
        "--api",
        "http://127.0.0.1:1",
    ]);
    assert!(!o.status.success());
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("--to"), "{}", stderr(&o));
    let o = herald_cli(&[
        "publish",
        "--to",
        "all",
        "--kind",
        "banner",
        "--api",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(
        stderr(&o),
        "herald: error: title: a title or a body is required"
    );
    let o = herald_cli(&[
        "publish",
        "--to",
        "all",
        "--kind",
        "banner",
        "--title",
        "x",
        "--api",
        "http://127.0.0.1:1",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot reach the admin API"),
        "{}",
        stderr(&o)
    );
    let o = herald_cli(&["serve", "--config", "/nonexistent.toml"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent.toml"), "{}", stderr(&o));
}

#[test]
fn token_mints_with_the_configured_secret() {
    let o = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "token",
            "--sub",
            "alice",
            "--segments",
            "beta,admins",
            "--attr",
            "plan=free",
            "--attr",
            "level=3",
        ])
        .env("HERALD_AUTH__HS256_SECRET", SECRET)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = herald::config::AuthConfig {
        hs256_secret: Some(SECRET.into()),
        ..Default::default()
    };
    let id = herald::auth::Verifier::new(&cfg, None)
        .expect("v")
        .verify(&stdout(&o))
        .expect("valid token");
    assert_eq!(&*id.user, "alice");
    assert!(id.in_segment("admins"));
    assert_eq!(id.attr_text("level").as_deref(), Some("3"));
}

#[tokio::test]
async fn publish_broadcast_and_retract_through_the_admin_api() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("alice").await;
    let api = format!("http://{}", h.admin);

    let o = herald_cli_async(vec![
        "broadcast".into(),
        "--title".into(),
        "Payments degraded".into(),
        "--severity".into(),
        "critical".into(),
        "--api".into(),
        api.clone(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o);
    let f = c.recv().await;
    assert_eq!(
        (f["id"].as_str(), f["title"].as_str()),
        (Some(id.as_str()), Some("Payments degraded"))
    );
    assert_eq!(
        (f["priority"].as_str(), f["sticky"].as_bool()),
        (Some("urgent"), Some(true))
    );
    assert_eq!(f["theme"]["severity"], "critical");

    let o = herald_cli_async(vec![
        "publish".into(),
        "--to".into(),
        "user:alice,zed".into(),
        "--kind".into(),
        "toast".into(),
        "--body".into(),
        "Saved".into(),
        "--ttl".into(),
        "30m".into(),
        "--api".into(),
        api.clone(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("online: alice") && stderr(&o).contains("offline: zed"),
        "{}",
        stderr(&o)
    );
    let f = c.recv().await;
    assert_eq!(
        (f["kind"].as_str(), f["body"].as_str()),
        (Some("toast"), Some("Saved"))
    );

    let o = herald_cli_async(vec![
        "retract".into(),
        id.clone(),
        "--api".into(),
        api.clone(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.recv().await, json!({"t": "retract", "id": id}));
    h.stop().await;
}

#[tokio::test]
async fn publish_from_a_json_file_through_redis() {
    let redis = Redis::start();
    let h = Herald::start(redis_config(&redis)).await;
    let mut c = h
        .connect_claims(claims_with("alice", &["beta"], json!({})))
        .await;
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // A position is Herald's to set: refused before anything is sent.
    let positioned = dir.join("pos.json");
    std::fs::write(
        &positioned,
        json!({"to": "all", "kind": "toast", "title": "with pos", "pos": "e.1-1"}).to_string(),
    )
    .expect("write");
    let o = publish_json(&positioned, &redis).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("pos: set by Herald"), "{}", stderr(&o));
    // The next frame is the valid publish below: nothing went out above.
    let file = dir.join("env.json");
    std::fs::write(&file, json!({"to": {"segments": ["beta"]}, "kind": "modal", "title": "Beta feature", "actions": [{"id": "try", "label": "Try it"}]}).to_string()).expect("write");
    let o = publish_json(&file, &redis).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let f = c.recv().await;
    assert_eq!(
        (f["title"].as_str(), f["id"].as_str()),
        (Some("Beta feature"), Some(stdout(&o).as_str()))
    );
    h.stop().await;
}

#[tokio::test]
async fn serve_runs_embedded_and_token_uses_dev_mode() {
    let node = NodeProcess::spawn(&[], &[], true).await;
    // No key configured: herald token asks the dev-mode node.
    let o = herald_cli_async(vec![
        "token".into(),
        "--sub".into(),
        "dev-user".into(),
        "--url".into(),
        format!("http://{}", node.public),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let mut c = Client::connect(&format!("ws://{}/v1/ws?token={}", node.public, stdout(&o))).await;
    assert_eq!(c.hello["user"], "dev-user");
    let o = herald_cli_async(vec![
        "broadcast".into(),
        "--title".into(),
        "Payments degraded".into(),
        "--api".into(),
        format!("http://{}", node.admin),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(c.recv_title().await, "Payments degraded");
    // SIGTERM drains: the session gets 1012 and the process exits 0.
    let stop = tokio::spawn(node.terminate());
    assert_eq!(c.closed().await.0, 1012);
    let (status, logs) = stop.await.expect("join");
    assert!(status.success(), "exit: {status:?}");
    assert!(logs.contains("DEV MODE"), "dev mode is announced loudly");
    assert!(!logs.contains("eyJ"), "no token in the logs");
}

/// `herald publish --redis` keeps the history as the nodes are configured
/// to (the same file and HERALD_* environment), not as the defaults say.
#[tokio::test]
async fn publishing_through_redis_trims_the_history_as_configured() {
    let redis = Redis::start();
    let publish = |n: usize| {
        let url = redis.url();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(["publish", "--redis", &url, "--to", "all", "--kind", "toast"])
                .args(["--title", &format!("t{n}")])
                .env("HERALD_HISTORY__MAX_PER_STREAM", "3")
                .env_remove("HERALD_API_KEY")
                .output()
                .expect("run herald")
        })
    };
    for n in 0..5 {
        let o = publish(n).await.expect("join");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let len: usize = redis::cmd("XLEN")
        .arg("herald:history")
        .query_async(&mut redis.conn().await)
        .await
        .expect("XLEN");
    assert_eq!(len, 3, "the configured 3 entries, not the default 1000");
}

#[test]
fn validate_refuses_what_only_herald_sets() {
    let dir = std::env::temp_dir().join(format!("herald-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cases = [
        (
            "pos.json",
            json!({"to": "all", "kind": "toast", "title": "x", "pos": "e.1-1"}),
            "pos",
        ),
        ("op.json", json!({"op": "campaign", "id": "c"}), "op"),
    ];
    validate_refuses(&dir, cases, "envelope");
    // Without it, the same envelope is fine: positive control.
    let file = dir.join("ok.json");
    std::fs::write(
        &file,
        json!({"to": "all", "kind": "toast", "title": "x"}).to_string(),
    )
    .expect("write");
    assert!(
        herald_cli(&["validate", file.to_str().expect("path")])
            .status
            .success()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// 2,000 invalid payloads in a burst give a few log lines, not 2,000: the
/// first, then one line per `log.repeat_interval` with the count and the
/// last example (and the rest at shutdown); the metric counts every one.
#[tokio::test]
async fn a_flood_of_bad_payloads_gives_a_few_log_lines_and_every_one_counted() {
    const BAD: usize = 2000;
    let redis = Redis::start();
    let url = redis.url();
    let node = NodeProcess::spawn(
        &[],
        &[
            ("HERALD_REDIS__URL", url.as_str()),
            (
                "HERALD_AUTH__HS256_SECRET",
                "cli-test-secret-0123456789abcdef",
            ),
            ("HERALD_LOG__REPEAT_INTERVAL", "1s"),
            ("HERALD_LOG__LEVEL", "warn"),
        ],
        true,
    )
    .await;
    let metric = || async {
        let text = reqwest::get(format!("http://{}/metrics", node.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find(|l| l.starts_with("herald_invalid_envelopes_total{source=\"redis\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    eventually("the node subscribed", || async {
        redis
            .channels()
            .await
            .iter()
            .any(|c| c == "herald:broadcast")
    })
    .await;
    let mut conn = redis.conn().await;
    let mut pipe = redis::pipe();
    for i in 0..BAD {
        pipe.cmd("PUBLISH")
            .arg("herald:broadcast")
            .arg(format!(
                "{{\"to\":\"all\",\"kind\":\"banner\",\"title\":{i}}}"
            ))
            .ignore();
    }
    let () = pipe.query_async(&mut conn).await.expect("PUBLISH");
    eventually("every one counted", || async {
        metric().await == BAD as f64
    })
    .await;
    let (status, logs) = node.terminate().await;
    assert!(status.success(), "exit: {status:?}");
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("envelope refused"))
        .collect();
    assert!(
        lines.first().is_some_and(|l| !l.contains("(repeated)")),
        "the first is logged as it is: {lines:?}"
    );
    let held_back: u64 = lines
        .iter()
        .filter_map(|l| l.split("repeated=").nth(1))
        .filter_map(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    let logged = lines.iter().filter(|l| !l.contains("(repeated)")).count() as u64;
    assert_eq!(
        logged + held_back,
        BAD as u64,
        "every one accounted for: {lines:?}"
    );
    assert!(lines.len() <= 10, "{} lines: {lines:?}", lines.len());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("(repeated)") && l.contains("last=")),
        "a summary with the last example: {lines:?}"
    );
}

#[test]
fn validate_checks_campaign_windows_quiet_hours_and_experiments() {
    let dir = std::env::temp_dir().join(format!("herald-validate-exp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let base =
        json!({"id": "c", "trigger": {"event": "x"}, "message": {"kind": "toast", "title": "x"}});
    let with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let variants = json!([{"id": "a", "weight": -1, "message": {"kind": "toast", "title": "x"}}]);
    let mut bad_weight = with("variants", variants);
    bad_weight
        .as_object_mut()
        .expect("object")
        .remove("message");
    let cases = [
        ("weight.json", bad_weight, "variants[0].weight"),
        (
            "holdout.json",
            with("holdout_pct", json!(51)),
            "holdout_pct",
        ),
        (
            "quiet.json",
            with("quiet_hours", json!({"from": "9:00", "to": "17:00"})),
            "quiet_hours.from",
        ),
        (
            "goal.json",
            with("goal", json!({"within_s": 10})),
            "goal.event",
        ),
        (
            "window.json",
            with("starts_at", json!(5))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("ends_at".into(), json!(5));
                    serde_json::Value::Object(o)
                })
                .expect("object"),
            "ends_at",
        ),
    ];
    validate_refuses(&dir, cases, "campaign");
    // The same campaign with valid values: positive control.
    let mut ok = with("quiet_hours", json!({"from": "22:00", "to": "08:00"}));
    ok["goal"] = json!({"event": "purchase", "within_s": 3600});
    ok["holdout_pct"] = json!(50);
    let file = dir.join("ok.json");
    std::fs::write(&file, ok.to_string()).expect("write");
    let o = herald_cli(&["validate", file.to_str().expect("path")]);
    assert!(o.status.success(), "{}", stdout(&o));
    let _ = std::fs::remove_dir_all(dir);
}
