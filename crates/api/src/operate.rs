//! `/v1/refunds/{out_trade_no}/…` (the default merchant's refunds; any merchant's under
//! `/v1/merchants/{merchant}/…`, see [`crate::scoped`]): the operator actions (retry, cancel,
//! resolve, enquire now), each audited with the caller's token name and reason.

use axum::Json;
use axum::extract::{Path, State};
use ledger::Operation;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ErrorBody, FieldProblem};
use crate::refunds::{RefundBody, url_of};

/// The operator actions on one refund.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Retry,
    Cancel,
    Resolve,
    Enquire,
}

/// What an operator says when acting on a refund.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// Why (kept in the audit trail with the caller's token name).
    pub reason: String,
}

/// Settling a refund in `needs_review`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// `succeeded` or `failed`: what was established with QFPay.
    pub state: String,
    pub reason: String,
    /// Accept a success that takes the payment past what its records say was paid, on QFPay's
    /// proof that the refund succeeded (audited as `resolve --force`). A refund never sent is
    /// refused even when forced.
    #[serde(default)]
    pub force: bool,
}

pub(crate) fn reason_of(reason: &str) -> Result<String, ApiError> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(ApiError::invalid("reason", "required: say why (it goes into the audit trail)"));
    }
    if reason.chars().count() > 500 || r.chars().any(char::is_control) {
        return Err(ApiError::invalid("reason", "at most 500 characters, no control characters"));
    }
    Ok(r.to_owned())
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value = crate::strict::json(body).map_err(|e| {
        ApiError::Invalid(vec![FieldProblem { field: "body".into(), problem: format!("not JSON: {e}") }])
    })?;
    serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        // serde names the field in its message ("missing field `reason`"): report it as such.
        let field = msg.split('`').nth(1).filter(|_| msg.contains("field")).unwrap_or("body").to_owned();
        ApiError::Invalid(vec![FieldProblem { field, problem: msg }])
    })
}

/// What `POST …/{action}` does to `merchant`'s refund `otn`, the body already read.
pub(crate) async fn act(
    st: &Shared,
    caller: &Caller,
    merchant: &str,
    otn: &str,
    action: Action,
    body: &[u8],
) -> Result<Json<RefundBody>, ApiError> {
    caller.require(Role::Operate)?;
    qfpay::request::validate_id("merchant", merchant, 64).map_err(|e| ApiError::invalid("merchant", e.rule))?;
    let (op, why) = match action {
        Action::Retry => {
            let b: ActionBody = parse_json(body)?;
            (Operation::Retry, b.reason)
        }
        Action::Cancel => {
            let b: ActionBody = parse_json(body)?;
            (Operation::Cancel, b.reason)
        }
        Action::Enquire => {
            let b: ActionBody = parse_json(body)?;
            (Operation::EnquireNow, b.reason)
        }
        Action::Resolve => {
            let b: ResolveBody = parse_json(body)?;
            let target = match b.state.as_str() {
                "succeeded" => ledger::State::Succeeded,
                "failed" => ledger::State::Failed,
                other => return Err(ApiError::invalid("state", format!("succeeded or failed, got {other:?}"))),
            };
            (if b.force { Operation::ForceResolve(target) } else { Operation::Resolve(target) }, b.reason)
        }
    };
    let why = reason_of(&why)?;
    match st.ledger.operate(merchant, otn, op, &caller.name, &why).await.map_err(ApiError::from_write)? {
        Ok(state) => {
            tracing::info!(out_trade_no = otn, merchant, caller = %caller.name, %state, "operator action");
            let rec = st
                .ledger
                .get(merchant, otn)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no refund {otn:?} for merchant {merchant:?}")))?;
            Ok(Json(RefundBody { url: url_of(st, merchant, otn), refund: rec }))
        }
        Err(r @ ledger::Refusal::NoSuchRefund(_)) => Err(ApiError::NotFound(r.to_string())),
        Err(ledger::Refusal::Refused(why)) => Err(ApiError::Refused(why)),
    }
}

/// Look at a refund in `needs_review` again: enquire first if it was ever sent, else submit.
#[utoipa::path(
    post,
    path = "/v1/refunds/{out_trade_no}/retry",
    tag = "operations",
    params(("out_trade_no" = String, Path)),
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
    Path(otn): Path<String>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<RefundBody>, ApiError> {
    act(&st, &caller, ledger::DEFAULT_MERCHANT, &otn, Action::Retry, &body).await
}

/// Withdraw a refund that was never sent (`queued`).
#[utoipa::path(
    post,
    path = "/v1/refunds/{out_trade_no}/cancel",
    tag = "operations",
    params(("out_trade_no" = String, Path)),
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
    Path(otn): Path<String>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<RefundBody>, ApiError> {
    act(&st, &caller, ledger::DEFAULT_MERCHANT, &otn, Action::Cancel, &body).await
}

/// Settle a refund in `needs_review` as `succeeded` or `failed`, as established with QFPay.
#[utoipa::path(
    post,
    path = "/v1/refunds/{out_trade_no}/resolve",
    tag = "operations",
    params(("out_trade_no" = String, Path)),
    request_body = ResolveBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Resolved", body = RefundBody),
        (status = 202, description = "A success: waiting for a second operator's approval", body = crate::approvals::ApprovalBody),
        (status = 409, description = "Refused: the refund is not in needs_review, was never sent (for a success), or a success would exceed the paid amount without `force`", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn resolve(
    State(st): State<Shared>,
    caller: Caller,
    Path(otn): Path<String>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<axum::response::Response, ApiError> {
    crate::approvals::resolve(&st, &caller, ledger::DEFAULT_MERCHANT, &otn, &body).await
}

/// Enquire a refund waiting for an enquiry (`pending`) now rather than at its next due time:
/// always safe (nothing but an enquiry is sent); audited.
#[utoipa::path(
    post,
    path = "/v1/refunds/{out_trade_no}/enquire",
    tag = "operations",
    params(("out_trade_no" = String, Path)),
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
    Path(otn): Path<String>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<RefundBody>, ApiError> {
    act(&st, &caller, ledger::DEFAULT_MERCHANT, &otn, Action::Enquire, &body).await
}
