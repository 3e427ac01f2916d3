//! `POST /v1/bulk`: one operator action (retry, cancel, enquire now) on many refunds, named one
//! by one or by a search's filters, always with a reason. A dry run (the default) says what
//! would change and what would not, and why, touching nothing; a real run acts on each refund
//! as the single action does (the same script, the same audit entry with the caller's name).
//! A run whose refunds add up to more than `bulk_max_txamt` becomes a request a second operator
//! approves (see `approvals`; enquiring is exempt: nothing is sent but an enquiry).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ledger::{Operation, Record};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ErrorBody};
use crate::operate::{parse_json, reason_of};
use crate::search::ListQuery;

/// Refunds one bulk action takes at most.
pub const MAX_REFUNDS: usize = 1_000;

/// One refund named by a bulk action.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundName {
    /// Its merchant (`default` when not given).
    pub merchant: Option<String>,
    pub out_trade_no: String,
}

/// A bulk action.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// `retry` (needs_review → looked at again), `cancel` (queued → cancelled) or `enquire`
    /// (pending: its next enquiry brought forward).
    pub action: String,
    /// Why (each refund's audit entry keeps it with the caller's name).
    pub reason: String,
    /// Say what would change, touching nothing (the default); `false` to act.
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// The refunds, one by one (at most 1 000) …
    pub refunds: Option<Vec<RefundName>>,
    /// … or those a search finds (the filters of `GET /v1/refunds`, at least one, no other key;
    /// at most 1 000 found).
    #[schema(value_type = Object)]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
    /// With `filter` and `"dry_run": false`: the `matched` of the dry run; the run is refused
    /// when the filter finds another number now.
    pub expected: Option<usize>,
}

fn yes() -> bool {
    true
}

/// What a bulk action did, or would do, to one refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkItem {
    pub merchant: String,
    pub out_trade_no: String,
    pub txamt: u64,
    /// Its state before.
    pub from: String,
    /// Its state after (a dry run: the state the action leads to; `pending` or `queued` for a
    /// retry, as it was sent or not).
    pub to: Option<String>,
    /// Why nothing changed (not in the state the action needs, refused by the ledger, gone).
    pub refused: Option<String>,
}

/// The result of a bulk action.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    pub dry_run: bool,
    pub action: String,
    /// Refunds named or found.
    pub matched: usize,
    /// Those the action changes (or would), and the sum of their amounts (minor units).
    pub changed: usize,
    pub changed_txamt: u64,
    pub items: Vec<BulkItem>,
}

/// The state an action needs, and the one it leads to (for a retry: as the refund was sent).
fn rule(op: Operation, r: &Record) -> Result<ledger::State, String> {
    use ledger::State::*;
    let (needs, to) = match op {
        Operation::Retry => (NeedsReview, if r.submitted_at.is_some() || r.submits > 0 { Pending } else { Queued }),
        Operation::Cancel => (Queued, Cancelled),
        _ => (Pending, Pending),
    };
    if r.state == needs { Ok(to) } else { Err(format!("is {}, not {needs}", r.state)) }
}

