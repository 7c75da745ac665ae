//! `herald-soak`: a long run of several nodes on one Redis under faults.
//!
//! Starts a Redis (append-only file fsynced on every write, so that killing
//! it loses nothing it acknowledged), `--nodes` Herald nodes on fixed ports,
//! and `--sessions` WebSocket sessions spread over the nodes. For
//! `--minutes` it publishes broadcasts through three paths at `--rate`
//! each per second: the admin API (`POST /v1/messages`), a plain Redis
//! `PUBLISH` and the ingress stream (`XADD`). At random moments it kills a
//! node or Redis with SIGKILL and starts it again a few seconds later;
//! sessions that lose their node reconnect (to the next node while theirs is
//! down) with `since` set to the last position they saw.
//!
//! At the end it waits until every session is connected and nothing new has
//! arrived for a while, then reports, per path: messages published
//! (acknowledged to the publisher), deliveries expected and made, lost and
//! repeated. The API and ingress paths are recoverable (stored in the
//! history), so `lost` must be 0 there; a plain `PUBLISH` is not stored, so
//! a session that was reconnecting when it went out misses it by design and
//! its losses are shown, not judged. `repeated` must be 0 on every path. It
//! also reports each node's RSS after warm-up and at the end (node 0 is
//! never killed, so its two figures span the whole run).
//!
//! Not part of CI (it runs for minutes): `scripts/soak`. Figures are in
//! docs/GUARANTEES.md.

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use futures::StreamExt;
use herald::auth::{Claims, Signer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Clone)]
#[command(
    name = "herald-soak",
    about = "Runs nodes on one Redis under faults for minutes; reports lost and repeated messages and RSS"
)]
struct Args {
    /// The Herald binary to start.
    #[arg(long, default_value = "target/release/herald")]
    herald: PathBuf,
    /// Minutes of publishing and faults.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Herald nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// WebSocket sessions in total (one user each).
    #[arg(long, default_value_t = 3000)]
    sessions: usize,
    /// Broadcasts per second on each of the three paths.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Mean seconds between faults (a node or Redis killed and restarted).
    #[arg(long, default_value_t = 45.0)]
    fault_every: f64,
    /// Seed of the fault schedule and reconnect jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where Redis, node logs and the append-only file go.
    #[arg(long)]
    dir: Option<PathBuf>,
}

const SECRET: &str = "herald-soak-secret-0123456789abcdef";
const PATHS: [&str; 3] = ["api", "publish", "ingress"];

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn sigkill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// A process the soak starts, stops and starts again on the same ports.
struct Proc {
    child: Option<Child>,
    pid: u32,
    restarts: u32,
}

struct World {
    args: Args,
    dir: PathBuf,
    redis_port: u16,
    prefix: String,
    /// (public, admin) of each node.
    addrs: Vec<(SocketAddr, SocketAddr)>,
    redis: Mutex<Option<Proc>>,
    nodes: Vec<Mutex<Option<Proc>>>,
    http: reqwest::Client,
}

impl World {
    fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    async fn start_redis(&self) -> Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.redis_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("redis-server (apt-get install -y redis-server)")?;
        let pid = child.id().ok_or_else(|| anyhow!("redis-server exited"))?;
        let client = redis::Client::open(self.redis_url())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("redis did not start; see {}", self.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut slot = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        let restarts = slot.as_ref().map_or(0, |p| p.restarts + 1);
        *slot = Some(Proc {
            child: Some(child),
            pid,
            restarts,
        });
        Ok(())
    }

    async fn start_node(&self, i: usize) -> Result<()> {
        let (public, admin) = self.addrs[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{i}.log")))?;
        let child = Command::new(&self.args.herald)
            .arg("serve")
            .env("HERALD_AUTH__HS256_SECRET", SECRET)
            .env("HERALD_LISTEN", public.to_string())
            .env("HERALD_ADMIN_LISTEN", admin.to_string())
            .env("HERALD_NODE_ID", format!("soak{i}"))
            .env("HERALD_LOG__LEVEL", "warn")
            .env("HERALD_REDIS__URL", self.redis_url())
            .env("HERALD_REDIS__PREFIX", &self.prefix)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.args.herald.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("herald exited at once"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = format!("http://{admin}/readyz");
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {i} not ready; see {}", self.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut slot = self.nodes[i].lock().unwrap_or_else(|e| e.into_inner());
        let restarts = slot.as_ref().map_or(0, |p| p.restarts + 1);
        *slot = Some(Proc {
            child: Some(child),
            pid,
            restarts,
        });
        Ok(())
    }

    /// Sessions each node reports (`/v1/stats`), `None` for one that does not answer.
    async fn sessions_per_node(&self) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        for (_, admin) in &self.addrs {
            let url = format!("http://{admin}/v1/stats");
            let n = match self.http.get(url).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["sessions"].as_u64()),
                Err(_) => None,
            };
            out.push(n);
        }
        out
    }

    fn kill(slot: &Mutex<Option<Proc>>) {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_mut() {
            sigkill(p.pid);
            // Reaped by the drop (kill_on_drop on a dead child is harmless).
            p.child.take();
        }
    }

    fn pid(slot: &Mutex<Option<Proc>>) -> Option<(u32, u32)> {
        let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|p| (p.pid, p.restarts))
    }
}

