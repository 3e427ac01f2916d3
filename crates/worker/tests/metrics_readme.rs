//! The metrics reference (docs/metrics.md) and what a worker's `/metrics` serves agree.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Env, Worker};
use testkit::Faults;

/// Every metric docs/metrics.md names (except the API's own) is on a worker's
/// `/metrics`, the webhook gauges included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_readme_lists_is_exported_by_a_worker() {
    let env = Env::start("hooks-gauges", 1, Faults::default()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = env.config.clone();
    config.metrics_listen = Some(format!("127.0.0.1:{port}"));
    let w = Worker::start(config);
    // One refund through, so that the series labelled by what happened have a value.
    env.enqueue(1, "RF-MR1", 100).await;
    env.wait_for(&["RF-MR1".into()], &[ledger::State::Succeeded], Duration::from_secs(20)).await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md")).unwrap();
    let section = readme.as_str();
    let listed: std::collections::BTreeSet<&str> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|s| s.split(['{', '=']).next())
        .filter(|s| s.starts_with("qfrefund_") && !s.starts_with("qfrefund_api_"))
        .collect();
    assert!(listed.contains("qfrefund_webhooks_retrying"), "{listed:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            Ok(r) if r.status().is_success() => break r.text().await.unwrap(),
            _ => assert!(std::time::Instant::now() < deadline, "no /metrics"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let missing: Vec<_> = listed.iter().filter(|m| !text.contains(&format!("# TYPE {m} "))).collect();
    assert!(missing.is_empty(), "listed in docs/metrics.md, not exported: {missing:?}");
    assert!(text.contains("\nqfrefund_webhooks_failed 0\n"), "{text}");
    assert!(text.contains("\nqfrefund_webhooks_retrying 0\n"), "{text}");
    assert!(text.contains("\nqfrefund_ledger_up 1\n"), "{text}");
    assert!(text.contains("qfrefund_qfpay_answers_total{call=\"refund\",class=\"success\"} 1"), "{text}");
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(text.contains("qfrefund_build_info{"), "{text}");
    w.stop().await;
}
