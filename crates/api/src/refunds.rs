//! `/v1/refunds`: enqueue, look up (listing and search are in [`crate::search`], the operator
//! actions in [`crate::operate`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ledger::{Enqueued, NewRefund, Record};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ErrorBody, FieldProblem};

/// A refund and where to find it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundBody {
    pub refund: Record,
    /// `GET` this for its current state.
    pub url: String,
}

/// Where `merchant`'s refund `out_trade_no` is: under `/v1/merchants/{merchant}/refunds/` (the
/// default merchant's also at `/v1/refunds/`, the shorter form it is given).
pub(crate) fn url_of(st: &Shared, merchant: &str, out_trade_no: &str) -> String {
    let base = st.config.base_url.trim_end_matches('/');
    if merchant == ledger::DEFAULT_MERCHANT {
        format!("{base}/v1/refunds/{}", percent_encode(out_trade_no))
    } else {
        format!("{base}/v1/merchants/{}/refunds/{}", percent_encode(merchant), percent_encode(out_trade_no))
    }
}

/// out_trade_no is validated to printable ASCII; escape what a path cannot carry.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads the JSON body into a [`NewRefund`], naming every field in error (types, unknown fields,
/// then the rules each value must meet).
fn parse_new_refund(body: &[u8]) -> Result<NewRefund, ApiError> {
    let value = crate::strict::json(body).map_err(|e| ApiError::invalid("body", format!("not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid("body", "expected a JSON object"));
    };
    let mut problems = Vec::new();
    let mut problem = |field: &str, p: String| problems.push(FieldProblem { field: field.into(), problem: p });
    const FIELDS: [&str; 7] = ["syssn", "out_trade_no", "txamt", "orig_txamt", "mchid", "udid", "merchant"];
    for k in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        problem(k, format!("unknown field (expected one of {})", FIELDS.join(", ")));
    }
    let text =
        |map: &Map<String, Value>, k: &str, required: bool, problem: &mut dyn FnMut(&str, String)| match map.get(k) {
            None | Some(Value::Null) if required => {
                problem(k, "required".into());
                None
            }
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // Payment ids are long digit strings: a JSON number would lose digits.
            Some(other) => {
                problem(k, format!("must be a string, got {other}"));
                None
            }
        };
    let amount =
        |map: &Map<String, Value>, k: &str, required: bool, problem: &mut dyn FnMut(&str, String)| match map.get(k) {
            None | Some(Value::Null) if required => {
                problem(k, "required".into());
                None
            }
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) => Some(v),
                None => {
                    problem(k, format!("must be a whole number of minor units ≥ 0, got {n}"));
                    None
                }
            },
            // Money is a JSON integer: a string (`"100"`, `"1.00"`) is refused, never guessed at.
            Some(Value::String(s)) => {
                problem(k, format!("must be a JSON integer of minor units, not a string ({s:?})"));
                None
            }
            Some(other) => {
                problem(k, format!("must be a number of minor units, got {other}"));
                None
            }
        };
    let syssn = text(&map, "syssn", true, &mut problem);
    let out_trade_no = text(&map, "out_trade_no", true, &mut problem);
    let txamt = amount(&map, "txamt", true, &mut problem);
    let orig_txamt = amount(&map, "orig_txamt", false, &mut problem);
    let mchid = text(&map, "mchid", false, &mut problem);
    let udid = text(&map, "udid", false, &mut problem);
    let merchant = text(&map, "merchant", false, &mut problem);
    let refund = NewRefund {
        syssn: syssn.clone().unwrap_or_default(),
        out_trade_no: out_trade_no.clone().unwrap_or_default(),
        txamt: txamt.unwrap_or(0),
        orig_txamt,
        mchid,
        udid,
        merchant,
        traceparent: None,
    }
    .normalised();
    // The rules, for the fields that were there and well-typed (a missing one is reported once).
    for e in refund.problems() {
        let given = match e.field {
            "syssn" => syssn.is_some(),
            "out_trade_no" => out_trade_no.is_some(),
            "txamt" => txamt.is_some(),
            _ => true,
        };
        if given && !problems.iter().any(|p| p.field == e.field) {
            problems.push(FieldProblem { field: e.field.into(), problem: e.rule });
        }
    }
    if problems.is_empty() { Ok(refund) } else { Err(ApiError::Invalid(problems)) }
}

