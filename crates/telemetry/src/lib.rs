//! qfrefund's Prometheus metrics, in one place, through the `metrics` crate and its Prometheus
//! exporter: a process's own series (counters, histograms), `process_*` (metrics-process) and
//! `qfrefund_build_info`, and the ledger's gauges, read from Redis at scrape time and rendered
//! afresh each time (never a stale value while Redis is down: `qfrefund_ledger_up` says 0 and the
//! process's own series are still served).
//!
//! Each [`Registry`] holds its own recorder (no global one), so two workers in one process, or a
//! worker and an API, count apart. Label values are bounded: route templates, never ids;
//! [`method_label`] for HTTP methods.

pub mod traces;

use std::collections::BTreeMap;

use ledger::store::memory::MemoryReport;
use ledger::store::merchants::Unserved;
use ledger::{Ledger, Stats};
use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Upper bounds (seconds) of every histogram: 5 ms to 10 min.
pub const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 600.0];

/// The content type of what [`Registry::render`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// One component's metrics (a worker's, or an API's).
pub struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry for `component` (`worker`, `api`), with its build info and the process
    /// metrics described; `describe` adds the component's own series' help.
    pub fn new(component: &'static str, describe: impl FnOnce()) -> Self {
        let builder = PrometheusBuilder::new();
        let builder = builder.set_buckets(&BUCKETS).unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let registry = Self { recorder, handle, process: metrics_process::Collector::default() };
        registry.with(|| {
            registry.process.describe();
            describe_gauge!("qfrefund_build_info", "Always 1: the version and component of this process.");
            gauge!("qfrefund_build_info", "version" => env!("CARGO_PKG_VERSION"), "component" => component).set(1.0);
            describe();
        });
        registry
    }

    /// Runs `f` with this registry as the recorder: `metrics::counter!` and friends inside it
    /// count here.
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// The Prometheus text: this process's series, then the ledger's gauges when they could be
    /// read (`qfrefund_ledger_up` 1), or `qfrefund_ledger_up 0` alone when not.
    pub fn render(&self, ledger: Option<&LedgerView>) -> String {
        self.with(|| self.process.collect());
        let mut out = self.handle.render();
        out.push_str(&ledger_gauges(ledger));
        out
    }
}

/// An HTTP method as a label: one of the methods the API routes, else `other` (so an unknown
/// method cannot grow the series without bound).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// What a scrape reads of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerView {
    pub stats: Stats,
    pub memory: Option<MemoryReport>,
    pub merchants: Option<(Vec<String>, Unserved)>,
}

impl LedgerView {
    /// Reads the gauges; `None` when Redis does not answer.
    pub async fn read(ledger: &Ledger) -> Option<Self> {
        let stats = ledger.stats().await.ok()?;
        let memory = ledger.memory().await.ok();
        let merchants =
            match (ledger.served_merchants().await, ledger.unserved_refunds(ledger::merchants::METRICS_SCAN).await) {
                (Ok(served), Ok(unserved)) => Some((served, unserved)),
                _ => None,
            };
        Some(Self { stats, memory, merchants })
    }
}

/// The ledger's gauges, in a recorder of their own made for this scrape.
fn ledger_gauges(view: Option<&LedgerView>) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe_gauge!(
            "qfrefund_ledger_up",
            "1 when this scrape read the ledger's gauges from Redis, 0 when it could not."
        );
        gauge!("qfrefund_ledger_up").set(if view.is_some() { 1.0 } else { 0.0 });
        let Some(v) = view else { return };
        let s = &v.stats;
        describe_gauge!("qfrefund_refunds", "Refunds in each state (final states count every refund ever settled).");
        for (state, n) in &s.by_state {
            gauge!("qfrefund_refunds", "state" => state.to_string()).set(*n as f64);
        }
        let plain: [(&'static str, &'static str, f64); 7] = [
            ("qfrefund_due_backlog", "Refunds due now that no worker has picked up yet.", s.due_now as f64),
            ("qfrefund_scheduled", "Refunds waiting in the due-index (now or later).", s.due_total as f64),
            (
                "qfrefund_oldest_open_seconds",
                "How long the oldest non-final refund has been in its current state.",
                s.oldest_open_age_ms.unwrap_or(0) as f64 / 1000.0,
            ),
            ("qfrefund_paused_merchants", "Merchants whose submits are paused.", s.paused.len() as f64),
            (
                "qfrefund_webhooks_failed",
                "Webhook deliveries given up (qfrefund list --webhook-failed).",
                s.webhooks_failed as f64,
            ),
            ("qfrefund_webhooks_retrying", "Webhook deliveries waiting for a retry.", s.webhooks_retrying as f64),
            ("qfrefund_workers", "Workers whose heartbeat holds now (qfrefund workers).", s.live_workers as f64),
        ];
        for (name, help, value) in plain {
            describe_gauge!(name, help);
            gauge!(name).set(value);
        }
        if let Some(m) = &v.memory {
            describe_gauge!("qfrefund_redis_used_memory_bytes", "Redis used_memory, per primary.");
            describe_gauge!("qfrefund_redis_maxmemory_bytes", "Redis maxmemory, per primary (0: no limit).");
            for p in &m.primaries {
                gauge!("qfrefund_redis_used_memory_bytes", "primary" => p.primary.clone()).set(p.used_memory as f64);
                gauge!("qfrefund_redis_maxmemory_bytes", "primary" => p.primary.clone()).set(p.maxmemory as f64);
            }
            describe_gauge!(
                "qfrefund_redis_bytes_per_refund",
                "Redis used_memory (every primary) per refund record held."
            );
            gauge!("qfrefund_redis_bytes_per_refund").set(m.bytes_per_refund.unwrap_or(0.0));
            describe_gauge!("qfrefund_tombstones", "Tombstones of archived refunds and payments.");
            gauge!("qfrefund_tombstones").set(m.tombstones as f64);
        }
        if let Some((served, unserved)) = &v.merchants {
            describe_gauge!(
                "qfrefund_unserved_refunds",
                "Refunds waiting for a merchant no live worker holds credentials for (on /metrics counted among the earliest-due 5000; qfrefund stats counts all)."
            );
            gauge!("qfrefund_unserved_refunds").set(unserved.refunds.values().sum::<u64>() as f64);
            let per: &BTreeMap<String, u64> = &unserved.refunds;
            for (m, n) in per {
                gauge!("qfrefund_unserved_refunds", "merchant" => m.clone()).set(*n as f64);
            }
            describe_gauge!("qfrefund_served_merchants", "Merchants live workers hold credentials for.");
            gauge!("qfrefund_served_merchants").set(served.len() as f64);
        }
    });
    handle.render()
}

