//! One Redis server, or a Redis Cluster: the connections the bus uses, the
//! same way for both.
//!
//! Commands go through [`Conn`], which routes by key in a cluster (every
//! Herald key shares one hash tag, see [`super::Keys`], so scripts and
//! pipelines stay on one slot). Receiving goes through [`Subscriber`]: on one
//! server a pub/sub connection; in a cluster one RESP3 connection per Redis
//! node, carrying the classic `SUBSCRIBE` of the broadcast channel and the
//! sharded `SSUBSCRIBE`s of the user channels each node owns.

use super::sentinel::{Passwords, SentinelConn, Sentinels};
use crate::config::TlsFiles;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, Msg, Pipeline, PushKind, RedisError, RedisFuture, RedisResult, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection attempt, and a reply on the shared connections,
/// may take.
const CONNECT: Duration = Duration::from_secs(1);
const RESPONSE: Duration = Duration::from_secs(2);

/// Concurrent commands of one fan-out over slots in a cluster (SSUBSCRIBE
/// per slot, SPUBLISH per user channel).
pub(super) const SLOT_COMMANDS_IN_FLIGHT: usize = 64;

/// Where Herald's Redis is.
pub enum Backend {
    /// Boxed: with TLS parameters the client is large.
    Single(Box<redis::Client>),
    Cluster(Box<ClusterClients>),
    /// A master found through Redis Sentinel, asked again on every
    /// connection (see [`super::sentinel`]).
    Sentinel(Arc<Sentinels>),
}

/// The scheme of the URL [`crate::config::RedisConfig::bus_url`] makes of
/// `redis.sentinels` and `redis.sentinel_master`:
/// `redis+sentinel://host:port,host:port/master-name`, then
/// `?password=…&sentinel_password=…` in hex when set.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

fn unhex(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    bytes.and_then(|b| String::from_utf8(b).ok())
}

pub struct ClusterClients {
    seeds: Vec<String>,
    /// RESP2, for commands.
    commands: ClusterClient,
    /// RESP3: sharded pub/sub arrives as push messages.
    pushes: ClusterClient,
    certs: Option<redis::TlsCertificates>,
}

/// The certificates of a `rediss://` connection, read from the files
/// `redis.tls_*` name; `None` when none is set (a `rediss://` URL then
/// verifies against the system's roots).
fn certificates(files: TlsFiles<'_>) -> Result<Option<redis::TlsCertificates>, String> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{key}: {}: {e}", path.display()))
    };
    let root_cert = files.ca.map(|p| read("redis.tls_ca_file", p)).transpose()?;
    let client_tls = match (files.cert, files.key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("redis.tls_cert_file", cert)?,
            client_key: read("redis.tls_key_file", key)?,
        }),
        _ => None,
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

