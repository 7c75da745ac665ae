//! Redis Sentinel: the master is whichever server the sentinels name, and
//! every connection asks again when it is lost or when the server it
//! reaches says `READONLY` (it was demoted to a replica under Herald).
//!
//! The master is resolved here rather than with redis-rs' `sentinel`
//! module: that one hands out a fresh client per call and knows nothing of
//! the shared multiplexed connection, the pub/sub connection or `READONLY`,
//! which is what following a failover is about. Resolving is two commands:
//! `SENTINEL get-master-addr-by-name` on the first sentinel that answers,
//! then `ROLE` on the address it gives, which must say `master` (a sentinel
//! that has not yet seen the failover names the old master, now a
//! replica, or a dead address).

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Told the old master (if any) and the new one.
type OnChange = Box<dyn Fn(Option<&str>, &str) + Send + Sync>;

/// Where to ask, and what was answered last.
pub struct Sentinels {
    /// `host:port` of each sentinel, asked in order.
    addrs: Vec<String>,
    /// The name the sentinels monitor the master under.
    name: String,
    connect: Duration,
    /// The master of the last successful resolution (`host:port`), for
    /// `/readyz` and the metrics.
    current: Mutex<Option<String>>,
    /// Called with the old and the new master when the master changes.
    on_change: Mutex<Option<OnChange>>,
    /// Counts `READONLY` answers (`herald_redis_readonly_total`).
    readonly: std::sync::OnceLock<prometheus_client::metrics::counter::Counter>,
    auth: Passwords,
}

/// `redis.password` (the master's and replicas') and
/// `redis.sentinel_password` (the sentinels' `requirepass`).
#[derive(Default, Clone)]
pub struct Passwords {
    pub master: Option<String>,
    pub sentinels: Option<String>,
}

/// Marks a refused login, so the start can name the key to fix.
pub const SENTINEL_LOGIN: &str = "the sentinel refused the login (redis.sentinel_password)";
pub const MASTER_LOGIN: &str = "the master refused the login (redis.password)";

fn client(addr: &str, password: Option<&str>) -> RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    let mut info = format!("redis://{addr}/").into_connection_info()?;
    if let Some(p) = password {
        info = info.set_redis_settings(redis::RedisConnectionInfo::default().set_password(p));
    }
    redis::Client::open(info)
}

/// A refused login, re-labelled with the key that holds the password.
fn login(e: RedisError, what: &'static str) -> RedisError {
    let text = e.to_string();
    if e.kind() == ErrorKind::AuthenticationFailed
        || [
            "WRONGPASS",
            "NOAUTH",
            "invalid password",
            "invalid username-password",
        ]
        .iter()
        .any(|m| text.contains(m))
    {
        RedisError::from((ErrorKind::AuthenticationFailed, what, text))
    } else {
        e
    }
}

impl Sentinels {
    pub fn new(addrs: Vec<String>, name: String, connect: Duration, auth: Passwords) -> Self {
        Self {
            auth,
            addrs,
            name,
            connect,
            current: Mutex::new(None),
            on_change: Mutex::new(None),
            readonly: std::sync::OnceLock::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The master this node last connected to.
    pub fn current(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn on_change(&self, f: impl Fn(Option<&str>, &str) + Send + Sync + 'static) {
        *self.on_change.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    pub fn count_readonly(&self, counter: prometheus_client::metrics::counter::Counter) {
        let _ = self.readonly.set(counter);
    }

    /// A client for the master the sentinels name now, checked with `ROLE`.
    /// When every sentinel that answered knows no master by that name, the
    /// error says so ([`unknown_master`]): a setting to fix, not an outage.
    pub async fn master(&self) -> RedisResult<redis::Client> {
        let mut last = None;
        let (mut answered, mut unknown) = (0, 0);
        // Sentinels that agree on a dead master: it is tried once.
        let mut tried = Vec::new();
        for sentinel in &self.addrs {
            match self.ask(sentinel).await {
                Ok(Some(addr)) if tried.contains(&addr) => answered += 1,
                Ok(Some(addr)) => {
                    answered += 1;
                    tried.push(addr.clone());
                    match self.check(&addr).await {
                        Ok(client) => {
                            self.note(&addr);
                            return Ok(client);
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Ok(None) => {
                    answered += 1;
                    unknown += 1;
                }
                Err(e) => last = Some(e),
            }
        }
        if answered > 0 && unknown == answered {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                UNKNOWN_MASTER,
                format!(
                    "no sentinel of {} monitors a master named {:?}",
                    self.addrs.join(","),
                    self.name
                ),
            )));
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((ErrorKind::InvalidClientConfig, "no sentinel configured"))
        }))
    }

    /// The master's address, `None` if this sentinel knows no such name.
    async fn ask(&self, sentinel: &str) -> RedisResult<Option<String>> {
        let client = client(sentinel, self.auth.sentinels.as_deref())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect))
            .set_response_timeout(Some(self.connect));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| login(e, SENTINEL_LOGIN))?;
        let reply: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.name)
            .query_async(&mut conn)
            .await?;
        Ok(reply.map(|(host, port)| {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }))
    }

    async fn check(&self, addr: &str) -> RedisResult<redis::Client> {
        let client = client(addr, self.auth.master.as_deref())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect))
            .set_response_timeout(Some(self.connect));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| login(e, MASTER_LOGIN))?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
        match role.first() {
            Some(Value::BulkString(r)) if r == b"master" => Ok(client),
            _ => Err(RedisError::from((
                ErrorKind::Io,
                "the server the sentinels name is not a master yet",
                addr.to_owned(),
            ))),
        }
    }

    fn note(&self, addr: &str) {
        let old = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if current.as_deref() == Some(addr) {
                return;
            }
            current.replace(addr.to_owned())
        };
        tracing::info!(master = addr, previous = ?old, name = %self.name, "redis master from sentinel");
        if let Some(f) = &*self.on_change.lock().unwrap_or_else(|e| e.into_inner()) {
            f(old.as_deref(), addr);
        }
    }
}

