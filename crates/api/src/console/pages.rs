//! The console's pages (GET): the overview, the needs-review queue, search (and its CSV), a
//! refund, approvals and the audit trail. Action buttons are drawn only for operators; the
//! server refuses the rest anyway (see `actions`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ledger::State as RefundState;
use ledger::store::search::Search;
use serde::Deserialize;

use super::Session;
use super::views::{amount, csrf_field, error, h, page, refund_link, table, time, u};
use crate::Shared;

/// What a redirect after an action says.
#[derive(Debug, Deserialize)]
pub struct Notice {
    pub notice: Option<String>,
}

/// Hours the overview's chart covers.
const CHART_HOURS: i64 = 12;

pub(super) fn unavailable(s: &Session, e: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, Some(s), &format!("the ledger could not be read: {e}"))
}

pub async fn overview(State(st): State<Shared>, s: Session, Query(n): Query<Notice>) -> Response {
    let stats = match st.ledger.stats().await {
        Ok(v) => v,
        Err(e) => return unavailable(&s, e),
    };
    let workers = st.ledger.live_workers().await.unwrap_or_default();
    let pending_approvals = st.ledger.approvals().await.map(|a| a.iter().filter(|a| a.status == "pending").count());
    let mut body = String::from(r#"<section class="cards">"#);
    for (state, n) in &stats.by_state {
        body.push_str(&format!(
            r#"<a class="card" href="/console/refunds?state={state}" id="count-{state}"><b>{n}</b><span>{state}</span></a>"#
        ));
    }
    body.push_str("</section>");
    let oldest =
        stats.oldest_open_age_ms.map(|ms| format!("{:.0} s", ms as f64 / 1000.0)).unwrap_or_else(|| "—".into());
    body.push_str(&table(
        "health",
        &[
            "due now",
            "scheduled",
            "oldest open",
            "live workers",
            "webhooks failed",
            "webhooks retrying",
            "approvals waiting",
        ],
        &[vec![
            stats.due_now.to_string(),
            stats.due_total.to_string(),
            h(&oldest),
            workers.iter().filter(|w| w.until >= st.ledger.now_ms()).count().to_string(),
            stats.webhooks_failed.to_string(),
            stats.webhooks_retrying.to_string(),
            pending_approvals.map(|n| n.to_string()).unwrap_or_else(|_| "?".into()),
        ]],
    ));
    body.push_str("<h2>Open refunds by merchant</h2>");
    body.push_str(&by_merchant(&st).await);
    body.push_str("<h2>Outcomes, last 12 hours</h2>");
    body.push_str(&chart(&st).await.unwrap_or_else(|e| format!("<p>{}</p>", h(&e.to_string()))));
    body.push_str("<h2>Paused merchants</h2>");
    let paused: Vec<Vec<String>> = stats
        .paused
        .iter()
        .map(|(m, why)| {
            let resume = if s.operates() { super::fleet::resume_form(&s, m) } else { String::new() };
            vec![h(m), h(why), resume]
        })
        .collect();
    body.push_str(&table("paused", &["merchant", "why", ""], &paused));
    if s.operates() {
        body.push_str(&super::fleet::pause_form(&s));
    }
    body.push_str("<h2>Live workers</h2>");
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                h(&w.name),
                h(&w.host),
                h(&w.version),
                format!("{} / {}", w.in_flight, w.concurrency),
                h(&w.merchants.join(", ")),
                time(w.heartbeat_at),
            ]
        })
        .collect();
    body.push_str(&table("workers", &["name", "host", "version", "in flight", "merchants", "heartbeat"], &rows));
    page("Overview", Some(&s), n.notice.as_deref(), &body)
}