impl Backend {
    /// `url` is one server's URL; in a cluster, one or more seed nodes
    /// separated by commas (the rest of the cluster is discovered).
    /// `rediss://` is TLS (the server's name checked against its
    /// certificate), `redis://user:password@…` an ACL login.
    pub fn open(url: &str, cluster: bool, tls: TlsFiles<'_>) -> RedisResult<Self> {
        if let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) {
            let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
            let mut auth = Passwords::default();
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("password", hex)) => auth.master = unhex(hex),
                    Some(("sentinel_password", hex)) => auth.sentinels = unhex(hex),
                    _ => {}
                }
            }
            let (addrs, name) = rest.rsplit_once('/').unwrap_or((rest, ""));
            let addrs = addrs
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            return Ok(Self::Sentinel(Arc::new(Sentinels::new(
                addrs,
                name.to_owned(),
                CONNECT,
                auth,
            ))));
        }
        let certs = certificates(tls).map_err(|e| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "TLS files", e))
        })?;
        if !cluster {
            return Ok(Self::Single(Box::new(match certs {
                Some(certs) => redis::Client::build_with_tls(url, certs)?,
                None => redis::Client::open(url)?,
            })));
        }
        let seeds: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self::Cluster(Box::new(ClusterClients {
            commands: cluster_client(&seeds, false, RESPONSE, certs.as_ref())?,
            pushes: cluster_client(&seeds, true, RESPONSE, certs.as_ref())?,
            seeds,
            certs,
        })))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// One server's `host:port` (no credentials), for the metrics.
    pub fn server_addr(&self) -> Option<String> {
        match self {
            Self::Single(client) => Some(client.get_connection_info().addr().to_string()),
            _ => None,
        }
    }

    /// Under Sentinel, what the node resolves the master with.
    pub fn sentinels(&self) -> Option<&Arc<Sentinels>> {
        match self {
            Self::Sentinel(s) => Some(s),
            _ => None,
        }
    }

    /// The node's shared command connection. It connects on first use, so a
    /// node starts while Redis is down, and reconnects after failures.
    pub fn shared(&self) -> RedisResult<Conn> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_connection_timeout(Some(CONNECT))
                    .set_response_timeout(Some(RESPONSE));
                Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
                    (**client).clone(),
                    config,
                )?))
            }
            Self::Cluster(c) => Ok(Conn::Cluster(
                c.commands.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(CONNECT)
                        .set_response_timeout(RESPONSE),
                ),
            )),
            Self::Sentinel(s) => Ok(Conn::Sentinel(SentinelConn::new(s.clone(), RESPONSE))),
        }
    }

    /// A connection of its own (a blocking read, the CLI), connected now.
    pub async fn dedicated(&self, response_timeout: Duration) -> RedisResult<Conn> {
        match self {
            Self::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT))
                    .set_response_timeout(Some(response_timeout));
                Ok(Conn::Plain(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Self::Cluster(c) => Ok(Conn::Cluster(
                cluster_client(&c.seeds, false, response_timeout, c.certs.as_ref())?
                    .get_async_connection()
                    .await?,
            )),
            Self::Sentinel(s) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT))
                    .set_response_timeout(Some(response_timeout));
                Ok(Conn::Plain(
                    s.master()
                        .await?
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
        }
    }

    /// Connects the receiving side: the subscriber, and the stream of what
    /// it receives. The stream ends, or yields an error, when the
    /// connection (or, in a cluster, one Redis node's connection) is lost.
    pub async fn subscriber(
        &self,
    ) -> RedisResult<(Subscriber, BoxStream<'static, RedisResult<Incoming>>)> {
        match self {
            Self::Single(client) => {
                let (sink, stream) = client.get_async_pubsub().await?.split();
                let stream = stream.map(|m| Ok(Incoming::Message(m)));
                Ok((Subscriber::Single(sink), stream.boxed()))
            }
            // Subscribed on the master: after a failover the old one's
            // connections are closed (Sentinel kills its clients, or it
            // died), the stream ends and the bus starts over here.
            Self::Sentinel(s) => {
                let (sink, stream) = s.master().await?.get_async_pubsub().await?.split();
                let stream = stream.map(|m| Ok(Incoming::Message(m)));
                Ok((Subscriber::Single(sink), stream.boxed()))
            }
            Self::Cluster(c) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let conn = c
                    .pushes
                    .get_async_connection_with_config(
                        ClusterConfig::new()
                            .set_connection_timeout(CONNECT)
                            .set_response_timeout(RESPONSE)
                            .set_push_sender(tx),
                    )
                    .await?;
                let stream = tokio_stream_from(rx).filter_map(|push: redis::PushInfo| {
                    futures::future::ready(match push.kind {
                        // Redis-rs would resubscribe by itself, but what was
                        // published meanwhile is gone: the bus starts over
                        // and restores, as after losing a single server.
                        PushKind::Disconnection => Some(Err(RedisError::from((
                            redis::ErrorKind::Io,
                            "a cluster node's pub/sub connection was lost",
                        )))),
                        PushKind::Message | PushKind::SMessage => {
                            Msg::from_push_info(push).map(|m| Ok(Incoming::Message(m)))
                        }
                        // Ours, or the server's when the channel's slot
                        // moved to another Redis node: redis-rs then
                        // forgets the channel, so the bus must tell.
                        PushKind::SUnsubscribe => match push.data.first() {
                            Some(Value::BulkString(c)) => Some(Ok(Incoming::Unsubscribed(
                                String::from_utf8_lossy(c).into_owned(),
                            ))),
                            _ => None,
                        },
                        _ => None,
                    })
                });
                Ok((
                    Subscriber::Cluster {
                        conn,
                        unsubscribing: HashMap::new(),
                    },
                    stream.boxed(),
                ))
            }
        }
    }
}

