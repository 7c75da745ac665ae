//! Named fixtures for integration tests: a real Redis on a free port, a real
//! Herald node on port-0 listeners, WebSocket clients over real sockets.
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use herald::auth::{Claims, Signer};
use herald::config::Config;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret-0123456789abcdef";
/// How long any expected event may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds or [`PATIENCE`] runs out.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A redis-server of the test's own, on a free port, killed on drop.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_free(|_| Vec::new()).0
    }

    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// On a free port, with `extra(port)` arguments: picked again when
    /// redis-server exits at once (another test bound the port between its
    /// pick and the server's bind). Returns the arguments that worked.
    fn start_free(extra: impl Fn(u16) -> Vec<String>) -> (Self, Vec<String>) {
        for _ in 0..5 {
            let port = free_port();
            let args = extra(port);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Some(redis) = Self::try_start_with(port, &argv) {
                return (redis, args);
            }
        }
        panic!("redis-server exited at start on five free ports in a row");
    }

    fn start_with(port: u16, extra: &[&str]) -> Self {
        Self::try_start_with(port, extra)
            .unwrap_or_else(|| panic!("redis-server exited at start on port {port} (port in use?)"))
    }

    /// `None` when redis-server exits before it answers.
    fn try_start_with(port: u16, extra: &[&str]) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            // Tests slow Redis down with DEBUG SLEEP.
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}). These tests need Redis 7: install it with `apt-get install -y redis-server`")
            });
        let mut redis = Self {
            port,
            child: Some(child),
        };
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(client) = redis::Client::open(redis.url())
                && let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                break;
            }
            let exited = redis.child.as_mut().map(|c| c.try_wait());
            if matches!(exited, Some(Ok(Some(_)))) {
                redis.child = None;
                return None;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL), as an outage would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        Self::conn_to(&self.url()).await
    }

    async fn conn_to(url: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url)
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    pub async fn publish(&self, channel: &str, payload: &str) -> i64 {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn().await)
            .await
            .expect("PUBLISH")
    }

    /// Every entry of a stream, as field maps.
    pub async fn xrange(&self, key: &str) -> Vec<std::collections::HashMap<String, String>> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn().await)
            .await
            .expect("XRANGE");
        reply
            .ids
            .into_iter()
            .map(|e| {
                e.map
                    .into_iter()
                    .map(|(k, v)| (k, redis::from_redis_value::<String>(v).unwrap_or_default()))
                    .collect()
            })
            .collect()
    }

    /// The channels subscribed now, sorted, without the nodes' own probe
    /// channels (`herald:probe:{node}`, one per node: see
    /// [`Redis::probe_channels`]).
    pub async fn channels(&self) -> Vec<String> {
        let mut v = self.all_channels().await;
        v.retain(|c| !c.starts_with("herald:probe:"));
        v
    }

    /// The nodes' probe channels subscribed now.
    pub async fn probe_channels(&self) -> Vec<String> {
        let mut v = self.all_channels().await;
        v.retain(|c| c.starts_with("herald:probe:"));
        v
    }

    async fn all_channels(&self) -> Vec<String> {
        let mut v: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(&mut self.conn().await)
            .await
            .expect("PUBSUB CHANNELS");
        v.sort();
        v
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters (no replicas) on free ports, made with
/// `redis-cli --cluster create` as an operator would; killed on drop.
pub struct RedisCluster {
    pub masters: Vec<Redis>,
    /// Each master's `redis-server` arguments beyond the port, to restart it.
    args: Vec<Vec<String>>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("herald-cluster-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let (masters, args): (Vec<Redis>, Vec<Vec<String>>) = (0..3)
            .map(|_| {
                Redis::start_free(|port| {
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-port".into(),
                        free_port().to_string(),
                        "--cluster-config-file".into(),
                        dir.join(format!("nodes-{port}.conf"))
                            .to_string_lossy()
                            .into_owned(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                    ]
                })
            })
            .unzip();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(masters.iter().map(|m| format!("127.0.0.1:{}", m.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}); install redis-server (it ships redis-cli)")
            });
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = Self { masters, args, dir };
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !self.masters.iter().all(|m| {
            redis::Client::open(m.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        }) {
            assert!(
                std::time::Instant::now() < deadline,
                "the Redis Cluster did not become ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills master `i` (SIGKILL) and starts it again on the same port and
    /// cluster config, so it rejoins with its slots (its data is gone).
    pub fn restart(&mut self, i: usize) {
        let port = self.masters[i].port;
        self.masters[i].kill();
        let args: Vec<&str> = self.args[i].iter().map(String::as_str).collect();
        self.masters[i] = Redis::start_with(port, &args);
        self.wait_ok();
    }

    /// Moves `key`'s slot (which must hold no keys) to master `to`, as
    /// `redis-cli --cluster reshard` does: IMPORTING, MIGRATING, then the
    /// new owner announced to every master.
    pub async fn move_slot(&self, key: &str, to: usize) {
        let from = self.owner(key).await;
        let id = |r: &Redis| {
            let url = r.url();
            async move {
                let id: String = redis::cmd("CLUSTER")
                    .arg("MYID")
                    .query_async(&mut Redis::conn_to(&url).await)
                    .await
                    .expect("CLUSTER MYID");
                id
            }
        };
        let (from_id, to_id) = (id(from).await, id(&self.masters[to]).await);
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut from.conn().await)
            .await
            .expect("CLUSTER KEYSLOT");
        let setslot = |r: &Redis, how: &'static str, node: String| {
            let url = r.url();
            async move {
                let mut cmd = redis::cmd("CLUSTER");
                cmd.arg("SETSLOT").arg(slot).arg(how).arg(node);
                let () = cmd
                    .query_async(&mut Redis::conn_to(&url).await)
                    .await
                    .expect("CLUSTER SETSLOT");
            }
        };
        setslot(&self.masters[to], "IMPORTING", from_id.clone()).await;
        setslot(from, "MIGRATING", to_id.clone()).await;
        setslot(from, "NODE", to_id.clone()).await;
        for m in &self.masters {
            if m.port != from.port {
                setslot(m, "NODE", to_id.clone()).await;
            }
        }
        eventually(&format!("slot {slot} moved"), || async {
            self.owner(key).await.port == self.masters[to].port
        })
        .await;
    }

    /// The seed URL nodes are given: one master is enough to find the rest.
    pub fn seed(&self) -> String {
        self.masters[0].url()
    }

    /// The master owning `key`'s slot (the others answer MOVED).
    pub async fn owner(&self, key: &str) -> &Redis {
        for m in &self.masters {
            let read: redis::RedisResult<i64> = redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut m.conn().await)
                .await;
            if read.is_ok() {
                return m;
            }
        }
        panic!("no master owns {key}")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for m in &mut self.masters {
            m.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Test defaults: a known HS256 secret, port-0 listeners on loopback.
pub fn config() -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        ..Config::default()
    };
    c.auth.hs256_secret = Some(SECRET.into());
    c.shutdown_grace = Duration::from_secs(5);
    c
}

pub fn redis_config(redis: &Redis) -> Config {
    let mut c = config();
    c.redis.url = Some(redis.url());
    c
}

/// A Herald node running in this process, stopped (drained) on `stop`.
pub struct Herald {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    http: reqwest::Client,
    pub api_key: Option<String>,
}

impl Herald {
    /// On `config.clock` (the system's unless a test set a manual one).
    pub async fn start(config: Config) -> Self {
        let clock = config.clock.clone();
        Self::start_with_clock(config, clock).await
    }

    /// A node whose campaigns and counts read `clock` (windows, quiet
    /// hours, goals, hourly buckets), which the test moves.
    pub async fn start_with_clock(config: Config, clock: herald::clock::Clock) -> Self {
        let listeners = herald::Listeners::bind(&config).await.expect("bind");
        let public = listeners.public.local_addr().expect("addr");
        let admin = listeners.admin.local_addr().expect("addr");
        let api_key = config.auth.api_keys.first().cloned();
        let redis_mode = config.redis.bus_url().is_some();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            herald::run_with_clock(
                config,
                listeners,
                async {
                    let _ = rx.await;
                },
                clock,
            )
            .await
            .expect("herald runs");
        });
        let h = Self {
            public,
            admin,
            stop: Some(tx),
            task: Some(task),
            http: reqwest::Client::new(),
            api_key,
        };
        if redis_mode {
            let h2 = &h;
            eventually(
                "node ready",
                || async move { h2.get("/readyz").await.0 == 200 },
            )
            .await;
        }
        h
    }

    /// Triggers the drain and waits for the node to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("node stops in time")
                .expect("node task");
        }
    }

    /// Starts the drain without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.public)
    }

    pub async fn connect(&self, user: &str) -> Client {
        self.connect_claims(claims(user)).await
    }

    pub async fn connect_claims(&self, claims: Claims) -> Client {
        let url = format!("{}?token={}", self.ws_url(), token(&claims));
        Client::connect(&url).await
    }

    /// Connects resuming from `since` (SPEC §3).
    pub async fn connect_since(&self, user: &str, since: &str) -> Client {
        let url = format!(
            "{}?since={since}&token={}",
            self.ws_url(),
            token(&claims(user))
        );
        Client::connect(&url).await
    }

    fn with_key(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &str) -> (u16, Value) {
        self.send_json(reqwest::Method::PUT, path, body).await
    }

    async fn send_json(&self, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
        let req = self
            .http
            .request(method, format!("http://{}{path}", self.admin))
            .body(body.to_owned());
        let res = self.with_key(req).send().await.expect("admin request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A campaign `once` (at most one display per user) stored through
    /// this node fires on `other`; then the same user's next event, on this
    /// node, is refused by the counter they share, and the next message that
    /// session gets is a control (nothing was shown). Returns that session.
    pub async fn campaign_counter_shared_with(&self, other: &Herald, user: &str) -> Client {
        let once = json!({"trigger": {"event": "opened"}, "message": {"kind": "toast", "title": "once"}, "frequency": {"max": 1}});
        assert_eq!(
            self.put("/v1/campaigns/once", &once.to_string()).await.0,
            200
        );
        eventually("the other node applies the campaign", || async {
            other.get_json("/v1/campaigns").await["campaigns"]
                .as_array()
                .is_some_and(|c| c.len() == 1)
        })
        .await;
        let mut first = other.connect(user).await;
        first.send(r#"{"t":"event","name":"opened"}"#).await;
        assert_eq!(first.recv_title().await, "once");
        drop(first);
        // Another device, another node: the frequency counter is in Redis.
        let mut second = self.connect(user).await;
        second.send(r#"{"t":"event","name":"opened"}"#).await;
        eventually("refused by the shared counter", || async {
            self.metric("herald_campaign_decisions_total{reason=\"frequency\"}")
                .await
                == 1.0
        })
        .await;
        self.expect_control_next(&mut second, user).await;
        second
    }

    pub async fn publish(&self, envelope: Value) -> Value {
        let (status, body) = self.post("/v1/messages", &envelope.to_string()).await;
        assert_eq!(status, 202, "publish answered {status}: {body}");
        body
    }

    /// Publishes a control message to `user` and asserts it is the next
    /// frame `c` receives: nothing that reached `c`'s node earlier for it is
    /// still on its way. The positive half of every "nothing arrives" check.
    pub async fn expect_control_next(&self, c: &mut Client, user: &str) {
        self.publish(
            serde_json::json!({"to": {"users": [user]}, "kind": "toast", "title": "control"}),
        )
        .await;
        let f = c.recv().await;
        assert_eq!(
            f["title"], "control",
            "expected the control message next, got {f}"
        );
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send_json(reqwest::Method::DELETE, path, "").await
    }

    /// GET on the admin listener: status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let req = self.http.get(format!("http://{}{path}", self.admin));
        let res = self.with_key(req).send().await.expect("admin request");
        (res.status().as_u16(), res.text().await.unwrap_or_default())
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let (status, text) = self.get(path).await;
        assert_eq!(status, 200, "GET {path} answered {status}: {text}");
        serde_json::from_str(&text).expect("JSON body")
    }

    /// A metric's value from /metrics (first sample whose line starts with `prefix`).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Tries an upgrade and returns the refusal: status and body.
    pub async fn refused(&self, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().expect("request");
        for (k, v) in headers {
            req.headers_mut().insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok(_) => panic!("upgrade to {url} was accepted"),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                let body = res
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                (res.status().as_u16(), body)
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs the `herald` binary as a user would (no Redis URL or API key from
/// the environment, no stdin) and waits for it.
pub fn herald_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env_remove("HERALD_REDIS__URL")
        .env_remove("HERALD_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run herald")
}

/// [`herald_cli`] off the async test's thread, so that nodes on the test's
/// runtime keep running meanwhile.
pub async fn herald_cli_async(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        herald_cli(&args)
    })
    .await
    .expect("join")
}

/// A node in a process of its own, for faults that kill a process: SIGKILL
/// ends its sockets and its heartbeats, as a crash would.
pub struct NodeProcess {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    child: Option<Child>,
    /// With `logs`: a thread reading stderr as it comes, so that a node
    /// logging more than a pipe holds never blocks on it.
    logs: Option<std::thread::JoinHandle<String>>,
}

impl NodeProcess {
    /// `herald serve` on free loopback ports, with extra arguments and
    /// environment, once it answers `/healthz`. With `logs`, its stderr is
    /// kept for [`NodeProcess::terminate`] to return.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)], logs: bool) -> Self {
        let (public, admin) = (free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{public}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
            ])
            .args(args)
            .env_remove("HERALD_REDIS__URL")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(if logs { Stdio::piped() } else { Stdio::null() })
            .spawn()
            .expect("spawn herald");
        let logs = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                use std::io::Read;
                let mut logs = String::new();
                err.read_to_string(&mut logs).expect("read logs");
                logs
            })
        });
        let node = Self {
            public: format!("127.0.0.1:{public}").parse().expect("addr"),
            admin: format!("127.0.0.1:{admin}").parse().expect("addr"),
            child: Some(child),
            logs,
        };
        let healthz = format!("http://{}/healthz", node.public);
        eventually("the node process answers /healthz", || {
            let url = healthz.clone();
            async move { reqwest::get(url).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        node
    }

    /// A node on `redis` with the test secret and a fast heartbeat, ready.
    pub async fn start(redis: &Redis) -> Self {
        let url = redis.url();
        let node = Self::spawn(
            &["--redis", &url],
            &[
                ("HERALD_AUTH__HS256_SECRET", SECRET),
                ("HERALD_REDIS__HEARTBEAT", "100ms"),
            ],
            false,
        )
        .await;
        let ready = format!("http://{}/readyz", node.admin);
        eventually("the node process is ready", || {
            let url = ready.clone();
            async move { reqwest::get(url).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        node
    }

    /// SIGTERM, as an orchestrator stops a node; returns how it exited and
    /// what it logged (with `logs`).
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        assert!(
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill")
                .success()
        );
        let logs = self.logs.take();
        tokio::task::spawn_blocking(move || {
            let status = child.wait().expect("wait");
            let logs = logs.map_or_else(String::new, |l| l.join().expect("log reader"));
            (status, logs)
        })
        .await
        .expect("join")
    }

    pub async fn connect(&self, user: &str) -> Client {
        Client::connect(&format!(
            "ws://{}/v1/ws?token={}",
            self.public,
            token(&claims(user))
        ))
        .await
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Publishes through the node's admin API; returns the answer.
    pub async fn publish(&self, envelope: Value) -> Value {
        let res = reqwest::Client::new()
            .post(format!("http://{}/v1/messages", self.admin))
            .body(envelope.to_string())
            .send()
            .await
            .expect("admin request");
        assert_eq!(res.status().as_u16(), 202, "publish refused");
        res.json().await.expect("JSON answer")
    }

    /// [`Herald::expect_control_next`] for a node in its own process.
    pub async fn expect_control_next(&self, c: &mut Client, user: &str) {
        self.publish(json!({"to": {"users": [user]}, "kind": "toast", "title": "control"}))
            .await;
        let f = c.recv().await;
        assert_eq!(
            f["title"], "control",
            "expected the control message next, got {f}"
        );
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn claims(user: &str) -> Claims {
    Claims {
        sub: user.into(),
        exp: herald::auth::unix_now() + 3600,
        iat: None,
        segments: None,
        attrs: None,
    }
}

pub fn claims_with(user: &str, segments: &[&str], attrs: Value) -> Claims {
    Claims {
        segments: Some(segments.iter().map(|s| s.to_string()).collect()),
        attrs: attrs.as_object().cloned(),
        ..claims(user)
    }
}

pub fn token(claims: &Claims) -> String {
    Signer::hs256(SECRET).mint(claims).expect("mint")
}

/// A WebSocket client over a real socket.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade accepted");
        Self::after_upgrade(ws).await
    }

    /// Connects over a socket the test prepared (its buffer sizes, say).
    pub async fn connect_over(url: &str, tcp: TcpStream) -> Self {
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
            .await
            .expect("upgrade accepted");
        Self::after_upgrade(ws).await
    }

    async fn after_upgrade(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        let mut c = Self {
            ws,
            hello: Value::Null,
        };
        c.hello = c.recv().await;
        assert_eq!(c.hello["t"], "hello", "first frame is hello: {}", c.hello);
        c
    }

    /// The next text frame as JSON; fails on close or after [`PATIENCE`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame ok");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next `msg` frame's title; the frame must be a `msg`.
    pub async fn recv_title(&mut self) -> String {
        let f = self.recv().await;
        assert_eq!(f["t"], "msg", "expected a msg frame, got {f}");
        f["title"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_message(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// Reads until the socket ends, with or without a close frame.
    pub async fn ended(&mut self) {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the socket ends in time");
            match next {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("close in time");
            match next {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => {
                    return (u16::from(CloseCode::Status), String::new());
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before a close frame: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }
}

/// How a publish stream is paced.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Each message as soon as the previous publish returned.
    BackToBack,
    /// Each message once the client received the one before (on whichever
    /// connection, or by resume): on a Redis Cluster a broadcast and the
    /// per-user message published right after it travel over different
    /// Redis connections and may arrive in the other order (README, "On a
    /// Redis Cluster"), so only one is in flight at a time.
    OneInFlight,
}

/// A client of `user` that keeps reconnecting, to one node then the other,
/// while broadcasts and messages for it alone are published through the
/// first one after another: every message arrives once, in publish order,
/// and nothing follows on its last connection.
pub async fn reconnect_during_a_publish_stream(nodes: [&Herald; 2], user: &str, pace: Pace) {
    const N: usize = 600;
    let first = nodes[0].connect(user).await;
    let received = std::sync::atomic::AtomicUsize::new(0);
    let received = &received;
    let publisher = async {
        for i in 0..N {
            if pace == Pace::OneInFlight {
                while received.load(std::sync::atomic::Ordering::Acquire) < i {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let to = if i % 2 == 0 {
                json!("all")
            } else {
                json!({"users": [user]})
            };
            nodes[0]
                .publish(json!({"to": to, "kind": "banner", "title": format!("m{i}")}))
                .await;
        }
    };
    let client = async {
        let mut c = first;
        let mut titles = Vec::with_capacity(N);
        let mut on_this_connection = 0;
        while titles.len() < N {
            let f = match tokio::time::timeout(PATIENCE - Duration::from_secs(1), c.recv()).await {
                Ok(f) => f,
                Err(_) => panic!(
                    "nothing after {} messages ({} on this connection); missing: {:?}",
                    titles.len(),
                    on_this_connection,
                    (0..N)
                        .map(|i| format!("m{i}"))
                        .filter(|t| !titles.contains(t))
                        .collect::<Vec<_>>()
                ),
            };
            assert_eq!(f["t"], "msg", "{f}");
            titles.push(f["title"].as_str().expect("title").to_owned());
            received.store(titles.len(), std::sync::atomic::Ordering::Release);
            on_this_connection += 1;
            if on_this_connection == 3 {
                let pos = f["pos"].as_str().expect("pos").to_owned();
                c = nodes[titles.len() % 2].connect_since(user, &pos).await;
                assert_eq!(c.hello["recovered"], true, "after {}", titles.len());
                on_this_connection = 0;
            }
        }
        (titles, c)
    };
    let ((), (titles, mut last)) = tokio::join!(publisher, client);
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(titles, expected);
    nodes[0].expect_control_next(&mut last, user).await;
}

/// A `require_ack` message for everyone is tracked per user: once `a`
/// dismissed it (`stored` holds when the node has recorded that), `a`'s
/// next sessions do not get it and `b`'s do; retracted, `b` takes it off
/// and nobody gets it any more.
pub async fn require_ack_tracked_per_user<F, Fut>(h: &Herald, stored: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    h.publish(json!({"id": "tos", "to": "all", "kind": "modal", "title": "Terms changed", "require_ack": true}))
        .await;
    let mut a = h.connect("a").await;
    assert_eq!(a.recv().await["id"], "tos");
    a.send(r#"{"t":"ack","id":"tos","status":"dismissed"}"#)
        .await;
    eventually("a's acknowledgement stored", stored).await;
    let mut a2 = h.connect("a").await;
    h.expect_control_next(&mut a2, "a").await;
    let mut b = h.connect("b").await;
    assert_eq!(b.recv().await["id"], "tos", "b has not acknowledged");
    let (status, _) = h.delete("/v1/messages/tos").await;
    assert_eq!(status, 202);
    assert_eq!(b.recv().await, json!({"t": "retract", "id": "tos"}));
    let mut b2 = h.connect("b").await;
    h.expect_control_next(&mut b2, "b").await;
}

/// A TCP proxy between a node and Redis that can stop forwarding Redis's
/// replies on the subscriber's connections (those that sent `SUBSCRIBE`)
/// while keeping every connection open: a subscription that dies without a
/// word. Commands on the other connections keep flowing.
pub struct StallingProxy {
    pub port: u16,
    stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    pub async fn start(upstream: u16) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let stall = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stall.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let subscriber = std::sync::Arc::new(AtomicBool::new(false));
                let seen = subscriber.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
                        if text.contains("SUBSCRIBE") {
                            seen.store(true, Ordering::Relaxed);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let flag = flag.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        // Stalled: read nothing more, forward nothing, close nothing.
                        while flag.load(Ordering::Relaxed) && subscriber.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if flag.load(Ordering::Relaxed)
                                    && subscriber.load(Ordering::Relaxed)
                                {
                                    // Held back until the stall ends.
                                    while flag.load(Ordering::Relaxed) {
                                        tokio::time::sleep(Duration::from_millis(20)).await;
                                    }
                                }
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { port, stall, task }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops (true) or resumes (false) Redis's replies to subscribers.
    pub fn stall(&self, on: bool) {
        self.stall.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
