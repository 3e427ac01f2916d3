//! A worker's Prometheus metrics: what this process did (counters, latency histograms, QFPay's
//! answers by call and class), with `process_*`, `qfrefund_build_info` and the ledger's gauges
//! read from Redis at scrape time (see `qfrefund_telemetry`). Served on `metrics_listen` with
//! `/healthz`. Labels never carry a refund id or anything secret.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ledger::machine::{EnquiryResult, SubmitResult};
use metrics::{counter, histogram};
use qfpay::client::ClientError;
use qfrefund_telemetry::{LedgerView, Registry};

use crate::requests::class_name;

/// Everything a worker counts.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) webhooks: Arc<crate::webhooks::WebhookCounters>,
    pub(crate) retention: Arc<crate::retention::RetentionCounters>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self { registry: Registry::new("worker", describe), webhooks: Arc::default(), retention: Arc::default() }
    }
}

/// The help of every series a worker counts.
fn describe() {
    qfrefund_telemetry::describe(
        &[
            (
                "qfrefund_settled_total",
                "Refunds this worker settled, by state and the respcd class of QFPay's last answer.",
            ),
            (
                "qfrefund_qfpay_answers_total",
                "QFPay's answers to this worker, by call (refund, query) and class (the respcd's, or not_sent, no_answer, rate_limited, misconfigured).",
            ),
            (
                "qfrefund_orphans_recovered_total",
                "Refunds found in submitting after their holder's lease expired (a crashed or stalled worker): enquired, never resent.",
            ),
            ("qfrefund_fence_rejections_total", "Outcomes dropped because another worker had taken the refund over."),
            ("qfrefund_rate_limit_waits_total", "Steps put off by the merchant's rate limit."),
            ("qfrefund_steps_total", "Steps taken (deliveries handled)."),
            ("qfrefund_webhooks_delivered_total", "Webhooks accepted (2xx)."),
            (
                "qfrefund_webhook_attempts_failed_total",
                "Webhook attempts that failed (each is retried until the limit).",
            ),
            ("qfrefund_webhooks_given_up_total", "Webhooks given up by this worker."),
            ("qfrefund_archived_total", "Final refunds this worker wrote to the archive."),
            (
                "qfrefund_archive_removed_total",
                "Archived refunds this worker removed from Redis (a tombstone left for each).",
            ),
            ("qfrefund_tombstones_swept_total", "Tombstones past idempotency_retention this worker swept."),
            (
                "qfrefund_summarised_total",
                "Final refunds past summary_after this worker archived early, a summary and tombstones left in Redis.",
            ),
            (
                "qfrefund_summaries_expired_total",
                "Summaries past the retention this worker removed (their tombstones stay).",
            ),
        ],
        &[
            ("qfrefund_qfpay_request_seconds", "QFPay request latency, by call."),
            ("qfrefund_step_lag_seconds", "How late a due step (submit or enquiry) was picked up."),
            ("qfrefund_time_to_final_seconds", "Enqueue to final state, for refunds this worker settled."),
        ],
        &["qfrefund_settled_total", "qfrefund_qfpay_answers_total", "qfrefund_qfpay_request_seconds"],
    );
    for call in ["refund", "query"] {
        let _ = histogram!("qfrefund_qfpay_request_seconds", "call" => call);
    }
    metrics::describe_gauge!(
        "qfrefund_retention_backlog",
        "Final refunds past the retention still in Redis (shards this worker serves)."
    );
}

/// The class of a submit's outcome.
fn submit_class(r: &SubmitResult) -> &'static str {
    match r {
        SubmitResult::Answer(a) => class_name(a.respcd.as_deref()),
        SubmitResult::NotSent(_) => "not_sent",
        SubmitResult::Unknown(_) => "no_answer",
        SubmitResult::RateLimited(_) => "rate_limited",
        SubmitResult::Misconfigured(_) => "misconfigured",
    }
}

/// The class of an enquiry's outcome (of the enquiry call itself).
fn enquiry_class(r: &EnquiryResult) -> &'static str {
    match r {
        EnquiryResult::Answer(a) => class_name(a.respcd.as_deref()),
        EnquiryResult::Failed(ClientError::NotSent { .. }) => "not_sent",
        EnquiryResult::Failed(ClientError::RateLimited { .. }) => "rate_limited",
        EnquiryResult::Failed(ClientError::Config(_)) => "misconfigured",
        EnquiryResult::Failed(_) => "no_answer",
    }
}

