//! Machine-readable contracts, generated from the Rust types so they cannot
//! drift: JSON Schema for the envelope and the campaign, and the OpenAPI
//! document of the admin API (served at `GET /v1/openapi.json`). Copies are
//! kept in the repository (`schemas/`, `docs/openapi.json`); a test checks
//! they equal what this module generates.

use serde_json::{Value, json};

/// The envelope: the generated shape, tightened with the rules the types
/// cannot carry (limits, conditional requirements), so that editors using
/// the schema refuse most of what `herald validate` refuses.
pub fn envelope() -> Value {
    let mut v = with_id(schemars::schema_for!(crate::envelope::Envelope), "envelope");
    tighten_envelope(&mut v);
    v
}

pub fn campaign() -> Value {
    let mut v = with_id(
        schemars::schema_for!(crate::campaigns::Campaign),
        "campaign",
    );
    if let Some(defs) = v.get_mut("$defs").and_then(Value::as_object_mut) {
        if let Some(Value::Object(env)) = defs.get_mut("Envelope") {
            // In a campaign the message has no to, id or op: the campaign sets them.
            env.insert("not".into(), json!({"anyOf": [{"required": ["to"]}, {"required": ["id"]}, {"required": ["op"]}, {"required": ["variant"]}]}));
            env.insert("required".into(), json!(["kind"]));
        }
        if let Some(action) = defs.get_mut("Action") {
            tighten_action(action);
        }
        if let Some(Value::Object(trigger)) = defs.get_mut("Trigger") {
            trigger.insert("oneOf".into(), json!([{"required": ["event"]}, {"required": ["connect"]}, {"required": ["idle_s"]}]));
        }
        let hhmm = json!(r"^([01][0-9]|2[0-3]):[0-5][0-9]$");
        if let Some(q) = defs.get_mut("QuietHours") {
            set(q, "/properties/from", "pattern", hhmm.clone());
            set(q, "/properties/to", "pattern", hhmm);
        }
        if let Some(variant) = defs.get_mut("Variant") {
            set(variant, "/properties/weight", "exclusiveMinimum", json!(0));
            set(
                variant,
                "/properties/id",
                "pattern",
                json!(r"^[A-Za-z0-9._-]{1,128}$"),
            );
        }
        if let Some(Value::Object(goal)) = defs.get_mut("Goal") {
            goal.insert("required".into(), json!(["event"]));
        }
        if let Some(goal) = defs.get_mut("Goal") {
            set(goal, "/properties/event", "minLength", json!(1));
            set(goal, "/properties/within_s", "minimum", json!(1));
            set(goal, "/properties/within_s", "maximum", json!(7_776_000));
        }
    }
    set(&mut v, "/properties/holdout_pct", "minimum", json!(0));
    set(&mut v, "/properties/holdout_pct", "maximum", json!(50));
    set(&mut v, "/properties/variants", "minItems", json!(1));
    set(&mut v, "/properties/variants", "maxItems", json!(16));
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "oneOf".into(),
            json!([{"required": ["message"]}, {"required": ["variants"]}]),
        );
    }
    v
}

fn set(v: &mut Value, pointer: &str, key: &str, value: Value) {
    if let Some(obj) = v.pointer_mut(pointer).and_then(Value::as_object_mut) {
        obj.insert(key.into(), value);
    }
}

fn tighten_action(action: &mut Value) {
    set(action, "/properties/id", "minLength", json!(1));
    set(action, "/properties/id", "maxLength", json!(64));
    set(action, "/properties/label", "minLength", json!(1));
    set(action, "/properties/label", "maxLength", json!(256));
    set(
        action,
        "/properties/url",
        "pattern",
        json!(r"^(https?://|/(?![/\\]))[^\s\\]*$"),
    );
}

fn tighten_envelope(v: &mut Value) {
    set(v, "/properties/id", "minLength", json!(1));
    set(
        v,
        "/properties/id",
        "maxLength",
        json!(crate::envelope::MAX_ID),
    );
    set(v, "/properties/actions", "maxItems", json!(3));
    set(v, "/properties/title", "maxLength", json!(512));
    set(v, "/properties/body", "maxLength", json!(8192));
    set(
        v,
        "/properties/image_url",
        "pattern",
        json!(r"^https?://[^\s\\]*$"),
    );
    set(v, "/properties/ttl_s", "minimum", json!(1));
    if let Some(action) = v.pointer_mut("/$defs/Action") {
        tighten_action(action);
    }
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "allOf".into(),
            json!([
                {
                    "if": {"properties": {"op": {"enum": ["retract", "campaign"]}}, "required": ["op"]},
                    "then": {"required": ["id"]},
                    "else": {"required": ["to"]}
                },
                {
                    "if": {"not": {"properties": {"op": {"enum": ["retract", "campaign", "disconnect"]}}, "required": ["op"]}},
                    "then": {"required": ["kind"]}
                },
                {
                    "if": {"properties": {"kind": {"const": "tooltip"}}, "required": ["kind"]},
                    "then": {"required": ["anchor"]}
                },
                {
                    "if": {"properties": {"kind": {"not": {"const": "custom"}}}, "required": ["kind"]},
                    "then": {"anyOf": [{"required": ["title"]}, {"required": ["body"]}]}
                }
            ]),
        );
    }
}

