//! Micro-benchmarks of Herald's hot paths, through the library's public API:
//! envelope decode and validation, `msg` frame encoding, audience evaluation
//! over 10k identities (including a CEL `where`), and the hub's fan-out loop
//! over 10k registered sessions. `cargo bench --bench hot_paths`; figures
//! and method in docs/BENCHMARKS.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald::audience::Audience;
use herald::auth::Identity;
use herald::dispatch::{Reason, msg_frame};
use herald::envelope::{self, Command, Publish};
use herald::hub::outbox::Outgoing;
use herald::hub::{Hub, Limits, Registration, Target};
use herald::metrics::Metrics;
use serde_json::json;
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSIONS: usize = 10_000;
const NOW_MS: u64 = 1_700_000_000_000;

const SMALL: &str = r#"{"to":"all","kind":"banner","title":"Payments degraded","body":"Card payments may fail for a few minutes.","priority":"urgent","data":{"ts":1700000000000000}}"#;

fn large() -> String {
    json!({
        "id": "01JBENCHBENCHBENCHBENCHBEN",
        "to": {"segments": ["beta", "admins"], "where": "attrs.plan == \"free\" && attrs.level >= 3"},
        "kind": "modal",
        "priority": "high",
        "title": "Export more with Pro",
        "body": "You have used 3 of your 3 free exports this month. Upgrade to export without limits, schedule exports and share them with your team.",
        "image_url": "https://cdn.example.com/img/export.png",
        "actions": [
            {"id": "upgrade", "label": "Upgrade", "url": "/billing"},
            {"id": "later", "label": "Later"},
            {"id": "learn", "label": "Learn more", "url": "https://example.com/pro"}
        ],
        "position": "center",
        "theme": {"accent": "#5b21b6", "severity": "info"},
        "data": {"ts": 1_700_000_000_000_000u64, "sku": "pro-monthly", "experiment": "upsell-b"},
        "locales": {
            "fr": {"title": "Exportez plus avec Pro", "body": "Passez à Pro pour exporter sans limite."},
            "de": {"title": "Mehr exportieren mit Pro", "body": "Mit Pro ohne Limit exportieren."}
        },
        "ttl_s": 3600,
        "collapse_key": "upsell-export",
        "require_ack": true,
        "campaign": "upsell-export"
    })
    .to_string()
}

fn publish(json: &str) -> Arc<Publish> {
    match envelope::parse(json.as_bytes(), 65536, NOW_MS) {
        Ok(Command::Publish(p)) => p,
        other => panic!("bench envelope refused: {other:?}"),
    }
}

/// Identity `i`: half "free", levels 0..10, one or two segments, a locale.
fn identity(i: usize) -> Identity {
    let mut attrs = HashMap::new();
    let s = |v: &str| cel::Value::String(Arc::new(v.to_owned()));
    let key = |k: &str| cel::objects::Key::String(Arc::new(k.to_owned()));
    attrs.insert(
        key("plan"),
        s(if i.is_multiple_of(2) { "free" } else { "pro" }),
    );
    attrs.insert(key("level"), cel::Value::Int((i % 10) as i64));
    attrs.insert(
        key("locale"),
        s(if i.is_multiple_of(3) { "fr" } else { "en" }),
    );
    let mut segments: Vec<Box<str>> = vec![
        if i.is_multiple_of(4) {
            "beta"
        } else {
            "stable"
        }
        .into(),
    ];
    if i.is_multiple_of(50) {
        segments.push("admins".into());
    }
    Identity {
        user: Arc::from(format!("user-{i}")),
        segments: segments.into_boxed_slice(),
        attrs: cel::Value::Map(cel::objects::Map {
            map: Arc::new(attrs),
        }),
        exp: u64::MAX,
        locale: None,
    }
}

fn compile(to: serde_json::Value) -> Audience {
    Audience::compile(&to).expect("audience compiles")
}

fn bench_envelope(c: &mut Criterion) {
    let large = large();
    let mut g = c.benchmark_group("envelope_parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("small_banner_all", |b| {
        b.iter(|| envelope::parse(black_box(SMALL.as_bytes()), 65536, NOW_MS))
    });
    g.bench_function("large_modal_where", |b| {
        b.iter(|| envelope::parse(black_box(large.as_bytes()), 65536, NOW_MS))
    });
    g.finish();
}

