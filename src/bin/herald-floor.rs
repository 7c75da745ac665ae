//! herald-floor: the smallest server that does the bench's work, to measure
//! what this machine itself charges per socket, per handshake and per write
//! (issue 12: where a ratio against uWebSockets.js cannot be reached,
//! docs/BENCHMARKS.md shows this floor and how far Herald is above it).
//!
//! One thread, one `epoll` (mio), no runtime, no tasks, no per-connection
//! buffers once a connection is upgraded: a connection is its socket, its
//! user id and an output buffer that stays empty unless a write would
//! block. It speaks the bench's contract (benches/README.md, "The peers"):
//! `GET /v1/ws?token=JWT` (HS256, verified before the upgrade, 401
//! otherwise), a `{"t":"hello"}` first frame, every `PUBLISH` on
//! `{prefix}:broadcast` and `{prefix}:user:{id}` forwarded unchanged as one
//! text frame, encoded once and written with one `write` per socket;
//! `GET /readyz` and `GET /v1/stats`. It does less than any real server:
//! no heartbeats, no reading of client frames beyond noticing the end, one
//! `PSUBSCRIBE` for every user channel instead of a subscription per user.
//!
//! Run by `herald-bench compare --peers floor` (or `--peer floor`), which
//! sets `PEER_PORT`, `PEER_REDIS_URL`, `PEER_PREFIX` and `PEER_SECRET`.

use anyhow::{Context, Result, anyhow};
use herald::hub::outbox::encode_text_frame;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// A handshake request larger than this is refused.
const MAX_REQUEST: usize = 8192;

struct Settings {
    port: u16,
    redis_url: String,
    prefix: String,
    secret: String,
}

fn settings() -> Result<Settings> {
    let need = |k: &str| std::env::var(k).with_context(|| format!("{k} is required"));
    Ok(Settings {
        port: need("PEER_PORT")?.parse().context("PEER_PORT")?,
        redis_url: need("PEER_REDIS_URL")?,
        prefix: need("PEER_PREFIX")?,
        secret: need("PEER_SECRET")?,
    })
}

/// A published payload, for one user (`Some`) or every session.
type Published = (Option<String>, Vec<u8>);

struct Conn {
    stream: TcpStream,
    /// Set once upgraded.
    user: Option<Box<str>>,
    /// The request being read (emptied, and its memory freed, at the upgrade).
    request: Vec<u8>,
    /// What a write could not take; empty unless the socket is full.
    out: Vec<u8>,
    /// Close once `out` is written (HTTP answers).
    close_after: bool,
}

struct Server {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    users: HashMap<Box<str>, Vec<usize>>,
    sessions: usize,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

fn main() -> Result<()> {
    let s = settings()?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = sync_channel::<Published>(65_536);
    let (ready_tx, ready_rx) = sync_channel::<Result<(), String>>(1);
    let (url, prefix) = (s.redis_url.clone(), s.prefix.clone());
    std::thread::spawn(move || subscribe(&url, &prefix, tx, waker, ready_tx));
    ready_rx
        .recv()
        .context("subscriber thread")?
        .map_err(|e| anyhow!("redis: {e}"))?;
    let mut listener = TcpListener::bind(format!("127.0.0.1:{}", s.port).parse()?)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut server = Server {
        poll,
        conns: Vec::new(),
        free: Vec::new(),
        users: HashMap::new(),
        sessions: 0,
        key: jsonwebtoken::DecodingKey::from_secret(s.secret.as_bytes()),
        validation: jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    };
    println!("floor: listening on 127.0.0.1:{}", s.port);
    let mut events = Events::with_capacity(1024);
    loop {
        server.poll.poll(&mut events, None)?;
        for ev in events.iter() {
            match ev.token() {
                LISTENER => server.accept(&listener),
                WAKER => server.forward(&rx),
                Token(i) => {
                    if ev.is_writable() {
                        server.flush(i);
                    }
                    if ev.is_readable() || ev.is_read_closed() {
                        server.read(i);
                    }
                }
            }
        }
    }
}

/// The Redis subscription, on a thread of its own (blocking client).
fn subscribe(
    url: &str,
    prefix: &str,
    tx: SyncSender<Published>,
    waker: Arc<Waker>,
    ready: SyncSender<Result<(), String>>,
) {
    let broadcast = format!("{prefix}:broadcast");
    let user_prefix = format!("{prefix}:user:");
    let mut conn = match redis::Client::open(url).and_then(|c| c.get_connection()) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    // One `PubSub` for the whole life: dropping it unsubscribes.
    let mut ps = conn.as_pubsub();
    let subscribed = ps
        .subscribe(&broadcast)
        .and_then(|()| ps.psubscribe(format!("{user_prefix}*")));
    let _ = ready.send(subscribed.map_err(|e| e.to_string()));
    while let Ok(msg) = ps.get_message() {
        let channel = msg.get_channel_name();
        let user = channel.strip_prefix(&user_prefix).map(str::to_owned);
        if user.is_none() && channel != broadcast {
            continue;
        }
        if tx.send((user, msg.get_payload_bytes().to_vec())).is_err() {
            return;
        }
        let _ = waker.wake();
    }
    eprintln!("floor: the Redis subscription ended");
    std::process::exit(1);
}

impl Server {
    fn accept(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let i = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, Token(i), Interest::READABLE)
                        .is_err()
                    {
                        self.free.push(i);
                        continue;
                    }
                    self.conns[i] = Some(Conn {
                        stream,
                        user: None,
                        request: Vec::new(),
                        out: Vec::new(),
                        close_after: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Out of file descriptors and the like: try again on the next event.
                Err(_) => return,
            }
        }
    }