fn with_id(schema: schemars::Schema, name: &str) -> Value {
    let mut v = schema.to_value();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "$id".into(),
            json!(format!("https://herald.dev/schemas/{name}.schema.json")),
        );
    }
    v
}

/// Schemas referenced from OpenAPI: `$defs` moved under components.
fn component(mut schema: Value, defs: &mut serde_json::Map<String, Value>) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("$id");
        if let Some(Value::Object(d)) = obj.remove("$defs") {
            defs.extend(d);
        }
    }
    let text = schema
        .to_string()
        .replace("#/$defs/", "#/components/schemas/");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn error(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok_json(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn path_param(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": desc, "schema": {"type": "string"}})
}

/// The admin API, path by path.
pub fn openapi() -> Value {
    let mut defs = serde_json::Map::new();
    let envelope = component(envelope(), &mut defs);
    let campaign = component(campaign(), &mut defs);
    let mut schemas = defs;
    schemas.insert("Envelope".into(), envelope);
    schemas.insert("Campaign".into(), campaign);
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string", "description": "What was wrong, naming the field when there is one."}}}),
    );
    schemas.insert("Stats".into(), stats_schema());
    schemas.insert("Decision".into(), decision_schema());
    let env_ref = || json!({"$ref": "#/components/schemas/Envelope"});
    let camp_ref = || json!({"$ref": "#/components/schemas/Campaign"});
    let unauthorized = || error("Missing or invalid API key (when keys are configured).");
    let unavailable = || error("The Redis bus is down: nothing was published.");
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Herald admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Publish in-app messages, manage campaigns, read presence, streams and stats. Served on the admin listener (default 127.0.0.1:9090)."
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/v1/messages": {"post": {
                "summary": "Publish an envelope (or a retract / disconnect op).",
                "requestBody": {"required": true, "content": {"application/json": {"schema": env_ref()}}},
                "responses": {
                    "202": ok_json("Published. For users audiences, who was online at publish time. With send_at ahead: scheduled, and the answer is {id, send_at}.", json!({
                        "type": "object", "properties": {
                            "id": {"type": "string"},
                            "send_at": {"type": "integer", "description": "Scheduled: when it will be published (unix ms)."},
                            "online": {"type": "array", "items": {"type": "string"}},
                            "offline": {"type": "array", "items": {"type": "string"}}}})),
                    "400": error("Invalid envelope: the field and the reason."),
                    "401": unauthorized(), "503": unavailable()}}},
            "/v1/messages/{id}": {"delete": {
                "summary": "Cancel a scheduled message still waiting; otherwise retract a message everywhere.",
                "parameters": [path_param("id", "The message id.")],
                "responses": {"200": ok_json("Cancelled: it was waiting for its send_at and will not be published.", json!({"type": "object", "properties": {"id": {"type": "string"}, "cancelled": {"const": true}}})),
                    "202": ok_json("Retracted.", json!({"type": "object", "properties": {"id": {"type": "string"}}})),
                    "400": error("Invalid id."), "401": unauthorized(), "503": unavailable()}}},
            "/v1/messages/active": {"get": {
                "summary": "The sticky set: active sticky and require_ack messages.",
                "responses": {"200": ok_json("Active messages.", json!({"type": "object", "properties": {"messages": {"type": "array", "items": env_ref()}}})),
                    "401": unauthorized(), "503": unavailable()}}},
            "/v1/streams/{name}": {"get": {
                "summary": "The newest records of the events, undelivered or dead stream.",
                "parameters": [
                    {"name": "name", "in": "path", "required": true, "schema": {"type": "string", "enum": ["events", "undelivered", "dead"]}},
                    {"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100}}],
                "responses": {"200": ok_json("Records, newest first.", json!({"type": "object", "properties": {
                    "stream": {"type": "string"}, "records": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"}}}}})),
                    "404": error("No such stream."), "401": unauthorized(), "503": unavailable()}}},
            "/v1/presence/{user}": {"get": {
                "summary": "A user's sessions across the cluster.",
                "parameters": [path_param("user", "The user id.")],
                "responses": {"200": ok_json("Presence.", json!({"type": "object", "properties": {
                    "user": {"type": "string"}, "online": {"type": "boolean"}, "sessions": {"type": "integer"}}})),
                    "400": error("Invalid user id."), "401": unauthorized(), "503": unavailable()}}},
            "/v1/stats": {"get": {
                "summary": "This node's sessions, users and delivery counters.",
                "responses": {"200": ok_json("Stats.", json!({"type": "object"})), "401": unauthorized()}}},
            "/v1/users/{user}/disconnect": {"post": {
                "summary": "Close every session of a user, on every node, with 1008.",
                "parameters": [path_param("user", "The user id.")],
                "responses": {"202": ok_json("Asked.", json!({"type": "object", "properties": {"user": {"type": "string"}}})),
                    "400": error("Invalid user id."), "401": unauthorized(), "503": unavailable()}}},
            "/v1/messages/{id}/stats": {"get": {
                "summary": "A message's counts, cluster-wide (SPEC 10.5).",
                "parameters": [path_param("id", "The message id."), by_hour()],
                "responses": {"200": ok_json("Counts.", json!({"$ref": "#/components/schemas/Stats"})),
                    "400": error("by: not hour."), "404": error("No counts were ever kept for this id."),
                    "401": unauthorized(), "503": unavailable()}}},
            "/v1/campaigns/{id}/stats": {"get": {
                "summary": "A campaign's counts over its messages, with each variant's exposures and conversions and the difference against the holdout (95 % Newcombe hybrid score interval).",
                "parameters": [path_param("id", "The campaign id."), by_hour()],
                "responses": {"200": ok_json("Counts.", json!({"$ref": "#/components/schemas/Stats"})),
                    "400": error("by: not hour."), "404": error("No such campaign, and no counts of one."),
                    "401": unauthorized(), "503": unavailable()}}},
            "/v1/users/{user}/trace": {"get": {
                "summary": "The newest decisions about a user: why they saw a message, or why not.",
                "parameters": [path_param("user", "The user id."),
                    {"name": "limit", "in": "query", "description": "At most this many, newest first (1 to stats.trace_per_user, its default).", "schema": {"type": "integer", "minimum": 1}}],
                "responses": {"200": ok_json("Decisions, newest first.", json!({"type": "object", "required": ["user", "decisions"], "properties": {
                    "user": {"type": "string"}, "decisions": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}}}})),
                    "400": error("Invalid user id or limit."), "401": unauthorized(), "503": unavailable()}}},
            "/v1/validate": {"post": {
                "summary": "Check an envelope, or a campaign (an object with a trigger), as POST /v1/messages and PUT /v1/campaigns/{id} would; nothing is published or stored. What the console uses to show CEL errors as they are typed.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [env_ref(), camp_ref()]}}}},
                "responses": {
                    "200": ok_json("Valid.", json!({"type": "object", "required": ["valid", "kind"], "properties": {
                        "valid": {"const": true},
                        "kind": {"type": "string", "enum": ["envelope", "campaign", "retract", "disconnect", "campaign change"]}}})),
                    "400": error("Invalid: the field and the reason, as the publishing route would answer."),
                    "401": unauthorized()}}},
            "/v1/campaigns": {"get": {
                "summary": "Every campaign this node applies.",
                "responses": {"200": ok_json("Campaigns.", json!({"type": "object", "properties": {"campaigns": {"type": "array", "items": camp_ref()}}})),
                    "401": unauthorized()}}},
            "/v1/campaigns/{id}": {
                "get": {"summary": "One campaign.", "parameters": [path_param("id", "The campaign id.")],
                    "responses": {"200": ok_json("The campaign.", camp_ref()), "404": error("No such campaign."), "401": unauthorized()}},
                "put": {"summary": "Create or replace a campaign; it takes effect on every node at once.",
                    "parameters": [path_param("id", "The campaign id.")],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": camp_ref()}}},
                    "responses": {"200": ok_json("Stored.", camp_ref()), "400": error("Invalid campaign: the field and the reason."),
                        "401": unauthorized(), "503": unavailable()}},
                "delete": {"summary": "Delete a campaign.", "parameters": [path_param("id", "The campaign id.")],
                    "responses": {"200": ok_json("Deleted.", json!({"type": "object"})), "404": error("No such campaign."),
                        "401": unauthorized(), "503": unavailable()}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text).",
                "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": unauthorized()}}},
            "/readyz": {"get": {"summary": "Readiness: 503 with the reason while the bus is down or the node drains.", "security": [],
                "responses": {"200": {"description": "Ready."}, "503": error("Not ready: the reason.")}}},
            "/v1/openapi.json": {"get": {"summary": "This document.", "security": [],
                "responses": {"200": ok_json("OpenAPI 3.1.", json!({"type": "object"}))}}}
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "One of auth.api_keys."}},
            "schemas": schemas
        }
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(scheduling_paths());
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        let mut defs = serde_json::Map::new();
        let request = component(
            schemars::schema_for!(crate::bus::PreviewRequest).to_value(),
            &mut defs,
        );
        let preview = component(
            schemars::schema_for!(crate::bus::Preview).to_value(),
            &mut defs,
        );
        schemas.extend(defs);
        schemas.insert("PreviewRequest".into(), request);
        schemas.insert("Preview".into(), preview);
    }
    doc
}

