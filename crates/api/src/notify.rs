//! `POST /v1/qfpay/notify`: QFPay's asynchronous refund notification (API §6). Verified over the
//! raw body with a configured merchant's key (API §3.3), and used only to make that refund's
//! enquiry due now: the enquiry stays authoritative, a notification never settles a refund.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use qfpay::sign::verify_notification;
use serde_json::Value;

use crate::Shared;

/// What the notification did (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Expedited,
    Ignored,
    BadSignature,
    Unreadable,
}

/// QFPay's notification of a refund's (or payment's) success.
///
/// Answers `SUCCESS` once the signature verifies, whatever the notification says (QFPay retries
/// anything else for 24 h). A refund waiting for an enquiry has it brought forward; nothing else
/// changes.
#[utoipa::path(
    post,
    path = "/v1/qfpay/notify",
    tag = "qfpay",
    request_body(content = Object, description = "QFPay's JSON, signed in the X-QF-SIGN header"),
    params(("X-QF-SIGN" = String, Header, description = "MD5 (or SHA-256) of the raw body + client key, hex")),
    responses(
        (status = 200, description = "Verified and taken: body `SUCCESS`", body = String),
        (status = 401, description = "Missing or wrong signature", body = String),
        (status = 400, description = "Verified, but not a JSON object", body = String),
        (status = 503, description = "The ledger is unavailable: QFPay will retry", body = String),
    )
)]
pub async fn notify(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let (status, text, outcome) = handle(&st, &headers, &body).await;
    st.metrics.notified(outcome);
    (status, text)
}

async fn handle(st: &Shared, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String, Outcome) {
    let Some(sig) = headers.get("x-qf-sign").and_then(|v| v.to_str().ok()) else {
        return (StatusCode::UNAUTHORIZED, "missing X-QF-SIGN".into(), Outcome::BadSignature);
    };
    let Some(merchant) =
        st.config.notify_keys.iter().find(|k| verify_notification(body, &k.key, k.alg, sig)).map(|k| &k.merchant)
    else {
        tracing::warn!("QFPay notification with a signature no configured key verifies: ignored");
        return (StatusCode::UNAUTHORIZED, "signature does not verify".into(), Outcome::BadSignature);
    };
    let Ok(Value::Object(n)) = serde_json::from_slice::<Value>(body) else {
        return (StatusCode::BAD_REQUEST, "not a JSON object".into(), Outcome::Unreadable);
    };
    let field = |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("");
    if field("notify_type") != "refund" || field("out_trade_no").is_empty() {
        tracing::debug!(notify_type = field("notify_type"), "QFPay notification not about a refund: acknowledged");
        return (StatusCode::OK, "SUCCESS".into(), Outcome::Ignored);
    }
    let otn = field("out_trade_no");
    match st.ledger.expedite(merchant, otn).await {
        Ok(true) => {
            tracing::info!(out_trade_no = otn, %merchant, respcd = field("respcd"), "QFPay notified: enquiring now");
            (StatusCode::OK, "SUCCESS".into(), Outcome::Expedited)
        }
        Ok(false) => {
            tracing::debug!(out_trade_no = otn, "QFPay notified a refund with no enquiry waiting: acknowledged");
            (StatusCode::OK, "SUCCESS".into(), Outcome::Ignored)
        }
        Err(e) => {
            tracing::warn!(out_trade_no = otn, error = %e, "QFPay notification not taken: the ledger is unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "retry later".into(), Outcome::Unreadable)
        }
    }
}
