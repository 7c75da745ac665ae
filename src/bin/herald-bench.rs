//! `herald-bench`: load generator and orchestrator for Herald.
//!
//! One command per scenario (`idle`, `fanout`, `targeted`, `churn`). The
//! orchestrator starts the Herald nodes itself (the release binary, a fixed
//! HS256 secret, free ports on 127.0.0.1), a Redis server when the scenario
//! needs one, and worker processes of this same binary (`herald-bench worker`),
//! because one process may hold at most 20,000 open files here. Workers open
//! authenticated WebSocket sessions from source addresses 127.0.0.1 to
//! 127.0.0.10, find the send timestamp in each `msg` frame without parsing the
//! JSON, and keep latency histograms. The orchestrator talks to them over
//! stdin/stdout, one line per command and per answer.
//!
//! Every scenario can run against a peer instead of Herald (`--peer uws` or
//! `--peer socketio`: the servers in benches/peers, started with `node`, on
//! the same Redis channels), and `compare` runs the scenarios against each
//! in turn (src/bin/herald-bench/compare.rs).
//!
//! Results are printed as a table and as one JSON line. See
//! docs/BENCHMARKS.md for the method and the figures.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use herald::auth::{Claims, Signer};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const SOURCE_ADDRESSES: u8 = 10;
const HIST_MAX_US: u64 = 600_000_000;
/// Generous, so that a node run under valgrind (`--herald` a wrapper) starts.
const READY_WAIT_S: u64 = 120;
const STOP_GRACE_S: u64 = 60;

#[path = "herald-bench/compare.rs"]
mod compare;

/// When set, scenario tables go to stderr (`compare` prints its own).
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// Herald itself (`--herald`).
    Herald,
    /// benches/peers/uws.js: uWebSockets.js (its native binary).
    Uws,
    /// benches/peers/socketio.js: Socket.IO with @socket.io/redis-adapter.
    Socketio,
    /// herald-floor (src/bin/herald-floor.rs): the smallest server doing
    /// the bench's work, one thread on epoll: the machine's floor.
    Floor,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Herald => "herald",
            Peer::Uws => "uws",
            Peer::Socketio => "socketio",
            Peer::Floor => "floor",
        }
    }

    /// The client protocol the workers speak to it.
    fn proto(self) -> &'static str {
        match self {
            Peer::Socketio => "socketio",
            Peer::Herald | Peer::Uws | Peer::Floor => "herald",
        }
    }
}

#[derive(Parser)]
#[command(
    name = "herald-bench",
    about = "Benchmarks for Herald: starts nodes, Redis and load workers, prints a table and a JSON line"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// RSS per idle session (slope from --base to --sessions), connect rate, idle CPU.
    Idle(IdleArgs),
    /// Broadcasts to every session: latency and delivery ratio, or (--throughput) deliveries/s.
    Fanout(FanoutArgs),
    /// Per-user messages through Redis at a fixed rate: latency and delivery ratio.
    Targeted(TargetedArgs),
    /// Sessions connecting and disconnecting while broadcasts are delivered.
    Churn(ChurnArgs),
    /// Runs idle, fan-out at 1/s, 10/s and 50/s, and targeted against Herald and each peer in turn.
    Compare(compare::CompareArgs),
    /// Internal: one load worker, driven over stdin/stdout by the orchestrator.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// The Herald binary to start.
    #[arg(long, default_value = "target/release/herald")]
    herald: PathBuf,
    /// Use this Redis instead of starting one (required by nothing: the
    /// bench starts `redis-server` itself when a scenario needs Redis).
    #[arg(long)]
    redis: Option<String>,
    /// Give the nodes a RESP3 Redis URL (`?protocol=resp3`); see
    /// docs/BENCHMARKS.md for why this matters with the RESP2 default.
    #[arg(long)]
    resp3: bool,
    /// Herald nodes; more than one always goes through Redis.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Sessions in total, spread evenly over the nodes.
    #[arg(long, default_value_t = 18_000)]
    sessions: usize,
    /// Most sessions one worker process opens.
    #[arg(long, default_value_t = 15_000)]
    per_worker: usize,
    /// Worker processes (default: enough for --per-worker, at least 2).
    #[arg(long)]
    workers: Option<usize>,
    /// Handshakes in flight per worker.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HS256 secret given to the nodes and used by the workers.
    #[arg(long, default_value = "herald-bench-secret-0123456789abcdef")]
    secret: String,
    /// Extra `HERALD_…=value` variables for every node (repeatable).
    #[arg(long = "node-env", value_name = "KEY=VALUE")]
    node_env: Vec<String>,
    /// Where node logs go (default: a fresh directory under /tmp).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The server under test: Herald, or a peer from --peers-dir (peers
    /// always run with Redis and are published to through it).
    #[arg(long, value_enum, default_value_t = Peer::Herald)]
    peer: Peer,
    /// Where the peers' files are (after `npm ci` there).
    #[arg(long, default_value = "benches/peers")]
    peers_dir: PathBuf,
    /// The Node.js binary that runs a peer.
    #[arg(long, default_value = "node")]
    node_bin: PathBuf,
    /// Start Redis and publish through it even for one Herald node, as
    /// `compare` does so that every server gets the same publisher.
    #[arg(long)]
    with_redis: bool,
}

impl Common {
    /// Whether broadcasts go through `PUBLISH {prefix}:broadcast`.
    fn via_redis(&self) -> bool {
        self.nodes > 1 || self.peer != Peer::Herald || self.with_redis
    }
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Sessions at the first RSS reading; the slope runs from here to --sessions.
    #[arg(long, default_value_t = 1000)]
    base: usize,
    /// Idle CPU window, seconds (covers at least two heartbeats by default).
    #[arg(long, default_value_t = 60)]
    window_s: u64,
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Broadcasts to send (latency mode), or messages (throughput mode).
    #[arg(long, default_value_t = 20)]
    messages: usize,
    /// Pause between broadcasts in latency mode, milliseconds.
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// Throughput mode: messages back to back, at most --window ahead of delivery.
    #[arg(long)]
    throughput: bool,
    /// Throughput mode: most messages published and not yet delivered everywhere.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Publish through Redis (PUBLISH herald:broadcast) even on one node.
    #[arg(long)]
    via_redis: bool,
    /// Extra bytes of text in each message's body.
    #[arg(long, default_value_t = 0)]
    pad: usize,
}

#[derive(Args)]
struct TargetedArgs {
    #[command(flatten)]
    common: Common,
    /// User messages per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
}

#[derive(Args)]
struct ChurnArgs {
    #[command(flatten)]
    common: Common,
    /// Reconnections per second (each one disconnect and one connect).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of churn.
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// Share of the sessions that churn; the rest stay and measure delivery.
    #[arg(long, default_value_t = 0.5)]
    churn_fraction: f64,
    /// Pause between broadcasts during the churn, milliseconds.
    #[arg(long, default_value_t = 250)]
    interval_ms: u64,
}

