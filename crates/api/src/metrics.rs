//! `GET /metrics` (Prometheus text format): the ledger as every pod sees it (read at scrape time,
//! so any API pod gives the same answer), and this process' HTTP traffic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Shared;
use crate::notify::Outcome;

/// This process' counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, method, status) → requests.
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// outcome → notifications.
    notify: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    fn request(&self, route: String, method: String, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry((route, method, status)).or_default() += 1;
        }
    }

    pub(crate) fn notified(&self, o: Outcome) {
        let k = match o {
            Outcome::Expedited => "expedited",
            Outcome::Ignored => "ignored",
            Outcome::BadSignature => "bad_signature",
            Outcome::Unreadable => "unreadable",
        };
        if let Ok(mut m) = self.notify.lock() {
            *m.entry(k).or_default() += 1;
        }
    }
}

/// Counts every request by its route template (never the raw path: no out_trade_no in labels).
pub(crate) async fn track(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    st.metrics.request(route, method, resp.status().as_u16());
    resp
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus metrics: the ledger's gauges and this API's traffic.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 503, description = "Redis does not answer", body = String),
    )
)]
pub async fn metrics(State(st): State<Shared>) -> Response {
    let stats = match st.ledger.stats().await {
        Ok(s) => s,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")).into_response(),
    };
    let mut out = String::new();
    stats.to_prometheus(&mut out);
    if let Ok(m) = st.ledger.memory().await {
        m.to_prometheus(&mut out);
    }
    let merchants =
        match (st.ledger.served_merchants().await, st.ledger.unserved_refunds(ledger::merchants::METRICS_SCAN).await) {
            (Ok(served), Ok(unserved)) => Some((served, unserved)),
            _ => None,
        };
    ledger::gauges::render_extra(merchants.as_ref().map(|(s, u)| (s.as_slice(), u)), &mut out);
    let _ = writeln!(out, "# HELP qfrefund_api_requests_total HTTP requests by route, method and status.");
    let _ = writeln!(out, "# TYPE qfrefund_api_requests_total counter");
    if let Ok(m) = st.metrics.http.lock() {
        for ((route, method, status), n) in m.iter() {
            let _ = writeln!(
                out,
                "qfrefund_api_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                label(route),
                label(method)
            );
        }
    }
    let _ = writeln!(out, "# HELP qfrefund_api_notifications_total QFPay notifications by outcome.");
    let _ = writeln!(out, "# TYPE qfrefund_api_notifications_total counter");
    if let Ok(m) = st.metrics.notify.lock() {
        for (k, n) in m.iter() {
            let _ = writeln!(out, "qfrefund_api_notifications_total{{outcome=\"{k}\"}} {n}");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
