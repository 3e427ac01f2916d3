//! The console's search page (the filters of `GET /v1/refunds`, cursor pages) and its CSV export.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ledger::State as RefundState;

use super::Session;
use super::pages::unavailable;
use super::views::{amount, csv, error, h, page, refund_link, table, time, u};
use crate::Shared;
use crate::search::ListQuery;

pub async fn search(State(st): State<Shared>, s: Session, Query(q): Query<ListQuery>) -> Response {
    let form = search_form(&q);
    let search = match q.search() {
        Ok(v) => v,
        Err(e) => return page("Search", Some(&s), Some(&e.to_string_for_people()), &form),
    };
    let cursor = match q.cursor.as_deref() {
        Some(c) => match ledger::PageCursor::decode(c) {
            Some(c) => Some(c),
            None => return page("Search", Some(&s), Some("cursor: not one this console gave"), &form),
        },
        None => None,
    };
    let found = match st.ledger.search(&search, cursor.as_ref(), q.limit.unwrap_or(100).clamp(1, 1000)).await {
        Ok(f) => f,
        Err(e) => return unavailable(&s, e),
    };
    let rows: Vec<Vec<String>> = found
        .items
        .iter()
        .map(|r| {
            vec![
                refund_link(&r.merchant, &r.out_trade_no),
                h(&r.merchant),
                h(r.state.as_str()),
                amount(r.txamt),
                h(r.respcd.as_deref().unwrap_or("")),
                h(&r.syssn),
                time(r.created_at),
                time(r.updated_at),
            ]
        })
        .collect();
    let query = query_string(&q);
    let mut body = form;
    body.push_str(&format!(r#"<p><a id="export" href="/console/export.csv?{query}">Export all as CSV</a></p>"#));
    body.push_str(&table(
        "results",
        &["out_trade_no", "merchant", "state", "amount", "respcd", "payment", "created", "updated"],
        &rows,
    ));
    if let Some(next) = found.next {
        body.push_str(&format!(
            r#"<p><a id="next" href="/console/refunds?{query}&amp;cursor={}">Next page</a></p>"#,
            u(&next.encode())
        ));
    }
    page("Search", Some(&s), None, &body)
}

/// The filters of a search as a query string (escaped for an attribute).
fn query_string(q: &ListQuery) -> String {
    let mut parts = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", u(&v)));
        }
    };
    add("state", q.state.clone());
    add("merchant", q.merchant.clone());
    add("syssn", q.syssn.clone());
    add("respcd", q.respcd.clone());
    add("min_txamt", q.min_txamt.map(|v| v.to_string()));
    add("max_txamt", q.max_txamt.map(|v| v.to_string()));
    add("created_from", q.created_from.map(|v| v.to_string()));
    add("created_to", q.created_to.map(|v| v.to_string()));
    add("updated_from", q.updated_from.map(|v| v.to_string()));
    add("updated_to", q.updated_to.map(|v| v.to_string()));
    add("order", q.order.clone());
    h(&parts.join("&"))
}

fn search_form(q: &ListQuery) -> String {
    let v = |o: &Option<String>| h(o.as_deref().unwrap_or(""));
    let n = |o: Option<u64>| o.map(|v| v.to_string()).unwrap_or_default();
    let t = |o: Option<i64>| o.map(|v| v.to_string()).unwrap_or_default();
    let mut states = String::from(r#"<option value="">any state</option>"#);
    for st in RefundState::ALL {
        let sel = if q.state.as_deref() == Some(st.as_str()) { " selected" } else { "" };
        states.push_str(&format!(r#"<option value="{st}"{sel}>{st}</option>"#));
    }
    format!(
        r#"<form method="get" action="/console/refunds" class="filters" id="search"><select name="state">{states}</select><input name="merchant" placeholder="merchant" value="{}"><input name="syssn" placeholder="payment syssn" value="{}"><input name="respcd" placeholder="respcd" value="{}"><input name="min_txamt" placeholder="min amount (minor units)" value="{}"><input name="max_txamt" placeholder="max amount" value="{}"><input name="created_from" placeholder="created from (ms)" value="{}"><input name="created_to" placeholder="created to (ms)" value="{}"><select name="order"><option value="oldest">oldest first</option><option value="newest"{}>newest first</option></select><button>Search</button></form>"#,
        v(&q.merchant),
        v(&q.syssn),
        v(&q.respcd),
        n(q.min_txamt),
        n(q.max_txamt),
        t(q.created_from),
        t(q.created_to),
        if q.order.as_deref() == Some("newest") { " selected" } else { "" }
    )
}

pub async fn export(State(st): State<Shared>, s: Session, Query(q): Query<ListQuery>) -> Response {
    let search = match q.search() {
        Ok(v) => v,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, Some(&s), &e.to_string_for_people()),
    };
    match crate::export::csv_of(&st, &search).await {
        Ok(body) => csv(body),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, Some(&s), &e.to_string_for_people()),
    }
}