#[derive(Args)]
struct WorkerArgs {
    /// Comma-separated host:port of the nodes' public listeners.
    #[arg(long)]
    nodes: String,
    /// First global session index of this worker.
    #[arg(long)]
    first: usize,
    /// Sessions this worker owns.
    #[arg(long)]
    count: usize,
    /// The first `stable` of them never churn.
    #[arg(long)]
    stable: usize,
    #[arg(long)]
    secret: String,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// `herald` (GET /v1/ws?token=…, a hello frame) or `socketio`
    /// (Engine.IO v4 over the WebSocket transport).
    #[arg(long, default_value = "herald")]
    proto: String,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Worker(a) => rt.block_on(worker::run(a)),
        Cmd::Idle(a) => rt.block_on(scenarios::idle(a)).map(drop),
        Cmd::Fanout(a) => rt.block_on(scenarios::fanout(a)).map(drop),
        Cmd::Targeted(a) => rt.block_on(scenarios::targeted(a)).map(drop),
        Cmd::Churn(a) => rt.block_on(scenarios::churn(a)).map(drop),
        Cmd::Compare(a) => rt.block_on(compare::run(a)),
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).unwrap_or_else(|_| unreachable!())
}

/// The send timestamp of a bench message: the digits after `"ts":`.
fn find_ts(text: &str) -> Option<u64> {
    let at = text.find("\"ts\":")? + 5;
    let digits = text[at..].trim_start();
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Source address of global session `g`: 127.0.0.1 to 127.0.0.10, spread
/// independently of the node the session goes to.
fn source_ip(g: usize, nodes: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        0,
        0,
        1 + ((g / nodes.max(1)) % SOURCE_ADDRESSES as usize) as u8,
    )
}

fn user_of(g: usize) -> String {
    format!("u{g}")
}

// ---------------------------------------------------------------------------
// Worker: opens sessions and records what they receive.
// ---------------------------------------------------------------------------
mod worker {
    use super::*;

    #[derive(Default)]
    struct Counters {
        received: AtomicU64,
        received_stable: AtomicU64,
        first_us: AtomicU64,
        last_us: AtomicU64,
        open: AtomicUsize,
        server_closed: AtomicU64,
        connects: AtomicU64,
        connect_fail: AtomicU64,
        disconnects: AtomicU64,
        errors_logged: AtomicU64,
    }

    struct Shared {
        nodes: Vec<SocketAddr>,
        signer: Signer,
        counters: Counters,
        hist: Mutex<Histogram<u64>>,
        handshakes: Semaphore,
        ws_config: WebSocketConfig,
        /// Stop handles of the sessions, by local index.
        slots: Mutex<Vec<Option<oneshot::Sender<()>>>>,
        first: usize,
        stable: usize,
        socketio: bool,
    }

