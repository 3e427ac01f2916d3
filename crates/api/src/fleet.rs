//! The ledger as a whole, for operators: `GET /v1/stats`, `GET /v1/audit`, `GET /v1/workers`,
//! and `POST /v1/merchants/{merchant}/pause|resume` (audited with the caller's token name and
//! reason, as every operator action).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ErrorBody};
use crate::operate::{ActionBody, parse_json, reason_of};
use crate::refunds::page_limit;

/// The ledger at a glance (every shard).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBody {
    /// Refunds in each state (final states count every refund still in Redis).
    pub by_state: BTreeMap<String, u64>,
    /// How long the oldest non-final refund has been in its current state (ms).
    pub oldest_open_age_ms: Option<i64>,
    /// Refunds in the due-index, and those due now (the backlog no worker has picked up yet).
    pub due_total: u64,
    pub due_now: u64,
    /// Paused merchants and why.
    pub paused: BTreeMap<String, String>,
    /// Webhook deliveries given up, and waiting for a retry.
    pub webhooks_failed: u64,
    pub webhooks_retrying: u64,
    /// Workers whose heartbeat holds now.
    pub live_workers: u64,
}

/// `GET /v1/stats`.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, body = StatsBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn stats(State(st): State<Shared>, caller: Caller) -> Result<Json<StatsBody>, ApiError> {
    caller.require(Role::Read)?;
    let s = st.ledger.stats().await?;
    Ok(Json(StatsBody {
        by_state: s.by_state.iter().map(|(state, n)| (state.to_string(), *n)).collect(),
        oldest_open_age_ms: s.oldest_open_age_ms,
        due_total: s.due_total,
        due_now: s.due_now,
        paused: s.paused.into_iter().collect(),
        webhooks_failed: s.webhooks_failed,
        webhooks_retrying: s.webhooks_retrying,
        live_workers: s.live_workers,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries after this id (a previous page's `next`; `0`, the default: from the beginning).
    #[param(pattern = r"^[0-9]{1,19}(-[0-9]{1,19})?$")]
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A page of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditBody {
    /// Oldest first: `id`, `out_trade_no` (empty for a pause or resume), `merchant`, `action`,
    /// `who`, `why`, `from`, `to`, `outcome` (`ok` or `refused: …`), `at` (ms).
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<ledger::AuditEntry>,
    /// Pass as `after` for the next page; absent when this page is the last so far.
    pub next: Option<String>,
}

/// `GET /v1/audit`: every operator action (refused ones too), every shard's, in order.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "operations",
    params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AuditBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn audit(
    State(st): State<Shared>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditBody>, ApiError> {
    caller.require(Role::Read)?;
    let limit = page_limit(q.limit)?;
    let after = q.after.unwrap_or_else(|| "0".into());
    let well_formed = {
        let mut parts = after.splitn(2, '-');
        // 19 digits: every such number fits the u64 of a Redis stream id.
        let digits = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.len() <= 19 && p.bytes().all(|b| b.is_ascii_digit()))
        };
        digits(parts.next()) && parts.next().is_none_or(|p| digits(Some(p)))
    };
    if !well_formed {
        return Err(ApiError::invalid("after", "an audit entry id (`<ms>-<n>`, from `next`) or 0"));
    }
    let entries = st.ledger.audit(&after, limit).await?;
    // (Entries of several shards under one id can make a page longer than the limit.)
    let next = (entries.len() >= limit).then(|| entries.last().map(|e| e.id.clone())).flatten();
    Ok(Json(AuditBody { entries, next }))
}

/// The live workers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkersBody {
    pub workers: Vec<ledger::WorkerInfo>,
}

/// `GET /v1/workers`: every worker whose heartbeat holds now.
#[utoipa::path(
    get,
    path = "/v1/workers",
    tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, body = WorkersBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn workers(State(st): State<Shared>, caller: Caller) -> Result<Json<WorkersBody>, ApiError> {
    caller.require(Role::Read)?;
    Ok(Json(WorkersBody { workers: st.ledger.live_workers().await? }))
}

/// A merchant paused or resumed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PauseBody {
    pub merchant: String,
    pub paused: bool,
    /// Whether this call changed it (false: it already was).
    pub changed: bool,
}

pub(crate) async fn pause_or_resume(
    st: &Shared,
    caller: &Caller,
    merchant: &str,
    pause: bool,
    body: &[u8],
) -> Result<Json<PauseBody>, ApiError> {
    caller.require(Role::Operate)?;
    qfpay::request::validate_id("merchant", merchant, 64).map_err(|e| ApiError::invalid("merchant", e.rule))?;
    let b: ActionBody = parse_json(body)?;
    let why = reason_of(&b.reason)?;
    let changed = if pause {
        st.ledger.pause(merchant, &caller.name, &why).await
    } else {
        st.ledger.resume(merchant, &caller.name, &why).await
    }
    .map_err(ApiError::from_write)?;
    tracing::info!(merchant, caller = %caller.name, pause, changed, "operator action");
    Ok(Json(PauseBody { merchant: merchant.to_owned(), paused: pause, changed }))
}

/// Stop submitting `merchant`'s refunds (enquiries go on), e.g. while its credentials are fixed.
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant}/pause",
    tag = "operations",
    params(("merchant" = String, Path)),
    request_body = ActionBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = PauseBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn pause(
    State(st): State<Shared>,
    caller: Caller,
    Path(merchant): Path<String>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<PauseBody>, ApiError> {
    pause_or_resume(&st, &caller, &merchant, true, &body).await
}

/// Resume a paused merchant's submits.
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant}/resume",
    tag = "operations",
    params(("merchant" = String, Path)),
    request_body = ActionBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = PauseBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn resume(
    State(st): State<Shared>,
    caller: Caller,
    Path(merchant): Path<String>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<PauseBody>, ApiError> {
    pause_or_resume(&st, &caller, &merchant, false, &body).await
}
