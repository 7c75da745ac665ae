//! The gateway in embedded mode, over real sockets: handshake refusals,
//! frames both ways, close codes, audiences, slow consumers, drain.

mod support;

use futures::SinkExt;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn banner(to: serde_json::Value, title: &str) -> serde_json::Value {
    json!({"to": to, "kind": "banner", "title": title})
}

#[tokio::test]
async fn hello_then_a_broadcast_arrives_once_serialized_for_all() {
    let h = Herald::start(config()).await;
    let mut a = h.connect("alice").await;
    let mut b = h.connect("bob").await;
    assert_eq!(a.hello["user"], "alice");
    assert!(a.hello["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(a.hello["heartbeat_s"], 25);
    let id = h.publish(json!({"to": "all", "kind": "banner", "title": "Payments degraded", "priority": "urgent",
        "actions": [{"id": "status", "label": "Status", "url": "https://status.example.com"}], "data": {"x": 1}}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for c in [&mut a, &mut b] {
        let f = c.recv().await;
        assert_eq!(f["t"], "msg");
        assert_eq!(f["id"], id.as_str());
        assert_eq!(f["title"], "Payments degraded");
        assert_eq!(f["kind"], "banner");
        assert_eq!(f["priority"], "urgent");
        assert_eq!(f["reason"], "push");
        assert_eq!(f["actions"][0]["id"], "status");
        assert_eq!(f["data"]["x"], 1);
        assert!(f.get("to").is_none() && f.get("op").is_none() && f.get("fallback").is_none());
    }
    h.stop().await;
}

#[tokio::test]
async fn every_session_of_a_user_receives_and_no_one_else() {
    let h = Herald::start(config()).await;
    let mut tab1 = h.connect("alice").await;
    let mut tab2 = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let r = h
        .publish(banner(json!({"users": ["alice", "carol"]}), "for alice"))
        .await;
    assert_eq!(r["online"], json!(["alice"]));
    assert_eq!(r["offline"], json!(["carol"]));
    assert_eq!(tab1.recv_title().await, "for alice");
    assert_eq!(tab2.recv_title().await, "for alice");
    // Bob's next frame is the control, so "for alice" never reached him.
    h.expect_control_next(&mut bob, "bob").await;
    h.stop().await;
}

#[tokio::test]
async fn segments_where_and_combinations() {
    let h = Herald::start(config()).await;
    let mut free3 = h
        .connect_claims(claims_with(
            "u1",
            &["beta"],
            json!({"plan": "free", "level": 3}),
        ))
        .await;
    let mut free1 = h
        .connect_claims(claims_with("u2", &[], json!({"plan": "free", "level": 1})))
        .await;
    let mut pro = h
        .connect_claims(claims_with(
            "u3",
            &["beta", "admins"],
            json!({"plan": "pro", "level": 9}),
        ))
        .await;

    h.publish(banner(json!({"segments": ["beta"]}), "beta"))
        .await;
    h.publish(banner(
        json!({"where": "attrs.plan == \"free\" && attrs.level >= 3"}),
        "free3",
    ))
    .await;
    h.publish(banner(
        json!({"segments": ["beta"], "where": "attrs.plan == 'pro'"}),
        "beta-pro",
    ))
    .await;
    h.publish(banner(
        json!({"users": ["u1", "u2"], "where": "attrs.level < 2"}),
        "u2-only",
    ))
    .await;
    h.publish(banner(json!("all"), "end")).await;

    assert_eq!(titles_until_end(&mut free3).await, ["beta", "free3"]);
    assert_eq!(titles_until_end(&mut free1).await, ["u2-only"]);
    assert_eq!(titles_until_end(&mut pro).await, ["beta", "beta-pro"]);
    h.stop().await;
}

/// Titles of the `msg` frames before the one titled "end".
async fn titles_until_end(c: &mut Client) -> Vec<String> {
    let mut v = Vec::new();
    loop {
        let t = c.recv_title().await;
        if t == "end" {
            return v;
        }
        v.push(t);
    }
}

#[tokio::test]
async fn handshake_refusals_are_plain_http_with_a_reason() {
    let mut cfg = config();
    cfg.auth.allowed_origins = vec!["https://app.example.com".into()];
    cfg.limits.max_connections_per_user = 1;
    let h = Herald::start(cfg).await;
    let good = token(&claims("alice"));
    let origin = [("origin", "https://app.example.com")];

    let (s, body) = h.refused(&h.ws_url(), &origin).await;
    assert_eq!(s, 401);
    assert!(body.contains("missing token"), "{body}");
    let (s, _) = h
        .refused(&format!("{}?token=not.a.jwt", h.ws_url()), &origin)
        .await;
    assert_eq!(s, 401);
    let mut expired = claims("alice");
    expired.exp = herald::auth::unix_now() - 3600;
    let (s, body) = h
        .refused(
            &format!("{}?token={}", h.ws_url(), token(&expired)),
            &origin,
        )
        .await;
    assert_eq!((s, body.trim()), (401, "token expired"));
    let (s, body) = h
        .refused(
            &format!("{}?token={good}", h.ws_url()),
            &[("origin", "https://evil.example.com")],
        )
        .await;
    assert_eq!((s, body.trim()), (403, "origin not allowed"));

    // Positive control: the right origin and token get in, by query or header.
    let url = format!("{}?token={good}", h.ws_url());
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(h.ws_url())
            .expect("req");
    req.headers_mut()
        .insert("origin", origin[0].1.parse().expect("v"));
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {good}").parse().expect("v"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer accepted");
    // A second session for the same user is over the per-user limit of 1.
    let (s, body) = h.refused(&url, &origin).await;
    assert_eq!(
        (s, body.trim()),
        (429, "too many connections for this user")
    );
    ws.close(None).await.expect("close");
    drop(ws);
    eventually("the first session is gone", || async {
        h.get_json("/v1/stats").await["sessions"] == 0
    })
    .await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .expect("req");
    req.headers_mut()
        .insert("origin", origin[0].1.parse().expect("v"));
    tokio_tungstenite::connect_async(req)
        .await
        .expect("admitted again once the first left");
    h.stop().await;
}

#[tokio::test]
async fn over_capacity_is_503() {
    let mut cfg = config();
    cfg.limits.max_connections = 1;
    let h = Herald::start(cfg).await;
    let _a = h.connect("a").await;
    let (s, body) = h
        .refused(
            &format!("{}?token={}", h.ws_url(), token(&claims("b"))),
            &[],
        )
        .await;
    assert_eq!((s, body.trim()), (503, "node is at capacity"));
    h.stop().await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_session_stays() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("alice").await;
    for (frame, code) in [
        ("{oops", "bad_json"),
        (r#"{"t":"subscribe","channel":"x"}"#, "unknown_type"),
        (r#"{"t":"ack","id":"m1","status":"loved"}"#, "bad_field"),
    ] {
        c.send(frame).await;
        let f = c.recv().await;
        assert_eq!(
            (f["t"].as_str(), f["code"].as_str()),
            (Some("error"), Some(code)),
            "{frame} -> {f}"
        );
        assert!(f["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    c.send_message(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(c.recv().await["code"], "unsupported");
    c.send(r#"{"t":"ping"}"#).await;
    assert_eq!(c.recv().await["t"], "pong");
    c.send(r#"{"t":"ack","id":"m1","status":"clicked","action":"buy","unknown":true}"#)
        .await;
    c.send(r#"{"t":"event","name":"page_view","props":{"path":"/pricing"}}"#)
        .await;
    h.publish(banner(json!("all"), "still here")).await;
    assert_eq!(c.recv_title().await, "still here");
    assert_eq!(
        h.metric("herald_client_frames_total{type=\"ack\"}").await,
        1.0
    );
    assert_eq!(
        h.metric("herald_client_frames_total{type=\"event\"}").await,
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn repeated_bad_frames_close_with_4000_and_others_are_unharmed() {
    let h = Herald::start(config()).await;
    let mut bad = h.connect("mallory").await;
    let mut good = h.connect("alice").await;
    for _ in 0..10 {
        bad.send("nope").await;
    }
    let (code, _) = loop {
        match bad.ws.next_frame().await {
            Some(close) => break close,
            None => continue,
        }
    };
    assert_eq!(code, 4000);
    h.publish(banner(json!("all"), "fine")).await;
    assert_eq!(good.recv_title().await, "fine");
    h.stop().await;
}

/// Reading helpers for tests that skip error frames until the close.
trait NextFrame {
    async fn next_frame(&mut self) -> Option<(u16, String)>;
}

impl NextFrame
    for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
{
    async fn next_frame(&mut self) -> Option<(u16, String)> {
        use futures::StreamExt;
        match tokio::time::timeout(PATIENCE, self.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Close(Some(f)))) => Some((u16::from(f.code), f.reason.to_string())),
            Some(Ok(_)) => None,
            other => panic!("expected frames then a close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn flooding_client_is_rate_limited_then_closed_with_4029() {
    let mut cfg = config();
    cfg.session.client_frames_per_s = 1;
    cfg.session.client_frames_burst = 5;
    cfg.session.max_rate_limited = 3;
    let h = Herald::start(cfg).await;
    let mut c = h.connect("flood").await;
    for _ in 0..5 {
        c.send(r#"{"t":"ping"}"#).await;
        assert_eq!(c.recv().await["t"], "pong");
    }
    c.send(r#"{"t":"ping"}"#).await;
    let f = c.recv().await;
    assert_eq!(
        (f["t"].as_str(), f["code"].as_str()),
        (Some("error"), Some("rate_limited"))
    );
    for _ in 0..4 {
        let _ = c.ws.send(Message::Text(r#"{"t":"ping"}"#.into())).await;
    }
    assert_eq!(c.closed().await.0, 4029);
    h.stop().await;
}

#[tokio::test]
async fn frame_over_the_limit_closes_with_1009() {
    let mut cfg = config();
    cfg.session.max_frame_bytes = 1024;
    let h = Herald::start(cfg).await;
    let mut small = h.connect("a").await;
    small
        .send(&format!(
            r#"{{"t":"event","name":"x","props":{{"p":"{}"}}}}"#,
            "y".repeat(900)
        ))
        .await;
    h.publish(banner(json!("all"), "ok")).await;
    assert_eq!(
        small.recv_title().await,
        "ok",
        "a frame under the limit is fine"
    );
    let mut big = h.connect("b").await;
    let _ = big.ws.send(Message::Text("x".repeat(4096).into())).await;
    assert_eq!(big.closed().await.0, 1009);
    h.stop().await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("a").await;
    // A text frame whose payload is not UTF-8, built by hand.
    let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![0xff, 0xfe, 0xfd],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    let _ = c.ws.send(Message::Frame(frame)).await;
    assert_eq!(c.closed().await.0, 1007);
    h.stop().await;
}

#[tokio::test]
async fn token_expiry_mid_session_closes_with_1008() {
    let mut cfg = config();
    cfg.auth.leeway = std::time::Duration::ZERO;
    let h = Herald::start(cfg).await;
    let mut short = claims("brief");
    short.exp = herald::auth::unix_now() + 2;
    let mut c = h.connect_claims(short).await;
    let mut long = h.connect("long").await;
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    h.publish(banner(json!("all"), "alive")).await;
    assert_eq!(
        long.recv_title().await,
        "alive",
        "a valid token keeps its session"
    );
    h.stop().await;
}

#[tokio::test]
async fn keepalive_pings_and_closes_a_silent_peer() {
    let mut cfg = config();
    cfg.session.heartbeat = std::time::Duration::from_millis(200);
    let h = Herald::start(cfg).await;
    // A live client answers pings (tungstenite does on read) and stays.
    let live = h.connect("live").await;
    assert_eq!(live.hello["heartbeat_s"], 1);
    // A dead peer: handshake by hand, then never read or answer.
    let mut raw = tokio::net::TcpStream::connect(h.public).await.expect("tcp");
    let req = format!(
        "GET /v1/ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        token(&claims("dead"))
    );
    raw.write_all(req.as_bytes()).await.expect("write");
    eventually("both sessions registered", || async {
        h.get_json("/v1/stats").await["sessions"] == 2
    })
    .await;
    // The live client keeps reading (and so answering pings) meanwhile.
    let live = tokio::spawn(async move {
        let mut live = live;
        live.recv_title().await
    });
    eventually("the silent peer is dropped", || async {
        h.get_json("/v1/stats").await["sessions"] == 1
    })
    .await;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(PATIENCE, raw.read_to_end(&mut buf))
        .await
        .expect("EOF in time");
    assert!(n.is_ok(), "the server closed the dead peer's socket");
    // The live one crossed several heartbeats and still receives.
    h.publish(banner(json!("all"), "alive")).await;
    assert_eq!(live.await.expect("reader"), "alive");
    assert!(h.metric("herald_closes_total{reason=\"timeout\"}").await >= 1.0);
    h.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_4008_and_others_keep_receiving() {
    let mut cfg = config();
    cfg.session.outbound_queue = 8;
    let h = Herald::start(cfg).await;
    let mut good = h.connect("good").await;
    // The stalled client: connected, hello read, then never reads again.
    let stalled = h.connect("stalled").await;
    let body = "x".repeat(8_000);
    let mut n = 0;
    while h
        .metric("herald_drops_total{reason=\"slow_consumer\"}")
        .await
        < 1.0
    {
        let (s, _) = h
            .post(
                "/v1/messages",
                &json!({"to": {"users": ["stalled"]}, "kind": "card", "body": body}).to_string(),
            )
            .await;
        assert_eq!(s, 202);
        n += 1;
        assert!(n < 2000, "the stalled client was never cut off");
    }
    eventually("the stalled session is gone", || async {
        h.get_json("/v1/stats").await["sessions"] == 1
    })
    .await;
    drop(stalled);
    h.publish(banner(json!("all"), "unaffected")).await;
    assert_eq!(good.recv_title().await, "unaffected");
    assert_eq!(h.get_json("/v1/stats").await["drops"]["slow_consumer"], 1);
    h.stop().await;
}

/// A client that reads slowly (a tiny receive buffer, and nothing read
/// while messages pile up) makes the node's writes stop part-way through a
/// batch and go on later from there: every frame still arrives whole,
/// once, in order.
#[tokio::test]
async fn a_client_that_reads_late_gets_every_frame_whole_and_in_order() {
    let mut cfg = config();
    cfg.session.outbound_queue = 2000;
    cfg.session.outbound_queue_bytes = 32 * 1024 * 1024;
    let h = Herald::start(cfg).await;
    let url = format!("{}?token={}", h.ws_url(), token(&claims("late")));
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(h.public).await.expect("connect");
    let mut late = Client::connect_over(&url, tcp).await;
    // Twice what the kernel lets a socket's send buffer grow to, in frames
    // of about 8 KB: the node's writes must block part-way and resume.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .expect("tcp_wmem")
        .split_whitespace()
        .nth(2)
        .and_then(|m| m.parse().ok())
        .expect("tcp_wmem's maximum");
    let frames = (2 * wmem_max / 8_000).clamp(300, 2000);
    let body = "x".repeat(8_000);
    for i in 0..frames {
        let (s, _) = h
            .post(
                "/v1/messages",
                &json!({"to": {"users": ["late"]}, "kind": "card", "title": format!("m{i}"), "body": body})
                    .to_string(),
            )
            .await;
        assert_eq!(s, 202);
    }
    for i in 0..frames {
        let f = late.recv().await;
        assert_eq!(f["t"], "msg", "frame {i}: {f}");
        assert_eq!(f["title"], format!("m{i}"));
        assert_eq!(f["body"], body);
    }
    // Still open: nothing was dropped as a slow consumer.
    assert_eq!(h.get_json("/v1/stats").await["sessions"], 1);
    h.stop().await;
}

#[tokio::test]
async fn operator_disconnect_closes_every_session_of_the_user_with_1008() {
    let h = Herald::start(config()).await;
    let mut a1 = h.connect("alice").await;
    let mut a2 = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let (s, body) = h.post("/v1/users/alice/disconnect", "").await;
    assert_eq!((s, &body["user"]), (202, &json!("alice")));
    assert_eq!(a1.closed().await, (1008, "disconnected by operator".into()));
    assert_eq!(a2.closed().await.0, 1008);
    h.publish(banner(json!("all"), "bob stays")).await;
    assert_eq!(bob.recv_title().await, "bob stays");
    h.stop().await;
}

#[tokio::test]
async fn retract_reaches_sessions() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("alice").await;
    let id = h.publish(banner(json!("all"), "oops")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(c.recv_title().await, "oops");
    let (s, body) = h.delete(&format!("/v1/messages/{id}")).await;
    assert_eq!((s, body["id"].as_str()), (202, Some(id.as_str())));
    let f = c.recv().await;
    assert_eq!(
        (f["t"].as_str(), f["id"].as_str()),
        (Some("retract"), Some(id.as_str()))
    );
    h.stop().await;
}

#[tokio::test]
async fn expired_messages_are_never_delivered() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("alice").await;
    let past = herald::auth::unix_now_ms() - 1000;
    h.publish(json!({"to": "all", "kind": "toast", "title": "stale", "expires_at": past}))
        .await;
    h.publish(json!({"to": "all", "kind": "toast", "title": "fresh", "ttl_s": 60}))
        .await;
    let f = c.recv().await;
    assert_eq!(f["title"], "fresh");
    assert!(f["expires_at"].as_u64().is_some_and(|at| at > past));
    h.stop().await;
}

#[tokio::test]
async fn drain_closes_sessions_with_1012_after_flushing_and_refuses_new_ones() {
    let h = Herald::start(config()).await;
    let mut a = h.connect("alice").await;
    h.publish(banner(json!("all"), "before drain")).await;
    let public = h.public;
    let mut h = h;
    h.begin_stop();
    assert_eq!(a.recv_title().await, "before drain");
    assert_eq!(a.closed().await.0, 1012);
    // New connections are refused (503) or find the listener closed.
    let url = format!("ws://{public}/v1/ws?token={}", token(&claims("late")));
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("a draining node admitted a session"),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 503)
        }
        Err(_) => {}
    }
    h.stop().await;
}