    pub async fn run(a: WorkerArgs) -> Result<()> {
        let nodes: Vec<SocketAddr> = a
            .nodes
            .split(',')
            .map(|s| s.parse().with_context(|| format!("node address {s:?}")))
            .collect::<Result<_>>()?;
        let mut ws_config = WebSocketConfig::default();
        ws_config.read_buffer_size = 4096;
        ws_config.write_buffer_size = 0;
        let shared = Arc::new(Shared {
            nodes,
            signer: Signer::hs256(&a.secret),
            counters: Counters {
                first_us: AtomicU64::new(u64::MAX),
                ..Default::default()
            },
            hist: Mutex::new(new_hist()),
            handshakes: Semaphore::new(a.concurrency.max(1)),
            ws_config,
            slots: Mutex::new((0..a.count).map(|_| None).collect()),
            first: a.first,
            stable: a.stable,
            socketio: match a.proto.as_str() {
                "herald" => false,
                "socketio" => true,
                other => bail!("--proto {other:?}: expected herald or socketio"),
            },
        });
        let mut next = 0usize;
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        let mut out = tokio::io::stdout();
        while let Some(line) = stdin.next_line().await? {
            let words: Vec<&str> = line.split_whitespace().collect();
            let reply = match words.as_slice() {
                ["connect", n] => {
                    let n: usize = n.parse()?;
                    let n = n.min(a.count - next);
                    let started = Instant::now();
                    let (ok, fail) = connect_batch(&shared, next..next + n).await;
                    next += n;
                    format!(
                        "connected {ok} {fail} {}",
                        started.elapsed().as_micros() as u64
                    )
                }
                ["count"] => format!(
                    "count {} {}",
                    shared.counters.received.load(Ordering::Relaxed),
                    shared.counters.open.load(Ordering::Relaxed)
                ),
                ["reset"] => {
                    let c = &shared.counters;
                    c.received.store(0, Ordering::Relaxed);
                    c.received_stable.store(0, Ordering::Relaxed);
                    c.first_us.store(u64::MAX, Ordering::Relaxed);
                    c.last_us.store(0, Ordering::Relaxed);
                    lock(&shared.hist).reset();
                    "ok".to_owned()
                }
                ["report"] => report(&shared),
                ["churn", rate, secs] => {
                    let rate: f64 = rate.parse()?;
                    let secs: u64 = secs.parse()?;
                    tokio::spawn(churn(shared.clone(), rate, Duration::from_secs(secs)));
                    "ok".to_owned()
                }
                ["quit"] => break,
                _ => format!("error unknown command {line:?}"),
            };
            out.write_all(reply.as_bytes()).await?;
            out.write_all(b"\n").await?;
            out.flush().await?;
        }
        // Exiting closes every socket at once.
        std::process::exit(0);
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(shared: &Shared) -> String {
        let c = &shared.counters;
        let hist = lock(&shared.hist);
        let buckets: Vec<[u64; 2]> = hist
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect();
        let r = json!({
            "received": c.received.load(Ordering::Relaxed),
            "received_stable": c.received_stable.load(Ordering::Relaxed),
            "first_us": c.first_us.load(Ordering::Relaxed),
            "last_us": c.last_us.load(Ordering::Relaxed),
            "open": c.open.load(Ordering::Relaxed),
            "server_closed": c.server_closed.load(Ordering::Relaxed),
            "connects": c.connects.load(Ordering::Relaxed),
            "connect_fail": c.connect_fail.load(Ordering::Relaxed),
            "disconnects": c.disconnects.load(Ordering::Relaxed),
            "hist": buckets,
        });
        format!("report {r}")
    }

    /// Opens the sessions of local indexes `range`, at most `concurrency`
    /// handshakes at a time; returns (opened, failed) once all are settled.
    async fn connect_batch(shared: &Arc<Shared>, range: std::ops::Range<usize>) -> (u64, u64) {
        let n = range.len();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in range {
            tokio::spawn(session(shared.clone(), i, Some(tx.clone())));
        }
        drop(tx);
        let (mut ok, mut fail) = (0, 0);
        for _ in 0..n {
            match rx.recv().await {
                Some(true) => ok += 1,
                Some(false) => fail += 1,
                None => break,
            }
        }
        (ok, fail)
    }

    async fn open(shared: &Shared, i: usize) -> Result<WebSocketStream<TcpStream>> {
        let g = shared.first + i;
        let node = shared.nodes[g % shared.nodes.len()];
        let token = shared
            .signer
            .mint(&Claims {
                sub: user_of(g),
                exp: herald::auth::unix_now() + 6 * 3600,
                iat: None,
                segments: Some(vec![
                    if g.is_multiple_of(2) { "even" } else { "odd" }.into(),
                ]),
                attrs: None,
            })
            .map_err(|e| anyhow!("mint: {e}"))?;
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source_ip(g, shared.nodes.len()).into(), 0))?;
        let stream = socket.connect(node).await?;
        stream.set_nodelay(true)?;
        let url = if shared.socketio {
            format!("ws://{node}/socket.io/?EIO=4&transport=websocket&token={token}")
        } else {
            format!("ws://{node}/v1/ws?token={token}")
        };
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(shared.ws_config))
                .await?;
        if shared.socketio {
            // Engine.IO v4: the open packet `0{…}`; then Socket.IO's CONNECT
            // to the main namespace (`40`), answered by `40{"sid":…}`.
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with("0{") => {}
                other => bail!("expected an Engine.IO open packet, got {other:?}"),
            }
            ws.send(Message::Text("40".into())).await?;
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"hello\"") => return Ok(ws),
                Some(Ok(Message::Text(t))) if shared.socketio && t.starts_with("40") => {}
                other => bail!("expected hello, got {other:?}"),
            }
        }
    }

    /// One session: open it, report, then read until stopped or closed.
    async fn session(shared: Arc<Shared>, i: usize, done: Option<mpsc::UnboundedSender<bool>>) {
        let c = &shared.counters;
        // The timeout covers the handshake, not the wait for its turn.
        let Ok(permit) = shared.handshakes.acquire().await else {
            return failed(&shared, done, "handshake semaphore closed");
        };
        let opened = tokio::time::timeout(Duration::from_secs(15), open(&shared, i)).await;
        drop(permit);
        let mut ws = match opened {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return failed(&shared, done, &e.to_string()),
            Err(_) => return failed(&shared, done, "handshake timed out"),
        };
        let (stop_tx, mut stop_rx) = oneshot::channel();
        lock(&shared.slots)[i] = Some(stop_tx);
        c.open.fetch_add(1, Ordering::Relaxed);
        c.connects.fetch_add(1, Ordering::Relaxed);
        if let Some(done) = done {
            let _ = done.send(true);
        }
        let stable = i < shared.stable;
        loop {
            tokio::select! {
                _ = &mut stop_rx => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    c.disconnects.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                msg = ws.next() => match msg {
                    // Engine.IO's heartbeat: the server pings (`2`), the client pongs (`3`).
                    Some(Ok(Message::Text(t))) if shared.socketio && t.as_str() == "2" => {
                        let _ = ws.send(Message::Text("3".into())).await;
                    }
                    Some(Ok(Message::Text(t))) => on_text(&shared, &t, stable),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        c.server_closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                },
            }
        }
        c.open.fetch_sub(1, Ordering::Relaxed);
        // Flush a pending close handshake without waiting on the peer.
        let _ = ws.flush().await;
    }

    fn failed(shared: &Shared, done: Option<mpsc::UnboundedSender<bool>>, why: &str) {
        let c = &shared.counters;
        c.connect_fail.fetch_add(1, Ordering::Relaxed);
        if c.errors_logged.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("worker {}: connect failed: {why}", std::process::id());
        }
        if let Some(done) = done {
            let _ = done.send(false);
        }
    }

    fn on_text(shared: &Shared, text: &str, stable: bool) {
        let Some(ts) = find_ts(text) else { return };
        let now = unix_us();
        let c = &shared.counters;
        c.received.fetch_add(1, Ordering::Relaxed);
        if stable {
            c.received_stable.fetch_add(1, Ordering::Relaxed);
        }
        c.first_us.fetch_min(now, Ordering::Relaxed);
        c.last_us.fetch_max(now, Ordering::Relaxed);
        lock(&shared.hist).saturating_record(now.saturating_sub(ts).max(1));
    }

    /// Closes and reopens churning sessions at `rate` per second for `span`.
    async fn churn(shared: Arc<Shared>, rate: f64, span: Duration) {
        let churning = shared.slots_len() - shared.stable;
        if churning == 0 || rate <= 0.0 {
            return;
        }
        let started = Instant::now();
        let mut done = 0u64;
        let mut cursor = 0usize;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while started.elapsed() < span {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            while done < due {
                let i = shared.stable + cursor % churning;
                cursor += 1;
                done += 1;
                let stop = lock(&shared.slots)[i].take();
                if let Some(stop) = stop {
                    let _ = stop.send(());
                }
                tokio::spawn(session(shared.clone(), i, None));
            }
        }
    }

    impl Shared {
        fn slots_len(&self) -> usize {
            lock(&self.slots).len()
        }
    }
}

// ---------------------------------------------------------------------------
// Orchestrator: processes, measurements, results.
// ---------------------------------------------------------------------------

/// Frees a port on 127.0.0.1 for a node to bind.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = f.get(11).ok_or_else(|| anyhow!("no utime"))?.parse()?;
    let stime: u64 = f.get(12).ok_or_else(|| anyhow!("no stime"))?.parse()?;
    Ok(utime + stime)
}

