//! `herald-bench` against each server it compares (issue 12): Herald, and the
//! uWebSockets.js and Socket.IO peers in benches/peers, and herald-floor. A small fan-out per
//! server, through real processes, a real Redis and real sockets: every
//! session opens (the Socket.IO one over Engine.IO v4 framing) and every
//! broadcast published on Herald's Redis channel reaches every session.
//! The peers need `npm ci` in benches/peers (scripts/test runs it).

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn fanout(peer: &str) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let peers = root.join("benches/peers");
    assert!(
        peers.join("node_modules").is_dir(),
        "benches/peers/node_modules is missing: run `(cd benches/peers && npm ci)`"
    );
    assert!(
        Command::new("node").arg("--version").output().is_ok(),
        "node not found: install it with `apt-get install -y nodejs npm`"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .current_dir(root)
        .args(["fanout", "--peer", peer, "--with-redis"])
        .args(["--herald", env!("CARGO_BIN_EXE_herald")])
        .args(["--sessions", "40", "--workers", "2", "--concurrency", "8"])
        .args(["--messages", "3", "--interval-ms", "100"])
        .output()
        .expect("herald-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "herald-bench fanout --peer {peer} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {stdout}"));
    serde_json::from_str(line).expect("the JSON line parses")
}

fn check(peer: &str) {
    let r = fanout(peer);
    assert_eq!(r["peer"], peer, "{r}");
    assert_eq!(r["via"], "redis", "{r}");
    assert_eq!(r["sessions"], 40, "{r}");
    assert_eq!(
        r["node_sessions"], 40,
        "the server counts the sessions: {r}"
    );
    assert_eq!(r["connect_failures"], 0, "{r}");
    assert_eq!(r["received"], 120, "3 broadcasts x 40 sessions: {r}");
    assert_eq!(
        r["latency"]["samples"], 120,
        "each frame carried its ts: {r}"
    );
    assert_eq!(r["server_closed"], 0, "{r}");
}

#[test]
fn herald_through_redis() {
    check("herald");
}

#[test]
fn uws_peer() {
    check("uws");
}

#[test]
fn socketio_peer() {
    check("socketio");
}

/// herald-floor, the machine's floor (src/bin/herald-floor.rs).
#[test]
fn floor_peer() {
    check("floor");
}
