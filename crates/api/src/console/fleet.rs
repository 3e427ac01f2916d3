//! The console's merchants and webhooks: pausing and resuming a merchant, the webhook deliveries
//! given up and sending them again — each through the API's own handlers, with a reason.

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::Session;
use super::actions::refused;
use super::pages::{Notice, unavailable};
use super::views::{csrf_field, error, h, page, refund_link, table, time, u};
use crate::Shared;

/// The pause form of the overview (an operator's).
pub fn pause_form(s: &Session) -> String {
    format!(
        r#"<form method="post" action="/console/merchants/pause" class="action" id="do-pause">{}<input name="merchant" required maxlength="64" placeholder="merchant"><input name="reason" required maxlength="500" placeholder="why (pause its submits)"><button>Pause</button></form>"#,
        csrf_field(s)
    )
}

/// A paused merchant's resume form.
pub fn resume_form(s: &Session, merchant: &str) -> String {
    format!(
        r#"<form method="post" action="/console/merchants/resume" class="inline" id="resume-{}">{}<input type="hidden" name="merchant" value="{}"><input name="reason" required maxlength="500" placeholder="why"><button>Resume</button></form>"#,
        h(merchant),
        csrf_field(s),
        h(merchant)
    )
}

#[derive(Debug, Deserialize)]
pub struct MerchantForm {
    pub csrf: String,
    pub merchant: String,
    #[serde(default)]
    pub reason: String,
}

pub async fn pause_or_resume(
    State(st): State<Shared>,
    s: Session,
    headers: HeaderMap,
    Path(verb): Path<String>,
    Form(f): Form<MerchantForm>,
) -> Response {
    if let Some(resp) = refused(&s, &headers, &f.csrf) {
        return resp;
    }
    let pause = match verb.as_str() {
        "pause" => true,
        "resume" => false,
        other => return error(StatusCode::NOT_FOUND, Some(&s), &format!("no such action {other:?}")),
    };
    let body = json!({"reason": f.reason}).to_string().into_bytes();
    let notice = match crate::fleet::pause_or_resume(&st, &s.caller(), f.merchant.trim(), pause, &body).await {
        Ok(r) if r.0.changed => format!("{} {}", r.0.merchant, if pause { "paused" } else { "resumed" }),
        Ok(r) => format!("{} already was {}", r.0.merchant, if pause { "paused" } else { "running" }),
        Err(e) => format!("refused: {}", e.to_string_for_people()),
    };
    Redirect::to(&format!("/console?notice={}", u(&notice))).into_response()
}

pub async fn webhooks(State(st): State<Shared>, s: Session, Query(n): Query<Notice>) -> Response {
    let failed = match st.ledger.failed_webhooks(1_000).await {
        Ok(f) => f,
        Err(e) => return unavailable(&s, e),
    };
    let rows: Vec<Vec<String>> = failed
        .iter()
        .map(|f| {
            let again = if s.operates() {
                format!(
                    r#"<form method="post" action="/console/webhooks/redeliver" class="inline">{}<input type="hidden" name="event_id" value="{}"><input name="reason" required maxlength="500" placeholder="why"><button>Send again</button></form>"#,
                    csrf_field(&s),
                    h(&f.event_id)
                )
            } else {
                String::new()
            };
            vec![
                h(&f.event_id),
                refund_link(&f.merchant, &f.out_trade_no),
                h(&f.merchant),
                f.attempts.to_string(),
                h(&f.last_error),
                time(f.failed_at),
                again,
            ]
        })
        .collect();
    let mut body =
        table("failed-webhooks", &["event", "refund", "merchant", "attempts", "last error", "given up", ""], &rows);
    if s.operates() && !failed.is_empty() {
        body.push_str(&format!(
            r#"<form method="post" action="/console/webhooks/redeliver" class="action" id="redeliver-all">{}<input type="hidden" name="all" value="true"><input name="reason" required maxlength="500" placeholder="why (every delivery given up)"><button>Send every one again</button></form>"#,
            csrf_field(&s)
        ));
    }
    page("Webhooks given up", Some(&s), n.notice.as_deref(), &body)
}

#[derive(Debug, Deserialize)]
pub struct RedeliverForm {
    pub csrf: String,
    pub event_id: Option<String>,
    pub all: Option<String>,
    #[serde(default)]
    pub reason: String,
}

pub async fn redeliver(
    State(st): State<Shared>,
    s: Session,
    headers: HeaderMap,
    Form(f): Form<RedeliverForm>,
) -> Response {
    if let Some(resp) = refused(&s, &headers, &f.csrf) {
        return resp;
    }
    let ids: Vec<String> = f.event_id.into_iter().collect();
    let body = json!({"event_ids": ids, "all": f.all.as_deref() == Some("true"), "reason": f.reason});
    let notice = match crate::hooks::redeliver_as(&st, &s.caller(), body.to_string().as_bytes()).await {
        Ok(a) => format!("{} delivery(ies) due again", a.rescheduled),
        Err(e) => format!("refused: {}", e.to_string_for_people()),
    };
    Redirect::to(&format!("/console/webhooks?notice={}", u(&notice))).into_response()
}

/// The webhook deliveries of one refund given up (among the first 1 000).
pub async fn failed_of(st: &Shared, merchant: &str, otn: &str) -> String {
    let rows: Vec<Vec<String>> = st
        .ledger
        .failed_webhooks(1_000)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.out_trade_no == otn && f.merchant == merchant)
        .map(|f| vec![h(&f.event_id), f.attempts.to_string(), h(&f.last_error), time(f.failed_at)])
        .collect();
    table("refund-webhooks", &["event", "attempts", "last error", "given up"], &rows)
}