impl Metrics {
    pub(crate) fn submitted(&self, took: Duration, result: &SubmitResult) {
        self.registry.with(|| {
            histogram!("qfrefund_qfpay_request_seconds", "call" => "refund").record(took.as_secs_f64());
            counter!("qfrefund_qfpay_answers_total", "call" => "refund", "class" => submit_class(result)).increment(1);
        });
    }

    pub(crate) fn enquired(&self, took: Duration, result: &EnquiryResult) {
        self.registry.with(|| {
            histogram!("qfrefund_qfpay_request_seconds", "call" => "query").record(took.as_secs_f64());
            counter!("qfrefund_qfpay_answers_total", "call" => "query", "class" => enquiry_class(result)).increment(1);
        });
    }

    pub(crate) fn lag(&self, ms: i64) {
        self.registry.with(|| histogram!("qfrefund_step_lag_seconds").record(ms.max(0) as f64 / 1000.0));
    }

    pub(crate) fn settled(&self, state: &str, class: &str, age_ms: i64) {
        self.registry.with(|| {
            counter!("qfrefund_settled_total", "state" => state.to_owned(), "class" => class.to_owned()).increment(1);
            if state != "needs_review" {
                histogram!("qfrefund_time_to_final_seconds").record(age_ms.max(0) as f64 / 1000.0);
            }
        });
    }

    pub(crate) fn orphan_recovered(&self) {
        self.registry.with(|| counter!("qfrefund_orphans_recovered_total").increment(1));
    }

    pub(crate) fn fenced(&self) {
        self.registry.with(|| counter!("qfrefund_fence_rejections_total").increment(1));
    }

    pub(crate) fn rate_limited(&self) {
        self.registry.with(|| counter!("qfrefund_rate_limit_waits_total").increment(1));
    }

    pub(crate) fn step(&self) {
        self.registry.with(|| counter!("qfrefund_steps_total").increment(1));
    }

    /// This process's metrics and, when Redis answered, the ledger's gauges, in Prometheus' text
    /// format (the webhook deliverer's and the archiver's counts are read from their counters).
    pub fn render(&self, ledger: Option<&LedgerView>) -> String {
        self.registry.with(|| {
            let (w, r) = (&self.webhooks, &self.retention);
            let absolute: [(&'static str, u64); 8] = [
                ("qfrefund_webhooks_delivered_total", w.delivered.load(Ordering::Relaxed)),
                ("qfrefund_webhook_attempts_failed_total", w.failed_attempts.load(Ordering::Relaxed)),
                ("qfrefund_webhooks_given_up_total", w.gave_up.load(Ordering::Relaxed)),
                ("qfrefund_archived_total", r.archived.load(Ordering::Relaxed)),
                ("qfrefund_archive_removed_total", r.removed.load(Ordering::Relaxed)),
                ("qfrefund_tombstones_swept_total", r.tombstones_swept.load(Ordering::Relaxed)),
                ("qfrefund_summarised_total", r.summarised.load(Ordering::Relaxed)),
                ("qfrefund_summaries_expired_total", r.summaries_expired.load(Ordering::Relaxed)),
            ];
            for (name, v) in absolute {
                counter!(name).absolute(v);
            }
            metrics::gauge!("qfrefund_retention_backlog").set(r.backlog.load(Ordering::Relaxed) as f64);
        });
        self.registry.render(ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_answers_counted_by_call_and_class() {
        let m = Metrics::default();
        m.submitted(Duration::from_millis(3), &SubmitResult::NotSent("refused".into()));
        m.submitted(Duration::from_millis(70), &SubmitResult::Unknown("timeout".into()));
        m.settled("succeeded", "success", 1_500);
        let out = m.render(None);
        assert!(out.contains("qfrefund_qfpay_request_seconds_bucket{call=\"refund\",le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("qfrefund_qfpay_request_seconds_bucket{call=\"refund\",le=\"0.1\"} 2"), "{out}");
        assert!(out.contains("qfrefund_qfpay_request_seconds_count{call=\"refund\"} 2"), "{out}");
        assert!(out.contains("qfrefund_qfpay_answers_total{call=\"refund\",class=\"not_sent\"} 1"), "{out}");
        assert!(out.contains("qfrefund_qfpay_answers_total{call=\"refund\",class=\"no_answer\"} 1"), "{out}");
        assert!(out.contains("qfrefund_settled_total{state=\"succeeded\",class=\"success\"} 1"), "{out}");
        assert!(out.contains("qfrefund_time_to_final_seconds_bucket{le=\"2.5\"} 1"), "{out}");
        assert!(out.contains("qfrefund_webhooks_delivered_total 0"), "{out}");
        for line in out.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
