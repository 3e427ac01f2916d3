//! A refund enqueued with its producer's W3C trace context: the worker's spans for it (the attempt
//! and, in it, the claim, the QFPay call, the transition; the webhook delivery of its outcome)
//! join the producer's trace, under the producer's span, and the worker's log lines for it carry
//! the trace id. Exported to the SDK's in-memory exporter.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, Worker};
use ledger::{NewRefund, State};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use qfpay_sim::args::generated_syssn;
use testkit::Faults;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refunds_worker_spans_join_the_producers_trace_and_its_logs_carry_the_trace_id() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || writer.clone()))
        .with(qfrefund_telemetry::traces::layer(&provider))
        .init();

    let env = Env::start("traces", 2, Faults::default()).await;
    let mut refund = NewRefund::new(&generated_syssn(1), "RF-TR1", 100);
    refund.traceparent = Some(format!("00-{TRACE}-{PRODUCER_SPAN}-01"));
    env.ledger.enqueue(refund).await.unwrap();
    // The same request under another trace is a duplicate, and keeps the first trace.
    let mut again = NewRefund::new(&generated_syssn(1), "RF-TR1", 100);
    again.traceparent = Some("00-11111111111111111111111111111111-2222222222222222-01".into());
    assert!(matches!(env.ledger.enqueue(again).await.unwrap(), ledger::Enqueued::Duplicate(_)));
    // A malformed one is no reason to refuse a refund: it is not kept.
    let mut odd = NewRefund::new(&generated_syssn(2), "RF-TR2", 100);
    odd.traceparent = Some("not-a-trace".into());
    env.ledger.enqueue(odd).await.unwrap();
    assert_eq!(env.ledger.get("default", "RF-TR2").await.unwrap().unwrap().traceparent, None);

    let stored = env.ledger.get("default", "RF-TR1").await.unwrap().unwrap().traceparent;
    assert_eq!(stored.as_deref(), Some(format!("00-{TRACE}-{PRODUCER_SPAN}-01").as_str()), "kept with the refund");
    let (url, got) = common::hook_receiver().await;
    let w = Worker::start(common::with_hook(env.config.clone(), &url, "traces"));
    env.wait_for(&["RF-TR1".into(), "RF-TR2".into()], &[State::Succeeded], Duration::from_secs(20)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "both outcomes delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.stop().await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let ours: Vec<_> = spans.iter().filter(|s| s.span_context.trace_id().to_string() == TRACE).collect();
    let named = |name: &str| {
        ours.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!("no {name} span in the producer's trace: {:?}", ours.iter().map(|s| &s.name).collect::<Vec<_>>())
        })
    };
    let attempt = named("attempt");
    assert_eq!(attempt.parent_span_id.to_string(), PRODUCER_SPAN, "the worker's attempt is the producer span's child");
    for child in ["claim", "qfpay.refund", "transition"] {
        assert_eq!(named(child).parent_span_id, attempt.span_context.span_id(), "{child} is a step of the attempt");
    }
    // Its outcome's delivery is in the trace too, under the producer's span.
    let hook = named("webhook");
    assert_eq!(hook.parent_span_id.to_string(), PRODUCER_SPAN, "the webhook delivery joins the producer's trace");
    // The other refund, with no trace of its own, is in another trace.
    assert_eq!(ours.iter().filter(|s| s.name == "attempt").count(), 1);
    assert!(spans.iter().filter(|s| s.name == "attempt").count() >= 2);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line =
        text.lines().find(|l| l.contains("RF-TR1") && l.contains("submitted")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!("trace_id={TRACE}")), "{line}");
}