/// The kernel's slab memory (`Slab:` of /proc/meminfo), in KiB: sockets,
/// their buffers' bookkeeping, epoll items, dentries of every process.
fn slab_kib() -> Result<u64> {
    std::fs::read_to_string("/proc/meminfo")?
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no Slab in /proc/meminfo"))
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct NodeProc {
    child: Child,
    pid: u32,
    public: SocketAddr,
    admin: SocketAddr,
}

/// A Redis server this bench started; shut down on drop.
struct OwnRedis {
    port: u16,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

struct Cluster {
    peer: Peer,
    nodes: Vec<NodeProc>,
    redis_url: Option<String>,
    _own_redis: Option<OwnRedis>,
    prefix: String,
    http: reqwest::Client,
    redis: Option<redis::aio::MultiplexedConnection>,
    log_dir: PathBuf,
}

impl Cluster {
    async fn start(c: &Common, need_redis: bool) -> Result<Self> {
        let program = match c.peer {
            Peer::Herald => std::fs::canonicalize(&c.herald)
                .with_context(|| format!("herald binary {}", c.herald.display()))?,
            // Built next to herald-bench.
            Peer::Floor => {
                let exe = std::env::current_exe()?.with_file_name("herald-floor");
                std::fs::canonicalize(&exe).with_context(|| {
                    format!(
                        "{} is missing: cargo build --release --bin herald-floor",
                        exe.display()
                    )
                })?
            }
            peer => {
                let dir = &c.peers_dir;
                if !dir.join("node_modules").is_dir() {
                    bail!(
                        "{}/node_modules is missing: run `npm ci` in {} first",
                        dir.display(),
                        dir.display()
                    );
                }
                std::fs::canonicalize(dir.join(format!("{}.js", peer.name())))
                    .with_context(|| format!("peer file in {}", dir.display()))?
            }
        };
        let log_dir = match &c.log_dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!("herald-bench-{}", std::process::id())),
        };
        std::fs::create_dir_all(&log_dir)?;
        let need_redis = need_redis || c.via_redis();
        let (redis_url, own) = match (&c.redis, need_redis) {
            (Some(url), _) => (Some(url.clone()), None),
            (None, false) => (None, None),
            (None, true) => {
                let port = free_port()?;
                let status = std::process::Command::new("redis-server")
                    .args([
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "yes",
                        "--logfile",
                    ])
                    .arg(log_dir.join("redis.log"))
                    .status()
                    .context("redis-server")?;
                if !status.success() {
                    bail!("redis-server failed to start");
                }
                (
                    Some(format!("redis://127.0.0.1:{port}")),
                    Some(OwnRedis { port }),
                )
            }
        };
        let prefix = format!("hb{}", std::process::id());
        let mut redis = None;
        if let Some(url) = &redis_url {
            let client = redis::Client::open(url.as_str())?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match client.get_multiplexed_async_connection().await {
                    Ok(conn) => {
                        redis = Some(conn);
                        break;
                    }
                    Err(e) if Instant::now() > deadline => bail!("redis {url}: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        let mut nodes = Vec::new();
        for i in 0..c.nodes.max(1) {
            let public: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let log = std::fs::File::create(log_dir.join(format!("node{i}.log")))?;
            if c.peer != Peer::Herald {
                // The peer serves /readyz and /v1/stats on its public port.
                let url = redis_url
                    .clone()
                    .ok_or_else(|| anyhow!("a peer needs Redis"))?;
                let mut cmd = if c.peer == Peer::Floor {
                    Command::new(&program)
                } else {
                    let mut cmd = Command::new(&c.node_bin);
                    cmd.arg(&program);
                    cmd
                };
                cmd.env("PEER_PORT", public.port().to_string())
                    .env("PEER_REDIS_URL", url)
                    .env("PEER_PREFIX", &prefix)
                    .env("PEER_SECRET", &c.secret)
                    .env("NODE_ENV", "production")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .kill_on_drop(true);
                let child = cmd.spawn().with_context(|| {
                    format!(
                        "starting {} (Node.js 20; install it with `apt-get install -y nodejs npm`)",
                        c.node_bin.display()
                    )
                })?;
                let pid = child.id().ok_or_else(|| anyhow!("peer exited at once"))?;
                nodes.push(NodeProc {
                    child,
                    pid,
                    public,
                    admin: public,
                });
                continue;
            }
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let mut cmd = Command::new(&program);
            cmd.arg("serve")
                .env("HERALD_AUTH__HS256_SECRET", &c.secret)
                .env("HERALD_LISTEN", public.to_string())
                .env("HERALD_ADMIN_LISTEN", admin.to_string())
                .env("HERALD_NODE_ID", format!("bench{i}"))
                .env("HERALD_LOG__LEVEL", "warn")
                .env("HERALD_REDIS__PREFIX", &prefix)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            if let Some(url) = &redis_url {
                let url = if c.resp3 {
                    format!("{url}?protocol=resp3")
                } else {
                    url.clone()
                };
                cmd.env("HERALD_REDIS__URL", url);
            }
            for kv in &c.node_env {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--node-env {kv:?}: expected KEY=VALUE"))?;
                cmd.env(k, v);
            }
            let child = cmd.spawn().context("starting herald")?;
            let pid = child.id().ok_or_else(|| anyhow!("herald exited at once"))?;
            nodes.push(NodeProc {
                child,
                pid,
                public,
                admin,
            });
        }
        let cluster = Self {
            peer: c.peer,
            nodes,
            redis_url,
            _own_redis: own,
            prefix,
            http: reqwest::Client::new(),
            redis,
            log_dir,
        };
        for n in &cluster.nodes {
            cluster.wait_ready(n).await?;
        }
        Ok(cluster)
    }

    async fn wait_ready(&self, n: &NodeProc) -> Result<()> {
        let url = format!("http://{}/readyz", n.admin);
        let deadline = Instant::now() + Duration::from_secs(READY_WAIT_S);
        loop {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} not ready after {READY_WAIT_S} s; see {}",
                    n.pid,
                    self.log_dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn addresses(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.public.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid).collect()
    }

    /// Publishes a broadcast carrying `ts`: through the admin API of node 0,
    /// or with `PUBLISH {prefix}:broadcast` when going through Redis.
    async fn broadcast(&mut self, via_redis: bool, pad: &str) -> Result<()> {
        // A peer has no publish API: it only listens to Redis.
        let via_redis = via_redis || self.peer != Peer::Herald;
        let ts = unix_us();
        let body = if pad.is_empty() {
            "Benchmark broadcast".to_owned()
        } else {
            format!("Benchmark broadcast {pad}")
        };
        let env = json!({"to": "all", "kind": "banner", "title": "bench", "body": body, "data": {"ts": ts}})
            .to_string();
        if via_redis {
            let conn = self
                .redis
                .as_mut()
                .ok_or_else(|| anyhow!("no redis connection"))?;
            let _: i64 = redis::cmd("PUBLISH")
                .arg(format!("{}:broadcast", self.prefix))
                .arg(env)
                .query_async(conn)
                .await?;
        } else {
            let url = format!("http://{}/v1/messages", self.nodes[0].admin);
            let r = self.http.post(url).body(env).send().await?;
            if !r.status().is_success() {
                bail!("publish: {} {}", r.status(), r.text().await?);
            }
        }
        Ok(())
    }

    async fn sessions_reported(&self) -> Result<u64> {
        let mut total = 0;
        for n in &self.nodes {
            let url = format!("http://{}/v1/stats", n.admin);
            let v: Value = self.http.get(url).send().await?.json().await?;
            total += v
                .get("sessions")
                .and_then(Value::as_u64)
                .unwrap_or_default();
        }
        Ok(total)
    }

    /// Stops every node with SIGTERM (a drain), so that a wrapper such as
    /// valgrind can write its output; SIGKILL after `grace`.
    async fn stop(mut self, grace: Duration) {
        for n in &self.nodes {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &n.pid.to_string()])
                .status();
        }
        for n in &mut self.nodes {
            if tokio::time::timeout(grace, n.child.wait()).await.is_err() {
                let _ = n.child.kill().await;
            }
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            if let Ok(Some(status)) = n.child.try_wait() {
                bail!(
                    "node {} exited: {status}; see {}",
                    n.pid,
                    self.log_dir.display()
                );
            }
        }
        Ok(())
    }
}

struct WorkerProc {
    pid: u32,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
    count: usize,
}

impl WorkerProc {
    async fn send(&mut self, line: &str) -> Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn recv(&mut self, timeout: Duration) -> Result<String> {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!("worker {} exited", self.pid),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => bail!("worker {} did not answer in {timeout:?}", self.pid),
        }
    }
}

/// The load workers, each owning a contiguous range of session indexes.
struct Workers {
    procs: Vec<WorkerProc>,
}

#[derive(Default, Debug)]
struct Report {
    received: u64,
    received_stable: u64,
    first_us: u64,
    last_us: u64,
    open: u64,
    server_closed: u64,
    connects: u64,
    connect_fail: u64,
    disconnects: u64,
    hist: Option<Histogram<u64>>,
}

