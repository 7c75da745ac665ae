//! HTTP: the public listener (WebSocket upgrade, demo, SDK, health) and the
//! admin listener (the API of SPEC §6, metrics, readiness).

pub mod admin;
pub mod public;

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

impl From<crate::envelope::EnvelopeError> for ApiError {
    fn from(e: crate::envelope::EnvelopeError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

/// A plain-text refusal, for clients that are not speaking JSON (the
/// WebSocket handshake): one line saying why.
pub fn refuse(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (status, format!("{reason}\n")).into_response()
}
