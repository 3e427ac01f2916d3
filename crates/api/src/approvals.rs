//! Four-eyes: resolving a refund as succeeded (a claim about money) and a bulk action above the
//! amount one operator may move are not carried out at once: they become a request (`202`,
//! `{approval}`) that a second operator approves (`POST /v1/approvals/{id}/approve`, carried out
//! then, both names in each refund's audit entry) or rejects. `GET /v1/approvals` lists them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ledger::store::approvals::{Approval, ApprovalRefusal};
use ledger::{Operation, State as RefundState};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ErrorBody};
use crate::operate::{Action, ActionBody, ResolveBody, act, parse_json, reason_of};

/// A request waiting for a second operator.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalBody {
    pub approval: Approval,
    /// What to do next.
    pub message: String,
}

/// Every approval request (newest first).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalsBody {
    pub approvals: Vec<Approval>,
}

/// What one refund of a request names: the refund, and the version of it that was asked about
/// (`updated_at`): a refund that changed since is not acted on.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Target {
    pub merchant: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub updated_at: Option<i64>,
}

/// Asks for a second operator's approval of `request`; the `202` answer.
pub(crate) async fn ask(
    st: &Shared,
    caller: &Caller,
    kind: &str,
    request: serde_json::Value,
    txamt: u64,
    why: &str,
) -> Result<Response, ApiError> {
    let a = st.ledger.request_approval(kind, request, txamt, &caller.name, why).await.map_err(ApiError::from_write)?;
    tracing::info!(id = %a.id, kind, caller = %caller.name, "approval requested");
    let message = format!(
        "needs a second operator: another operator approves it with POST /v1/approvals/{}/approve (or rejects it) within a day",
        a.id
    );
    Ok((StatusCode::ACCEPTED, Json(ApprovalBody { approval: a, message })).into_response())
}

/// `POST …/resolve`: a success goes to a second operator (when four-eyes is on), after the same
/// checks at the door (the refund exists and is in needs_review); a failure is resolved at once.
pub(crate) async fn resolve(
    st: &Shared,
    caller: &Caller,
    merchant: &str,
    otn: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    caller.require(Role::Operate)?;
    let b: ResolveBody = parse_json(body)?;
    if b.state != "succeeded" || !st.config.four_eyes {
        return Ok(act(st, caller, merchant, otn, Action::Resolve, body).await?.into_response());
    }
    let why = reason_of(&b.reason)?;
    qfpay::request::validate_id("merchant", merchant, 64).map_err(|e| ApiError::invalid("merchant", e.rule))?;
    let rec = st
        .ledger
        .get(merchant, otn)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no refund {otn:?} for merchant {merchant:?}")))?;
    if rec.state != RefundState::NeedsReview {
        return Err(ApiError::Refused(format!("refund {otn:?} is {}, not needs_review", rec.state)));
    }
    if rec.submits == 0 && rec.submitted_at.is_none() {
        return Err(ApiError::Refused(format!(
            "refund {otn:?} was never sent to QFPay: it cannot have succeeded (retry it, or resolve it as failed)"
        )));
    }
    let request = json!({"merchant": merchant, "out_trade_no": otn, "state": "succeeded", "force": b.force,
                         "updated_at": rec.updated_at});
    ask(st, caller, "resolve", request, rec.txamt, &why).await
}

/// Every approval request, pending or decided in the last 30 days.
#[utoipa::path(
    get,
    path = "/v1/approvals",
    operation_id = "list_approvals",
    tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, body = ApprovalsBody), (status = 401, body = ErrorBody))
)]
pub async fn list(State(st): State<Shared>, caller: Caller) -> Result<Json<ApprovalsBody>, ApiError> {
    caller.require(Role::Read)?;
    Ok(Json(ApprovalsBody { approvals: st.ledger.approvals().await? }))
}

