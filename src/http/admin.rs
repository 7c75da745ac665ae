//! The admin listener: the HTTP API of SPEC §6, `/metrics`, `/readyz` and
//! the web console (`/console`, in [`super::console`]).
//! With API keys configured, every route but `/readyz` needs
//! `Authorization: Bearer <key>`, compared in constant time.

use super::ApiError;
use crate::bus::{Schedule as _, Store as _};
use crate::campaigns::{Campaign, Compiled};
use crate::envelope::{self, Command};
use crate::error;
use crate::events::{Record, Stream};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::stats::{self, Scope};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub fn router(node: Arc<Node>) -> Router {
    let api = Router::new()
        .route("/v1/messages", post(publish))
        .route("/v1/messages/{id}", delete(retract))
        .route("/v1/messages/active", get(active))
        .route("/v1/messages/{id}/stats", get(message_stats))
        .route("/v1/campaigns/{id}/stats", get(campaign_stats))
        .route("/v1/users/{user}/trace", get(user_trace))
        .route("/v1/messages/scheduled", get(scheduled))
        .route("/v1/audience/preview", post(preview))
        .route("/v1/streams/{name}", get(stream))
        .route("/v1/campaigns", get(list_campaigns))
        .route(
            "/v1/campaigns/{id}",
            get(get_campaign).put(put_campaign).delete(delete_campaign),
        )
        .route("/v1/presence/{user}", get(presence))
        .route("/v1/stats", get(stats))
        .route("/v1/users/{user}/disconnect", post(disconnect))
        .route("/v1/validate", post(super::console::validate))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(node.clone(), require_key));
    Router::new()
        .route("/readyz", get(readyz))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(crate::schema::openapi()) }),
        )
        .merge(api)
        // The page and its assets: no data, no key (the API calls need one).
        .merge(super::console::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn_with_state(node.clone(), body_within))
        .with_state(node)
}

/// Reads every request body before routing, within `limits.body_timeout`
/// and twice `limits.max_envelope_bytes`: a client sending a byte a second
/// holds nothing for long (408), an endless body is cut off (413).
async fn body_within(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let limits = &node.config.limits;
    let max = limits.max_envelope_bytes.saturating_mul(2);
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {max} bytes, or broken off"),
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {}",
                humantime::format_duration(limits.body_timeout)
            ),
        )
        .into_response(),
    }
}

async fn require_key(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let keys = &node.config.auth.api_keys;
    if keys.is_empty() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .unwrap_or_default()
        .as_bytes();
    // Compare against every key, without stopping at the first match.
    let ok = keys.iter().fold(subtle::Choice::from(0), |acc, k| {
        acc | k.as_bytes().ct_eq(given)
    });
    if bool::from(ok) {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid API key").into_response()
    }
}

async fn publish(State(node): State<Arc<Node>>, body: Body) -> Result<Response, ApiError> {
    let max = node.config.limits.max_envelope_bytes;
    let bytes = axum::body::to_bytes(body, max + 1).await.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("envelope: over the {max}-byte limit"),
        )
    })?;
    let e = envelope::decode(&bytes, max)?;
    envelope::from_publisher(&e)?;
    e.check_links(node.dispatcher.link_schemes())?;
    // Whether send_at is ahead is decided by the clock the schedule runs
    // on (Redis's), never the accepting node's.
    let now = if e.send_at.is_some() {
        node.bus.now_ms().await?
    } else {
        crate::auth::unix_now_ms()
    };
    let cmd = envelope::check(e, now)?;
    if let Command::Publish(p) = &cmd
        && let Some(at) = p.send_later(now)
    {
        return schedule(&node, p, at).await;
    }
    let reach = node.bus.publish(&cmd).await?;
    if let Command::Publish(p) = &cmd {
        counted(&node, p, reach.as_ref());
    }
    let mut out = serde_json::Map::new();
    match &cmd {
        Command::Publish(p) => {
            out.insert("id".into(), p.id().into());
            tracing::info!(msg_id = p.id(), "published");
        }
        Command::Retract { id, .. } => {
            out.insert("id".into(), id.as_str().into());
        }
        Command::Disconnect { .. } | Command::Campaign { .. } => {}
    }
    if let Some(r) = reach {
        out.insert("online".into(), r.online.into());
        out.insert("offline".into(), r.offline.into());
    }
    Ok((StatusCode::ACCEPTED, Json(out)).into_response())
}

async fn retract(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if id.is_empty() || id.len() > envelope::MAX_ID {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "id: must be 1 to 128 bytes",
        ));
    }
    // A message still waiting for its send_at is cancelled; anything else
    // is retracted, as before scheduling existed.
    if node.bus.cancel(&id).await? {
        tracing::info!(msg_id = %id, "scheduled message cancelled");
        return Ok(Json(serde_json::json!({ "id": id, "cancelled": true })).into_response());
    }
    node.bus
        .publish(&Command::Retract {
            except: None,
            id: id.clone(),
            pos: None,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response())
}