fn bench_msg_frame(c: &mut Criterion) {
    let small = publish(SMALL);
    let large = publish(&large());
    let mut g = c.benchmark_group("msg_frame");
    g.throughput(Throughput::Elements(1));
    let who = identity(3);
    g.bench_function("small_banner", |b| {
        b.iter(|| msg_frame(black_box(&small.envelope), None, None, Reason::Push))
    });
    g.bench_function("large_modal_shared", |b| {
        b.iter(|| msg_frame(black_box(&large.envelope), None, None, Reason::Push))
    });
    // The per-recipient path: locale variant picked and personalized.
    g.bench_function("large_modal_fr_personalized", |b| {
        b.iter(|| {
            msg_frame(
                black_box(&large.envelope),
                Some("fr"),
                Some(&who),
                Reason::Push,
            )
        })
    });
    g.finish();
}

fn bench_audience(c: &mut Criterion) {
    let ids: Vec<Identity> = (0..SESSIONS).map(identity).collect();
    let users: Vec<String> = (0..100).map(|i| format!("user-{}", i * 97)).collect();
    let cases = [
        ("all", compile(json!("all"))),
        ("segments", compile(json!({"segments": ["beta", "admins"]}))),
        ("users_100", compile(json!({ "users": users }))),
        (
            "where_plan_level",
            compile(json!({"where": "attrs.plan == \"free\" && attrs.level >= 3"})),
        ),
        (
            "where_segments_user",
            compile(json!({"where": "'beta' in segments || user == 'user-42'"})),
        ),
        (
            "segments_and_where",
            compile(json!({"segments": ["beta"], "where": "attrs.level >= 5"})),
        ),
    ];
    let mut g = c.benchmark_group("audience_10k");
    g.throughput(Throughput::Elements(SESSIONS as u64));
    for (name, audience) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| ids.iter().filter(|id| audience.matches(id)).count())
        });
    }
    g.finish();
}

/// Identity `i` at the claim limits: 64 segments, 64 attributes.
fn largest_identity(i: usize) -> Identity {
    let mut id = identity(i);
    id.segments = (0..herald::auth::MAX_CLAIM_ENTRIES)
        .map(|k| format!("segment-{k}-{i}").into_boxed_str())
        .collect();
    if let cel::Value::Map(m) = &id.attrs {
        let mut attrs = (*m.map).clone();
        for k in attrs.len()..herald::auth::MAX_CLAIM_ENTRIES {
            attrs.insert(
                cel::objects::Key::String(Arc::new(format!("a{k}"))),
                cel::Value::Int(k as i64),
            );
        }
        id.attrs = cel::Value::Map(cel::objects::Map {
            map: Arc::new(attrs),
        });
    }
    id
}

/// The most expensive expressions the cost bound accepts, one of each
/// shape that costs (a comprehension over a written-out list, over a
/// variable, `in` over the largest list, `map` building a list), on 10,000
/// sessions whose tokens are at the claim limits: what one message can
/// cost a node at most (docs/BENCHMARKS.md, "CEL cost bound").
fn bench_cel_cost_bound(c: &mut Criterion) {
    let ids: Vec<Identity> = (0..SESSIONS).map(largest_identity).collect();
    let ints = |n: usize| {
        let v: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        format!("[{}]", v.join(","))
    };
    // Each shape at the largest size the bound accepts (found by search,
    // so the bench follows the cost model).
    let largest = |shape: &dyn Fn(usize) -> String| {
        herald::expr::largest_accepted(&["user", "segments", "attrs"], shape)
    };
    let cases = [
        (
            "literal_list_exists",
            largest(&|n| format!("{}.exists(x, x * 3 == attrs.level + 1000)", ints(n))),
        ),
        (
            "segments_exists_twice",
            "segments.exists(s, s.startsWith('zz') || s.endsWith('qq')) && segments.exists(t, t.contains('yy') || t == user)".to_owned(),
        ),
        ("in_largest_list", largest(&|n| format!("attrs.level + 1000 in {}", ints(n)))),
        (
            "map_builds_a_list",
            largest(&|n| format!("{}.map(x, x + attrs.level).size() == 0", ints(n))),
        ),
    ];
    let mut g = c.benchmark_group("cel_cost_bound_10k");
    g.throughput(Throughput::Elements(SESSIONS as u64));
    for (name, src) in &cases {
        let filter = herald::expr::Filter::compile("to.where", src, &["user", "segments", "attrs"])
            .unwrap_or_else(|e| panic!("{name} is accepted: {e}"));
        eprintln!(
            "{name}: estimated cost {} of {}",
            filter.cost(),
            herald::expr::MAX_COST
        );
        let audience = compile(json!({ "where": src }));
        g.bench_function(*name, |b| {
            b.iter(|| ids.iter().filter(|id| audience.matches(id)).count())
        });
    }
    g.finish();
}