/// Describes a component's counters and histograms (seconds), and registers those not in
/// `labelled` at zero, so that a series is exported before its first event (as Prometheus
/// expects of a counter).
pub fn describe(
    counters: &[(&'static str, &'static str)],
    histograms: &[(&'static str, &'static str)],
    labelled: &[&str],
) {
    for (name, help) in counters {
        describe_counter!(*name, *help);
        if !labelled.contains(name) {
            let _ = metrics::counter!(*name);
        }
    }
    for (name, help) in histograms {
        describe_histogram!(*name, metrics::Unit::Seconds, *help);
        if !labelled.contains(name) {
            let _ = metrics::histogram!(*name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_serves_its_own_series_build_info_and_process_metrics_without_the_ledger() {
        let r = Registry::new("worker", || {
            describe(&[("qfrefund_steps_total", "Steps taken."), ("qfrefund_fences_total", "Fences.")], &[], &[])
        });
        r.with(|| metrics::counter!("qfrefund_steps_total").increment(3));
        let text = r.render(None);
        assert!(text.contains("qfrefund_steps_total 3"), "{text}");
        assert!(text.contains("qfrefund_fences_total 0"), "exported before its first event: {text}");
        assert!(text.contains("qfrefund_build_info{version=\""), "{text}");
        assert!(text.contains("component=\"worker\"} 1"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("qfrefund_ledger_up 0"), "{text}");
        assert!(!text.contains("qfrefund_refunds"), "no stale ledger gauge: {text}");
        // Another registry counts apart.
        let other = Registry::new("api", || {});
        assert!(!other.render(None).contains("qfrefund_steps_total"));
    }

    #[test]
    fn the_ledger_gauges_are_rendered_fresh_from_what_a_scrape_read() {
        use ledger::store::memory::PrimaryMemory;
        let stats = Stats {
            by_state: vec![(ledger::State::NeedsReview, 2), (ledger::State::Queued, 5)],
            oldest_open_age_ms: Some(1_500),
            due_total: 9,
            due_now: 4,
            paused: [("shop".to_owned(), "config".to_owned())].into(),
            webhooks_failed: 1,
            webhooks_retrying: 0,
            live_workers: 3,
        };
        let memory = MemoryReport {
            primaries: vec![PrimaryMemory { primary: "h:1".into(), used_memory: 81, maxmemory: 100 }],
            refunds: 5,
            tombstones: 7,
            bytes_per_refund: Some(16.2),
        };
        let unserved = Unserved { refunds: [("ghost".to_owned(), 2)].into(), truncated: false };
        let view = LedgerView { stats, memory: Some(memory), merchants: Some((vec!["default".into()], unserved)) };
        let r = Registry::new("api", || {});
        let text = r.render(Some(&view));
        for line in [
            "qfrefund_ledger_up 1",
            "qfrefund_refunds{state=\"needs_review\"} 2",
            "qfrefund_due_backlog 4",
            "qfrefund_oldest_open_seconds 1.5",
            "qfrefund_paused_merchants 1",
            "qfrefund_workers 3",
            "qfrefund_redis_used_memory_bytes{primary=\"h:1\"} 81",
            "qfrefund_redis_maxmemory_bytes{primary=\"h:1\"} 100",
            "qfrefund_tombstones 7",
            "qfrefund_unserved_refunds{merchant=\"ghost\"} 2",
            "qfrefund_served_merchants 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // The next scrape, with Redis down, says so and shows none of them.
        let down = r.render(None);
        assert!(down.contains("qfrefund_ledger_up 0") && !down.contains("qfrefund_refunds"), "{down}");
    }

    #[test]
    fn histograms_have_the_shared_buckets() {
        let r = Registry::new("worker", || {});
        r.with(|| metrics::histogram!("qfrefund_qfpay_request_seconds", "call" => "refund").record(0.004));
        let text = r.render(None);
        assert!(text.contains("qfrefund_qfpay_request_seconds_bucket{call=\"refund\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("qfrefund_qfpay_request_seconds_count{call=\"refund\"} 1"), "{text}");
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("BREW"), "other");
    }
}
