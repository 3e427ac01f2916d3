//! `GET /v1/refunds.csv`: every refund a search finds (the filters of `GET /v1/refunds`), as CSV
//! for finance: RFC 3339 times (UTC), amounts in minor units and formatted, one row a refund.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ledger::{PageCursor, Record};

use crate::Shared;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ErrorBody};
use crate::search::ListQuery;

/// Rows one export holds at most: a larger result is refused (narrow the filters).
pub const MAX_ROWS: usize = 100_000;
/// Index entries one export (or bulk action) may look at: a sparse filter over a large ledger is
/// refused rather than scanning it all in one request.
pub const MAX_SCANNED: usize = 200_000;

/// The header row.
pub const CSV_HEADER: &str = "merchant,out_trade_no,state,syssn,txamt,txamt_formatted,orig_txamt,respcd,resperr,\
refund_syssn,created_at,updated_at,submits,enquiries,reason,archived";

/// `ms` since the epoch as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(ms: i64) -> String {
    let (day, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = qfpay::time::civil_from_days(day);
    let (h, min, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// An amount in minor units as its major units (`1234` → `12.34`).
pub fn formatted(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// One CSV field: quoted when it holds a comma, quote or line break; a text a spreadsheet would
/// take for a formula (`=`, `+`, `-`, `@`, `|`, their full-width forms, tab, CR first) is
/// prefixed with `'`.
pub fn field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r', '|', '＝', '＋', '－', '＠']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

/// A refund's row.
pub fn row(r: &Record) -> String {
    let opt = |v: &Option<String>| field(v.as_deref().unwrap_or(""));
    let time = |ms: i64| if ms > 0 { rfc3339(ms) } else { String::new() };
    [
        field(&r.merchant),
        field(&r.out_trade_no),
        r.state.to_string(),
        field(&r.syssn),
        r.txamt.to_string(),
        formatted(r.txamt),
        r.orig_txamt.map(|a| a.to_string()).unwrap_or_default(),
        opt(&r.respcd),
        opt(&r.resperr),
        opt(&r.refund_syssn),
        time(r.created_at),
        time(r.updated_at),
        r.submits.to_string(),
        r.enquiries.to_string(),
        opt(&r.reason),
        r.archived.to_string(),
    ]
    .join(",")
}

/// Every refund the filters find, as CSV (`limit` and `cursor` are ignored: the whole result).
#[utoipa::path(
    get,
    path = "/v1/refunds.csv",
    tag = "refunds",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One header row, then a row per refund", content_type = "text/csv"),
        (status = 422, description = "A filter out of its bounds, or more than 100 000 refunds found", body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub async fn csv(State(st): State<Shared>, caller: Caller, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    caller.require(Role::Read)?;
    let out = csv_of(&st, &q.search()?).await?;
    Ok(download(out))
}

/// A CSV body as a download (`refunds.csv`).
pub(crate) fn download(body: String) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"refunds.csv\""));
    resp
}

/// Every refund `search` finds, as CSV (a header, then a row each; at most [`MAX_ROWS`]).
pub(crate) async fn csv_of(st: &Shared, search: &ledger::store::search::Search) -> Result<String, ApiError> {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    let mut cursor: Option<PageCursor> = None;
    let (mut rows, mut scanned) = (0, 0);
    loop {
        let page = st.ledger.search(search, cursor.as_ref(), 1_000).await?;
        rows += page.items.len();
        scanned += page.scanned;
        if scanned > MAX_SCANNED && page.next.is_some() {
            return Err(ApiError::invalid(
                "filters",
                format!(
                    "the search looked at {scanned} refunds and is not done: narrow it (a state, a merchant, a time range)"
                ),
            ));
        }
        if rows > MAX_ROWS {
            return Err(ApiError::invalid("filters", format!("more than {MAX_ROWS} refunds found: narrow the search")));
        }
        for r in &page.items {
            out.push_str(&row(r));
            out.push_str("\r\n");
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_amounts_and_fields_are_written_as_finance_reads_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_679_012_345), "2025-12-02T12:36:52.345Z");
        assert_eq!(rfc3339(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!((formatted(1234), formatted(5), formatted(100)), ("12.34".into(), "0.05".into(), "1.00".into()));
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(CSV_HEADER.split(',').count(), 16);
    }
}