/// Enqueue a refund.
///
/// Idempotent on `(merchant, out_trade_no)` (QFPay scopes `out_trade_no` per merchant account):
/// the same request again answers `200` with the refund as it is now; another request under the
/// same merchant and `out_trade_no` answers `409` and changes nothing. The same `out_trade_no`
/// under another merchant is another refund.
#[utoipa::path(
    post,
    path = "/v1/refunds",
    tag = "refunds",
    request_body(content = NewRefund, description = "Amounts in minor units; `syssn` as a string"),
    params(("traceparent" = Option<String>, Header, description = "The caller's W3C trace context: kept with the refund, so that the workers' spans for it join the caller's trace (a malformed value is ignored)")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: a new refund, queued", body = RefundBody,
            headers(("Location" = String, description = "The refund's URL"))),
        (status = 200, description = "The same request was made before: the refund as it is now", body = RefundBody),
        (status = 409, description = "The out_trade_no exists with other details", body = ErrorBody),
        (status = 422, description = "Invalid: each field in error is named", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not enqueue", body = ErrorBody),
        (status = 503, description = "Nothing was written (Redis refused or could not be reached): retry later with the same out_trade_no", body = ErrorBody),
        (status = 504, description = "Outcome unknown: the refund may have been created. Retry with the same out_trade_no (idempotent), never under a new one", body = ErrorBody),
    )
)]
pub async fn create(
    State(st): State<Shared>,
    caller: Caller,
    trace: Option<axum::Extension<crate::TraceParent>>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Response, ApiError> {
    caller.require(Role::Produce)?;
    let mut refund = parse_new_refund(&body)?;
    // The workers' spans for this refund join the caller's trace (or this request's).
    refund.traceparent = trace.and_then(|axum::Extension(t)| t.0);
    if let Err(unknown) = st.ledger.check_refund_merchant(&refund, &st.config.merchants).await? {
        return Err(ApiError::invalid("merchant", unknown.to_string()));
    }
    let enqueued = st.ledger.enqueue(refund).await.map_err(ApiError::from_write)?;
    let (status, rec) = match enqueued {
        Enqueued::Created(r) => (StatusCode::ACCEPTED, r),
        Enqueued::Duplicate(r) => (StatusCode::OK, r),
    };
    tracing::info!(out_trade_no = %rec.out_trade_no, caller = %caller.name, status = status.as_u16(), "enqueue");
    let url = url_of(&st, &rec.merchant, &rec.out_trade_no);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&url) {
        headers.insert(header::LOCATION, v);
    }
    Ok((status, headers, Json(RefundBody { refund: rec, url })).into_response())
}

/// One refund of the default merchant, as it is now (any merchant's:
/// `/v1/merchants/{merchant}/refunds/{out_trade_no}`).
#[utoipa::path(
    get,
    path = "/v1/refunds/{out_trade_no}",
    tag = "refunds",
    params(("out_trade_no" = String, Path, description = "The refund's out_trade_no")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RefundBody),
        (status = 404, description = "No such refund", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn get_one(
    State(st): State<Shared>,
    caller: Caller,
    Path(out_trade_no): Path<String>,
) -> Result<Json<RefundBody>, ApiError> {
    show(&st, &caller, ledger::DEFAULT_MERCHANT, &out_trade_no).await
}

/// `merchant`'s refund `out_trade_no`, for the caller.
pub(crate) async fn show(
    st: &Shared,
    caller: &Caller,
    merchant: &str,
    out_trade_no: &str,
) -> Result<Json<RefundBody>, ApiError> {
    caller.require(Role::Read)?;
    let rec = match st.ledger.get(merchant, out_trade_no).await? {
        Some(rec) => rec,
        None => crate::archived::record(st, merchant, out_trade_no).await?.ok_or_else(|| {
            ApiError::NotFound(format!("no refund with out_trade_no {out_trade_no:?} for merchant {merchant:?}"))
        })?,
    };
    Ok(Json(RefundBody { url: url_of(st, &rec.merchant, &rec.out_trade_no), refund: rec }))
}

/// A page size: 1–1000, 100 when not given.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1–1000, got {limit}")));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(r: Result<NewRefund, ApiError>) -> Vec<String> {
        match r {
            Err(ApiError::Invalid(f)) => f.into_iter().map(|p| p.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_field_in_error_is_named_once() {
        let f = fields(parse_new_refund(br#"{"syssn": 123, "txamt": -5, "colour": "red"}"#));
        assert_eq!(f, ["colour", "syssn", "out_trade_no", "txamt"]);
        let f = fields(parse_new_refund(br#"{"syssn": "", "out_trade_no": "", "txamt": 0}"#));
        assert!(f.contains(&"syssn".to_owned()) && f.contains(&"out_trade_no".to_owned()), "{f:?}");
        assert_eq!(fields(parse_new_refund(b"[1]")), ["body"]);
        assert_eq!(fields(parse_new_refund(b"{")), ["body"]);
    }

    #[test]
    fn amounts_are_json_integers_never_strings() {
        let r = parse_new_refund(br#"{"syssn":"20231234567890","out_trade_no":"RF-1","txamt":150,"orig_txamt":300}"#)
            .unwrap();
        assert_eq!((r.txamt, r.orig_txamt), (150, Some(300)));
        let e = fields(parse_new_refund(br#"{"syssn":"2023","out_trade_no":"RF-1","txamt":"150","orig_txamt":1.5}"#));
        assert_eq!(e, ["txamt", "orig_txamt"]);
    }

    #[test]
    fn a_field_given_twice_is_refused_not_the_last_one_taken() {
        let e = parse_new_refund(br#"{"syssn":"2023","out_trade_no":"RF-1","txamt":1,"txamt":100000}"#).unwrap_err();
        assert!(e.to_string_for_people().contains("given twice"), "{e:?}");
    }

    #[test]
    fn urls_escape_what_a_path_cannot_carry() {
        assert_eq!(percent_encode("RF 1/2"), "RF%201%2F2");
    }
}
