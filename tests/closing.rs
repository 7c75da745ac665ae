//! How sessions end: every close Herald decides reaches a client that is
//! still reading (a lingering close), a client's own close is echoed, and
//! a client that never reads cannot hold its session open.

mod support;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn a_clients_close_is_echoed_and_an_invalid_code_gets_1002() {
    let h = Herald::start(config()).await;
    let mut c = h.connect("ada").await;
    c.ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .expect("close sent");
    assert_eq!(c.closed().await.0, 1000);
    for code in [999u16, 1005, 1006, 1015, 5000] {
        let mut c = h.connect("ada").await;
        c.ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        })))
        .await
        .expect("close sent");
        assert_eq!(c.closed().await.0, 1002, "after close code {code}");
    }
    let mut d = h.connect("ada").await;
    h.expect_control_next(&mut d, "ada").await;
    h.stop().await;
}

#[tokio::test]
async fn a_flooding_client_learns_it_was_rate_limited() {
    let mut cfg = config();
    cfg.session.client_frames_per_s = 1;
    cfg.session.client_frames_burst = 5;
    cfg.session.max_rate_limited = 300;
    let h = Herald::start(cfg).await;
    // A client with a small receive buffer that floods before it reads:
    // the node's `rate_limited` answers, and its close frame behind them,
    // wait in the node's send queue when it decides to close, with the
    // client's frames still unread on its side.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(h.public).await.expect("tcp");
    let url = format!("{}?token={}", h.ws_url(), token(&claims("flood")));
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("upgrade");
    for i in 0..3000 {
        let frame = json!({"t": "event", "name": "click", "props": {"i": i}}).to_string();
        if ws.feed(Message::Text(frame.into())).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    let mut limited = 0;
    let code = loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(t))) => {
                let f: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                if f["code"] == "rate_limited" {
                    limited += 1;
                }
            }
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => {}
            other => panic!(
                "the connection ended without a close frame after {limited} rate_limited errors: {other:?}"
            ),
        }
    };
    assert!(limited > 0, "rate_limited error frames arrived");
    assert_eq!(code, 4029);
    let mut calm = h.connect("calm").await;
    h.expect_control_next(&mut calm, "calm").await;
    h.stop().await;
}

#[tokio::test]
async fn a_client_that_sends_but_never_reads_cannot_hold_its_session() {
    let mut cfg = config();
    cfg.session.write_timeout = Duration::from_millis(500);
    cfg.session.client_frames_per_s = 1_000_000;
    cfg.session.client_frames_burst = 1_000_000;
    let h = Herald::start(cfg).await;
    let mut watcher = h.connect("watcher").await;
    // A small receive buffer: the node's pongs back up quickly.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(h.public).await.expect("tcp");
    let url = format!("{}?token={}", h.ws_url(), token(&claims("deaf")));
    let (mut deaf, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("upgrade");
    eventually("two sessions", || async {
        h.get_json("/v1/stats").await["sessions"] == 2
    })
    .await;
    // Pings, each answered by a pong the client never reads, until the
    // node stops taking them.
    loop {
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            deaf.feed(Message::Text(r#"{"t":"ping"}"#.into())),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    eventually("the deaf session is gone", || async {
        h.get_json("/v1/stats").await["sessions"] == 1
    })
    .await;
    assert!(
        h.metric("herald_closes_total{reason=\"write_timeout\"}")
            .await
            >= 1.0
    );
    h.expect_control_next(&mut watcher, "watcher").await;
    h.stop().await;
}

#[tokio::test]
async fn a_drain_close_reaches_the_client() {
    let mut h = Herald::start(config()).await;
    let mut c = h.connect("ada").await;
    h.begin_stop();
    assert_eq!(c.closed().await.0, 1012);
}
