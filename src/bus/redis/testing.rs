//! For the Redis backend's unit tests: a real `redis-server` of the test's
//! own on a free port, and a [`RedisBus`] over it with a hub, a dispatcher
//! and a campaign sink that records what it is handed.

use super::{BusParts, RedisBus, RedisTarget};
use crate::bus::CampaignSink;
use crate::dispatch::Dispatcher;
use crate::events::Events;
use crate::hub::{Hub, Limits, UserChanges, outbox::Capacity};
use crate::metrics::Metrics;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A redis-server killed on drop.
pub struct TestRedis {
    pub port: u16,
    child: Child,
}

impl TestRedis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install Redis 7: apt-get install -y redis-server")
            });
        let redis = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.sync().is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A blocking connection, for the test's own reads.
    pub fn sync(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records what the bus hands the campaigns engine.
#[derive(Default)]
pub struct Sink {
    pub all: Mutex<Vec<Vec<(String, String)>>>,
    pub changed: Mutex<Vec<(String, Option<String>)>>,
}

impl CampaignSink for Sink {
    fn replace_all(&self, stored: Vec<(String, String)>) {
        self.all.lock().expect("lock").push(stored);
    }
    fn changed(&self, id: &str, stored: Option<&str>) {
        self.changed
            .lock()
            .expect("lock")
            .push((id.to_owned(), stored.map(String::from)));
    }
}

/// A node's Redis bus on `redis`, not yet running its tasks.
pub struct Fixture {
    pub bus: Arc<RedisBus>,
    pub hub: Arc<Hub>,
    pub sink: Arc<Sink>,
}

pub fn fixture(redis: &TestRedis, node: &str) -> Fixture {
    let metrics = Arc::new(Metrics::default());
    let changes = Arc::new(UserChanges::default());
    let limits = Limits {
        max_sessions: 100,
        per_user: 8,
        per_ip: 100,
        queue: Capacity {
            frames: 64,
            bytes: 1 << 20,
        },
    };
    let hub = Arc::new(Hub::new(
        node.into(),
        limits,
        metrics.clone(),
        Some(changes.clone()),
    ));
    let events = Arc::new(Events::new(
        node.into(),
        false,
        true,
        1024,
        0,
        metrics.clone(),
    ));
    let dispatcher = Arc::new(Dispatcher::new(
        hub.clone(),
        metrics.clone(),
        events,
        65536,
        Duration::from_secs(600),
    ));
    let sink = Arc::new(Sink::default());
    let bus = RedisBus::new(
        RedisTarget {
            url: &redis.url(),
            cluster: false,
            prefix: "herald",
            maxlen: 1000,
            heartbeat: Duration::from_millis(100),
            probe: (Duration::from_secs(10), Duration::from_secs(3)),
            history: Some((Duration::from_secs(120), 100)),
            tls: crate::config::TlsFiles::default(),
            stats: super::StatsKeeping {
                retention: Duration::from_secs(3600),
                trace_per_user: 5,
                trace_ttl: Duration::from_secs(3600),
                trace_users: 2,
            },
            max_scheduled: 1000,
        },
        BusParts {
            background: Arc::new(crate::tasks::Background::new(64, metrics.clone())),
            node: node.into(),
            hub: hub.clone(),
            dispatcher,
            changes,
            metrics: metrics.clone(),
            campaigns: sink.clone(),
        },
    )
    .expect("a bus");
    Fixture { bus, hub, sink }
}

/// An identity without segments or attributes.
pub fn identity(user: &str) -> crate::auth::Identity {
    crate::auth::Identity {
        user: Arc::from(user),
        segments: Box::new([]),
        attrs: cel::Value::Map(cel::objects::Map {
            map: Arc::new(Default::default()),
        }),
        exp: u64::MAX,
        locale: None,
    }
}

/// A checked publish command.
pub fn command(json: serde_json::Value) -> crate::envelope::Command {
    crate::envelope::parse(
        json.to_string().as_bytes(),
        65536,
        crate::auth::unix_now_ms(),
    )
    .expect("a valid envelope")
}
