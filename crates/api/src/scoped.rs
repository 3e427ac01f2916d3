//! `/v1/merchants/{merchant}/refunds/{out_trade_no}…`: a refund named the way QFPay scopes
//! `out_trade_no`, per merchant account. The same look-up and actions as `/v1/refunds/{…}`, which
//! name the default merchant's refunds.

use axum::Json;
use axum::extract::{Path, State};

use crate::Shared;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::operate::{Action, ActionBody, ResolveBody, act};
use crate::refunds::{RefundBody, show};

/// One refund of `merchant`, as it is now.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant}/refunds/{out_trade_no}",
    tag = "refunds",
    params(("merchant" = String, Path, description = "The merchant (as configured)"),
        ("out_trade_no" = String, Path, description = "The refund's out_trade_no, unique per merchant")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RefundBody),
        (status = 404, description = "No such refund", body = ErrorBody),
        (status = 422, description = "Not a merchant name", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn get_one(
    State(st): State<Shared>,
    caller: Caller,
    Path((merchant, otn)): Path<(String, String)>,
) -> Result<Json<RefundBody>, ApiError> {
    qfpay::request::validate_id("merchant", &merchant, 64).map_err(|e| ApiError::invalid("merchant", e.rule))?;
    show(&st, &caller, &merchant, &otn).await
}

/// `POST /v1/refunds/{out_trade_no}/retry`, for `merchant`'s refund.
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant}/refunds/{out_trade_no}/retry",
    tag = "operations",
    params(("merchant" = String, Path), ("out_trade_no" = String, Path)),
    request_body = ActionBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Done: the refund as it is now", body = RefundBody),
        (status = 409, description = "Refused: the refund is not in needs_review", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn retry(
    State(st): State<Shared>,
    caller: Caller,
    Path((merchant, otn)): Path<(String, String)>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<RefundBody>, ApiError> {
    act(&st, &caller, &merchant, &otn, Action::Retry, &body).await
}

/// `POST /v1/refunds/{out_trade_no}/cancel`, for `merchant`'s refund.
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant}/refunds/{out_trade_no}/cancel",
    tag = "operations",
    params(("merchant" = String, Path), ("out_trade_no" = String, Path)),
    request_body = ActionBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = RefundBody),
        (status = 409, description = "Refused: it may have been sent already", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn cancel(
    State(st): State<Shared>,
    caller: Caller,
    Path((merchant, otn)): Path<(String, String)>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<RefundBody>, ApiError> {
    act(&st, &caller, &merchant, &otn, Action::Cancel, &body).await
}

/// `POST /v1/refunds/{out_trade_no}/resolve`, for `merchant`'s refund.
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant}/refunds/{out_trade_no}/resolve",
    tag = "operations",
    params(("merchant" = String, Path), ("out_trade_no" = String, Path)),
    request_body = ResolveBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Resolved", body = RefundBody),
        (status = 202, description = "A success: waiting for a second operator's approval", body = crate::approvals::ApprovalBody),
        (status = 409, description = "Refused (see `POST /v1/refunds/{out_trade_no}/resolve`)", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn resolve(
    State(st): State<Shared>,
    caller: Caller,
    Path((merchant, otn)): Path<(String, String)>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<axum::response::Response, ApiError> {
    crate::approvals::resolve(&st, &caller, &merchant, &otn, &body).await
}

/// `POST /v1/refunds/{out_trade_no}/enquire`, for `merchant`'s refund.
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant}/refunds/{out_trade_no}/enquire",
    tag = "operations",
    params(("merchant" = String, Path), ("out_trade_no" = String, Path)),
    request_body = ActionBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Due now: the refund as it is now", body = RefundBody),
        (status = 409, description = "Refused: the refund is not pending", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn enquire(
    State(st): State<Shared>,
    caller: Caller,
    Path((merchant, otn)): Path<(String, String)>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<RefundBody>, ApiError> {
    act(&st, &caller, &merchant, &otn, Action::Enquire, &body).await
}
