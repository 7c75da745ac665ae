//! Redis Sentinel (README "Redis Sentinel"): a real master, a replica and
//! three sentinels on loopback. The node asks the sentinels for the master,
//! follows a failover when the master is killed in the middle of a stream
//! of publishes (API and ingress stream), says in `/readyz` and the metrics
//! which master it uses, never keeps writing to a server demoted to replica,
//! and `herald serve` refuses Sentinel settings that cannot work.

mod support;

use redis::AsyncCommands;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const MASTER_NAME: &str = "herald-test";

/// A redis-server or sentinel process of the test's own, killed on drop.
struct Server {
    port: u16,
    child: Option<Child>,
    /// Its `requirepass`, if any.
    password: Option<String>,
}

impl Server {
    fn spawn(port: u16, args: &[String]) -> Self {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}). These tests need Redis 7 with Sentinel: install it with `apt-get install -y redis-server redis-sentinel`")
            });
        Self {
            port,
            child: Some(child),
            password: None,
        }
    }

    /// `dir` takes the RDB a replica receives when it syncs.
    fn redis(
        port: u16,
        replica_of: Option<u16>,
        dir: &std::path::Path,
        password: Option<&str>,
    ) -> Self {
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .map(String::from)
            .to_vec();
        args.extend(["--port".into(), port.to_string()]);
        args.extend(["--dir".into(), dir.display().to_string()]);
        if let Some(master) = replica_of {
            args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
        }
        if let Some(p) = password {
            args.extend([
                "--requirepass".into(),
                p.into(),
                "--masterauth".into(),
                p.into(),
            ]);
        }
        let mut server = Self::spawn(port, &args);
        server.password = password.map(str::to_owned);
        server
    }

    fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn conn(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    async fn role(&self) -> Option<String> {
        let mut c = self.conn().await.ok()?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await.ok()?;
        match role.first() {
            Some(redis::Value::BulkString(r)) => Some(String::from_utf8_lossy(r).into_owned()),
            _ => None,
        }
    }

    async fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let mut c = self.conn().await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut c)
            .await
            .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_owned())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A master, a replica of it and three sentinels (quorum 2) watching it.
struct SentinelSet {
    servers: Vec<Server>,
    sentinels: Vec<Server>,
    dir: PathBuf,
}

