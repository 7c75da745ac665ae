//! `herald-bench compare`: the same scenarios, clients, Redis publisher and
//! measurements against Herald and each peer in turn (benches/peers), then
//! one table (a column per server) and one JSON line.

use super::*;

#[derive(Args)]
pub struct CompareArgs {
    #[command(flatten)]
    common: Common,
    /// The servers, in the order they run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Peer::Herald, Peer::Uws, Peer::Socketio, Peer::Floor])]
    peers: Vec<Peer>,
    /// Short windows and few messages: a smoke run, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Idle CPU window per server, seconds (--quick: 3).
    #[arg(long, default_value_t = 30)]
    idle_window_s: u64,
    /// Targeted: user messages per second.
    #[arg(long, default_value_t = 1000)]
    targeted_rate: u64,
    /// Targeted: seconds of publishing (--quick: 2).
    #[arg(long, default_value_t = 10)]
    targeted_s: u64,
}

/// The fan-out runs: (label, broadcasts, interval ms), as in issue 12.
fn fanout_runs(quick: bool) -> [(&'static str, usize, u64); 3] {
    if quick {
        [
            ("fanout_1s", 3, 1000),
            ("fanout_10s", 10, 100),
            ("fanout_50s", 25, 20),
        ]
    } else {
        [
            ("fanout_1s", 10, 1000),
            ("fanout_10s", 20, 100),
            ("fanout_50s", 100, 20),
        ]
    }
}

pub async fn run(a: CompareArgs) -> Result<()> {
    if a.common.nodes != 1 {
        bail!("compare measures one node per server: run it with --nodes 1");
    }
    QUIET.store(true, Ordering::Relaxed);
    let m = machine();
    let window_s = if a.quick { 3 } else { a.idle_window_s };
    let targeted_s = if a.quick { 2 } else { a.targeted_s };
    let mut results = serde_json::Map::new();
    for &peer in &a.peers {
        let mut common = a.common.clone();
        common.peer = peer;
        // The same publisher for all: PUBLISH on Herald's channels.
        common.with_redis = true;
        eprintln!("compare: {} ...", peer.name());
        let mut r = serde_json::Map::new();
        let idle = scenarios::idle(IdleArgs {
            common: common.clone(),
            base: (common.sessions / 10).clamp(1, 1000),
            window_s,
        })
        .await
        .with_context(|| format!("{}: idle", peer.name()))?;
        r.insert("idle".into(), idle);
        for (label, messages, interval_ms) in fanout_runs(a.quick) {
            let v = scenarios::fanout(FanoutArgs {
                common: common.clone(),
                messages,
                interval_ms,
                throughput: false,
                window: 64,
                via_redis: true,
                pad: 0,
            })
            .await
            .with_context(|| format!("{}: {label}", peer.name()))?;
            r.insert(label.into(), v);
        }
        let v = scenarios::targeted(TargetedArgs {
            common: common.clone(),
            rate: a.targeted_rate,
            duration_s: targeted_s,
        })
        .await
        .with_context(|| format!("{}: targeted", peer.name()))?;
        r.insert("targeted".into(), v);
        results.insert(peer.name().into(), Value::Object(r));
    }
    let runs = fanout_runs(a.quick);
    let rows = table_rows(&results, &a.peers, &runs, a.targeted_rate, targeted_s);
    let names: Vec<&str> = a.peers.iter().map(|p| p.name()).collect();
    println!();
    println!(
        "== herald-bench compare: {} sessions, one node each, one Redis{} ==",
        a.common.sessions,
        if a.quick { " (--quick)" } else { "" }
    );
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let cols: Vec<usize> = (0..names.len())
        .map(|i| {
            rows.iter()
                .map(|(_, v)| v[i].len())
                .chain([names[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut line = format!("  {:<width$}", "");
    for (n, w) in names.iter().zip(&cols) {
        line.push_str(&format!("  {n:>w$}"));
    }
    println!("{line}");
    for (k, vs) in &rows {
        let mut line = format!("  {k:<width$}");
        for (v, w) in vs.iter().zip(&cols) {
            line.push_str(&format!("  {v:>w$}"));
        }
        println!("{line}");
    }
    let out = json!({
        "scenario": "compare",
        "sessions": a.common.sessions,
        "quick": a.quick,
        "peers": names,
        "results": results,
        "machine": m,
        "loadavg_after": loadavg(),
    });
    println!("{out}");
    Ok(())
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut at = v;
    for k in path {
        match at.get(k) {
            Some(next) => at = next,
            None => return f64::NAN,
        }
    }
    at.as_f64().unwrap_or(f64::NAN)
}

type Row = (String, Vec<String>);

fn table_rows(
    results: &serde_json::Map<String, Value>,
    peers: &[Peer],
    runs: &[(&str, usize, u64)],
    targeted_rate: u64,
    targeted_s: u64,
) -> Vec<Row> {
    let of = |p: &Peer| results.get(p.name()).cloned().unwrap_or(Value::Null);
    let row = |label: String, f: &dyn Fn(&Value) -> String| -> Row {
        (label, peers.iter().map(|p| f(&of(p))).collect())
    };
    let mut rows = vec![
        row("sessions open (server says)".into(), &|v| {
            format!(
                "{} ({})",
                num(v, &["idle", "sessions"]),
                num(v, &["idle", "node_sessions"])
            )
        }),
        row("RSS per idle session".into(), &|v| {
            format!(
                "{:.2} KiB",
                num(v, &["idle", "rss_per_session_bytes"]) / 1024.0
            )
        }),
        row("kernel slab per session (both ends)".into(), &|v| {
            format!(
                "{:.2} KiB",
                num(v, &["idle", "kernel_slab_per_session_bytes"]) / 1024.0
            )
        }),
        row("connects/s".into(), &|v| {
            format!("{:.0}", num(v, &["idle", "connect_rate_per_s"]))
        }),
        row("handshakes per server core-second".into(), &|v| {
            format!("{:.0}", num(v, &["idle", "handshakes_per_node_core_s"]))
        }),
        row("idle CPU (% of a core)".into(), &|v| {
            format!("{:.2}", num(v, &["idle", "idle_cpu_pct_of_core"]))
        }),
    ];
    for (label, messages, interval_ms) in runs {
        let per_s = 1000 / interval_ms.max(&1);
        let k = *label;
        rows.push(row(
            format!("broadcast p50 / p99 ({messages} at {per_s}/s)"),
            &|v| {
                format!(
                    "{:.1} / {:.1} ms",
                    num(v, &[k, "latency", "p50_ms"]),
                    num(v, &[k, "latency", "p99_ms"])
                )
            },
        ));
        rows.push(row(
            format!("  delivered ({messages} at {per_s}/s)"),
            &|v| format!("{:.4}", num(v, &[k, "delivery_ratio"])),
        ));
        rows.push(row(
            format!("  server CPU ({messages} at {per_s}/s)"),
            &|v| format!("{:.2} s", num(v, &[k, "node_cpu_s"])),
        ));
        rows.push(row(
            format!("  server CPU per delivery ({messages} at {per_s}/s)"),
            &|v| {
                format!(
                    "{:.2} µs",
                    num(v, &[k, "node_cpu_s"]) * 1e6 / num(v, &[k, "received"])
                )
            },
        ));
    }
    rows.push(row(
        format!("targeted p50 / p99 ({targeted_rate}/s for {targeted_s} s)"),
        &|v| {
            format!(
                "{:.1} / {:.1} ms",
                num(v, &["targeted", "latency", "p50_ms"]),
                num(v, &["targeted", "latency", "p99_ms"])
            )
        },
    ));
    rows.push(row("  delivered (targeted)".into(), &|v| {
        format!("{:.4}", num(v, &["targeted", "delivery_ratio"]))
    }));
    rows.push(row("  server CPU (targeted)".into(), &|v| {
        format!("{:.2} s", num(v, &["targeted", "node_cpu_s"]))
    }));
    rows
}
