//! A worker's Prometheus metrics: what this process did (counters, latency histograms), plus the
//! ledger's gauges read from Redis at scrape time. Served on `metrics_listen` with `/healthz`.
//!
//! Hand-rolled (a few atomics and a mutex-guarded map) rather than a metrics crate: the set is
//! small and fixed, and labels never carry a refund id or anything secret.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) shared by every histogram: 5 ms to 10 min.
const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 600.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    total: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ =
                writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", self.counts[i].load(Ordering::Relaxed));
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {:.6}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// Everything a worker counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (state, respcd class) → refunds this worker took to a final state or needs_review.
    settled: Mutex<BTreeMap<(String, String), u64>>,
    submit_latency: Histogram,
    enquiry_latency: Histogram,
    /// How late a step was picked up after it was due (enquiry lag, and submit lag).
    step_lag: Histogram,
    /// From enqueue to a final state, for refunds this worker settled.
    time_to_final: Histogram,
    orphans_recovered: AtomicU64,
    fence_rejections: AtomicU64,
    rate_limit_waits: AtomicU64,
    steps: AtomicU64,
    pub(crate) webhooks: std::sync::Arc<crate::webhooks::WebhookCounters>,
    pub(crate) retention: std::sync::Arc<crate::retention::RetentionCounters>,
}

impl Metrics {
    pub(crate) fn submitted(&self, took: Duration) {
        self.submit_latency.observe(took);
    }

    pub(crate) fn enquired(&self, took: Duration) {
        self.enquiry_latency.observe(took);
    }

    pub(crate) fn lag(&self, ms: i64) {
        self.step_lag.observe(Duration::from_millis(ms.max(0) as u64));
    }

    pub(crate) fn settled(&self, state: &str, class: &str, age_ms: i64) {
        if let Ok(mut m) = self.settled.lock() {
            *m.entry((state.to_owned(), class.to_owned())).or_default() += 1;
        }
        if state != "needs_review" {
            self.time_to_final.observe(Duration::from_millis(age_ms.max(0) as u64));
        }
    }

    pub(crate) fn orphan_recovered(&self) {
        self.orphans_recovered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fenced(&self) {
        self.fence_rejections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn step(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// This process' metrics in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let _ = writeln!(
            out,
            "# HELP qfrefund_settled_total Refunds this worker settled, by state and the respcd class of QFPay's last answer."
        );
        let _ = writeln!(out, "# TYPE qfrefund_settled_total counter");
        if let Ok(m) = self.settled.lock() {
            for ((state, class), n) in m.iter() {
                let _ = writeln!(out, "qfrefund_settled_total{{state=\"{state}\",class=\"{class}\"}} {n}");
            }
        }
        for (name, help, h) in [
            ("qfrefund_qfpay_request_seconds", "QFPay request latency.", None),
            (
                "qfrefund_step_lag_seconds",
                "How late a due step (submit or enquiry) was picked up.",
                Some(&self.step_lag),
            ),
            (
                "qfrefund_time_to_final_seconds",
                "Enqueue to final state, for refunds this worker settled.",
                Some(&self.time_to_final),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            match h {
                Some(h) => h.render(out, name, ""),
                None => {
                    self.submit_latency.render(out, name, "call=\"refund\"");
                    self.enquiry_latency.render(out, name, "call=\"query\"");
                }
            }
        }
        counter(
            out,
            "qfrefund_orphans_recovered_total",
            "Refunds found in submitting after their holder's lease expired (a crashed or stalled worker): enquired, never resent.",
            self.orphans_recovered.load(Ordering::Relaxed),
        );
        counter(
            out,
            "qfrefund_fence_rejections_total",
            "Outcomes dropped because another worker had taken the refund over.",
            self.fence_rejections.load(Ordering::Relaxed),
        );
        counter(
            out,
            "qfrefund_rate_limit_waits_total",
            "Steps put off by the merchant's rate limit.",
            self.rate_limit_waits.load(Ordering::Relaxed),
        );
        counter(out, "qfrefund_steps_total", "Steps taken (deliveries handled).", self.steps.load(Ordering::Relaxed));
        let w = &self.webhooks;
        counter(
            out,
            "qfrefund_webhooks_delivered_total",
            "Webhooks accepted (2xx).",
            w.delivered.load(Ordering::Relaxed),
        );
        counter(
            out,
            "qfrefund_webhook_attempts_failed_total",
            "Webhook attempts that failed (each is retried until the limit).",
            w.failed_attempts.load(Ordering::Relaxed),
        );
        counter(
            out,
            "qfrefund_webhooks_given_up_total",
            "Webhooks given up by this worker.",
            w.gave_up.load(Ordering::Relaxed),
        );
        let r = &self.retention;
        counter(
            out,
            "qfrefund_archived_total",
            "Final refunds this worker wrote to the archive.",
            r.archived.load(Ordering::Relaxed),
        );
        counter(
            out,
            "qfrefund_archive_removed_total",
            "Archived refunds this worker removed from Redis (a tombstone left for each).",
            r.removed.load(Ordering::Relaxed),
        );
        counter(
            out,
            "qfrefund_tombstones_swept_total",
            "Tombstones past idempotency_retention this worker swept.",
            r.tombstones_swept.load(Ordering::Relaxed),
        );
        counter(
            out,
            "qfrefund_summarised_total",
            "Final refunds past summary_after this worker archived early, a summary and tombstones left in Redis.",
            r.summarised.load(Ordering::Relaxed),
        );
        counter(
            out,
            "qfrefund_summaries_expired_total",
            "Summaries past the retention this worker removed (their tombstones stay).",
            r.summaries_expired.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP qfrefund_retention_backlog Final refunds past the retention still in Redis (shards this worker serves).\n\
             # TYPE qfrefund_retention_backlog gauge\nqfrefund_retention_backlog {}",
            r.backlog.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_render_as_prometheus_expects() {
        let m = Metrics::default();
        m.submitted(Duration::from_millis(3));
        m.submitted(Duration::from_millis(70));
        m.settled("succeeded", "success", 1_500);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("qfrefund_qfpay_request_seconds_bucket{call=\"refund\",le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("qfrefund_qfpay_request_seconds_bucket{call=\"refund\",le=\"0.1\"} 2"), "{out}");
        assert!(out.contains("qfrefund_qfpay_request_seconds_count{call=\"refund\"} 2"), "{out}");
        assert!(out.contains("qfrefund_settled_total{state=\"succeeded\",class=\"success\"} 1"), "{out}");
        assert!(out.contains("qfrefund_time_to_final_seconds_bucket{le=\"2.5\"} 1"), "{out}");
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