/// Holds a checked message until `at` (SPEC §10.3): `202 {"id","send_at"}`.
async fn schedule(
    node: &Node,
    p: &crate::envelope::Publish,
    at: u64,
) -> Result<Response, ApiError> {
    node.bus.schedule(p, at).await?;
    tracing::info!(msg_id = p.id(), send_at = at, "scheduled");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": p.id(), "send_at": at })),
    )
        .into_response())
}

#[derive(serde::Deserialize)]
struct ScheduledQuery {
    limit: Option<usize>,
}

/// Scheduled messages still waiting, soonest first, as accepted.
async fn scheduled(
    State(node): State<Arc<Node>>,
    axum::extract::Query(q): axum::extract::Query<ScheduledQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let messages = node.bus.scheduled(limit).await?;
    Ok(Json(serde_json::json!({ "messages": messages })).into_response())
}

/// Who `to` reaches now, on every node (SPEC §10.5); delivers nothing.
async fn preview(State(node): State<Arc<Node>>, body: Body) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, node.config.limits.max_envelope_bytes)
        .await
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "body: over the envelope limit"))?;
    let req: crate::bus::PreviewRequest =
        serde_json::from_slice(&bytes).map_err(error::FieldError::from_serde)?;
    let audience = crate::audience::Audience::compile(&req.to)?;
    let preview = node.bus.preview(&req.to, &audience).await?;
    Ok(Json(preview).into_response())
}

/// The sticky set: active sticky and must-acknowledge messages, as stored.
async fn active(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let active = node.bus.active().await?;
    let messages: Vec<&crate::envelope::Envelope> = active.iter().map(|p| &p.envelope).collect();
    Ok(Json(serde_json::json!({ "messages": messages })).into_response())
}

#[derive(serde::Deserialize)]
struct StreamQuery {
    count: Option<usize>,
}

/// The newest records of `events`, `undelivered` or `dead`, newest first.
async fn stream(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let stream = Stream::parse(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no such stream; use events, undelivered or dead",
        )
    })?;
    let count = q.count.unwrap_or(100).clamp(1, 10_000);
    let records = node.bus.stream(stream, count).await?;
    Ok(Json(serde_json::json!({ "stream": name, "records": records })).into_response())
}

async fn list_campaigns(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "campaigns": node.campaigns.registry.list() }))
}

async fn get_campaign(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = node
        .campaigns
        .registry
        .get(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such campaign"))?;
    Ok(Json(&c.campaign).into_response())
}

/// Stores (creates or replaces) a campaign; a campaign that does not check
/// or compile is refused here, naming the field, and nothing is stored.
async fn put_campaign(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, 256 * 1024).await.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "campaign: over the 262144-byte limit",
        )
    })?;
    let campaign: Campaign =
        serde_json::from_slice(&bytes).map_err(error::FieldError::from_serde)?;
    // App links in its actions: this node's sdk.allowed_link_schemes.
    // Every message it may show: its own, or each variant's.
    let schemes = node.dispatcher.link_schemes();
    if let Some(m) = &campaign.message {
        m.check_links(schemes)
            .map_err(|e| error::FieldError::new(format!("message.{}", e.field), e.reason))?;
    }
    for (i, v) in campaign.variants.iter().flatten().enumerate() {
        v.message.check_links(schemes).map_err(|e| {
            error::FieldError::new(format!("variants[{i}].message.{}", e.field), e.reason)
        })?;
    }
    let compiled = Compiled::new(campaign, Some(&id))?;
    let stored = compiled.campaign.clone();
    node.campaigns.put(compiled).await?;
    tracing::info!(campaign = %id, active = stored.active, "campaign stored");
    Ok(Json(stored).into_response())
}

async fn delete_campaign(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if node.campaigns.delete(&id).await? {
        Ok(Json(serde_json::json!({ "id": id, "deleted": true })).into_response())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such campaign"))
    }
}

fn check_user(user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.len() > 256 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "user: must be 1 to 256 bytes",
        ));
    }
    Ok(())
}

async fn presence(
    State(node): State<Arc<Node>>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    check_user(&user)?;
    Ok(Json(node.bus.presence(&user).await?).into_response())
}

async fn disconnect(
    State(node): State<Arc<Node>>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    check_user(&user)?;
    node.bus
        .publish(&Command::Disconnect {
            users: vec![Arc::from(user.as_str())],
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "user": user })),
    )
        .into_response())
}

