//! Webhook deliveries given up, and putting them back on the schedule: `GET /v1/webhooks/failed`
//! and `POST /v1/webhooks/redeliver` (audited with the caller's token name and reason).

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ErrorBody};
use crate::operate::{parse_json, reason_of};
use crate::refunds::page_limit;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FailedQuery {
    /// At most this many, the oldest first: 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One delivery given up.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedDelivery {
    /// What `POST /v1/webhooks/redeliver` takes (`evt_` and 32 hex digits).
    pub event_id: String,
    pub merchant: String,
    pub out_trade_no: String,
    /// Attempts made before it was given up, and what went wrong with the last.
    pub attempts: u32,
    pub last_error: String,
    /// When it was given up (ms since the epoch).
    pub failed_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailedBody {
    pub failed: Vec<FailedDelivery>,
}

/// `GET /v1/webhooks/failed`: deliveries given up, oldest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/failed",
    tag = "operations",
    params(FailedQuery),
    security(("bearer" = [])),
    responses((status = 200, body = FailedBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn failed(
    State(st): State<Shared>,
    caller: Caller,
    Query(q): Query<FailedQuery>,
) -> Result<Json<FailedBody>, ApiError> {
    caller.require(Role::Read)?;
    let limit = page_limit(q.limit)?;
    let failed = st
        .ledger
        .failed_webhooks(limit)
        .await?
        .into_iter()
        .map(|f| FailedDelivery {
            event_id: f.event_id,
            merchant: f.merchant,
            out_trade_no: f.out_trade_no,
            attempts: f.attempts,
            last_error: f.last_error,
            failed_at: f.failed_at,
        })
        .collect();
    Ok(Json(FailedBody { failed }))
}

/// Which deliveries to send again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverBody {
    /// Event ids from `GET /v1/webhooks/failed` (1–1000); or, instead, `all`.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub event_ids: Vec<String>,
    /// Every delivery given up.
    #[serde(default)]
    pub all: bool,
    /// Why (kept in the audit trail with the caller's token name).
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedeliverAnswer {
    /// How many were given up and are now due again (their attempts counted afresh).
    pub rescheduled: usize,
}

fn valid_event_id(id: &str) -> bool {
    id.len() == 36
        && id.starts_with("evt_")
        && id[4..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `POST /v1/webhooks/redeliver`: deliveries given up back on the schedule, due now.
#[utoipa::path(
    post,
    path = "/v1/webhooks/redeliver",
    tag = "operations",
    request_body = RedeliverBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = RedeliverAnswer),
        (status = 422, description = "Neither event_ids nor all, both, a malformed id, or no reason", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn redeliver(
    State(st): State<Shared>,
    caller: Caller,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<RedeliverAnswer>, ApiError> {
    Ok(Json(redeliver_as(&st, &caller, &body).await?))
}

/// What `POST /v1/webhooks/redeliver` does, for `caller`, the body already read.
pub(crate) async fn redeliver_as(st: &Shared, caller: &Caller, body: &[u8]) -> Result<RedeliverAnswer, ApiError> {
    caller.require(Role::Operate)?;
    let b: RedeliverBody = parse_json(body)?;
    let why = reason_of(&b.reason)?;
    match (b.event_ids.is_empty(), b.all) {
        (true, false) => return Err(ApiError::invalid("event_ids", "name the deliveries, or set all")),
        (false, true) => return Err(ApiError::invalid("all", "either event_ids or all, not both")),
        _ => {}
    }
    if b.event_ids.len() > 1000 {
        return Err(ApiError::invalid("event_ids", "at most 1000 at a time"));
    }
    if let Some(bad) = b.event_ids.iter().find(|id| !valid_event_id(id)) {
        return Err(ApiError::invalid("event_ids", format!("{bad:?} is not an event id (evt_ and 32 hex digits)")));
    }
    let rescheduled =
        st.ledger.redeliver_webhooks(&b.event_ids, &caller.name, &why).await.map_err(ApiError::from_write)?;
    tracing::info!(caller = %caller.name, rescheduled, "webhooks redelivered");
    Ok(RedeliverAnswer { rescheduled })
}