impl SentinelSet {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// With `(master, sentinels)` passwords: the servers' `requirepass`
    /// (and the replica's `masterauth`), the sentinels' `requirepass` and
    /// their `auth-pass` for the master.
    async fn start_with(passwords: Option<(&str, &str)>) -> Self {
        let (master_pw, sentinel_pw) = passwords.unzip();
        let dir = std::env::temp_dir().join(format!(
            "herald-sentinel-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the sentinel configs");
        let master = Server::redis(free_port(), None, &dir, master_pw);
        wait_for("the master answers", || async {
            master.role().await.is_some()
        })
        .await;
        let replica = Server::redis(free_port(), Some(master.port), &dir, master_pw);
        wait_for("the replica is in sync", || async {
            replica
                .info_field("replication", "master_link_status")
                .await
                .as_deref()
                == Some("up")
        })
        .await;
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                // Sentinel rewrites its config file: one writable file each.
                let file = dir.join(format!("sentinel-{i}.conf"));
                let auth = match passwords {
                    Some((m, s)) => {
                        format!("requirepass {s}\nsentinel auth-pass {MASTER_NAME} {m}\n")
                    }
                    None => String::new(),
                };
                std::fs::write(
                    &file,
                    auth + &format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 5000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        dir = dir.display(),
                        master = master.port,
                    ),
                )
                .expect("sentinel config");
                let mut sentinel =
                    Server::spawn(port, &[file.display().to_string(), "--sentinel".to_owned()]);
                sentinel.password = sentinel_pw.map(str::to_owned);
                sentinel
            })
            .collect();
        let set = Self {
            servers: vec![master, replica],
            sentinels,
            dir,
        };
        // Every sentinel knows the replica and the two other sentinels, so
        // a failover can be agreed on.
        for s in &set.sentinels {
            wait_for("the sentinels know each other and the replica", || async {
                let Ok(mut c) = s.conn().await else {
                    return false;
                };
                let fields: Vec<String> = match redis::cmd("SENTINEL")
                    .arg("master")
                    .arg(MASTER_NAME)
                    .query_async(&mut c)
                    .await
                {
                    Ok(f) => f,
                    Err(_) => return false,
                };
                let get = |k: &str| {
                    fields
                        .iter()
                        .position(|f| f == k)
                        .and_then(|i| fields.get(i + 1))
                        .cloned()
                };
                get("num-other-sentinels").as_deref() == Some("2")
                    && get("num-slaves").as_deref() == Some("1")
            })
            .await;
        }
        set
    }

    fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Server::addr).collect()
    }

    /// The master the first answering sentinel names.
    async fn named_master(&self) -> Option<String> {
        for s in &self.sentinels {
            let Ok(mut c) = s.conn().await else { continue };
            if let Ok(Some((host, port))) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(MASTER_NAME)
                .query_async::<Option<(String, String)>>(&mut c)
                .await
            {
                return Some(format!("{host}:{port}"));
            }
        }
        None
    }

    fn server(&self, addr: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.addr() == addr)
    }

    /// An XADD to the ingress stream on the master, as a producer that
    /// follows the sentinels would; `None` while there is none to write to.
    async fn xadd_ingress(&self, envelope: &Value) -> Option<String> {
        let addr = self.named_master().await?;
        let mut c = self.server(&addr)?.conn().await.ok()?;
        c.xadd("herald:ingress", "*", &[("e", envelope.to_string())])
            .await
            .ok()
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for s in self.sentinels.iter_mut().chain(self.servers.iter_mut()) {
            s.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Like [`eventually`], with room for a failover (detection after 1s, the
/// vote, the promotion).
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sentinel_config(set: &SentinelSet) -> herald::config::Config {
    let mut c = config();
    c.redis.sentinels = set.sentinel_addrs();
    c.redis.sentinel_master = Some(MASTER_NAME.into());
    c
}

async fn readyz(h: &Herald) -> (u16, String) {
    h.get("/readyz").await
}

/// `herald_redis_master{addr="…"}`'s value, if the node exports it.
async fn master_metric(h: &Herald, addr: &str) -> Option<f64> {
    let (_, text) = h.get("/metrics").await;
    let prefix = format!("herald_redis_master{{addr=\"{addr}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

fn banner(id: &str) -> Value {
    json!({"id": id, "to": {"users": ["alice"]}, "kind": "banner", "title": id})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_nothing_for_a_client_that_resumes() {
    const N: usize = 60;
    const KILL_AT: usize = 20;
    let mut set = SentinelSet::start().await;
    let old = set.servers[0].addr();
    let h = Herald::start(sentinel_config(&set)).await;

    // The node says which master it uses.
    let (status, body) = readyz(&h).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("redis master \"{MASTER_NAME}\" at {old}")),
        "{body}"
    );
    assert_eq!(master_metric(&h, &old).await, Some(1.0));

    let mut live = h.connect("alice").await;
    // Positions before the kill, to resume from.
    let mut before_kill = None;
    let mut killed_at = None;
    let mut first_after_kill = None;
    let mut accepted = Vec::new();
    let mut received: Vec<String> = Vec::new();
    for i in 0..N {
        if i == KILL_AT {
            // Everything so far arrived: resume from here later.
            while received.len() < accepted.len() {
                let f = live.recv().await;
                before_kill = f["pos"].as_str().map(str::to_owned);
                received.push(f["title"].as_str().expect("title").to_owned());
            }
            set.servers[0].kill();
            killed_at = Some(Instant::now());
        }
        // Every other message through the ingress stream. Each is sent
        // until the node (or the new master) takes it; the id makes a
        // repeat harmless.
        let id = format!("m{i}");
        let envelope = banner(&id);
        wait_for("a publish is accepted", || async {
            if i % 2 == 0 {
                h.post("/v1/messages", &envelope.to_string()).await.0 == 202
            } else {
                set.xadd_ingress(&envelope).await.is_some()
            }
        })
        .await;
        accepted.push(id.clone());
        if let Some(killed_at) = killed_at
            && first_after_kill.is_none()
        {
            // The first message accepted after the kill: how long until it
            // reaches the client through the new master.
            let f = live.recv().await;
            first_after_kill = Some(killed_at.elapsed());
            received.push(f["title"].as_str().expect("title").to_owned());
        }
    }
    let elapsed = first_after_kill.expect("a delivery after the kill");
    eprintln!(
        "sentinel failover: kill -> first delivery through the new master: {} ms",
        elapsed.as_millis()
    );
    // The client that stayed connected got every accepted message too
    // (what was published while the bus was down is read back), once.
    while received.len() < accepted.len() {
        let f = live.recv().await;
        assert_eq!(f["t"], "msg", "{f}");
        received.push(f["title"].as_str().expect("title").to_owned());
    }
    let live_set: HashSet<&String> = received.iter().collect();
    assert_eq!(live_set.len(), received.len(), "no repeat: {received:?}");
    assert_eq!(live_set, accepted.iter().collect::<HashSet<_>>());

    // The replica is the master now, and the node says so.
    let new = set.servers[1].addr();
    wait_for("the replica was promoted", || async {
        set.servers[1].role().await.as_deref() == Some("master")
    })
    .await;
    wait_for("readyz names the new master", || async {
        let (status, body) = readyz(&h).await;
        status == 200 && body.contains(&format!("at {new}"))
    })
    .await;
    assert_eq!(master_metric(&h, &new).await, Some(1.0));
    assert_eq!(master_metric(&h, &old).await, Some(0.0));

    // A client that resumes from before the kill gets every message
    // accepted after that position, once each.
    let since = before_kill.expect("a position before the kill");
    let mut back = h.connect_since("alice", &since).await;
    assert_eq!(back.hello["recovered"], true, "{}", back.hello);
    let expected: HashSet<String> = accepted[KILL_AT..].iter().cloned().collect();
    let mut replayed = Vec::new();
    while replayed.len() < expected.len() {
        let f = back.recv().await;
        assert_eq!(f["t"], "msg", "{f}");
        replayed.push(f["title"].as_str().expect("title").to_owned());
    }
    let got: HashSet<String> = replayed.iter().cloned().collect();
    assert_eq!(got.len(), replayed.len(), "no repeat: {replayed:?}");
    assert_eq!(got, expected);
    // Nothing more is on its way: the next frame is a live control,
    // published through the new master.
    h.expect_control_next(&mut back, "alice").await;
    // The ingress consumer group moved too: an entry written now arrives.
    set.xadd_ingress(&banner("after"))
        .await
        .expect("XADD on the new master");
    let f = back.recv().await;
    assert_eq!(f["title"], "after", "{f}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_demoted_under_the_node_makes_it_ask_the_sentinels_again() {
    let set = SentinelSet::start().await;
    let (a, b) = (&set.servers[0], &set.servers[1]);
    let h = Herald::start(sentinel_config(&set)).await;
    assert_eq!(h.metric("herald_redis_readonly_total").await, 0.0);
    let mut c = h.connect("alice").await;
    h.publish(banner("before")).await;
    assert_eq!(c.recv().await["title"], "before");

    // The roles swap behind the node's back, its connections to the old
    // master still open; then the sentinels are told of the new master.
    let mut ca = a.conn().await.expect("old master");
    let mut cb = b.conn().await.expect("replica");
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut cb)
        .await
        .expect("promote");
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(b.port)
        .query_async(&mut ca)
        .await
        .expect("demote");
    for s in &set.sentinels {
        let mut c = s.conn().await.expect("sentinel");
        let _: () = redis::cmd("SENTINEL")
            .arg("REMOVE")
            .arg(MASTER_NAME)
            .query_async(&mut c)
            .await
            .expect("SENTINEL REMOVE");
        let _: () = redis::cmd("SENTINEL")
            .arg("MONITOR")
            .arg(MASTER_NAME)
            .arg("127.0.0.1")
            .arg(b.port)
            .arg(2)
            .query_async(&mut c)
            .await
            .expect("SENTINEL MONITOR");
    }
    wait_for("the old master replicates the new one", || async {
        a.info_field("replication", "master_link_status")
            .await
            .as_deref()
            == Some("up")
    })
    .await;

    // The first publish lands on the old master, now a replica: refused
    // there with READONLY, it goes to the new master instead, at once.
    let (status, body) = h.post("/v1/messages", &banner("after").to_string()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(c.recv().await["title"], "after");
    let refused = h.metric("herald_redis_readonly_total").await;
    assert!(refused >= 1.0, "the old master answered READONLY");
    // The node's connection moved: the next publish is not refused.
    h.publish(banner("again")).await;
    assert_eq!(c.recv().await["title"], "again");
    assert_eq!(h.metric("herald_redis_readonly_total").await, refused);
    wait_for("readyz names the new master", || async {
        readyz(&h).await.1.contains(&format!("at {}", b.addr()))
    })
    .await;
    assert_eq!(master_metric(&h, &b.addr()).await, Some(1.0));
    assert_eq!(a.role().await.as_deref(), Some("slave"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_when_the_sentinels_know_no_such_master() {
    let set = SentinelSet::start().await;
    let addrs = set.sentinel_addrs().join(",");
    let refused = tokio::task::spawn_blocking(move || {
        serve_refuses(
            &[
                ("HERALD_REDIS__SENTINELS", addrs.as_str()),
                ("HERALD_REDIS__SENTINEL_MASTER", "not-monitored"),
            ],
            "redis.sentinel_master",
        )
    });
    refused.await.expect("serve refused");
    // Positive control: the right name starts a node on the master.
    let h = Herald::start(sentinel_config(&set)).await;
    assert!(readyz(&h).await.1.contains(&set.servers[0].addr()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_reach_the_sentinels_and_the_master() {
    let set = SentinelSet::start_with(Some(("master-secret", "sentinel-secret"))).await;
    let addrs = set.sentinel_addrs().join(",");
    for (master, sentinel, key) in [
        ("wrong", "sentinel-secret", "redis.password"),
        ("master-secret", "wrong", "redis.sentinel_password"),
    ] {
        let addrs = addrs.clone();
        tokio::task::spawn_blocking(move || {
            serve_refuses(
                &[
                    ("HERALD_REDIS__SENTINELS", addrs.as_str()),
                    ("HERALD_REDIS__SENTINEL_MASTER", MASTER_NAME),
                    ("HERALD_REDIS__PASSWORD", master),
                    ("HERALD_REDIS__SENTINEL_PASSWORD", sentinel),
                ],
                key,
            )
        })
        .await
        .expect("serve refused");
    }
    // The right passwords: a node on the master, delivering.
    let mut cfg = sentinel_config(&set);
    cfg.redis.password = Some("master-secret".into());
    cfg.redis.sentinel_password = Some("sentinel-secret".into());
    let h = Herald::start(cfg).await;
    assert!(readyz(&h).await.1.contains(&set.servers[0].addr()));
    let mut c = h.connect("alice").await;
    h.publish(banner("with passwords")).await;
    assert_eq!(c.recv().await["title"], "with passwords");
    h.stop().await;
}

fn serve_refuses(env: &[(&str, &str)], key_text: &str) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.arg("serve")
        .env_remove("HERALD_REDIS__URL")
        .env("HERALD_AUTH__HS256_SECRET", SECRET)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_ADMIN_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("herald serve runs");
    assert!(!out.status.success(), "serve must stop for {env:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(key_text), "{key_text} in: {stderr}");
}

#[test]
fn serve_refuses_sentinel_settings_that_cannot_work() {
    serve_refuses(
        &[("HERALD_REDIS__SENTINELS", "127.0.0.1:26379")],
        "redis.sentinel_master",
    );
    serve_refuses(
        &[("HERALD_REDIS__SENTINEL_MASTER", "mymaster")],
        "redis.sentinels",
    );
    serve_refuses(
        &[
            ("HERALD_REDIS__SENTINELS", "127.0.0.1:26379"),
            ("HERALD_REDIS__SENTINEL_MASTER", "mymaster"),
            ("HERALD_REDIS__URL", "redis://127.0.0.1:6379"),
        ],
        "redis.url",
    );
    serve_refuses(
        &[
            ("HERALD_REDIS__SENTINELS", "127.0.0.1:26379"),
            ("HERALD_REDIS__SENTINEL_MASTER", "mymaster"),
            ("HERALD_REDIS__CLUSTER", "true"),
        ],
        "redis.cluster",
    );
    serve_refuses(&[("HERALD_REDIS__PASSWORD", "secret")], "redis.password");
    serve_refuses(
        &[
            ("HERALD_REDIS__SENTINELS", "sentinel-without-port"),
            ("HERALD_REDIS__SENTINEL_MASTER", "mymaster"),
        ],
        "redis.sentinels",
    );
}
