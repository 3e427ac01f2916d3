//! `GET /v1/merchants/{merchant}/refunds/{out_trade_no}/events|attempts`: a refund's timeline
//! (every transition with QFPay's answer) and the evidence of every request sent for it, from
//! Redis while it is there, from the archive once it was archived (when this process can read
//! the archive).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ErrorBody};

/// A refund's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsBody {
    pub merchant: String,
    pub out_trade_no: String,
    /// Read from the archive: the refund is no longer in Redis.
    pub archived: bool,
    /// Oldest first.
    pub events: Vec<ledger::refund::timeline::TimelineEntry>,
}

/// The evidence of every request sent for a refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptsBody {
    pub merchant: String,
    pub out_trade_no: String,
    pub archived: bool,
    /// Oldest first: `call` (`refund` | `query`), `sent_at`, `took_ms`, the form `params` sent
    /// (never the key), `sign_sha256`, `sign_type`, `http_status`, `body` (its first 1 KiB),
    /// `body_truncated`, `error`, `fenced_off`.
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<qfpay::Evidence>,
}

fn not_found(merchant: &str, otn: &str) -> ApiError {
    ApiError::NotFound(format!("no refund with out_trade_no {otn:?} for merchant {merchant:?}"))
}

/// The archived line of a refund no longer in Redis.
async fn archived(st: &Shared, merchant: &str, otn: &str) -> Result<archive::ArchivedRefund, ApiError> {
    let Some(tomb) = st.ledger.tombstone(merchant, otn).await? else { return Err(not_found(merchant, otn)) };
    let unreadable = || {
        ApiError::NotFound(format!(
            "refund {otn:?} of merchant {merchant:?} was archived on {} and its history is in the archive, \
             which this API cannot read (set QFREFUND_ARCHIVE as the workers have it)",
            tomb.archived_on
        ))
    };
    let Some(sink) = &st.archive else { return Err(unreadable()) };
    match sink.find(st.ledger.shard_of(merchant), &tomb.archived_on, merchant, otn).await {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err(unreadable()),
        Err(e) => {
            tracing::warn!(error = %e, "reading the archive failed");
            Err(ApiError::Unavailable(format!("the archive could not be read: {e}")))
        }
    }
}

fn check(caller: &Caller, merchant: &str) -> Result<(), ApiError> {
    caller.require(Role::Read)?;
    qfpay::request::validate_id("merchant", merchant, 64).map_err(|e| ApiError::invalid("merchant", e.rule))
}

/// A refund's timeline: every transition, with QFPay's answer as it then stood.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant}/refunds/{out_trade_no}/events",
    tag = "operations",
    params(("merchant" = String, Path), ("out_trade_no" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = EventsBody),
        (status = 404, description = "No such refund, or archived where this API cannot read", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn events(
    State(st): State<Shared>,
    caller: Caller,
    Path((merchant, otn)): Path<(String, String)>,
) -> Result<Json<EventsBody>, ApiError> {
    check(&caller, &merchant)?;
    let (archived, events) = match st.ledger.timeline(&merchant, &otn).await? {
        Some(events) => (false, events),
        None => (true, archived(&st, &merchant, &otn).await?.timeline),
    };
    Ok(Json(EventsBody { merchant, out_trade_no: otn, archived, events }))
}

/// The evidence of every request sent for a refund: what a dispute needs.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant}/refunds/{out_trade_no}/attempts",
    tag = "operations",
    params(("merchant" = String, Path), ("out_trade_no" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AttemptsBody),
        (status = 404, description = "No such refund, or archived where this API cannot read", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn attempts(
    State(st): State<Shared>,
    caller: Caller,
    Path((merchant, otn)): Path<(String, String)>,
) -> Result<Json<AttemptsBody>, ApiError> {
    check(&caller, &merchant)?;
    let (archived, attempts) = match st.ledger.get(&merchant, &otn).await? {
        Some(_) => (false, st.ledger.attempts(&merchant, &otn).await?),
        None => (true, archived(&st, &merchant, &otn).await?.attempts),
    };
    Ok(Json(AttemptsBody { merchant, out_trade_no: otn, archived, attempts }))
}