impl Workers {
    async fn start(c: &Common, nodes: &str, stable_fraction: f64) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let n = c
            .workers
            .unwrap_or_else(|| c.sessions.div_ceil(c.per_worker.max(1)).max(2))
            .max(1);
        let mut procs = Vec::new();
        let mut first = 0;
        for w in 0..n {
            let count = c.sessions / n + usize::from(w < c.sessions % n);
            let stable = ((count as f64) * stable_fraction).round() as usize;
            let mut child = Command::new(&exe)
                .args(["worker", "--nodes", nodes])
                .args(["--first", &first.to_string()])
                .args(["--count", &count.to_string()])
                .args(["--stable", &stable.to_string()])
                .args(["--secret", &c.secret])
                .args(["--concurrency", &c.concurrency.to_string()])
                .args(["--proto", c.peer.proto()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()?;
            let pid = child.id().ok_or_else(|| anyhow!("worker exited at once"))?;
            let stdin = child.stdin.take().ok_or_else(|| anyhow!("worker stdin"))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("worker stdout"))?;
            procs.push(WorkerProc {
                pid,
                stdin,
                lines: BufReader::new(stdout).lines(),
                _child: child,
                count,
            });
            first += count;
        }
        Ok(Self { procs })
    }

    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    /// Sends one command to every worker and collects the answers.
    async fn all(&mut self, cmd: &str, timeout: Duration) -> Result<Vec<String>> {
        for p in &mut self.procs {
            p.send(cmd).await?;
        }
        let answers =
            futures::future::join_all(self.procs.iter_mut().map(|p| p.recv(timeout))).await;
        answers.into_iter().collect()
    }

    /// Opens `total` more sessions spread over the workers; returns
    /// (opened, failed, wall time).
    async fn connect(&mut self, total: usize) -> Result<(u64, u64, Duration)> {
        let n = self.procs.len();
        let started = Instant::now();
        for (w, p) in self.procs.iter_mut().enumerate() {
            let share = total / n + usize::from(w < total % n);
            p.send(&format!("connect {}", share.min(p.count))).await?;
        }
        let answers = futures::future::join_all(
            self.procs
                .iter_mut()
                .map(|p| p.recv(Duration::from_secs(600))),
        )
        .await;
        let wall = started.elapsed();
        let (mut ok, mut fail) = (0, 0);
        for a in answers {
            let a = a?;
            let f: Vec<&str> = a.split_whitespace().collect();
            match f.as_slice() {
                ["connected", o, e, _] => {
                    ok += o.parse::<u64>()?;
                    fail += e.parse::<u64>()?;
                }
                _ => bail!("worker answered {a:?}"),
            }
        }
        Ok((ok, fail, wall))
    }

    async fn count(&mut self) -> Result<(u64, u64)> {
        let (mut received, mut open) = (0, 0);
        for a in self.all("count", Duration::from_secs(30)).await? {
            let f: Vec<&str> = a.split_whitespace().collect();
            match f.as_slice() {
                ["count", r, o] => {
                    received += r.parse::<u64>()?;
                    open += o.parse::<u64>()?;
                }
                _ => bail!("worker answered {a:?}"),
            }
        }
        Ok((received, open))
    }

    /// Waits until `expected` frames arrived, or nothing moved for `quiet`.
    async fn wait_received(&mut self, expected: u64, quiet: Duration) -> Result<u64> {
        let mut last = 0;
        let mut moved = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (r, _) = self.count().await?;
            if r >= expected || Instant::now() > deadline {
                return Ok(r);
            }
            if r != last {
                last = r;
                moved = Instant::now();
            } else if moved.elapsed() > quiet {
                return Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn reset(&mut self) -> Result<()> {
        self.all("reset", Duration::from_secs(30)).await?;
        Ok(())
    }

    async fn report(&mut self) -> Result<Report> {
        let mut total = Report {
            first_us: u64::MAX,
            hist: Some(new_hist()),
            ..Default::default()
        };
        for a in self.all("report", Duration::from_secs(60)).await? {
            let json = a
                .strip_prefix("report ")
                .ok_or_else(|| anyhow!("worker answered {a:?}"))?;
            let v: Value = serde_json::from_str(json)?;
            let get = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or_default();
            total.received += get("received");
            total.received_stable += get("received_stable");
            total.first_us = total.first_us.min(get("first_us"));
            total.last_us = total.last_us.max(get("last_us"));
            total.open += get("open");
            total.server_closed += get("server_closed");
            total.connects += get("connects");
            total.connect_fail += get("connect_fail");
            total.disconnects += get("disconnects");
            if let (Some(h), Some(buckets)) =
                (total.hist.as_mut(), v.get("hist").and_then(Value::as_array))
            {
                for b in buckets {
                    let value = b.get(0).and_then(Value::as_u64).unwrap_or_default();
                    let count = b.get(1).and_then(Value::as_u64).unwrap_or_default();
                    h.saturating_record_n(value.max(1), count);
                }
            }
        }
        Ok(total)
    }

    async fn quit(mut self) {
        for p in &mut self.procs {
            let _ = p.send("quit").await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CPU use of a set of processes over a stretch of time, in cores.
struct CpuMeter {
    ticks: f64,
    at: Instant,
    start: Vec<u64>,
    pids: Vec<u32>,
}

impl CpuMeter {
    fn start(pids: Vec<u32>) -> Self {
        let start = pids.iter().map(|p| cpu_ticks(*p).unwrap_or(0)).collect();
        Self {
            ticks: clock_ticks(),
            at: Instant::now(),
            start,
            pids,
        }
    }

    /// CPU seconds used by each process since start.
    fn seconds(&self) -> Vec<f64> {
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(p, s)| (cpu_ticks(*p).unwrap_or(*s).saturating_sub(*s)) as f64 / self.ticks)
            .collect()
    }

    /// Cores used by each process since start.
    fn cores(&self) -> Vec<f64> {
        let secs = self.at.elapsed().as_secs_f64().max(1e-6);
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(p, s)| {
                (cpu_ticks(*p).unwrap_or(*s).saturating_sub(*s)) as f64 / self.ticks / secs
            })
            .collect()
    }
}

fn quantiles(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| (v as f64) / 1000.0;
    if h.is_empty() {
        return json!(null);
    }
    json!({
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "samples": h.len(),
    })
}

/// Prints a result as a two-column table and as one JSON line.
/// Under `compare` (QUIET) it goes to stderr, as progress.
fn print_result(name: &str, rows: &[(&str, String)], json_line: &Value) {
    let mut out = format!("\n== herald-bench {name} ==\n");
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out.push_str(&format!("{json_line}\n"));
    if QUIET.load(Ordering::Relaxed) {
        eprint!("{out}");
    } else {
        print!("{out}");
    }
}

fn fmt_latency(v: &Value) -> String {
    let g = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        g("p50_ms"),
        g("p99_ms"),
        g("p999_ms"),
        g("max_ms")
    )
}

fn machine() -> Value {
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_before": loadavg(),
    })
}