/// Open refunds per merchant and state, among the oldest 1 000 of each open state (one page of
/// each: the overview stays cheap however large the ledger).
async fn by_merchant(st: &Shared) -> String {
    use std::collections::BTreeMap;
    let open: Vec<RefundState> = RefundState::ALL.into_iter().filter(|s| !s.is_final()).collect();
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut capped = false;
    for (i, state) in open.iter().enumerate() {
        let q = Search { state: Some(*state), ..Search::default() };
        let Ok(found) = st.ledger.search(&q, None, 1_000).await else { continue };
        capped |= found.next.is_some();
        for r in found.items {
            counts.entry(r.merchant.clone()).or_insert_with(|| vec![0; open.len()])[i] += 1;
        }
    }
    let mut head = vec!["merchant"];
    head.extend(open.iter().map(|s| s.as_str()));
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|(m, c)| {
            let mut row = vec![format!(r#"<a href="/console/refunds?merchant={}">{}</a>"#, u(m), h(m))];
            row.extend(c.iter().map(u64::to_string));
            row
        })
        .collect();
    let mut out = table("by-merchant", &head, &rows);
    if capped {
        out.push_str("<p>Counted among the oldest 1 000 refunds of each state.</p>");
    }
    out
}

/// Succeeded and failed refunds per hour over the last hours, as an inline SVG bar chart.
async fn chart(st: &Shared) -> Result<String, ledger::LedgerError> {
    let now = st.ledger.now_ms();
    let hour = 3_600_000;
    let start = (now / hour - CHART_HOURS + 1) * hour;
    let mut bars = Vec::new();
    for i in 0..CHART_HOURS {
        let (from, to) = (start + i * hour, start + (i + 1) * hour - 1);
        let ok = st.ledger.entered_between(RefundState::Succeeded, from, to).await?;
        let failed = st.ledger.entered_between(RefundState::Failed, from, to).await?;
        bars.push((from, ok, failed));
    }
    let max = bars.iter().map(|(_, a, b)| a + b).max().unwrap_or(0).max(1) as f64;
    let (w, hgt) = (40.0, 120.0);
    let mut svg = format!(
        r#"<svg id="chart" role="img" aria-label="refunds settled per hour" width="{}" height="{}" viewBox="0 0 {} {}">"#,
        w * CHART_HOURS as f64,
        hgt + 20.0,
        w * CHART_HOURS as f64,
        hgt + 20.0
    );
    for (i, (from, ok, failed)) in bars.iter().enumerate() {
        let x = i as f64 * w + 4.0;
        let ok_h = *ok as f64 / max * hgt;
        let f_h = *failed as f64 / max * hgt;
        svg.push_str(&format!(
            r#"<rect class="ok" x="{x}" y="{}" width="{}" height="{ok_h}"><title>{ok} succeeded</title></rect><rect class="failed" x="{x}" y="{}" width="{}" height="{f_h}"><title>{failed} failed</title></rect><text x="{}" y="{}">{}</text>"#,
            hgt - ok_h,
            w - 8.0,
            hgt - ok_h - f_h,
            w - 8.0,
            x,
            hgt + 14.0,
            time(*from).get(11..13).unwrap_or("")
        ));
    }
    svg.push_str("</svg>");
    Ok(svg)
}

pub async fn review(State(st): State<Shared>, s: Session, Query(n): Query<Notice>) -> Response {
    let q = Search { state: Some(RefundState::NeedsReview), newest_first: false, ..Search::default() };
    let found = match st.ledger.search(&q, None, 500).await {
        Ok(f) => f,
        Err(e) => return unavailable(&s, e),
    };
    let now = st.ledger.now_ms();
    let rows: Vec<Vec<String>> = found
        .items
        .iter()
        .map(|r| {
            vec![
                refund_link(&r.merchant, &r.out_trade_no),
                h(&r.merchant),
                amount(r.txamt),
                h(r.reason.as_deref().unwrap_or("")),
                h(&format!("{} {}", r.respcd.as_deref().unwrap_or(""), r.resperr.as_deref().unwrap_or(""))),
                format!("{} sent, {} enquiries", r.submits, r.enquiries),
                format!("{:.0} min", (now - r.updated_at).max(0) as f64 / 60_000.0),
                if s.operates() {
                    format!(
                        r#"<form method="post" action="/console/refund/{}/{}/retry" class="inline">{}<input name="reason" required maxlength="500" placeholder="why"><button>Retry</button></form>"#,
                        u(&r.merchant),
                        u(&r.out_trade_no),
                        csrf_field(&s)
                    )
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let body = table(
        "review",
        &["out_trade_no", "merchant", "amount", "reason", "last answer", "attempts", "waiting", ""],
        &rows,
    );
    let mut body = body;
    if found.next.is_some() {
        body.push_str(r#"<p id="more">More refunds wait than this page shows: <a href="/console/refunds?state=needs_review">search them</a>.</p>"#);
    }
    page("Needs review", Some(&s), n.notice.as_deref(), &body)
}

pub async fn refund(
    State(st): State<Shared>,
    s: Session,
    Path((merchant, otn)): Path<(String, String)>,
    Query(n): Query<Notice>,
) -> Response {
    let rec = match st.ledger.get(&merchant, &otn).await {
        Ok(Some(r)) => r,
        Ok(None) => match crate::archived::record(&st, &merchant, &otn).await {
            Ok(Some(r)) => r,
            _ => return error(StatusCode::NOT_FOUND, Some(&s), &format!("no refund {otn:?} of merchant {merchant:?}")),
        },
        Err(e) => return unavailable(&s, e),
    };
    let mut body = String::new();
    let fields = serde_json::to_value(&rec).unwrap_or_default();
    let rows: Vec<Vec<String>> = fields
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let shown = match (k.as_str(), v) {
                        (k, serde_json::Value::Number(n)) if k.ends_with("_at") && n.as_i64().unwrap_or(0) > 0 => {
                            time(n.as_i64().unwrap_or(0))
                        }
                        (_, serde_json::Value::String(t)) => h(t),
                        (_, other) => h(&other.to_string()),
                    };
                    vec![h(k), shown]
                })
                .collect()
        })
        .unwrap_or_default();
    body.push_str(&format!(r#"<p class="state state-{}" id="state">{}</p>"#, rec.state, rec.state));
    if s.operates() {
        body.push_str(&action_forms(&s, &rec));
    }
    body.push_str("<h2>Fields</h2>");
    body.push_str(&table("fields", &["field", "value"], &rows));
    body.push_str("<h2>Timeline</h2>");
    let timeline = st.ledger.timeline(&merchant, &otn).await.ok().flatten().unwrap_or_default();
    let rows: Vec<Vec<String>> = timeline
        .iter()
        .map(|e| {
            vec![
                time(e.at),
                h(&e.state),
                h(e.respcd.as_deref().unwrap_or("")),
                h(e.resperr.as_deref().unwrap_or("")),
                h(e.reason.as_deref().unwrap_or(e.last_error.as_deref().unwrap_or(""))),
            ]
        })
        .collect();
    body.push_str(&table("timeline", &["at", "state", "respcd", "resperr", "why"], &rows));
    body.push_str("<h2>Requests to QFPay</h2>");
    let attempts = st.ledger.attempts(&merchant, &otn).await.unwrap_or_default();
    let rows: Vec<Vec<String>> = attempts
        .iter()
        .map(|a| {
            vec![
                time(a.sent_at),
                h(&a.call),
                a.http_status.map(|c| c.to_string()).unwrap_or_default(),
                format!("{} ms", a.took_ms),
                h(a.body.as_deref().or(a.error.as_deref()).unwrap_or("")),
            ]
        })
        .collect();
    body.push_str(&table("attempts", &["sent", "call", "HTTP", "took", "answer"], &rows));
    body.push_str("<h2>Webhook deliveries given up</h2>");
    body.push_str(&super::fleet::failed_of(&st, &merchant, &otn).await);
    body.push_str("<h2>Audit</h2>");
    let audit = super::actions::audit_of(&st, &merchant, &otn).await;
    let rows: Vec<Vec<String>> =
        audit.iter().map(|a| vec![time(a.at), h(&a.action), h(&a.who), h(&a.why), h(&a.outcome)]).collect();
    body.push_str(&table("refund-audit", &["at", "action", "who", "why", "outcome"], &rows));
    page(&format!("Refund {otn}"), Some(&s), n.notice.as_deref(), &body)
}

/// The actions an operator may take on `rec` now, each a form with a reason.
fn action_forms(s: &Session, rec: &ledger::Record) -> String {
    let base = format!("/console/refund/{}/{}", u(&rec.merchant), u(&rec.out_trade_no));
    let form = |action: &str, label: &str, extra: &str| {
        format!(
            r#"<form method="post" action="{base}/{action}" class="action" id="do-{action}">{}<input name="reason" required maxlength="500" placeholder="why ({label})">{extra}<button>{label}</button></form>"#,
            csrf_field(s)
        )
    };
    let mut out = String::from(r#"<section class="actions">"#);
    match rec.state {
        RefundState::Pending => out.push_str(&form("enquire", "Enquire now", "")),
        RefundState::Queued => out.push_str(&form("cancel", "Cancel", "")),
        RefundState::NeedsReview => {
            out.push_str(&form("retry", "Retry", ""));
            out.push_str(&form(
                "resolve",
                "Resolve",
                r#"<select name="state"><option value="failed">as failed</option><option value="succeeded">as succeeded (needs a second operator)</option></select><label><input type="checkbox" name="force" value="true"> past the paid amount</label>"#,
            ));
        }
        _ => {}
    }
    out.push_str("</section>");
    out
}

pub async fn approvals(State(st): State<Shared>, s: Session, Query(n): Query<Notice>) -> Response {
    let all = match st.ledger.approvals().await {
        Ok(a) => a,
        Err(e) => return unavailable(&s, e),
    };
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|a| {
            let what = match a.kind.as_str() {
                "resolve" => format!(
                    "resolve {} as succeeded{}",
                    refund_link(a.request["merchant"].as_str().unwrap_or(""), a.request["out_trade_no"].as_str().unwrap_or("")),
                    if a.request["force"].as_bool() == Some(true) {
                        r#" <strong class="force">past the paid amount (forced)</strong>"#
                    } else {
                        ""
                    }
                ),
                _ => {
                    let list = a.request["refunds"].as_array().cloned().unwrap_or_default();
                    let named: Vec<String> = list
                        .iter()
                        .take(50)
                        .map(|t| refund_link(t["merchant"].as_str().unwrap_or(""), t["out_trade_no"].as_str().unwrap_or("")))
                        .collect();
                    format!(
                        "{} {} refunds: {}{}",
                        h(a.request["action"].as_str().unwrap_or("?")),
                        list.len(),
                        named.join(", "),
                        if list.len() > 50 { " …" } else { "" }
                    )
                }
            };
            let decide = if s.operates() && a.status == "pending" && a.requested_by != s.name {
                let f = |verdict: &str, label: &str| {
                    format!(
                        r#"<form method="post" action="/console/approvals/{}/{verdict}" class="inline" id="{verdict}-{}">{}<input name="reason" required maxlength="500" placeholder="why"><button>{label}</button></form>"#,
                        u(&a.id),
                        h(&a.id),
                        csrf_field(&s)
                    )
                };
                format!("{}{}", f("approve", "Approve"), f("reject", "Reject"))
            } else {
                String::new()
            };
            vec![
                h(&a.id),
                what,
                amount(a.txamt),
                h(&a.requested_by),
                h(&a.reason),
                h(&a.status),
                h(a.decided_by.as_deref().unwrap_or("")),
                decide,
            ]
        })
        .collect();
    let body = table("approvals", &["id", "what", "amount", "asked by", "why", "status", "decided by", ""], &rows);
    page("Approvals", Some(&s), n.notice.as_deref(), &body)
}

pub async fn audit(State(st): State<Shared>, s: Session) -> Response {
    let entries = super::actions::recent_audit(&st, 200).await;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|a| {
            vec![
                time(a.at),
                if a.out_trade_no.is_empty() { String::new() } else { refund_link(&a.merchant, &a.out_trade_no) },
                h(&a.merchant),
                h(&a.action),
                h(&a.who),
                h(&a.why),
                h(&a.outcome),
            ]
        })
        .collect();
    let body = table("audit", &["at", "refund", "merchant", "action", "who", "why", "outcome"], &rows);
    page("Audit", Some(&s), None, &body)
}
