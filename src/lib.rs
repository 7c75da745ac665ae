//! Herald: a real-time gateway for in-app messages.
//!
//! Apps hold a WebSocket to Herald; backends publish through Redis, the HTTP
//! API or the CLI; Herald pushes each message to the live sessions it
//! targets, and only to those. The map, following one message:
//!
//! 1. In: [`http::admin`] (`POST /v1/messages`) or the CLI parse and check an
//!    [`envelope`] (the audience compiled by [`audience`]), then hand it to
//!    the [`bus`]. A plain `PUBLISH` on a Redis channel skips this step.
//!    With `send_at` ahead, the bus holds it and [`schedule`] (on whichever
//!    node claims it at its time) goes on from step 2.
//! 2. Across nodes: the [`bus`] publishes it on `{prefix}:broadcast` or on one
//!    `{prefix}:user:{id}` channel per named user (embedded: straight on).
//! 3. On each node: the Redis subscriber passes it to [`dispatch`], which
//!    checks it again, serializes the `msg` frame once, and asks the [`hub`]
//!    to push it into the outbox of every matching session.
//! 4. Out: each [`session`] loop drains its outbox and writes the frames to
//!    its socket in one flush.
//!
//! Connections come in through [`http::public`]: the token is checked by
//! [`auth`] and limits by the [`hub`] before the upgrade.
//! [`config`] is the only module that reads the environment.

pub mod audience;
pub mod auth;
pub mod bus;
pub mod campaigns;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod envelope;
pub mod error;
pub mod events;
pub mod expr;
pub mod history;
pub mod http;
pub mod hub;
pub mod links;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod render;
pub mod schedule;
pub mod schema;
pub mod session;
pub mod sketch;
pub mod stats;
pub mod tasks;
pub mod trace;

use auth::{Signer, Verifier};
use bus::{Bus, BusParts, RedisBus, RedisTarget};
use config::Config;
use dispatch::Dispatcher;
use events::Events;
use hub::{Hub, Limits, UserChanges};
use metrics::Metrics;
use node::Node;
use session::SessionCtx;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The two bound listeners; tests bind port 0 and read the addresses back.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let public = TcpListener::bind(config.listen)
            .await
            .map_err(|e| bind_error(e, config.listen))?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .map_err(|e| bind_error(e, config.admin_listen))?;
        Ok(Self { public, admin })
    }
}

fn bind_error(e: std::io::Error, addr: SocketAddr) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Key(#[from] auth::KeyError),
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("campaigns file {path}: {reason}")]
    Campaigns { path: String, reason: String },
}

