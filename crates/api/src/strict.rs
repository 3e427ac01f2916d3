//! What every request meets before a handler sees it: JSON bodies parsed strictly (a key twice is
//! refused, not silently the last one), a body that is not JSON refused with `415`, and every
//! rejection the framework makes itself (a bad query `400`, an unknown route `404`, a wrong
//! method `405`, a slow request `408`, a body too large `413`) answered in the same JSON error
//! envelope as the API's own.

use std::fmt;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::ErrorBody;

/// Parses `body` as one JSON value, refusing a key given twice in any object.
pub(crate) fn json(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(A::Error::custom(format!("the key {k:?} is given twice")));
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A request body that must be JSON: `415` when its `Content-Type` says otherwise, `413` past
/// the body limit; the handler parses it with [`json`].
pub(crate) struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            let status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            let msg = "the body must be JSON: send Content-Type: application/json".to_owned();
            return Err((status, axum::Json(envelope(status, msg))).into_response());
        }
        Bytes::from_request(req, state).await.map(JsonBytes).map_err(IntoResponse::into_response)
    }
}

fn is_json(v: Option<&HeaderValue>) -> bool {
    let Some(ct) = v.and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The stable code of an answer the framework made.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "invalid",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

fn envelope(status: StatusCode, message: String) -> ErrorBody {
    ErrorBody { error: code_of(status).into(), message, fields: vec![], differences: vec![], existing: None }
}

/// The middleware: any error answer that is not JSON already rewritten into the envelope, its
/// headers (`Allow`, `Retry-After`) kept. The console's pages are its own, and QFPay's
/// notifications are answered as QFPay expects.
pub(crate) async fn contract(req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/console") || req.uri().path() == "/v1/qfpay/notify" {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers().get(header::CONTENT_TYPE)) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::NOT_FOUND) => "no such route".to_owned(),
        (true, StatusCode::METHOD_NOT_ALLOWED) => "this route does not take that method (see Allow)".to_owned(),
        (true, StatusCode::REQUEST_TIMEOUT) => "the request ran out of time: try again".to_owned(),
        (true, s) => s.canonical_reason().unwrap_or("error").to_owned(),
    };
    let json = match serde_json::to_vec(&envelope(status, message)) {
        Ok(j) => j,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_twice_is_refused_at_any_depth() {
        assert!(json(br#"{"a":1,"b":{"c":2}}"#).is_ok());
        let e = json(br#"{"txamt":1,"txamt":100000}"#).unwrap_err().to_string();
        assert!(e.contains("\"txamt\" is given twice"), "{e}");
        assert!(json(br#"{"f":{"x":1,"x":2}}"#).is_err());
        assert!(json(br#"[{"x":1,"x":1}]"#).is_err());
        assert!(json(br#"{"a":1} {"b":2}"#).is_err(), "trailing data");
    }

    #[test]
    fn json_content_types() {
        for ok in ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge+json"]
        {
            assert!(is_json(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", ""] {
            assert!(!is_json(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!is_json(None));
    }
}
