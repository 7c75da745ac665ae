//! The public listener: `GET /v1/ws`, `GET /healthz`, the demo page and SDK,
//! and `GET /dev/token` in dev mode. Every refusal happens here, before the
//! upgrade, as plain HTTP with a one-line reason.

use super::proxy::TrustedProxies;
use super::refuse;
use crate::auth::{AuthError, Claims};
use crate::node::Node;
use axum::extract::{ConnectInfo, Extension, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

const DEMO_HTML: &str = include_str!("../../demo/index.html");
const SDK_JS: &str = include_str!("../../sdk/js/herald.js");
const SDK_CORE_JS: &str = include_str!("../../sdk/js/herald-core.js");
const SDK_RENDER_JS: &str = include_str!("../../sdk/js/herald-render.js");

pub fn router(node: Arc<Node>) -> Router {
    let proxies = Arc::new(TrustedProxies::new(node.config.trusted_proxy_nets()));
    Router::new()
        .route("/v1/ws", get(upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/dev/token", get(dev_token))
        .route("/", get(demo))
        // The demo's own pages, so that reloading one of them works.
        .route("/pricing", get(demo))
        .route("/product", get(demo))
        .route("/checkout", get(demo))
        // Apps on other origins import the SDK as a module: CORS allows it.
        .route("/sdk/herald.js", get(|| sdk(SDK_JS)))
        // herald.js imports these two; apps may import the core alone.
        .route("/sdk/herald-core.js", get(|| sdk(SDK_CORE_JS)))
        .route("/sdk/herald-render.js", get(|| sdk(SDK_RENDER_JS)))
        .layer(Extension(proxies))
        .with_state(node)
}

async fn demo() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DEMO_HTML,
    )
}

async fn sdk(js: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        js,
    )
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
    since: Option<String>,
    locale: Option<String>,
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn upgrade(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(proxies): Extension<Arc<TrustedProxies>>,
    Query(query): Query<WsQuery>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    // Behind a trusted proxy, the client it names; else the socket's peer.
    let client = proxies.client(peer.ip(), headers);
    let key = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key)
            if header_has(headers, header::UPGRADE, "websocket")
                && header_has(headers, header::CONNECTION, "upgrade")
                && headers
                    .get(header::SEC_WEBSOCKET_VERSION)
                    .is_some_and(|v| v == "13") =>
        {
            derive_accept_key(key.as_bytes())
        }
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "expected a WebSocket upgrade (version 13)",
            );
        }
    };
    let allowed = &node.config.auth.allowed_origins;
    if !allowed.is_empty() {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if !origin.is_some_and(|o| allowed.iter().any(|a| a == o)) {
            node.metrics.refusal("origin");
            return refuse(StatusCode::FORBIDDEN, "origin not allowed");
        }
    }
    let token = query.token.as_deref().or_else(|| bearer(headers));
    let verified = match token {
        Some(t) => node.verifier.verify_fresh(t).await,
        None => Err(AuthError::Missing),
    };
    let mut identity = match verified {
        Ok(identity) => identity,
        Err(e) => {
            node.metrics.refusal("auth");
            tracing::debug!(%client, error = %e, "handshake refused");
            return refuse(StatusCode::UNAUTHORIZED, e);
        }
    };
    if let Some(locale) = &query.locale {
        if locale.is_empty()
            || locale.len() > 35
            || !locale
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return refuse(
                StatusCode::BAD_REQUEST,
                "locale: not a locale tag (e.g. fr, pt-BR)",
            );
        }
        identity.locale = Some(locale.as_str().into());
    }
    let since = query.since.clone().filter(|s| !s.is_empty());
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return refuse(StatusCode::BAD_REQUEST, "connection cannot be upgraded");
    };
    let reg = match node.hub.register(identity, client) {
        Ok(reg) => reg,
        Err(refusal) => {
            node.metrics.refusal(refusal.label());
            tracing::debug!(%client, reason = %refusal, "handshake refused");
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return refuse(status, refusal);
        }
    };
    if query.locale.is_some() {
        reg.session.pin_locale();
    }

    let ctx = node.session_ctx.clone();
    tokio::spawn(async move {
        // On a failed upgrade `reg` drops here and the session is unregistered.
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        // The accepted socket itself, not hyper's boxed wrapper around it
        // (and its read buffer): less memory in every session, and no
        // dynamic call on each read and write.
        type Accepted = TokioIo<super::coalesce::CoalesceUpgrade<tokio::net::TcpStream>>;
        let parts = match upgraded.downcast::<Accepted>() {
            Ok(parts) => parts,
            Err(_) => {
                tracing::error!("upgraded connection of an unexpected type; dropped");
                return;
            }
        };
        let (tcp, response) = parts.io.into_inner().into_parts();
        let upgraded = crate::session::Upgraded {
            tcp,
            response,
            read: parts.read_buf,
        };
        crate::session::start(upgraded, reg, ctx, since).await;
    });

    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

#[derive(Deserialize)]
struct DevTokenQuery {
    sub: Option<String>,
    /// Comma-separated segments.
    segments: Option<String>,
    /// Comma-separated `key=value` attributes; numbers and booleans typed.
    attrs: Option<String>,
    /// Lifetime, e.g. `1h` (default) or `30s`.
    ttl: Option<String>,
}

/// Dev mode only: a token for any user, so the demo works out of the box.
async fn dev_token(State(node): State<Arc<Node>>, Query(q): Query<DevTokenQuery>) -> Response {
    let Some(signer) = &node.dev_signer else {
        return refuse(
            StatusCode::NOT_FOUND,
            "dev mode is off: a JWT key is configured",
        );
    };
    let sub = q
        .sub
        .unwrap_or_else(|| format!("guest-{:04x}", rand::random::<u16>()));
    let ttl = match humantime::parse_duration(q.ttl.as_deref().unwrap_or("1h")) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("ttl: {e}")),
    };
    let attrs = match q.attrs.as_deref().map(crate::auth::parse_attrs).transpose() {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let claims = Claims {
        sub: sub.clone(),
        exp: crate::auth::unix_now() + ttl.as_secs(),
        iat: Some(crate::auth::unix_now()),
        segments: q.segments.map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        }),
        attrs,
    };
    match signer.mint(&claims) {
        Ok(token) => Json(serde_json::json!({ "token": token, "sub": sub, "exp": claims.exp }))
            .into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
