//! The OpenAPI document made exactly as strict as the server: every rule a handler enforces on
//! an id, an amount, a reason or a state is written here once, beside the validator it mirrors,
//! and applied to every parameter and request property of that name; the framework's own
//! rejections and `503`'s `Retry-After` are documented on every operation; `links` lead from a
//! created refund to what can be asked of it. Schemathesis, run against a live server in
//! `make test`, holds the two together.

use qfpay::request::MAX_TXAMT;
use serde_json::{Map, Value, json};

/// `[A-Za-z0-9_-]`, 1 to `max` characters (`qfpay::request::validate_id`).
fn id(max: usize) -> Value {
    json!({ "type": "string", "pattern": format!("^[A-Za-z0-9_-]{{1,{max}}}$") })
}

/// States a refund can be in (`ledger::State`).
fn states() -> Vec<&'static str> {
    ledger::State::ALL.iter().map(|s| s.as_str()).collect()
}

/// A reason (`operate::reason_of`): 1–500 characters, not only spaces, no control characters.
fn reason() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 500,
        "pattern": r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
    })
}

/// An amount in minor units (`qfpay::request::validate_txamt`): a JSON integer, never a string.
fn amount() -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_TXAMT })
}

/// The rule for a path or query parameter, by where it is and its name (query filters keep
/// their own, looser, derived patterns: a filter may name what no refund has).
fn parameter(place: &str, name: &str) -> Option<Value> {
    Some(match (place, name) {
        ("path", "merchant") => id(64),
        ("path", "out_trade_no") => id(128),
        ("query", "state") => json!({ "type": "string", "enum": states() }),
        ("query", "limit") => json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 }),
        _ => return None,
    })
}

/// The rule for a property of a request body, by schema and name (`None`: as derived).
fn property(schema: &str, name: &str) -> Option<Value> {
    Some(match (schema, name) {
        (_, "reason") => reason(),
        ("NewRefund", "txamt") => amount(),
        ("NewRefund", "orig_txamt") => nullable(amount()),
        ("NewRefund" | "RefundName", "out_trade_no") => id(128),
        ("NewRefund", "syssn") => id(128),
        // Blank optional ids mean "none" (`NewRefund::normalised`).
        ("NewRefund" | "RefundName", "merchant") => nullable(blank_or(64)),
        ("NewRefund", "mchid") => nullable(blank_or(16)),
        ("NewRefund", "udid") => {
            json!({ "type": ["string", "null"], "minLength": 1, "maxLength": 40, "pattern": r"^[^\u0000-\u001f\u007f-\u009f]*$" })
        }
        ("ResolveBody", "state") => json!({ "type": "string", "enum": ["succeeded", "failed"] }),
        ("BulkBody", "action") => json!({ "type": "string", "enum": ["retry", "cancel", "enquire"] }),
        ("RedeliverBody", "event_ids") => json!({
            "type": "array", "minItems": 1, "maxItems": 1000,
            "items": { "type": "string", "pattern": "^evt_[0-9a-f]{32}$" },
        }),
        _ => return None,
    })
}

fn blank_or(max: usize) -> Value {
    json!({ "type": "string", "pattern": format!(r"^(\s*|[A-Za-z0-9_-]{{1,{max}}})$") })
}

fn nullable(mut v: Value) -> Value {
    if let Some(t) = v.get("type").and_then(Value::as_str).map(str::to_owned) {
        v["type"] = json!([t, "null"]);
    }
    v
}

/// The envelope every error answer has.
fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } } })
}

/// The document the routes derive, with the rules applied. It stays JSON from here on: utoipa
/// 5.5 would write a link's `operationId` as `operation_id`.
pub(crate) fn apply(doc: utoipa::openapi::OpenApi) -> Value {
    let mut v = serde_json::to_value(&doc).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    tighten(&mut v);
    v
}

/// Applies the rules to `doc` (as JSON).
fn tighten(doc: &mut Value) {
    // Request bodies hold what they say and nothing else (the server refuses unknown fields).
    let closed = request_bodies(doc);
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        // The producer's trace context comes in the `traceparent` header, never in the body.
        if let Some(props) = schemas.get_mut("NewRefund").and_then(|s| s.get_mut("properties")) {
            props.as_object_mut().map(|p| p.remove("traceparent"));
        }
        for (name, schema) in schemas.iter_mut() {
            if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                for (prop, rule) in props.iter_mut().filter(|_| closed.contains(name)) {
                    if let Some(strict) = property(name, prop) {
                        keep_description(rule, strict);
                    }
                }
            }
            if closed.contains(name) {
                schema["additionalProperties"] = Value::Bool(false);
            }
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(ops) = item.as_object_mut() else { continue };
        for (method, op) in ops.iter_mut() {
            operation(path, method, op);
        }
    }
}

