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
            env.insert("not".into(), json!({"anyOf": [{"required": ["to"]}, {"required": ["id"]}, {"required": ["op"]}]}));
            env.insert("required".into(), json!(["kind"]));
        }
        if let Some(action) = defs.get_mut("Action") {
            tighten_action(action);
        }
        if let Some(Value::Object(trigger)) = defs.get_mut("Trigger") {
            trigger.insert("oneOf".into(), json!([{"required": ["event"]}, {"required": ["connect"]}, {"required": ["idle_s"]}]));
        }
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
    let env_ref = || json!({"$ref": "#/components/schemas/Envelope"});
    let camp_ref = || json!({"$ref": "#/components/schemas/Campaign"});
    let unauthorized = || error("Missing or invalid API key (when keys are configured).");
    let unavailable = || error("The Redis bus is down: nothing was published.");
    json!({
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
                    "202": ok_json("Published. For users audiences, who was online at publish time.", json!({
                        "type": "object", "properties": {
                            "id": {"type": "string"},
                            "online": {"type": "array", "items": {"type": "string"}},
                            "offline": {"type": "array", "items": {"type": "string"}}}})),
                    "400": error("Invalid envelope: the field and the reason."),
                    "401": unauthorized(), "503": unavailable()}}},
            "/v1/messages/{id}": {"delete": {
                "summary": "Retract a message everywhere.",
                "parameters": [path_param("id", "The message id.")],
                "responses": {"202": ok_json("Retracted.", json!({"type": "object", "properties": {"id": {"type": "string"}}})),
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
    })
}

/// Pretty JSON with a final newline, as the files in the repository hold it.
pub fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
