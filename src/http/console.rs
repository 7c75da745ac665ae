//! The web console of SPEC §10.6, on the admin listener only: `GET /console`
//! and its assets (`console/` and the SDK's renderer, embedded at build
//! time, so `cargo run` needs no JavaScript toolchain), and
//! `POST /v1/validate`, `herald validate`'s checks over HTTP, which the
//! console uses to show a CEL error while it is typed.
//!
//! The page and its assets hold no data and need no key; everything the
//! console shows or changes goes through the admin API with the key the
//! person typed (sign-in), like any other API client.

use super::ApiError;
use crate::campaigns::{Campaign, Compiled};
use crate::envelope::{self, Command};
use crate::node::Node;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::sync::Arc;

/// The console's files by name, as served under `/console/`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../console/app.js")),
    ("api.js", JS, include_str!("../../console/api.js")),
    ("shapes.js", JS, include_str!("../../console/shapes.js")),
    ("ui.js", JS, include_str!("../../console/ui.js")),
    ("compose.js", JS, include_str!("../../console/compose.js")),
    (
        "campaigns.js",
        JS,
        include_str!("../../console/campaigns.js"),
    ),
    ("measure.js", JS, include_str!("../../console/measure.js")),
    ("style.css", CSS, include_str!("../../console/style.css")),
    (
        "vendor/preact-htm.js",
        JS,
        include_str!("../../console/vendor/preact-htm.js"),
    ),
    (
        "vendor/uplot.js",
        JS,
        include_str!("../../console/vendor/uplot.js"),
    ),
    (
        "vendor/uplot.css",
        CSS,
        include_str!("../../console/vendor/uplot.css"),
    ),
    // The SDK's own renderer draws the previews: the very files apps load.
    (
        "sdk/herald-render.js",
        JS,
        include_str!("../../sdk/js/herald-render.js"),
    ),
    (
        "sdk/herald-core.js",
        JS,
        include_str!("../../sdk/js/herald-core.js"),
    ),
];

const INDEX: &str = include_str!("../../console/index.html");
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Same origin only; previewed images may come from anywhere over http(s);
/// the renderer's stylesheet is a `<style>` element.
const CSP: &str = "default-src 'self'; img-src 'self' data: http: https:; \
     style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The console's routes, merged into the admin router (never the public one).
pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/console", get(index))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route("/console/{*file}", get(asset))
}

fn headers(kind: &'static str) -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, kind),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // The build's files: a new binary may serve new ones under the same names.
        (header::CACHE_CONTROL, "no-cache"),
    ]
}

async fn index() -> Response {
    (headers("text/html; charset=utf-8"), INDEX).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => (headers(kind), *body).into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

/// `POST /v1/validate`: an envelope, or a campaign (an object with a
/// `trigger`), checked exactly as `POST /v1/messages` and
/// `PUT /v1/campaigns/{id}` check them, and nothing published or stored.
/// `200 {"valid": true, "kind": "envelope" | "campaign"}`, or the 400 those
/// routes would answer, naming the field.
pub async fn validate(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    body: Body,
) -> Result<Response, ApiError> {
    let max = node.config.limits.max_envelope_bytes;
    let bytes = axum::body::to_bytes(body, 256 * 1024)
        .await
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "body: over the 262144-byte limit"))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: not JSON: {e}")))?;
    if value.get("trigger").is_some() {
        let c: Campaign =
            serde_json::from_value(value).map_err(crate::error::FieldError::from_serde)?;
        Compiled::new(c, None)?;
        return Ok(Json(serde_json::json!({ "valid": true, "kind": "campaign" })).into_response());
    }
    if bytes.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("envelope: over the {max}-byte limit"),
        ));
    }
    let e = envelope::decode(&bytes, max)?;
    envelope::from_publisher(&e)?;
    let kind = match envelope::check(e, crate::auth::unix_now_ms())? {
        Command::Publish(_) => "envelope",
        Command::Retract { .. } => "retract",
        Command::Disconnect { .. } => "disconnect",
        Command::Campaign { .. } => "campaign change",
    };
    Ok(Json(serde_json::json!({ "valid": true, "kind": kind })).into_response())
}