struct Fixture {
    hub: Arc<Hub>,
    regs: Vec<Registration>,
}

fn hub_with_sessions() -> Fixture {
    let limits = Limits {
        max_sessions: SESSIONS * 2,
        per_user: 32,
        per_ip: SESSIONS * 2,
        queue: herald::hub::outbox::Capacity {
            frames: 256,
            bytes: 1 << 20,
        },
    };
    let hub = Arc::new(Hub::new(
        "bench".into(),
        limits,
        Arc::new(Metrics::default()),
        None,
    ));
    let regs = (0..SESSIONS)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 10) as u8));
            hub.register(identity(i), ip).expect("registered")
        })
        .collect();
    Fixture { hub, regs }
}

impl Fixture {
    /// Empties every outbox, as the session loops would.
    fn drain(&self) -> usize {
        self.regs
            .iter()
            .map(|r| r.session.outbox.drain().0.len())
            .sum()
    }
}

fn bench_deliver(c: &mut Criterion) {
    let fx = hub_with_sessions();
    // Encoded once, as the dispatcher does; each recipient gets a clone.
    let frame = Outgoing::text(
        &msg_frame(&publish(SMALL).envelope, None, None, Reason::Push),
        Instant::now(),
        0,
    );
    let all = compile(json!("all"));
    let segment = compile(json!({"segments": ["beta"]}));
    let cel = compile(json!({"where": "attrs.plan == \"free\" && attrs.level >= 3"}));
    let users: Vec<Arc<str>> = (0..100)
        .map(|i| Arc::from(format!("user-{}", i * 97)))
        .collect();
    let users_audience =
        compile(json!({ "users": users.iter().map(|u| u.to_string()).collect::<Vec<_>>() }));

    let mut g = c.benchmark_group("hub_deliver_10k");
    g.throughput(Throughput::Elements(SESSIONS as u64));
    let cases: [(&str, Target<'_>, &Audience); 3] = [
        ("everyone_all", Target::Everyone, &all),
        ("everyone_segment", Target::Everyone, &segment),
        ("everyone_where", Target::Everyone, &cel),
    ];
    for (name, target, audience) in cases {
        g.bench_function(name, |b| {
            // Time the fan-out only; the outboxes are drained between
            // iterations, as the session loops do, outside the measurement.
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let born = Instant::now();
                    let this = Outgoing::new(frame.bytes().clone(), born, 0);
                    let t = Instant::now();
                    let n = fx.hub.deliver(target, audience, |_| this.clone(), |_| {});
                    total += t.elapsed();
                    black_box(n);
                    black_box(fx.drain());
                }
                total
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("hub_deliver_users");
    g.throughput(Throughput::Elements(users.len() as u64));
    g.bench_function("users_100_of_10k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let born = Instant::now();
                let this = Outgoing::new(frame.bytes().clone(), born, 0);
                let t = Instant::now();
                let n = fx.hub.deliver(
                    Target::Users(&users),
                    &users_audience,
                    |_| this.clone(),
                    |_| {},
                );
                total += t.elapsed();
                black_box(n);
                for i in 0..users.len() {
                    black_box(fx.regs[i * 97].session.outbox.drain());
                }
            }
            total
        })
    });
    g.finish();

    let mut g = c.benchmark_group("outbox");
    g.throughput(Throughput::Elements(SESSIONS as u64));
    g.bench_function("drain_10k_one_frame_each", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let born = Instant::now();
                let this = Outgoing::new(frame.bytes().clone(), born, 0);
                fx.hub
                    .deliver(Target::Everyone, &all, |_| this.clone(), |_| {});
                let t = Instant::now();
                black_box(fx.drain());
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

/// The return type's size of a 5-argument function, without calling it: how
/// functions returning futures are measured here (opaque types).
fn returned_size<A, B, C, D, E, R>(_: fn(A, B, C, D, E) -> R) -> usize {
    std::mem::size_of::<R>()
}

/// Prints the sizes of the per-session structures (memory per connection:
/// see docs/BENCHMARKS.md). Not timed; runs with every `cargo bench`.
fn report_sizes(_: &mut Criterion) {
    let run = returned_size(herald::session::run);
    eprintln!(
        "sizes (bytes): session::run future {run}, Socket {}, hub Session {}, Identity {}, Outgoing {}",
        std::mem::size_of::<herald::session::Socket>(),
        std::mem::size_of::<herald::hub::Session>(),
        std::mem::size_of::<Identity>(),
        std::mem::size_of::<Outgoing>(),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = report_sizes, bench_envelope, bench_msg_frame, bench_audience, bench_cel_cost_bound, bench_deliver
}
criterion_main!(benches);
