//! What the generated OpenAPI document cannot learn from the handlers'
//! annotations, added once for every route so that none can miss it: the
//! guard's answers (401, 403, 421) and the shutting-down 503 on every
//! operation, the bearer scheme on every operation, the shape of ids, and
//! the one bound that moves with the clock (`start_by_ms` must lie in the
//! future, and at most a day ahead). The document is the contract a property-based tester checks the
//! server against (node/tests/api_contract.rs).

use modchain_protocol::Timestamp;
use serde_json::{Value, json};

/// How long after the document was served its lower bound on
/// `start_by_ms` still lies in the future.
const START_BY_MARGIN_MS: u64 = 10 * 60 * 1000;

/// Job and node ids: 64 lower-case hex digits.
const ID_PATTERN: &str = "^[0-9a-f]{64}$";

/// Routes that never ask the node, so never answer "shutting down".
const NEVER_UNAVAILABLE: [&str; 3] = ["/health", "/api/v1/openapi.json", "/api/v1/login-links"];

fn error_response(openai: bool, description: &str) -> Value {
    let schema = if openai {
        "#/components/schemas/OpenAiErrorBody"
    } else {
        "#/components/schemas/ErrorBody"
    };
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": schema } } }
    })
}

/// Writes whole-number bounds as integers: the annotations take them as
/// floats (`4294967295.0`), and a tester reading a float bound may offer
/// `12.0` for an integer field, which the server's integer types refuse.
fn integral_bounds(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let bound = matches!(key.as_str(), "minimum" | "maximum");
                match value.as_f64() {
                    Some(f) if bound && value.is_f64() && f.fract() == 0.0 && f.abs() < 9.1e15 => {
                        // In range and whole: exactly an i64.
                        *value = json!(f as i64);
                    }
                    _ => integral_bounds(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_bounds),
        _ => {}
    }
}

/// Adds to every operation what the guard and the node's channel make it
/// answer, and the parameter shapes the handlers enforce.
pub(super) fn complete(mut doc: Value) -> Value {
    integral_bounds(&mut doc);
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let openai = path.starts_with("/v1/");
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "post" | "put" | "delete" | "patch") {
                continue;
            }
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            op.insert("security".into(), json!([{ "bearer": [] }]));
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            if let Some(responses) = responses {
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status)
                        .or_insert_with(|| error_response(openai, description));
                };
                add(
                    "401",
                    "no token: `Authorization: Bearer <api.token>`, or a dashboard session",
                );
                add(
                    "403",
                    "a cross-origin request (an `Origin` other than the API's own)",
                );
                add(
                    "421",
                    "`Host` is not the API's address, `localhost` or a name in api_allowed_hosts",
                );
                if !NEVER_UNAVAILABLE.contains(&path.as_str()) {
                    add("503", "the node is shutting down");
                }
            }
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for p in params {
                    let is_id = (p["in"] == "path" && p["name"] == "id")
                        || (p["in"] == "query" && p["name"] == "node");
                    if is_id
                        && let Some(schema) = p.get_mut("schema").and_then(Value::as_object_mut)
                    {
                        schema.insert("pattern".into(), json!(ID_PATTERN));
                    }
                }
            }
        }
    }
    doc
}

/// The document as served at `now`: `start_by_ms` must lie in the future,
/// so its lower bound is `now` plus a margin that keeps a value chosen from
/// this copy valid for a while, and at most a day ahead.
pub(super) fn with_time_bounds(doc: &Value, now: Timestamp) -> Value {
    let mut doc = doc.clone();
    if let Some(field) = doc
        .pointer_mut("/components/schemas/SubmitRequest/properties/start_by_ms")
        .and_then(Value::as_object_mut)
    {
        field.insert(
            "minimum".into(),
            json!(now.as_millis().saturating_add(START_BY_MARGIN_MS)),
        );
        // Peers refuse a job that may wait more than a day; a value under
        // this bound stays under it as the clock moves on.
        field.insert(
            "maximum".into(),
            json!(now.plus(modchain_protocol::MAX_START_WINDOW_MS).as_millis()),
        );
    }
    doc
}