/// Stores every campaign of a JSON array file; any invalid one stops the start.
async fn load_campaigns(
    engine: &campaigns::Engine,
    path: &std::path::Path,
) -> Result<(), StartError> {
    let fail = |reason: String| StartError::Campaigns {
        path: path.display().to_string(),
        reason,
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let list: Vec<campaigns::Campaign> =
        serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let mut compiled = Vec::new();
    for c in list {
        let id = c.id.clone();
        compiled.push(
            campaigns::Compiled::new(c, None).map_err(|e| fail(format!("campaign {id:?}: {e}")))?,
        );
    }
    for c in compiled {
        // With Redis still connecting, storing waits for it (10 s at most).
        let spec = c.campaign.clone();
        let mut next = Some(c);
        let mut tries = 0;
        while let Some(c) = next.take() {
            match engine.put(c).await {
                Ok(()) => {}
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(error = %e, "waiting for redis to store campaigns");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    next = Some(
                        campaigns::Compiled::new(spec.clone(), None)
                            .map_err(|e| fail(e.to_string()))?,
                    );
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    }
    Ok(())
}

/// Embedded mode: messages and campaigns whose counts are kept (the oldest go first).
const EMBEDDED_COUNTED: usize = 10_000;

/// Runs a node on the given listeners until `shutdown` resolves, then
/// drains: stops admitting, closes every session with 1012 after flushing
/// what it was sent, and returns once they are gone or the grace is over.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let clock = config.clock.clone();
    run_with_clock(config, listeners, shutdown, clock).await
}

/// [`run`], with campaign windows, quiet hours, goals and the hours of the
/// counts read on `clock` (tests move a manual one).
pub async fn run_with_clock(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: clock::Clock,
) -> Result<(), StartError> {
    let node_id = if config.node_id.is_empty() {
        format!("{:08x}", rand::random::<u32>())
    } else {
        config.node_id.clone()
    };
    let dev_secret = (!config.auth.has_key()).then(auth::random_secret);
    if dev_secret.is_some() {
        tracing::warn!(
            "DEV MODE: no JWT key configured. Herald generated a random signing secret and serves \
             GET /dev/token?sub=ID to anyone. Configure auth.hs256_secret, auth.public_key_pem_file \
             or auth.jwks_file before exposing this node."
        );
    }
    let metrics = Arc::new(Metrics::default());
    let verifier =
        Arc::new(Verifier::new(&config.auth, dev_secret.as_deref())?.with_metrics(metrics.clone()));
    let dev_signer = dev_secret.as_deref().map(Signer::hs256);
    let background = Arc::new(tasks::Background::new(
        config.limits.background_jobs,
        metrics.clone(),
    ));
    let changes = config
        .redis
        .bus_url()
        .map(|_| Arc::new(UserChanges::default()));
    let limits = Limits {
        max_sessions: config.limits.max_connections,
        per_user: config.limits.max_connections_per_user,
        per_ip: config.limits.max_connections_per_ip,
        queue: hub::outbox::Capacity {
            frames: config.session.outbound_queue,
            bytes: config.session.outbound_queue_bytes,
        },
    };
    let hub = Arc::new(Hub::new(
        node_id.clone(),
        limits,
        metrics.clone(),
        changes.clone(),
    ));
    let m = &config.messages;
    let events = Arc::new(
        Events::new(
            node_id.clone(),
            config.redis.bus_url().is_none(),
            m.record_deliveries,
            m.stream_queue,
            m.embedded_stream_len,
            metrics.clone(),
        )
        .with_clock(clock.clone()),
    );
    let dispatcher = Arc::new(
        Dispatcher::new(
            hub.clone(),
            metrics.clone(),
            events.clone(),
            config.limits.max_envelope_bytes,
            m.dedupe_window,
        )
        .with_link_schemes(config.link_schemes()),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // The issuer's keys before the first handshake; a failed fetch is
    // retried by the refresh loop, and handshakes are refused meanwhile.
    let jwks_task = match verifier.remote() {
        Some(remote) => {
            remote.load().await;
            Some(tokio::spawn(remote.clone().run(stopped())))
        }
        None => None,
    };

    // Broadcasts whose `where` costs are evaluated in slices by one task.
    let slices_task = tokio::spawn(dispatcher.clone().run_slices(stopped()));
    // The sessions' pings, expiries and idle thresholds: one ticker, at a
    // quarter of the heartbeat, at most every second (a walk over 10,000
    // sessions every 250 ms cost 0.2 % of a core while idle).
    let tick = (config.session.heartbeat / 4).clamp(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_secs(1),
    );
    let ticker_task = tokio::spawn(hub.clone().run_ticker(tick, stopped()));

    let registry = Arc::new(campaigns::Registry::default());
    let mut bus_task = None;
    let mut beat_task = None;
    let stream_task;
    let mut ingress_task = None;
    let bus_url = config.redis.bus_url();
    let bus = match (&bus_url, changes) {
        (Some(url), Some(changes)) => {
            let redis = RedisBus::new(
                RedisTarget {
                    url,
                    cluster: config.redis.cluster,
                    prefix: &config.redis.prefix,
                    maxlen: config.messages.stream_maxlen,
                    heartbeat: config.redis.heartbeat,
                    probe: (config.redis.probe_interval, config.redis.probe_timeout),
                    history: config
                        .history
                        .enabled
                        .then_some((config.history.window, config.history.max_per_stream)),
                    tls: config.redis.tls_files(),
                    stats: bus::StatsKeeping {
                        retention: config.stats.retention,
                        trace_per_user: config.stats.trace_per_user,
                        trace_ttl: config.stats.trace_ttl,
                        trace_users: config.stats.trace_users,
                    },
                    max_scheduled: config.schedule.max_pending,
                },
                BusParts {
                    background: background.clone(),
                    node: node_id.clone(),
                    hub: hub.clone(),
                    dispatcher: dispatcher.clone(),
                    changes,
                    metrics: metrics.clone(),
                    campaigns: registry.clone(),
                },
            )?;
            redis
                .check_settings(config.redis.tls_ca_file.is_some())
                .await?;
            bus_task = Some(tokio::spawn(redis.clone().run(stopped())));
            beat_task = Some(tokio::spawn(redis.clone().beat(stopped())));
            stream_task = Some(tokio::spawn(redis.clone().write_streams(stopped())));
            if config.ingress.enabled {
                ingress_task = Some(tokio::spawn(
                    redis
                        .clone()
                        .consume_ingress(config.ingress.claim_after, stopped()),
                ));
            }
            Bus::Redis(redis)
        }
        _ => {
            metrics.bus_up.set(1);
            stream_task = Some(tokio::spawn({
                let (events, stopped) = (events.clone(), stopped());
                async move { events.run_tally(stopped).await }
            }));
            Bus::Memory(Box::new(bus::MemoryBus::new(
                hub.clone(),
                dispatcher.clone(),
                config.history.enabled.then(|| {
                    history::MemoryHistory::new(
                        config.history.window,
                        config.history.max_per_stream,
                    )
                }),
                Arc::new(stats::Embedded {
                    stats: stats::MemoryStats::new(EMBEDDED_COUNTED),
                    trace: trace::MemoryTrace::new(
                        config.stats.trace_per_user,
                        config.stats.trace_users,
                        config.stats.trace_ttl,
                    ),
                }),
                bus::MemorySchedule::new(clock.clone(), config.schedule.max_pending),
            )))
        }
    };

    let bus = Arc::new(bus);
    let schedule_task = tokio::spawn(schedule::run(
        bus.clone(),
        metrics.clone(),
        config.schedule.poll_interval,
        config.schedule.batch,
        stopped(),
    ));
    let (engine, delays) = campaigns::Engine::new(
        registry,
        bus.clone(),
        campaigns::EngineParts {
            hub: hub.clone(),
            dispatcher: dispatcher.clone(),
            metrics: metrics.clone(),
            background: background.clone(),
            global_cap_per_hour: config.campaigns.global_cap_per_hour,
            max_delayed: config.campaigns.max_delayed,
            clock: clock.clone(),
            default_tz: config.campaigns.default_tz.clone(),
        },
    );
    let engine = Arc::new(engine);
    let delay_task = tokio::spawn({
        let (engine, stopped) = (engine.clone(), stopped());
        async move { engine.run_delays(delays, stopped).await }
    });
    if let Some(path) = &config.campaigns.file {
        load_campaigns(&engine, path).await?;
    }
    let node = Arc::new(Node {
        session_ctx: Arc::new(SessionCtx {
            cfg: config.session.clone(),
            ws: session::ws_config(&config.session),
            metrics: metrics.clone(),
            hub: hub.clone(),
            campaigns: engine.clone(),
            verifier: verifier.clone(),
            bus: bus.clone(),
            dispatcher: dispatcher.clone(),
            background: background.clone(),
        }),
        campaigns: engine,
        config,
        hub: hub.clone(),
        metrics,
        dispatcher,
        bus,
        verifier,
        dev_signer,
    });

    let public_addr = listeners.public.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    tracing::info!(node = %node_id, public = %public_addr, admin = %admin_addr, bus = node.bus.mode(), "herald serving");

    let timeout = node.config.limits.handshake_timeout;
    let public = tokio::spawn(http::serve(
        listeners.public,
        http::public::router(node.clone()),
        timeout,
        stopped(),
    ));
    let admin = tokio::spawn(http::serve(
        listeners.admin,
        http::admin::router(node.clone()),
        timeout,
        stopped(),
    ));

    shutdown.await;
    let grace = node.config.shutdown_grace;
    tracing::info!(sessions = hub.session_count(), ?grace, "draining");
    // Listeners stay up while draining: upgrades get 503, /readyz says
    // "draining", /metrics still answers. They stop once sessions are gone.
    hub.drain();
    if tokio::time::timeout(grace, hub.wait_empty()).await.is_err() {
        tracing::warn!(
            left = hub.session_count(),
            "grace period over; exiting with sessions open"
        );
    }
    // Background jobs (acks, stores, campaign checks) finish or are
    // cancelled while the bus still runs.
    background.drain(grace).await;
    let _ = stop_tx.send(true);
    let _ = public.await;
    let _ = admin.await;
    let _ = delay_task.await;
    if let Some(task) = jwks_task {
        let _ = task.await;
    }
    let _ = schedule_task.await;
    if let Some(task) = ingress_task {
        let _ = task.await;
    }
    if let Some(task) = stream_task {
        let _ = task.await;
    }
    if let Some(task) = beat_task {
        let _ = task.await;
    }
    if let Some(task) = bus_task {
        let _ = task.await;
    }
    let _ = slices_task.await;
    let _ = ticker_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