    fn read(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        loop {
            let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            match c.stream.read(&mut buf) {
                Ok(0) => return self.close(i),
                Ok(n) if c.user.is_none() && !c.close_after => {
                    c.request.extend_from_slice(&buf[..n]);
                    if c.request.len() > MAX_REQUEST {
                        return self.close(i);
                    }
                    if c.request.windows(4).any(|w| w == b"\r\n\r\n") {
                        self.answer(i);
                    }
                }
                // Client frames (the close, pongs) are read and dropped.
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(i),
            }
        }
    }

    /// Answers the request read on `i`: the upgrade, `/readyz`, `/v1/stats`.
    fn answer(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let request = std::mem::take(&mut c.request);
        let text = String::from_utf8_lossy(&request);
        let target = text.split_whitespace().nth(1).unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let header = |name: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        };
        let plain = |status: &str, kind: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let (reply, user) = match path {
            "/v1/ws" => {
                let token = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("token="))
                    .unwrap_or("");
                let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
                    .ok()
                    .map(|t| t.claims);
                match (claims, header("sec-websocket-key")) {
                    (Some(claims), Some(key)) => {
                        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                            key.as_bytes(),
                        );
                        let mut r = format!(
                            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
                        )
                        .into_bytes();
                        let hello =
                            serde_json::json!({"t": "hello", "user": claims.sub, "peer": "floor"});
                        r.extend_from_slice(&encode_text_frame(hello.to_string().as_bytes()));
                        (r, Some(claims.sub))
                    }
                    _ => (
                        plain("401 Unauthorized", "text/plain", "invalid token").into_bytes(),
                        None,
                    ),
                }
            }
            "/readyz" => (plain("200 OK", "text/plain", "ready").into_bytes(), None),
            "/v1/stats" => {
                let body = serde_json::json!({"sessions": self.sessions, "peer": "floor"});
                (
                    plain("200 OK", "application/json", &body.to_string()).into_bytes(),
                    None,
                )
            }
            _ => (
                plain("404 Not Found", "text/plain", "no such route").into_bytes(),
                None,
            ),
        };
        match user {
            Some(user) => {
                let user: Box<str> = user.into();
                c.user = Some(user.clone());
                self.users.entry(user).or_default().push(i);
                self.sessions += 1;
            }
            None => c.close_after = true,
        }
        self.send(i, &reply);
    }

    /// Writes `bytes` to `i` with one `write`; what it does not take waits
    /// in the connection's buffer for the socket to drain.
    fn send(&mut self, i: usize, bytes: &[u8]) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        if !c.out.is_empty() {
            c.out.extend_from_slice(bytes);
            return;
        }
        let written = match c.stream.write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => return self.close(i),
        };
        if written == bytes.len() {
            if c.close_after {
                self.close(i);
            }
            return;
        }
        c.out.extend_from_slice(&bytes[written..]);
        let _ = self.poll.registry().reregister(
            &mut c.stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        );
    }

    fn flush(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        while !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return self.close(i),
            }
        }
        c.out = Vec::new();
        if c.close_after {
            return self.close(i);
        }
        let _ = self
            .poll
            .registry()
            .reregister(&mut c.stream, Token(i), Interest::READABLE);
    }

    /// Every published payload waiting, each encoded once and written to
    /// the sessions it is for.
    fn forward(&mut self, rx: &Receiver<Published>) {
        loop {
            let (user, payload) = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => std::process::exit(1),
            };
            let frame = encode_text_frame(&payload);
            match &user {
                Some(u) => {
                    for i in self.users.get(u.as_str()).cloned().unwrap_or_default() {
                        self.send(i, &frame);
                    }
                }
                None => {
                    for i in 0..self.conns.len() {
                        if self.conns[i].as_ref().is_some_and(|c| c.user.is_some()) {
                            self.send(i, &frame);
                        }
                    }
                }
            }
        }
    }

    fn close(&mut self, i: usize) {
        let Some(mut c) = self.conns.get_mut(i).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if let Some(user) = c.user {
            self.sessions -= 1;
            if let Some(list) = self.users.get_mut(&user) {
                list.retain(|&j| j != i);
                if list.is_empty() {
                    self.users.remove(&user);
                }
            }
        }
        self.free.push(i);
    }
}
