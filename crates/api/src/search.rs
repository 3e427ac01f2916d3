//! `GET /v1/refunds`: refunds found by state, merchant, payment, respcd, amount and time ranges,
//! oldest or newest first, in cursor pages (see `ledger::store::search`).

use axum::Json;
use axum::extract::{Query, State};
use ledger::store::search::Search;
use ledger::{PageCursor, Record};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ErrorBody};
use crate::refunds::page_limit;

/// One page of refunds.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListBody {
    pub items: Vec<Record>,
    /// Pass as `cursor` for the next page; absent on the last one. A page may hold fewer than
    /// `limit` refunds and still have one: a search looks at a bounded number of refunds per call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// With `syssn`: what the payment was paid (when known) and has had refunded, archived refunds
    /// included (a payment lists only its refunds kept whole in Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentTotals>,
}

/// A payment's totals (minor units).
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentTotals {
    pub syssn: String,
    pub paid: Option<u64>,
    pub refunded: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Refunds in this state (ordered by when they entered it); without it, every refund
    /// (ordered by when it was created).
    #[param(pattern = r"^[a-z_]{1,20}$")]
    pub state: Option<String>,
    /// Refunds of this merchant.
    #[param(pattern = r"^[A-Za-z0-9_.-]{1,64}$")]
    pub merchant: Option<String>,
    /// Refunds of this payment (the original payment's QFPay `syssn`); without `state`, those
    /// its payment lists (not those archived), or while refunds wait fresh in a backlog, those a
    /// search finds (a page may be short: ask on).
    #[param(pattern = r"^[A-Za-z0-9_.-]{1,64}$")]
    pub syssn: Option<String>,
    /// Refunds whose last QFPay answer had this `respcd`.
    #[param(pattern = r"^[A-Za-z0-9]{1,8}$")]
    pub respcd: Option<String>,
    /// Created at or after / at or before (ms since the epoch).
    #[param(minimum = 0, maximum = 9007199254740991i64)]
    pub created_from: Option<i64>,
    #[param(minimum = 0, maximum = 9007199254740991i64)]
    pub created_to: Option<i64>,
    /// Last changed at or after / at or before (ms since the epoch).
    #[param(minimum = 0, maximum = 9007199254740991i64)]
    pub updated_from: Option<i64>,
    #[param(minimum = 0, maximum = 9007199254740991i64)]
    pub updated_to: Option<i64>,
    /// The refund's amount at least / at most (minor units).
    #[param(minimum = 0, maximum = 9007199254740991i64)]
    pub min_txamt: Option<u64>,
    #[param(minimum = 0, maximum = 9007199254740991i64)]
    pub max_txamt: Option<u64>,
    /// `oldest` (the default) or `newest` first.
    #[param(pattern = "^(oldest|newest)$")]
    pub order: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

impl ListQuery {
    /// The search it asks for, every parameter checked.
    pub(crate) fn search(&self) -> Result<Search, ApiError> {
        let state = match self.state.as_deref() {
            Some(s) => {
                Some(s.parse().map_err(|e: ledger::state::UnknownState| ApiError::invalid("state", e.to_string()))?)
            }
            None => None,
        };
        let text = |name: &str, v: &Option<String>, max: usize, ok: fn(char) -> bool| match v.as_deref() {
            Some(t) if t.is_empty() || t.len() > max || !t.chars().all(ok) => {
                Err(ApiError::invalid(name, format!("must be 1–{max} letters, digits or `_.-`, got {t:?}")))
            }
            other => Ok(other.map(str::to_owned)),
        };
        let name_char = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        let alnum = |c: char| c.is_ascii_alphanumeric();
        let ms = |name: &str, v: Option<i64>| match v {
            Some(t) if !(0..=(1 << 53) - 1).contains(&t) => {
                Err(ApiError::invalid(name, format!("must be a time in ms since the epoch, got {t}")))
            }
            other => Ok(other),
        };
        let amount = |name: &str, v: Option<u64>| match v {
            Some(a) if a >= 1 << 53 => {
                Err(ApiError::invalid(name, format!("must be an amount in minor units, got {a}")))
            }
            other => Ok(other),
        };
        let q = Search {
            state,
            merchant: text("merchant", &self.merchant, 64, name_char)?,
            syssn: text("syssn", &self.syssn, 64, name_char)?,
            respcd: text("respcd", &self.respcd, 8, alnum)?,
            created_from: ms("created_from", self.created_from)?,
            created_to: ms("created_to", self.created_to)?,
            updated_from: ms("updated_from", self.updated_from)?,
            updated_to: ms("updated_to", self.updated_to)?,
            min_txamt: amount("min_txamt", self.min_txamt)?,
            max_txamt: amount("max_txamt", self.max_txamt)?,
            newest_first: match self.order.as_deref() {
                None | Some("oldest") => false,
                Some("newest") => true,
                Some(o) => return Err(ApiError::invalid("order", format!("must be oldest or newest, got {o:?}"))),
            },
        };
        for (name, from, to) in [
            ("created_to", q.created_from, q.created_to),
            ("updated_to", q.updated_from, q.updated_to),
            ("max_txamt", q.min_txamt.map(|v| v as i64), q.max_txamt.map(|v| v as i64)),
        ] {
            if let (Some(f), Some(t)) = (from, to)
                && t < f
            {
                return Err(ApiError::invalid(name, format!("is below its lower bound ({t} < {f})")));
            }
        }
        Ok(q)
    }
}

/// Refunds found by any of the filters (every one given must hold), in cursor pages.
#[utoipa::path(
    get,
    path = "/v1/refunds",
    tag = "refunds",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ListBody),
        (status = 422, description = "A filter out of its bounds, an unknown state or order, or a bad cursor", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn list(
    State(st): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<ListBody>, ApiError> {
    caller.require(Role::Read)?;
    let limit = page_limit(q.limit)?;
    let search = q.search()?;
    // An empty cursor is the first page, as no cursor is.
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => {
            Some(PageCursor::decode(c).ok_or_else(|| ApiError::invalid("cursor", "not a cursor this API gave"))?)
        }
        None => None,
    };
    let found = st.ledger.search(&search, cursor.as_ref(), limit).await?;
    let payment = match &search.syssn {
        Some(syssn) => st.ledger.payment_totals(syssn).await?.map(|(paid, refunded)| PaymentTotals {
            syssn: syssn.clone(),
            paid,
            refunded,
        }),
        None => None,
    };
    Ok(Json(ListBody { items: found.items, next_cursor: found.next.map(|c| c.encode()), payment }))
}