/// Scheduled messages and the audience preview (SPEC §10.3, §10.5).
fn scheduling_paths() -> serde_json::Map<String, Value> {
    let env_ref = json!({"$ref": "#/components/schemas/Envelope"});
    let unauthorized = error("Missing or invalid API key (when keys are configured).");
    let unavailable = error("The Redis bus is down.");
    let paths = json!({
        "/v1/messages/scheduled": {"get": {
            "summary": "Scheduled messages still waiting for their send_at, soonest first, as accepted.",
            "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
            "responses": {"200": ok_json("Waiting messages.", json!({"type": "object", "properties": {"messages": {"type": "array", "items": env_ref}}})),
                "401": unauthorized.clone(), "503": unavailable.clone()}}},
        "/v1/audience/preview": {"post": {
            "summary": "Count the sessions and users an audience reaches now, on every node, with a sample of user ids; delivers nothing.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PreviewRequest"}}}},
            "responses": {"200": ok_json("Who is online now and in the audience.", json!({"$ref": "#/components/schemas/Preview"})),
                "400": error("Invalid audience: the field and the reason."),
                "401": unauthorized, "503": unavailable}}}
    });
    match paths {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn by_hour() -> Value {
    json!({"name": "by", "in": "query", "description": "hour: add `hours`, the counts per clock hour (UTC), oldest first.", "schema": {"type": "string", "enum": ["hour"]}})
}

fn stats_schema() -> Value {
    let n = || json!({"type": "integer", "minimum": 0});
    json!({
        "type": "object",
        "description": "Event counts and distinct users (users), cluster-wide, kept as the events happen. Campaigns add variants; ?by=hour adds hours.",
        "required": ["id", "delivered", "displayed", "clicked", "dismissed", "suppressed", "actions", "users"],
        "properties": {
            "id": {"type": "string"},
            "delivered": n(), "displayed": n(), "clicked": n(), "dismissed": n(),
            "suppressed": {"type": "integer", "minimum": 0, "description": "Vetoed by the client (ack suppressed); for campaigns also triggers held in quiet hours."},
            "actions": {"type": "object", "description": "Clicks per action id.", "additionalProperties": n()},
            "users": {"type": "object", "description": "Distinct users (HyperLogLog with Redis: about 0.8 % standard error).",
                "properties": {"delivered": n(), "displayed": n(), "clicked": n()}},
            "variants": {"type": "object", "description": "Campaigns: per variant id (`default` for a plain message with a goal or holdout), and `holdout`.",
                "additionalProperties": {"type": "object", "properties": {
                    "exposed": {"type": "integer", "description": "Users assigned, once each, on the first trigger that would have shown it."},
                    "displayed": n(), "clicked": n(),
                    "converted": {"type": "integer", "description": "Users whose goal event came within within_s of their exposure, once each."},
                    "conversion_rate": {"type": ["number", "null"], "description": "converted / exposed; null before any exposure."},
                    "vs_holdout": {"type": "object", "description": "With a holdout: conversion_rate minus the holdout's, and its 95 % confidence interval by Newcombe's hybrid score method (from two Wilson intervals); nulls while either side has no exposure.",
                        "properties": {"difference": {"type": ["number", "null"]}, "ci95": {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2}}}}}},
            "interval": {"type": "string", "const": "newcombe-hybrid-score-95", "description": "Campaigns: how vs_holdout.ci95 is computed."},
            "hours": {"type": "array", "description": "?by=hour: one entry per clock hour with counts, oldest first.",
                "items": {"type": "object", "required": ["hour"], "properties": {
                    "hour": {"type": "integer", "description": "The hour's start, unix milliseconds."},
                    "delivered": n(), "displayed": n(), "clicked": n(), "dismissed": n(), "suppressed": n(),
                    "exposed": n(), "converted": n()}}}
        }
    })
}

fn decision_schema() -> Value {
    json!({
        "type": "object",
        "required": ["at", "decision", "reason"],
        "properties": {
            "at": {"type": "integer", "description": "Unix milliseconds."},
            "message": {"type": "string", "description": "The message id, when the decision is about a message."},
            "campaign": {"type": "string", "description": "The campaign id, when the decision is about a campaign."},
            "variant": {"type": "string"},
            "decision": {"type": "string", "enum": crate::trace::DECISIONS},
            "reason": {"type": "string", "description": "Why, in words (which cap, which quiet hours in which zone, …)."}
        }
    })
}

/// Pretty JSON with a final newline, as the files in the repository hold it.
pub fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