/// One action on many refunds.
#[utoipa::path(
    post,
    path = "/v1/bulk",
    tag = "operations",
    request_body = BulkBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What changed (or would): every refund named or found, each with its outcome", body = BulkResult),
        (status = 202, description = "Retries or cancellations above the amount one operator may move: waiting for a second operator's approval", body = crate::approvals::ApprovalBody),
        (status = 403, description = "Not an operator token (or, four-eyes off, above the amount one operator may move)", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn bulk(
    State(st): State<Shared>,
    caller: Caller,
    crate::strict::JsonBytes(body): crate::strict::JsonBytes,
) -> Result<Response, ApiError> {
    caller.require(Role::Operate)?;
    let b: BulkBody = parse_json(&body)?;
    let op = match b.action.as_str() {
        "retry" => Operation::Retry,
        "cancel" => Operation::Cancel,
        "enquire" => Operation::EnquireNow,
        other => {
            return Err(ApiError::invalid(
                "action",
                format!("retry, cancel or enquire, got {other:?} (resolve goes one refund at a time)"),
            ));
        }
    };
    let why = reason_of(&b.reason)?;
    let records = match (&b.refunds, &b.filter) {
        (Some(names), None) => named(&st, names).await?,
        (None, Some(f)) => {
            let found = found(&st, f).await?;
            // A real run by a filter acts on what its dry run showed, or not at all: refunds that
            // came in since would be acted on unseen.
            if !b.dry_run {
                match b.expected {
                    None => {
                        return Err(ApiError::invalid(
                            "expected",
                            "a real run by a filter needs `expected`: the `matched` of its dry run",
                        ));
                    }
                    Some(n) if n != found.len() => {
                        return Err(ApiError::Refused(format!(
                            "the filter finds {} refunds now, not the {n} of the dry run: look again",
                            found.len()
                        )));
                    }
                    Some(_) => {}
                }
            }
            found
        }
        _ => return Err(ApiError::invalid("refunds", "give either refunds (a list) or filter, not both")),
    };
    let mut out = BulkResult {
        dry_run: b.dry_run,
        action: b.action.clone(),
        matched: records.len(),
        changed: 0,
        changed_txamt: 0,
        items: Vec::new(),
    };
    let plan: Vec<(Record, Result<ledger::State, String>)> = records
        .into_iter()
        .map(|r| {
            let p = rule(op, &r);
            (r, p)
        })
        .collect();
    let total: u64 = plan.iter().filter(|(_, p)| p.is_ok()).map(|(r, _)| r.txamt).sum();
    if !b.dry_run
        && !matches!(op, Operation::EnquireNow)
        && let Some(max) = st.config.bulk_max_txamt
        && total > max
    {
        if !st.config.four_eyes {
            return Err(ApiError::Forbidden(format!(
                "these refunds add up to {total} (minor units), above the {max} one operator may act on at once: act on fewer"
            )));
        }
        // A second operator approves exactly these refunds (those the action applies to now).
        let refunds: Vec<crate::approvals::Target> = plan
            .iter()
            .filter(|(_, p)| p.is_ok())
            .map(|(r, _)| crate::approvals::Target {
                merchant: r.merchant.clone(),
                out_trade_no: r.out_trade_no.clone(),
                updated_at: Some(r.updated_at),
            })
            .collect();
        let request = serde_json::json!({"action": b.action, "refunds": refunds});
        return crate::approvals::ask(&st, &caller, "bulk", request, total, &why).await;
    }
    for (r, planned) in plan {
        let mut item = BulkItem {
            merchant: r.merchant.clone(),
            out_trade_no: r.out_trade_no.clone(),
            txamt: r.txamt,
            from: r.state.to_string(),
            to: None,
            refused: None,
        };
        match planned {
            Err(why_not) => item.refused = Some(why_not),
            Ok(to) if b.dry_run => item.to = Some(to.to_string()),
            Ok(_) => match st
                .ledger
                .operate(&r.merchant, &r.out_trade_no, op, &caller.name, &why)
                .await
                .map_err(ApiError::from_write)?
            {
                Ok(state) => item.to = Some(state.to_string()),
                Err(refusal) => item.refused = Some(refusal.to_string()),
            },
        }
        if item.to.is_some() {
            out.changed += 1;
            out.changed_txamt += r.txamt;
        }
        out.items.push(item);
    }
    if !b.dry_run {
        tracing::info!(caller = %caller.name, action = %b.action, changed = out.changed, "bulk operator action");
    }
    Ok(Json(out).into_response())
}

/// The records of refunds named one by one; one not found is an item refused.
async fn named(st: &Shared, names: &[RefundName]) -> Result<Vec<Record>, ApiError> {
    if names.is_empty() || names.len() > MAX_REFUNDS {
        return Err(ApiError::invalid("refunds", format!("1–{MAX_REFUNDS} refunds, got {}", names.len())));
    }
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let merchant = n.merchant.as_deref().unwrap_or(ledger::DEFAULT_MERCHANT);
        qfpay::request::validate_id("merchant", merchant, 64).map_err(|e| ApiError::invalid("merchant", e.rule))?;
        qfpay::request::validate_id("out_trade_no", &n.out_trade_no, 64)
            .map_err(|e| ApiError::invalid("out_trade_no", e.rule))?;
        match st.ledger.get(merchant, &n.out_trade_no).await? {
            Some(r) => out.push(r),
            None => {
                return Err(ApiError::NotFound(format!(
                    "no refund {:?} of merchant {merchant:?} in Redis (archived or never enqueued)",
                    n.out_trade_no
                )));
            }
        }
    }
    Ok(out)
}

/// The filters a bulk action may name (a misspelt one must not widen the search).
const FILTERS: [&str; 10] = [
    "state",
    "merchant",
    "syssn",
    "respcd",
    "created_from",
    "created_to",
    "updated_from",
    "updated_to",
    "min_txamt",
    "max_txamt",
];

/// The records a search finds (at most [`MAX_REFUNDS`]).
async fn found(st: &Shared, f: &serde_json::Map<String, serde_json::Value>) -> Result<Vec<Record>, ApiError> {
    if let Some(k) = f.keys().find(|k| !FILTERS.contains(&k.as_str())) {
        return Err(ApiError::invalid("filter", format!("unknown filter {k:?}: one of {}", FILTERS.join(", "))));
    }
    if f.is_empty() {
        return Err(ApiError::invalid("filter", "name at least one filter"));
    }
    // A null or empty value would drop its condition: a wider search than asked for.
    if let Some((k, _)) = f.iter().find(|(_, v)| v.is_null() || v.as_str() == Some("")) {
        return Err(ApiError::invalid("filter", format!("{k} has no value: give one, or leave {k} out")));
    }
    let f: ListQuery = serde_json::from_value(serde_json::Value::Object(f.clone()))
        .map_err(|e| ApiError::invalid("filter", e.to_string()))?;
    let q = f.search()?;
    let mut out = Vec::new();
    let mut cursor = None;
    let mut scanned = 0;
    loop {
        let page = st.ledger.search(&q, cursor.as_ref(), MAX_REFUNDS).await?;
        out.extend(page.items);
        scanned += page.scanned;
        if scanned > crate::export::MAX_SCANNED && page.next.is_some() {
            return Err(ApiError::invalid("filter", "the search looked at too many refunds: narrow it"));
        }
        if out.len() > MAX_REFUNDS {
            return Err(ApiError::invalid("filter", format!("finds more than {MAX_REFUNDS} refunds: narrow it")));
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}