/// What one session saw.
#[derive(Default)]
struct Seen {
    /// When its first `hello` arrived: what was published after is owed to it.
    first_hello: Option<Instant>,
    last_pos: Option<String>,
    /// Message id to times received.
    ids: HashMap<String, u32>,
    connects: u32,
    not_recovered: u32,
}

struct Session {
    seen: Mutex<Seen>,
    connected: AtomicBool,
}

struct Published {
    id: String,
    path: usize,
    /// When the publish was sent (not when it was acknowledged).
    sent: Instant,
}

#[derive(Default)]
struct Totals {
    received: AtomicU64,
    connect_failures: AtomicU64,
}

async fn run(args: Args) -> Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("herald-soak-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let dir = std::fs::canonicalize(&dir)?;
    let mut addrs = Vec::new();
    for _ in 0..args.nodes {
        let public: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        addrs.push((public, admin));
    }
    let world = Arc::new(World {
        dir: dir.clone(),
        redis_port: free_port()?,
        prefix: format!("soak{}", std::process::id()),
        addrs,
        redis: Mutex::new(None),
        nodes: (0..args.nodes).map(|_| Mutex::new(None)).collect(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?,
        args: args.clone(),
    });
    world.start_redis().await?;
    for i in 0..args.nodes {
        world.start_node(i).await?;
    }
    eprintln!(
        "soak: redis and {} nodes up; logs in {}",
        args.nodes,
        dir.display()
    );

    let signer = Arc::new(Signer::hs256(SECRET));
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sessions: Vec<Arc<Session>> = (0..args.sessions)
        .map(|_| {
            Arc::new(Session {
                seen: Mutex::new(Seen::default()),
                connected: AtomicBool::new(false),
            })
        })
        .collect();
    let mut tasks = Vec::new();
    for (g, s) in sessions.iter().enumerate() {
        tasks.push(tokio::spawn(session(
            world.clone(),
            signer.clone(),
            totals.clone(),
            stop.clone(),
            s.clone(),
            g,
        )));
    }
    wait_connected(&sessions, Duration::from_secs(120)).await?;
    eprintln!("soak: {} sessions connected; warming up", args.sessions);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_start: Vec<Option<u64>> = (0..args.nodes)
        .map(|i| World::pid(&world.nodes[i]).and_then(|(pid, _)| rss_kib(pid)))
        .collect();
    let sessions_start = world.sessions_per_node().await;

    let published = Arc::new(Mutex::new(Vec::<Published>::new()));
    let failed_publishes = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let mut publishers = Vec::new();
    for path in 0..PATHS.len() {
        publishers.push(tokio::spawn(publisher(
            world.clone(),
            path,
            started + run_for,
            published.clone(),
            failed_publishes.clone(),
        )));
    }
    let faults = faults(world.clone(), started + run_for).await;
    for p in publishers {
        p.await??;
    }
    eprintln!("soak: publishing over; waiting for quiet");
    let faults = faults?;

    // Every session connected, then nothing new for 10 s.
    wait_connected(&sessions, Duration::from_secs(120)).await?;
    let mut last = totals.received.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = totals.received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let rss_end: Vec<Option<(u64, u32)>> = (0..args.nodes)
        .map(|i| {
            World::pid(&world.nodes[i]).and_then(|(pid, restarts)| Some((rss_kib(pid)?, restarts)))
        })
        .collect();
    let sessions_end = world.sessions_per_node().await;
    stop.store(true, Ordering::Relaxed);

    let report = tally(
        &args,
        &sessions,
        &published.lock().unwrap_or_else(|e| e.into_inner()),
    );
    let mut json_line = report.clone();
    json_line["minutes"] = json!(args.minutes);
    json_line["sessions"] = json!(args.sessions);
    json_line["nodes"] = json!(args.nodes);
    json_line["faults"] = json!(faults);
    json_line["publish_failures_retried"] = json!(failed_publishes.load(Ordering::Relaxed));
    json_line["connect_failures_retried"] = json!(totals.connect_failures.load(Ordering::Relaxed));
    json_line["rss_kib_after_warmup"] = json!(rss_start);
    json_line["rss_kib_end_and_restarts"] = json!(rss_end);
    json_line["sessions_per_node_after_warmup"] = json!(sessions_start);
    json_line["sessions_per_node_end"] = json!(sessions_end);
    print_table(&json_line);
    println!("{json_line}");
    for t in tasks {
        t.abort();
    }
    let ok = PATHS.iter().all(|p| {
        let r = &report[p];
        r["repeated"] == 0 && (*p == "publish" || r["lost"] == 0)
    });
    if !ok {
        bail!("messages lost on a recoverable path, or repeated");
    }
    Ok(())
}

async fn wait_connected(sessions: &[Arc<Session>], within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let open = sessions
            .iter()
            .filter(|s| s.connected.load(Ordering::Relaxed))
            .count();
        if open == sessions.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {open} of {} sessions connected", sessions.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One session: connect, read, reconnect with `since` until stopped.
async fn session(
    world: Arc<World>,
    signer: Arc<Signer>,
    totals: Arc<Totals>,
    stop: Arc<AtomicBool>,
    me: Arc<Session>,
    g: usize,
) {
    let mut rng = StdRng::seed_from_u64(world.args.seed ^ (g as u64).wrapping_mul(0x9e37));
    let nodes = world.addrs.len();
    let mut attempt = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let node = world.addrs[(g + attempt) % nodes].0;
        let since = me
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_pos
            .clone();
        match connect(&signer, g, node, since.as_deref()).await {
            Ok(mut ws) => {
                attempt = 0;
                let mut first = true;
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Text(text) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    let mut seen = me.seen.lock().unwrap_or_else(|e| e.into_inner());
                    match v["t"].as_str() {
                        Some("hello") if first => {
                            first = false;
                            seen.connects += 1;
                            seen.first_hello.get_or_insert_with(Instant::now);
                            if v["recovered"] == false {
                                seen.not_recovered += 1;
                            }
                            if seen.last_pos.is_none()
                                && let Some(p) = v["pos"].as_str()
                            {
                                seen.last_pos = Some(p.to_owned());
                            }
                            me.connected.store(true, Ordering::Relaxed);
                        }
                        Some("msg") => {
                            if let Some(id) = v["id"].as_str() {
                                *seen.ids.entry(id.to_owned()).or_default() += 1;
                            }
                            if let Some(p) = v["pos"].as_str() {
                                seen.last_pos = Some(p.to_owned());
                            }
                            totals.received.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                me.connected.store(false, Ordering::Relaxed);
            }
            Err(_) => {
                totals.connect_failures.fetch_add(1, Ordering::Relaxed);
                attempt += 1;
            }
        }
        // Jitter, as the SDK does, so that a dead node's sessions do not
        // all come back in the same millisecond.
        let wait = rng.random_range(100..1000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

async fn connect(
    signer: &Signer,
    g: usize,
    node: SocketAddr,
    since: Option<&str>,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let token = signer
        .mint(&Claims {
            sub: format!("s{g}"),
            exp: herald::auth::unix_now() + 6 * 3600,
            iat: None,
            segments: None,
            attrs: None,
        })
        .map_err(|e| anyhow!("mint: {e}"))?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        Ipv4Addr::new(127, 0, 0, 1 + (g % 10) as u8).into(),
        0,
    ))?;
    let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(node)).await??;
    let mut url = format!("ws://{node}/v1/ws?token={token}");
    if let Some(p) = since {
        url.push_str("&since=");
        url.push_str(p);
    }
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(url, stream),
    )
    .await??;
    Ok(ws)
}

/// Publishes on one path at `--rate` until `until`; a refused or failed
/// publish is retried with the same id until it is acknowledged.
async fn publisher(
    world: Arc<World>,
    path: usize,
    until: Instant,
    published: Arc<Mutex<Vec<Published>>>,
    failures: Arc<AtomicU64>,
) -> Result<()> {
    let period = Duration::from_secs_f64(1.0 / world.args.rate.max(0.01));
    let client = redis::Client::open(world.redis_url())?;
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut n = 0u64;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        tick.tick().await;
        n += 1;
        let id = format!("{}-{n}", PATHS[path]);
        let env = json!({"id": id, "to": "all", "kind": "toast", "title": "soak", "body": id})
            .to_string();
        let sent = Instant::now();
        let mut tries = 0u64;
        loop {
            let ok = match path {
                0 => {
                    // Any node's API that is up: the first that answers.
                    let admin = world.addrs[(n as usize + tries as usize) % world.addrs.len()].1;
                    let r = world
                        .http
                        .post(format!("http://{admin}/v1/messages"))
                        .body(env.clone())
                        .send()
                        .await;
                    matches!(r, Ok(r) if r.status().as_u16() == 202)
                }
                _ => {
                    if conn.is_none() {
                        conn = client.get_multiplexed_async_connection().await.ok();
                    }
                    match conn.as_mut() {
                        None => false,
                        Some(c) => {
                            let r = if path == 1 {
                                redis::cmd("PUBLISH")
                                    .arg(format!("{}:broadcast", world.prefix))
                                    .arg(&env)
                                    .query_async::<i64>(c)
                                    .await
                                    .map(|_| ())
                            } else {
                                redis::cmd("XADD")
                                    .arg(format!("{}:ingress", world.prefix))
                                    .arg("*")
                                    .arg("e")
                                    .arg(&env)
                                    .query_async::<String>(c)
                                    .await
                                    .map(|_| ())
                            };
                            if r.is_err() {
                                conn = None;
                            }
                            r.is_ok()
                        }
                    }
                }
            };
            if ok {
                break;
            }
            failures.fetch_add(1, Ordering::Relaxed);
            tries += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Published { id, path, sent });
    }
    Ok(())
}

/// Kills and restarts a node or Redis at random moments until `until`.
async fn faults(world: Arc<World>, until: Instant) -> Result<Vec<Value>> {
    let mut rng = StdRng::seed_from_u64(world.args.seed);
    let t0 = Instant::now();
    let mut log = Vec::new();
    loop {
        let gap = rng.random_range(0.5..1.5) * world.args.fault_every;
        let at = Instant::now() + Duration::from_secs_f64(gap);
        // Leave the last 20 s without faults, for the final resumes.
        if at + Duration::from_secs(20) > until {
            tokio::time::sleep_until(until.into()).await;
            return Ok(log);
        }
        tokio::time::sleep_until(at.into()).await;
        let down = Duration::from_millis(rng.random_range(1000..5000));
        // Node 0 is never killed: its RSS from warm-up to the end is the
        // one that says whether memory stays flat.
        let victim = rng.random_range(1..=world.addrs.len());
        let what = if victim == world.addrs.len() {
            World::kill(&world.redis);
            tokio::time::sleep(down).await;
            world.start_redis().await?;
            "redis".to_owned()
        } else {
            World::kill(&world.nodes[victim]);
            tokio::time::sleep(down).await;
            world.start_node(victim).await?;
            format!("node{victim}")
        };
        eprintln!(
            "soak: t={:.0}s killed {what}, back after {} ms",
            t0.elapsed().as_secs_f64(),
            down.as_millis()
        );
        log.push(json!({"t_s": t0.elapsed().as_secs(), "killed": what, "down_ms": down.as_millis() as u64}));
    }
}

/// Per path: published, expected deliveries, delivered, lost, repeated.
fn tally(args: &Args, sessions: &[Arc<Session>], published: &[Published]) -> Value {
    let mut out = json!({});
    let mut reconnects = 0u64;
    let mut not_recovered = 0u64;
    for s in sessions {
        let seen = s.seen.lock().unwrap_or_else(|e| e.into_inner());
        reconnects += u64::from(seen.connects.saturating_sub(1));
        not_recovered += u64::from(seen.not_recovered);
    }
    for (path, name) in PATHS.iter().enumerate() {
        let (mut expected, mut delivered, mut lost, mut repeated) = (0u64, 0u64, 0u64, 0u64);
        let mut count = 0u64;
        for p in published.iter().filter(|p| p.path == path) {
            count += 1;
            for s in sessions {
                let seen = s.seen.lock().unwrap_or_else(|e| e.into_inner());
                let owed = seen.first_hello.is_some_and(|h| h < p.sent);
                let times = seen.ids.get(&p.id).copied().unwrap_or(0);
                if owed {
                    expected += 1;
                    if times == 0 {
                        lost += 1;
                    }
                }
                if times > 0 {
                    delivered += 1;
                }
                repeated += u64::from(times.saturating_sub(1));
            }
        }
        out[*name] = json!({
            "published": count,
            "expected": expected,
            "delivered": delivered,
            "lost": lost,
            "repeated": repeated,
        });
    }
    out["reconnects"] = json!(reconnects);
    out["resumes_not_recovered"] = json!(not_recovered);
    out["sessions"] = json!(args.sessions);
    out
}

fn print_table(r: &Value) {
    println!("| path | published | expected | delivered | lost | repeated |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for p in PATHS {
        let v = &r[p];
        println!(
            "| {p} | {} | {} | {} | {} | {} |",
            v["published"], v["expected"], v["delivered"], v["lost"], v["repeated"]
        );
    }
    println!(
        "reconnects {}, resumes not recovered {}, faults {}",
        r["reconnects"],
        r["resumes_not_recovered"],
        r["faults"].as_array().map_or(0, Vec::len)
    );
    println!(
        "RSS KiB after warm-up {}, at the end (KiB, restarts) {}",
        r["rss_kib_after_warmup"], r["rss_kib_end_and_restarts"]
    );
    println!(
        "sessions per node after warm-up {}, at the end {}",
        r["sessions_per_node_after_warmup"], r["sessions_per_node_end"]
    );
}