fn log_dir_note(c: &Cluster) -> String {
    match &c.redis_url {
        Some(url) => format!("{} (redis {url})", c.log_dir.display()),
        None => c.log_dir.display().to_string(),
    }
}

mod scenarios {
    use super::*;

    async fn settle(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    pub async fn idle(a: IdleArgs) -> Result<Value> {
        let c = &a.common;
        if c.nodes != 1 {
            bail!("idle measures one node: run it with --nodes 1");
        }
        let m = machine();
        let mut cluster = Cluster::start(c, false).await?;
        let node = cluster.nodes[0].pid;
        let mut workers = Workers::start(c, &cluster.addresses(), 1.0).await?;
        settle(1).await;
        let rss_empty = rss_kib(node)?;
        let base = a.base.min(c.sessions);
        let (ok1, fail1, _) = workers.connect(base).await?;
        settle(3).await;
        let rss_base = rss_kib(node)?;
        let slab_base = slab_kib()?;
        let rest = c.sessions - base;
        let mut pids = vec![node];
        pids.extend(workers.pids());
        let connect_meter = CpuMeter::start(pids);
        let (ok2, fail2, wall) = workers.connect(rest).await?;
        let connect_cores = connect_meter.cores();
        let connect_node_cores = connect_cores[0];
        let connect_worker_cores: f64 = connect_cores[1..].iter().sum();
        // Handshakes per second of one node core: the rate a node would
        // reach with a core of its own and clients elsewhere.
        let per_node_core = ok2 as f64 / (connect_node_cores * wall.as_secs_f64()).max(1e-9);
        cluster.check_alive()?;
        let rate = ok2 as f64 / wall.as_secs_f64();
        settle(3).await;
        let rss_full = rss_kib(node)?;
        let slab_full = slab_kib()?;
        let opened = ok1 + ok2;
        let server_sessions = cluster.sessions_reported().await?;
        // Bytes per session opened between two readings in KiB.
        let per_session = |before: u64, after: u64| {
            if ok2 > 0 {
                (after as f64 - before as f64) * 1024.0 / ok2 as f64
            } else {
                f64::NAN
            }
        };
        let slope = per_session(rss_base, rss_full);
        // The kernel's share, both ends of each loopback connection (the
        // server's socket and the worker's): the same for every server
        // unless one sets its socket buffers or epoll differently.
        let slab_slope = per_session(slab_base, slab_full);
        eprintln!(
            "idle: {opened} sessions open; measuring idle CPU for {} s",
            a.window_s
        );
        let mut pids = vec![node];
        pids.extend(workers.pids());
        let meter = CpuMeter::start(pids);
        settle(a.window_s).await;
        let cores = meter.cores();
        let rss_after = rss_kib(node)?;
        let (_, still_open) = workers.count().await?;
        cluster.check_alive()?;
        let node_pct = cores[0] * 100.0;
        let workers_pct: f64 = cores[1..].iter().sum::<f64>() * 100.0;
        let result = json!({
            "scenario": "idle",
            "peer": c.peer.name(),
            "nodes": 1,
            "sessions": opened,
            "node_sessions": server_sessions,
            "connect_failures": fail1 + fail2,
            "rss_empty_kib": rss_empty,
            "rss_base_kib": rss_base,
            "rss_full_kib": rss_full,
            "rss_after_window_kib": rss_after,
            "rss_per_session_bytes": slope,
            "kernel_slab_per_session_bytes": slab_slope,
            "connect_rate_per_s": rate,
            "connect_phase_sessions": ok2,
            "connect_phase_s": wall.as_secs_f64(),
            "connect_node_cores": connect_node_cores,
            "connect_worker_cores": connect_worker_cores,
            "handshakes_per_node_core_s": per_node_core,
            "idle_window_s": a.window_s,
            "idle_cpu_pct_of_core": node_pct,
            "workers_cpu_pct_of_core": workers_pct,
            "still_open_after_window": still_open,
            "machine": m,
            "loadavg_after": loadavg(),
        });
        print_result(
            "idle",
            &[
                (
                    "sessions (node says)",
                    format!("{opened} ({server_sessions})"),
                ),
                ("connect failures", format!("{}", fail1 + fail2)),
                (
                    "RSS empty / base / full",
                    format!(
                        "{:.1} / {:.1} / {:.1} MiB",
                        rss_empty as f64 / 1024.0,
                        rss_base as f64 / 1024.0,
                        rss_full as f64 / 1024.0
                    ),
                ),
                (
                    "RSS per session (slope)",
                    format!("{:.0} B ({:.2} KiB)", slope, slope / 1024.0),
                ),
                (
                    "kernel slab per session (both ends)",
                    format!("{:.0} B ({:.2} KiB)", slab_slope, slab_slope / 1024.0),
                ),
                (
                    "connect rate",
                    format!(
                        "{rate:.0} handshakes/s ({ok2} in {:.2} s)",
                        wall.as_secs_f64()
                    ),
                ),
                (
                    "CPU while connecting",
                    format!(
                        "node {connect_node_cores:.2} cores, workers {connect_worker_cores:.2} cores; {per_node_core:.0} handshakes per node core-second"
                    ),
                ),
                (
                    "idle CPU (node)",
                    format!("{node_pct:.2}% of a core over {} s", a.window_s),
                ),
                ("idle CPU (workers)", format!("{workers_pct:.2}% of a core")),
                ("open after window", format!("{still_open}")),
                ("node logs", log_dir_note(&cluster)),
            ],
            &result,
        );
        workers.quit().await;
        cluster.stop(Duration::from_secs(STOP_GRACE_S)).await;
        Ok(result)
    }

    pub async fn fanout(a: FanoutArgs) -> Result<Value> {
        let c = &a.common;
        let m = machine();
        let via_redis = a.via_redis || c.via_redis();
        let mut cluster = Cluster::start(c, via_redis).await?;
        let mut workers = Workers::start(c, &cluster.addresses(), 1.0).await?;
        let (ok, fail, wall) = workers.connect(c.sessions).await?;
        settle(2).await;
        cluster.check_alive()?;
        let server_sessions = cluster.sessions_reported().await?;
        eprintln!(
            "fanout: {ok} sessions open ({fail} failed) in {:.1} s; node(s) report {server_sessions}",
            wall.as_secs_f64()
        );
        let pad = "x".repeat(a.pad);
        workers.reset().await?;
        let mut pids = cluster.pids();
        pids.extend(workers.pids());
        let rss_before: Vec<u64> = cluster
            .pids()
            .iter()
            .map(|p| rss_kib(*p).unwrap_or(0))
            .collect();
        let meter = CpuMeter::start(pids);
        let started_us = unix_us();
        let started = Instant::now();
        let mut published = 0u64;
        if a.throughput {
            // Back to back, at most `window` messages ahead of the slowest
            // delivery estimate (received / sessions).
            let window = a.window.max(1) as u64;
            while published < a.messages as u64 {
                let (received, _) = workers.count().await?;
                let delivered_msgs = received / ok.max(1);
                let room = (delivered_msgs + window).saturating_sub(published);
                if room == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                for _ in 0..room.min(a.messages as u64 - published).min(16) {
                    cluster.broadcast(via_redis, &pad).await?;
                    published += 1;
                }
                if started.elapsed() > Duration::from_secs(300) {
                    bail!("throughput run over 300 s");
                }
            }
        } else {
            let mut tick = tokio::time::interval(Duration::from_millis(a.interval_ms.max(1)));
            for _ in 0..a.messages {
                tick.tick().await;
                cluster.broadcast(via_redis, &pad).await?;
                published += 1;
            }
        }
        let publish_s = started.elapsed().as_secs_f64();
        let expected = published * ok;
        let got = workers
            .wait_received(expected, Duration::from_secs(5))
            .await?;
        let cores = meter.cores();
        let node_cpu_s: f64 = meter.seconds()[..cluster.nodes.len()].iter().sum();
        let rep = workers.report().await?;
        cluster.check_alive()?;
        let hist = rep.hist.clone().unwrap_or_else(new_hist);
        let lat = quantiles(&hist);
        let ratio = if expected > 0 {
            rep.received as f64 / expected as f64
        } else {
            f64::NAN
        };
        let span_s = (rep.last_us.saturating_sub(started_us)) as f64 / 1e6;
        let deliveries_per_s = rep.received as f64 / span_s.max(1e-6);
        let n_nodes = cluster.nodes.len();
        let node_cores: f64 = cores[..n_nodes].iter().sum();
        let worker_cores: f64 = cores[n_nodes..].iter().sum();
        let rss_after: Vec<u64> = cluster
            .pids()
            .iter()
            .map(|p| rss_kib(*p).unwrap_or(0))
            .collect();
        let result = json!({
            "scenario": if a.throughput { "fanout-throughput" } else { "fanout" },
            "peer": c.peer.name(),
            "nodes": n_nodes,
            "via": if via_redis { "redis" } else { "http" },
            "sessions": ok,
            "node_sessions": server_sessions,
            "connect_failures": fail,
            "messages": published,
            "expected": expected,
            "received": rep.received,
            "received_when_waited": got,
            "delivery_ratio": ratio,
            "server_closed": rep.server_closed,
            "latency": lat,
            "publish_s": publish_s,
            "deliveries_per_s": deliveries_per_s,
            "first_to_last_s": span_s,
            "node_cpu_cores": node_cores,
            "node_cpu_s": node_cpu_s,
            "worker_cpu_cores": worker_cores,
            "node_rss_kib_before": rss_before,
            "node_rss_kib_after": rss_after,
            "pad_bytes": a.pad,
            "machine": m,
            "loadavg_after": loadavg(),
        });
        let mut rows = vec![
            (
                "sessions (nodes say)",
                format!("{ok} on {n_nodes} node(s) ({server_sessions})"),
            ),
            ("connect failures", fail.to_string()),
            (
                "published",
                format!(
                    "{published} via {}",
                    if via_redis {
                        "Redis PUBLISH"
                    } else {
                        "POST /v1/messages"
                    }
                ),
            ),
            (
                "delivered / expected",
                format!("{} / {expected} = {ratio:.6}", rep.received),
            ),
            ("sessions closed by server", rep.server_closed.to_string()),
            ("latency publish->receive", fmt_latency(&lat)),
        ];
        if a.throughput {
            rows.push((
                "throughput",
                format!(
                    "{deliveries_per_s:.0} deliveries/s ({} in {span_s:.2} s)",
                    rep.received
                ),
            ));
        }
        rows.push((
            "CPU during run",
            format!("nodes {node_cores:.2} cores, workers {worker_cores:.2} cores"),
        ));
        rows.push(("node logs", log_dir_note(&cluster)));
        print_result(
            if a.throughput {
                "fanout --throughput"
            } else {
                "fanout"
            },
            &rows,
            &result,
        );
        workers.quit().await;
        cluster.stop(Duration::from_secs(STOP_GRACE_S)).await;
        Ok(result)
    }

    pub async fn targeted(a: TargetedArgs) -> Result<Value> {
        let c = &a.common;
        let m = machine();
        let mut cluster = Cluster::start(c, true).await?;
        let mut workers = Workers::start(c, &cluster.addresses(), 1.0).await?;
        let (ok, fail, wall) = workers.connect(c.sessions).await?;
        settle(2).await;
        cluster.check_alive()?;
        let server_sessions = cluster.sessions_reported().await?;
        eprintln!(
            "targeted: {ok} sessions open ({fail} failed) in {:.1} s; publishing {} msg/s for {} s",
            wall.as_secs_f64(),
            a.rate,
            a.duration_s
        );
        workers.reset().await?;
        let mut pids = cluster.pids();
        pids.extend(workers.pids());
        let meter = CpuMeter::start(pids);
        let prefix = cluster.prefix.clone();
        let conn = cluster
            .redis
            .as_mut()
            .ok_or_else(|| anyhow!("targeted needs Redis"))?;
        let started = Instant::now();
        let span = Duration::from_secs(a.duration_s);
        let total = a.rate * a.duration_s;
        let mut sent = 0u64;
        let mut reached = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let users = c.sessions.max(1) as u64;
        while sent < total {
            tick.tick().await;
            let due = ((started.elapsed().as_secs_f64() * a.rate as f64) as u64).min(total);
            if due <= sent {
                continue;
            }
            let mut pipe = redis::pipe();
            let ts = unix_us();
            for k in sent..due {
                // Spread over every user: stride through them.
                let u = (k * 7919) % users;
                let user = user_of(u as usize);
                let env = format!(
                    r#"{{"to":{{"users":["{user}"]}},"kind":"toast","title":"bench","data":{{"ts":{ts}}}}}"#
                );
                pipe.publish(format!("{prefix}:user:{user}"), env);
            }
            let replies: Vec<i64> = pipe.query_async(conn).await?;
            reached += replies.iter().map(|r| (*r).max(0) as u64).sum::<u64>();
            sent = due;
            if started.elapsed() > span * 3 + Duration::from_secs(10) {
                eprintln!("targeted: publisher fell behind; stopping at {sent}");
                break;
            }
        }
        let publish_s = started.elapsed().as_secs_f64();
        let got = workers.wait_received(sent, Duration::from_secs(5)).await?;
        let cores = meter.cores();
        let node_cpu_s: f64 = meter.seconds()[..cluster.nodes.len()].iter().sum();
        let rep = workers.report().await?;
        cluster.check_alive()?;
        let hist = rep.hist.clone().unwrap_or_else(new_hist);
        let lat = quantiles(&hist);
        let ratio = rep.received as f64 / sent.max(1) as f64;
        let n_nodes = cluster.nodes.len();
        let node_cores: f64 = cores[..n_nodes].iter().sum();
        let worker_cores: f64 = cores[n_nodes..].iter().sum();
        let achieved = sent as f64 / publish_s;
        let result = json!({
            "scenario": "targeted",
            "peer": c.peer.name(),
            "nodes": n_nodes,
            "sessions": ok,
            "node_sessions": server_sessions,
            "connect_failures": fail,
            "rate_asked": a.rate,
            "rate_achieved": achieved,
            "published": sent,
            "publish_replies_sum": reached,
            "received": rep.received,
            "received_when_waited": got,
            "delivery_ratio": ratio,
            "server_closed": rep.server_closed,
            "latency": lat,
            "node_cpu_cores": node_cores,
            "node_cpu_s": node_cpu_s,
            "worker_cpu_cores": worker_cores,
            "machine": m,
            "loadavg_after": loadavg(),
        });
        print_result(
            "targeted",
            &[
                (
                    "sessions (nodes say)",
                    format!("{ok} on {n_nodes} node(s) ({server_sessions})"),
                ),
                ("connect failures", fail.to_string()),
                (
                    "published",
                    format!(
                        "{sent} user messages in {publish_s:.2} s = {achieved:.0}/s (asked {})",
                        a.rate
                    ),
                ),
                ("PUBLISH replies (nodes reached)", reached.to_string()),
                (
                    "delivered / published",
                    format!("{} / {sent} = {ratio:.6}", rep.received),
                ),
                ("sessions closed by server", rep.server_closed.to_string()),
                ("latency publish->receive", fmt_latency(&lat)),
                (
                    "CPU during run",
                    format!("nodes {node_cores:.2} cores, workers {worker_cores:.2} cores"),
                ),
                ("node logs", log_dir_note(&cluster)),
            ],
            &result,
        );
        workers.quit().await;
        cluster.stop(Duration::from_secs(STOP_GRACE_S)).await;
        Ok(result)
    }

    pub async fn churn(a: ChurnArgs) -> Result<Value> {
        let c = &a.common;
        let m = machine();
        let via_redis = c.via_redis() || c.redis.is_some();
        let mut cluster = Cluster::start(c, via_redis).await?;
        let stable_fraction = (1.0 - a.churn_fraction).clamp(0.0, 1.0);
        let mut workers = Workers::start(c, &cluster.addresses(), stable_fraction).await?;
        let (ok, fail, _) = workers.connect(c.sessions).await?;
        settle(2).await;
        cluster.check_alive()?;
        let stable: u64 = workers
            .procs
            .iter()
            .map(|p| ((p.count as f64) * stable_fraction).round() as u64)
            .sum();
        let rss_before: Vec<u64> = cluster
            .pids()
            .iter()
            .map(|p| rss_kib(*p).unwrap_or(0))
            .collect();
        eprintln!(
            "churn: {ok} sessions ({stable} stable); {} reconnects/s for {} s",
            a.rate, a.duration_s
        );
        let before = workers.report().await?;
        workers.reset().await?;
        let mut pids = cluster.pids();
        pids.extend(workers.pids());
        let meter = CpuMeter::start(pids);
        let per_worker = a.rate as f64 / workers.procs.len() as f64;
        workers
            .all(
                &format!("churn {per_worker} {}", a.duration_s),
                Duration::from_secs(10),
            )
            .await?;
        let started = Instant::now();
        let mut published = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(a.interval_ms.max(1)));
        while started.elapsed() < Duration::from_secs(a.duration_s) {
            tick.tick().await;
            cluster.broadcast(via_redis, "").await?;
            published += 1;
        }
        let churn_s = started.elapsed().as_secs_f64();
        // Let reconnections still in flight finish and the last broadcast land.
        settle(3).await;
        let cores = meter.cores();
        let node_cpu_s: f64 = meter.seconds()[..cluster.nodes.len()].iter().sum();
        let rep = workers.report().await?;
        cluster.check_alive()?;
        let server_sessions = cluster.sessions_reported().await?;
        let hist = rep.hist.clone().unwrap_or_else(new_hist);
        let lat = quantiles(&hist);
        let connects = rep.connects - before.connects;
        let disconnects = rep.disconnects - before.disconnects;
        let connect_fail = rep.connect_fail - before.connect_fail;
        let expected_stable = published * stable;
        let ratio = rep.received_stable as f64 / expected_stable.max(1) as f64;
        let n_nodes = cluster.nodes.len();
        let node_cores: f64 = cores[..n_nodes].iter().sum();
        let worker_cores: f64 = cores[n_nodes..].iter().sum();
        settle(2).await;
        let rss_after: Vec<u64> = cluster
            .pids()
            .iter()
            .map(|p| rss_kib(*p).unwrap_or(0))
            .collect();
        let result = json!({
            "scenario": "churn",
            "peer": c.peer.name(),
            "nodes": n_nodes,
            "sessions": ok,
            "stable_sessions": stable,
            "connect_failures_initial": fail,
            "rate_asked": a.rate,
            "connects_per_s": connects as f64 / churn_s,
            "disconnects_per_s": disconnects as f64 / churn_s,
            "connects": connects,
            "disconnects": disconnects,
            "connect_failures": connect_fail,
            "server_closed": rep.server_closed - before.server_closed,
            "open_at_end": rep.open,
            "node_sessions_at_end": server_sessions,
            "broadcasts": published,
            "received_all": rep.received,
            "received_stable": rep.received_stable,
            "expected_stable": expected_stable,
            "delivery_ratio_stable": ratio,
            "latency": lat,
            "node_cpu_cores": node_cores,
            "node_cpu_s": node_cpu_s,
            "worker_cpu_cores": worker_cores,
            "node_rss_kib_before": rss_before,
            "node_rss_kib_after": rss_after,
            "machine": m,
            "loadavg_after": loadavg(),
        });
        print_result(
            "churn",
            &[
                (
                    "sessions",
                    format!("{ok} on {n_nodes} node(s), {stable} stable"),
                ),
                (
                    "connects / disconnects",
                    format!(
                        "{:.0}/s / {:.0}/s over {churn_s:.1} s (asked {}/s)",
                        connects as f64 / churn_s,
                        disconnects as f64 / churn_s,
                        a.rate
                    ),
                ),
                ("connect failures", connect_fail.to_string()),
                (
                    "open at end (nodes say)",
                    format!("{} ({server_sessions})", rep.open),
                ),
                ("broadcasts", published.to_string()),
                (
                    "delivered to stable / expected",
                    format!("{} / {expected_stable} = {ratio:.6}", rep.received_stable),
                ),
                ("latency (all sessions)", fmt_latency(&lat)),
                (
                    "node RSS before / after",
                    format!("{rss_before:?} / {rss_after:?} KiB"),
                ),
                (
                    "CPU during run",
                    format!("nodes {node_cores:.2} cores, workers {worker_cores:.2} cores"),
                ),
                ("node logs", log_dir_note(&cluster)),
            ],
            &result,
        );
        workers.quit().await;
        cluster.stop(Duration::from_secs(STOP_GRACE_S)).await;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_timestamp_without_parsing() {
        let f = r#"{"t":"msg","id":"x","kind":"banner","data":{"ts":1700000000123456},"reason":"push"}"#;
        assert_eq!(find_ts(f), Some(1_700_000_000_123_456));
        assert_eq!(find_ts(r#"{"t":"hello"}"#), None);
    }

    #[test]
    fn sources_cover_ten_addresses() {
        let ips: std::collections::HashSet<_> = (0..100).map(|g| source_ip(g, 5)).collect();
        assert_eq!(ips.len(), 10);
    }
}