/// The schemas request bodies name, and those they contain.
fn request_bodies(doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for op in paths.values().filter_map(Value::as_object).flat_map(|ops| ops.values()) {
            if let Some(body) = op.get("requestBody") {
                collect_refs(body, &mut out);
            }
        }
    }
    let mut i = 0;
    while i < out.len() {
        if let Some(schema) = doc.pointer(&format!("/components/schemas/{}", out[i])) {
            collect_refs(schema, &mut out);
        }
        i += 1;
    }
    out
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(name) =
                m.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
                && !out.iter().any(|o| o == name)
            {
                out.push(name.to_owned());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn keep_description(slot: &mut Value, mut strict: Value) {
    if let Some(d) = slot.get("description").cloned() {
        strict["description"] = d;
    }
    *slot = strict;
}

fn operation(path: &str, method: &str, op: &mut Value) {
    // Operation ids are the handlers' names; those of the per-merchant routes say so, so that
    // each id is one operation (links name them).
    if path.starts_with("/v1/merchants/{merchant}/refunds/")
        && let Some(Value::String(id)) = op.get_mut("operationId")
        && !id.starts_with("merchant_")
        && !matches!(id.as_str(), "events" | "attempts")
    {
        *id = format!("merchant_{id}");
    }
    let mut has_query = false;
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        // The export is the whole result: it takes the listing's filters, not its paging.
        if path == "/v1/refunds.csv" {
            params.retain(|p| !matches!(p.get("name").and_then(Value::as_str), Some("limit" | "cursor")));
        }
        for p in params.iter_mut() {
            let place = p.get("in").and_then(Value::as_str).unwrap_or("");
            has_query |= place == "query";
            if place != "path" && place != "query" {
                continue;
            }
            let name = p.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
            let place = place.to_owned();
            if let Some(rule) = parameter(&place, &name) {
                p["schema"] = rule;
            }
        }
    }
    let has_body = op.get("requestBody").is_some();
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { return };
    let mut add = |code: &str, what: &str| {
        responses.entry(code.to_owned()).or_insert_with(|| error(what));
    };
    if has_query {
        add("400", "A query parameter that does not parse (a number that is not one, a value twice)");
    }
    if has_body {
        add("413", "The body is larger than the server takes (`api.body_limit`)");
        add("415", "The body is not `application/json`");
        add("422", "Invalid: each field in error is named");
    }
    if method == "get" || method == "head" {
        add("408", "The request ran out of time (`api.request_timeout_ms`): nothing was changed, try again");
    } else {
        // A write that runs out of time may have been applied while it waited.
        add(
            "504",
            "The request ran out of time (`api.request_timeout_ms`) and may have been applied: outcome unknown, \
             retry the same request (idempotent)",
        );
    }
    if path != "/healthz" && path != "/openapi.json" {
        add("503", "Redis does not answer or refuses: nothing was written, retry after `Retry-After` seconds");
    }
    for code in ["503", "504"] {
        if let Some(r) = responses.get_mut(code) {
            retry_after(r);
        }
    }
    if method == "post" && path == "/v1/refunds" {
        for code in ["200", "202"] {
            if let Some(r) = responses.get_mut(code) {
                r["links"] = links();
            }
        }
    }
}

fn retry_after(r: &mut Value) {
    let headers = r.as_object_mut().map(|o| o.entry("headers").or_insert_with(|| Value::Object(Map::new())));
    if let Some(Value::Object(h)) = headers {
        h.insert(
            "Retry-After".into(),
            json!({ "description": "Seconds to wait before retrying", "schema": { "type": "integer", "minimum": 0 } }),
        );
    }
}

/// From a created refund to what can be asked of it, by its merchant and `out_trade_no`.
fn links() -> Value {
    let by_name = json!({
        "merchant": "$response.body#/refund/merchant",
        "out_trade_no": "$response.body#/refund/out_trade_no",
    });
    let mut out = Map::new();
    for (name, op) in [
        ("GetRefund", "merchant_get_one"),
        ("GetEvents", "events"),
        ("GetAttempts", "attempts"),
        ("CancelRefund", "merchant_cancel"),
        ("RetryRefund", "merchant_retry"),
        ("EnquireRefund", "merchant_enquire"),
        ("ResolveRefund", "merchant_resolve"),
    ] {
        out.insert(name.into(), json!({ "operationId": op, "parameters": by_name }));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_names_an_operation_the_document_has() {
        let doc = crate::openapi();
        let mut ids = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                    assert!(!ids.contains(&id.to_owned()), "operationId {id} twice");
                    ids.push(id.to_owned());
                }
            }
        }
        for link in links().as_object().unwrap().values() {
            let op = link["operationId"].as_str().unwrap();
            assert!(ids.iter().any(|i| i == op), "a link to {op}, which no operation is");
        }
    }

    #[test]
    fn the_rules_are_the_validators() {
        assert_eq!(id(64)["pattern"], json!("^[A-Za-z0-9_-]{1,64}$"));
        assert_eq!(amount()["maximum"], json!(99_999_999_999u64));
        assert_eq!(states().len(), ledger::State::ALL.len());
    }
}