const UNKNOWN_MASTER: &str = "the sentinels monitor no such master";

/// Whether `e` says the sentinels know no master by the configured name.
pub fn unknown_master(e: &RedisError) -> bool {
    e.kind() == ErrorKind::InvalidClientConfig && e.to_string().contains(UNKNOWN_MASTER)
}

/// Whether an error means the connection no longer reaches the master:
/// lost, timed out, or the server became a replica.
pub fn lost_master(e: &RedisError) -> bool {
    readonly(e)
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// A write refused by a replica: nothing was written (a replica takes no
/// writes but its master's), so it can be sent again to the master. A
/// script's refused write comes back as a script error quoting it.
pub fn readonly(e: &RedisError) -> bool {
    e.code() == Some("READONLY") || e.to_string().contains("READONLY")
}

/// Whether a reply (redis-rs hands server errors back as values; the
/// caller turns them into errors) says the server is a replica. Only
/// refused writes: in a pipeline the other commands were reads (a replica
/// takes no write), so sending the whole of it again is harmless.
fn refused_as_replica(values: &[Value]) -> bool {
    values.iter().any(|v| match v {
        Value::ServerError(e) => {
            e.code() == "READONLY" || e.details().is_some_and(|d| d.contains("READONLY"))
        }
        _ => false,
    })
}

/// The node's shared command connection under Sentinel: one multiplexed
/// connection to the current master, replaced (after asking the sentinels
/// again) when it is lost or answers `READONLY`. A command refused with
/// `READONLY` is sent once more to the new master; any other failure is
/// returned, as on a single server.
#[derive(Clone)]
pub struct SentinelConn {
    inner: Arc<Shared>,
}

struct Shared {
    sentinels: Arc<Sentinels>,
    response: Duration,
    /// The connection and a number telling replacements apart, so that two
    /// commands failing on the same connection drop it only once.
    conn: tokio::sync::Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    generation: u64,
    conn: Option<MultiplexedConnection>,
    /// The last failed resolution: commands arriving shortly after it fail
    /// at once instead of each asking the sentinels in turn.
    failed: Option<(std::time::Instant, RedisError)>,
}

/// How long a failed resolution answers for the commands that follow.
const FAILED_FOR: Duration = Duration::from_millis(200);

impl SentinelConn {
    pub fn new(sentinels: Arc<Sentinels>, response: Duration) -> Self {
        Self {
            inner: Arc::new(Shared {
                sentinels,
                response,
                conn: tokio::sync::Mutex::new(Slot::default()),
            }),
        }
    }

    async fn get(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        let mut slot = self.inner.conn.lock().await;
        if let Some(c) = &slot.conn {
            return Ok((slot.generation, c.clone()));
        }
        if let Some((at, e)) = &slot.failed
            && at.elapsed() < FAILED_FOR
        {
            return Err(e.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.sentinels.connect))
            .set_response_timeout(Some(self.inner.response));
        let connected = async {
            self.inner
                .sentinels
                .master()
                .await?
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        match connected.await {
            Ok(c) => {
                slot.generation += 1;
                slot.conn = Some(c.clone());
                slot.failed = None;
                Ok((slot.generation, c))
            }
            Err(e) => {
                slot.failed = Some((std::time::Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    async fn forget(&self, generation: u64) {
        let mut slot = self.inner.conn.lock().await;
        if slot.generation == generation {
            slot.conn = None;
        }
    }

    /// After `op` failed on connection `generation`: whether to send it
    /// again (it was refused with `READONLY`, so nothing was written).
    async fn failed(&self, generation: u64, e: &RedisError) -> bool {
        if !lost_master(e) {
            return false;
        }
        if readonly(e) {
            self.demoted(generation).await;
            return true;
        }
        self.forget(generation).await;
        false
    }

    /// The server behind connection `generation` answered as a replica.
    async fn demoted(&self, generation: u64) {
        if let Some(c) = self.inner.sentinels.readonly.get() {
            c.inc();
        }
        tracing::warn!("redis answered READONLY: it is a replica now; asking the sentinels again");
        self.forget(generation).await;
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut c) = self.get().await?;
            match c.req_packed_command(cmd).await {
                Err(e) if self.failed(generation, &e).await => {
                    self.get().await?.1.req_packed_command(cmd).await
                }
                Ok(v) if refused_as_replica(std::slice::from_ref(&v)) => {
                    self.demoted(generation).await;
                    self.get().await?.1.req_packed_command(cmd).await
                }
                other => other,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut c) = self.get().await?;
            match c.req_packed_commands(pipeline, offset, count).await {
                Err(e) if self.failed(generation, &e).await => {
                    let mut c = self.get().await?.1;
                    c.req_packed_commands(pipeline, offset, count).await
                }
                Ok(v) if refused_as_replica(&v) => {
                    self.demoted(generation).await;
                    let mut c = self.get().await?.1;
                    c.req_packed_commands(pipeline, offset, count).await
                }
                other => other,
            }
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