/// Approve a request of another operator: it is carried out now; the result is in `result`.
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/approve",
    tag = "operations",
    params(("id" = String, Path, pattern = r"^A[0-9]{1,18}$")),
    request_body = ActionBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved and carried out", body = Approval),
        (status = 409, description = "Refused: the requester's own, already decided, or expired", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn approve(
    State(st): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<Approval>, ApiError> {
    Ok(Json(decide_request(&st, &caller, &id, &body, true).await?))
}

/// `caller` approves (and so carries out) or rejects request `id`; `body` holds the reason.
pub(crate) async fn decide_request(
    st: &Shared,
    caller: &Caller,
    id: &str,
    body: &[u8],
    approve: bool,
) -> Result<Approval, ApiError> {
    let a = decide(st, caller, id, body, approve).await?;
    if !approve {
        return Ok(a);
    }
    let who = format!("{} (approving {})", caller.name, a.requested_by);
    let why = format!("{} / approved: {}", a.reason, a.decision_reason.clone().unwrap_or_default());
    let result = carry_out(st, &a, &who, &why).await?;
    st.ledger.finish_approval(&a, result).await.map_err(ApiError::from_write)
}

/// Reject a request: nothing is done.
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/reject",
    tag = "operations",
    params(("id" = String, Path, pattern = r"^A[0-9]{1,18}$")),
    request_body = ActionBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rejected", body = Approval),
        (status = 409, description = "Refused: the requester's own, already decided, or expired", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    )
)]
pub async fn reject(
    State(st): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Json<Approval>, ApiError> {
    Ok(Json(decide_request(&st, &caller, &id, &body, false).await?))
}

async fn decide(st: &Shared, caller: &Caller, id: &str, body: &[u8], approve: bool) -> Result<Approval, ApiError> {
    caller.require(Role::Operate)?;
    if !(id.starts_with('A') && id.len() <= 19 && id.len() > 1 && id[1..].bytes().all(|b| b.is_ascii_digit())) {
        return Err(ApiError::invalid("id", format!("not an approval id: {id:?}")));
    }
    let b: ActionBody = parse_json(body)?;
    let why = reason_of(&b.reason)?;
    match st.ledger.decide_approval(id, &caller.name, &why, approve).await.map_err(ApiError::from_write)? {
        Ok(a) => Ok(a),
        Err(r @ ApprovalRefusal::NoSuchRequest(_)) => Err(ApiError::NotFound(r.to_string())),
        Err(ApprovalRefusal::Refused(why)) => Err(ApiError::Refused(why)),
    }
}

/// Carries out an approved request, refund by refund (each action refuses what no longer
/// applies, so carrying out a request again does nothing twice).
async fn carry_out(st: &Shared, a: &Approval, who: &str, why: &str) -> Result<serde_json::Value, ApiError> {
    let r = &a.request;
    let field = |k: &str| r[k].as_str().map(str::to_owned);
    let (op, targets): (Operation, Vec<Target>) = match a.kind.as_str() {
        "resolve" => {
            let op = if r["force"].as_bool() == Some(true) {
                Operation::ForceResolve(RefundState::Succeeded)
            } else {
                Operation::Resolve(RefundState::Succeeded)
            };
            let t = Target {
                merchant: field("merchant").unwrap_or_default(),
                out_trade_no: field("out_trade_no").unwrap_or_default(),
                updated_at: r["updated_at"].as_i64(),
            };
            (op, vec![t])
        }
        "bulk" => {
            let op = match r["action"].as_str() {
                Some("retry") => Operation::Retry,
                Some("cancel") => Operation::Cancel,
                Some("enquire") => Operation::EnquireNow,
                other => return Err(ApiError::Refused(format!("request {} names no known action: {other:?}", a.id))),
            };
            let targets = serde_json::from_value(r["refunds"].clone())
                .map_err(|e| ApiError::Refused(format!("request {} does not read: {e}", a.id)))?;
            (op, targets)
        }
        other => return Err(ApiError::Refused(format!("request {} is of an unknown kind {other:?}", a.id))),
    };
    let mut items = Vec::with_capacity(targets.len());
    for t in targets {
        // Not a refund that moved on since it was asked about (the facts may have changed).
        if let Some(seen) = t.updated_at {
            let now = st.ledger.get(&t.merchant, &t.out_trade_no).await?.map(|r| r.updated_at);
            if now != Some(seen) {
                let why_not = format!("changed since it was asked for (updated {now:?}, asked about {seen})");
                items.push(
                    json!({"merchant": t.merchant, "out_trade_no": t.out_trade_no, "outcome": {"refused": why_not}}),
                );
                continue;
            }
        }
        let outcome =
            match st.ledger.operate(&t.merchant, &t.out_trade_no, op, who, why).await.map_err(ApiError::from_write)? {
                Ok(state) => json!({"to": state.to_string()}),
                Err(refusal) => json!({"refused": refusal.to_string()}),
            };
        items.push(json!({"merchant": t.merchant, "out_trade_no": t.out_trade_no, "outcome": outcome}));
    }
    tracing::info!(id = %a.id, who, "approved request carried out");
    Ok(json!({"items": items}))
}
