//! HTTP: the public listener (WebSocket upgrade, demo, SDK, health) and the
//! admin listener (the API of SPEC §6, metrics, readiness, the console).

pub mod admin;
mod coalesce;
pub mod console;
pub mod proxy;
pub mod public;

use crate::logs::Repeated;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An API error: a status and a one-line reason, as `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<crate::bus::BusError> for ApiError {
    fn from(e: crate::bus::BusError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<crate::error::FieldError> for ApiError {
    fn from(e: crate::error::FieldError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

/// A plain-text refusal, for clients that are not speaking JSON (the
/// WebSocket handshake): one line saying why.
pub fn refuse(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, format!("{reason}\n")).into_response()
}

/// Serves HTTP/1.1 (with upgrades) on a listener until `shutdown`, then
/// lets open requests finish. Unlike `axum::serve`, it bounds how long a
/// client may take to send its request head, so slow or incomplete
/// handshakes cannot hold connections open.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::Service;
    tokio::pin!(shutdown);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, typically: back off a moment.
                    static FAILED: Repeated = Repeated::new("accept failed");
                    if FAILED.first(|| format!("error={e}")) {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut app = app.clone();
                async move { app.call(req.map(axum::body::Body::new)).await }
            },
        );
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(
                TokioIo::new(coalesce::CoalesceUpgrade::new(stream)),
                service,
            )
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
}