/// This node's counters, and with Redis the cluster's (`cluster`: every live
/// node as of its last heartbeat, and the sums).
async fn stats(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    let m = &node.metrics;
    let drops: serde_json::Map<String, serde_json::Value> =
        ["slow_consumer", "expired", "write_timeout"]
            .into_iter()
            .map(|r| (r.to_owned(), Metrics::counter_value(&m.drops, r).into()))
            .collect();
    // The node's own figures never wait on a slow Redis.
    let cluster = match tokio::time::timeout(
        std::time::Duration::from_millis(500),
        node.bus.cluster_stats(),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => Some(serde_json::json!({ "error": e.to_string() })),
        Err(_) => Some(serde_json::json!({ "error": "redis did not answer in time" })),
    };
    Json(serde_json::json!({
        "cluster": cluster,
        "node": node.hub.node(),
        "mode": node.bus.mode(),
        "bus_up": node.bus.is_up(),
        "redis_master": node.bus.sentinel_master().map(|(name, addr)| {
            serde_json::json!({ "name": name, "addr": addr })
        }),
        "draining": node.hub.is_draining(),
        "sessions": node.hub.session_count(),
        "users": node.hub.user_count(),
        "deliveries": m.deliveries.get(),
        "drops": drops,
    }))
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(node): State<Arc<Node>>) -> Response {
    if node.hub.is_draining() {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if !node.bus.is_up() {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "redis bus down").into_response()
    } else if let Some((name, addr)) = node.bus.sentinel_master() {
        let addr = addr.as_deref().unwrap_or("not resolved yet");
        let body = format!("ready\nredis master {name:?} at {addr} (from sentinel)\n");
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

/// A message published here has counts from now on, and its named users
/// offline have a trace entry saying so (fallback messages get theirs from
/// their `undelivered` records).
fn counted(node: &Node, p: &crate::envelope::Publish, reach: Option<&crate::bus::Reach>) {
    let events = node.dispatcher.events();
    events.emit(Record::published(p));
    if let Some(r) = reach.filter(|_| !p.envelope.fallback) {
        for user in &r.offline {
            events.emit(Record::not_online(p, user));
        }
    }
}

/// `?by=hour` (the only grouping), or nothing.
fn by_hour(query: Option<&str>) -> Result<bool, ApiError> {
    let mut hourly = false;
    for (k, v) in pairs(query) {
        match (k, v) {
            ("by", "hour") => hourly = true,
            ("by", _) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "by: only \"hour\" is supported",
                ));
            }
            _ => {}
        }
    }
    Ok(hourly)
}

fn pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// A message's counts (SPEC §10.5); 404 when none were ever kept for it.
async fn message_stats(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let hourly = by_hour(query.as_deref())?;
    let scope = Scope::Message(id);
    let counts = node.bus.counts(&scope).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no such message (or no counts kept for it)",
        )
    })?;
    Ok(Json(stats::render(&scope, &counts, None, hourly)).into_response())
}

/// A campaign's counts, with its variants' exposures and conversions and
/// their difference against the holdout (SPEC §10.5).
async fn campaign_stats(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let hourly = by_hour(query.as_deref())?;
    let compiled = node.campaigns.registry.get(&id);
    let scope = Scope::Campaign(id);
    let counts = node.bus.counts(&scope).await?;
    let counts = match (counts, &compiled) {
        (Some(c), _) => c,
        (None, Some(_)) => stats::Counts::default(),
        (None, None) => return Err(ApiError::new(StatusCode::NOT_FOUND, "no such campaign")),
    };
    let variants: Vec<String> = compiled.map_or_else(Vec::new, |c| {
        let k = &c.campaign;
        let mut v: Vec<String> = match &k.variants {
            Some(vs) => vs.iter().map(|v| v.id.clone()).collect(),
            None if c.is_experiment() => vec![crate::campaigns::Arm::DEFAULT.to_owned()],
            None => Vec::new(),
        };
        if k.holdout_pct > 0.0 {
            v.push(crate::campaigns::Arm::HOLDOUT.to_owned());
        }
        v
    });
    Ok(Json(stats::render(&scope, &counts, Some(&variants), hourly)).into_response())
}

/// The newest decisions about a user: why they saw a message, or why not.
async fn user_trace(
    State(node): State<Arc<Node>>,
    Path(user): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    check_user(&user)?;
    let max = node.config.stats.trace_per_user;
    let mut limit = max;
    for (k, v) in pairs(query.as_deref()) {
        if k == "limit" {
            limit = v
                .parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("limit: a whole number from 1 to {max} (stats.trace_per_user)"),
                    )
                })?;
        }
    }
    let entries = node.bus.trace(&user, limit).await?;
    Ok(Json(serde_json::json!({ "user": user, "decisions": entries })).into_response())
}
