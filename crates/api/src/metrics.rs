//! `GET /metrics` (Prometheus text format): this process's HTTP traffic (requests by route,
//! method and status; latency by route and method), QFPay notifications, `process_*` and build
//! info, and the ledger as every pod sees it (read at scrape time, so any API pod gives the same
//! answer; while Redis is down the rest is still served, with `qfrefund_ledger_up 0`). With a
//! metrics listener of its own (`ApiConfig::metrics_elsewhere`) the API's port answers 404 here.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, histogram};
use qfrefund_telemetry::{LedgerView, Registry, method_label};

use crate::Shared;
use crate::notify::Outcome;

/// This process's series.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let describe = || {
            qfrefund_telemetry::describe(
                &[
                    ("qfrefund_api_requests_total", "HTTP requests by route template, method and status."),
                    ("qfrefund_api_notifications_total", "QFPay notifications by outcome."),
                ],
                &[("qfrefund_api_request_seconds", "HTTP request latency by route template and method.")],
                &["qfrefund_api_requests_total", "qfrefund_api_notifications_total", "qfrefund_api_request_seconds"],
            );
        };
        Self { registry: Registry::new("api", describe) }
    }
}

impl Metrics {
    fn request(&self, route: String, method: &'static str, status: u16, took: f64) {
        self.registry.with(|| {
            counter!("qfrefund_api_requests_total", "route" => route.clone(), "method" => method, "status" => status.to_string())
                .increment(1);
            histogram!("qfrefund_api_request_seconds", "route" => route, "method" => method).record(took);
        });
    }

    pub(crate) fn notified(&self, o: Outcome) {
        let k = match o {
            Outcome::Expedited => "expedited",
            Outcome::Ignored => "ignored",
            Outcome::BadSignature => "bad_signature",
            Outcome::Unreadable => "unreadable",
        };
        self.registry.with(|| counter!("qfrefund_api_notifications_total", "outcome" => k).increment(1));
    }

    /// Everything `/metrics` answers.
    pub async fn render(&self, ledger: &ledger::Ledger) -> String {
        let view = LedgerView::read(ledger).await;
        self.registry.render(view.as_ref())
    }
}

/// Counts every request by its route template (never the raw path: no out_trade_no in labels)
/// and its method (an unknown one as `other`).
pub(crate) async fn track(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method().as_str());
    let started = Instant::now();
    let resp = next.run(req).await;
    st.metrics.request(route, method, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

/// Prometheus metrics: this process's series and the ledger's gauges.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus text format (while Redis is down, this process's series with qfrefund_ledger_up 0)", body = String, content_type = "text/plain"),
        (status = 404, description = "Served on the API's metrics listener instead (QFREFUND_API_METRICS_LISTEN)", body = String),
    )
)]
pub async fn metrics(State(st): State<Shared>) -> Response {
    if st.config.metrics_elsewhere {
        return (StatusCode::NOT_FOUND, "metrics are served on the API's metrics listener").into_response();
    }
    serve(&st).await
}

/// The metrics response, on whichever listener serves it.
pub(crate) async fn serve(st: &Shared) -> Response {
    ([(header::CONTENT_TYPE, qfrefund_telemetry::CONTENT_TYPE)], st.metrics.render(&st.ledger).await).into_response()
}