/// A cluster client that fails like the single-server one: a short connect,
/// `response` per attempt, two retries, and a bound on the whole request
/// (redis-rs would otherwise retry a down Redis node for minutes).
fn cluster_client(
    seeds: &[String],
    resp3: bool,
    response: Duration,
    certs: Option<&redis::TlsCertificates>,
) -> RedisResult<ClusterClient> {
    let mut builder = ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(CONNECT)
        .response_timeout(response)
        .overall_response_timeout(Some(response * 2))
        .retries(2);
    if resp3 {
        builder = builder.use_protocol(redis::ProtocolVersion::RESP3);
    }
    if let Some(certs) = certs {
        builder = builder.certs(certs.clone());
    }
    builder.build()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> BoxStream<'static, T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// What the receiving side hears.
pub enum Incoming {
    Message(Msg),
    /// A sharded subscription ended: after our own `SUNSUBSCRIBE`, or when
    /// the channel's slot moved away from the Redis node holding it.
    Unsubscribed(String),
}

/// A command connection to a server or a cluster.
#[derive(Clone)]
pub enum Conn {
    /// Reconnects by itself (the node's shared connection).
    Single(ConnectionManager),
    /// One connection, for its owner's lifetime.
    Plain(redis::aio::MultiplexedConnection),
    Cluster(ClusterConnection),
    /// Follows the master Sentinel names (the node's shared connection).
    Sentinel(SentinelConn),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Plain(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Plain(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

/// The subscribing half of the receiving side.
pub enum Subscriber {
    Single(PubSubSink),
    Cluster {
        conn: ClusterConnection,
        /// Sharded channels this subscriber asked to leave whose
        /// confirmation has not been read yet, and how many times.
        unsubscribing: HashMap<String, u32>,
    },
}

impl Subscriber {
    /// A classic channel (the broadcast one). In a cluster, redis-rs sends
    /// the `SUBSCRIBE` to the Redis node owning the channel name's slot,
    /// which is where Herald publishes its broadcasts; a plain `PUBLISH` on
    /// any other Redis node reaches it over the cluster bus.
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Single(sink) => sink.subscribe(channel).await,
            Self::Cluster { conn, .. } => conn.subscribe(channel).await,
        }
    }

    /// User channels: one SUBSCRIBE on a server; in a cluster, sharded
    /// subscriptions, one SSUBSCRIBE per slot (a command may not span
    /// slots), sent to the Redis node owning it.
    pub async fn subscribe_users(&mut self, channels: Vec<String>) -> RedisResult<()> {
        match self {
            Self::Single(sink) => sink.subscribe(channels).await,
            Self::Cluster { conn, .. } => per_slot(conn, channels, true).await,
        }
    }

    pub async fn unsubscribe_users(&mut self, channels: Vec<String>) -> RedisResult<()> {
        match self {
            Self::Single(sink) => sink.unsubscribe(channels).await,
            Self::Cluster {
                conn,
                unsubscribing,
            } => {
                for c in &channels {
                    *unsubscribing.entry(c.clone()).or_default() += 1;
                }
                per_slot(conn, channels, false).await
            }
        }
    }

    /// Whether an [`Incoming::Unsubscribed`] confirms a `SUNSUBSCRIBE` this
    /// subscriber sent (each confirms every channel once). Otherwise the
    /// server dropped the channel: its slot moved.
    pub fn asked_to_leave(&mut self, channel: &str) -> bool {
        let Self::Cluster { unsubscribing, .. } = self else {
            return false;
        };
        let Some(n) = unsubscribing.get_mut(channel) else {
            return false;
        };
        *n -= 1;
        if *n == 0 {
            unsubscribing.remove(channel);
        }
        true
    }

    /// A round trip on the receiving connection (on one server; in a
    /// cluster, a lost node connection is reported on the stream instead).
    pub async fn ping(&mut self) -> RedisResult<()> {
        match self {
            Self::Single(sink) => sink.ping::<Value>().await.map(drop),
            Self::Cluster { conn, .. } => redis::cmd("PING")
                .query_async::<Value>(conn)
                .await
                .map(drop),
        }
    }
}

async fn per_slot(
    conn: &ClusterConnection,
    channels: Vec<String>,
    subscribe: bool,
) -> RedisResult<()> {
    let mut slots: HashMap<Slot, Vec<String>> = HashMap::new();
    for c in channels {
        slots.entry(Slot::for_key(&c)).or_default().push(c);
    }
    futures::stream::iter(slots.into_values())
        .map(|group| {
            let mut conn = conn.clone();
            async move {
                if subscribe {
                    conn.ssubscribe(group).await
                } else {
                    conn.sunsubscribe(group).await
                }
            }
        })
        .buffer_unordered(SLOT_COMMANDS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
