//! Logs and traces. Logs go to stderr (`pretty`, coloured only on a terminal, or `json`);
//! OpenTelemetry traces are exported over OTLP (HTTP, protobuf) when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, named by
//! `OTEL_SERVICE_NAME` (default `qfrefund-<component>`). A refund carries its producer's W3C
//! `traceparent`, so the spans of every process that works on it join the producer's trace
//! ([`join_trace`]), and their log lines carry its `trace_id`.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Keeps the trace exporter; dropping it sends what is still buffered.
#[must_use = "dropping it at once stops the trace exporter"]
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

fn set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// Set once a layer exporting spans is installed (see [`active`]).
static ACTIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports spans (by [`init`] from the environment, or a [`layer`]): work
/// done only to place a span in its trace is skipped otherwise.
pub fn active() -> bool {
    ACTIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether traces are exported (an OTLP endpoint is configured).
pub fn exporting() -> bool {
    set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
}

/// The tracer provider the environment asks for: OTLP over HTTP when an endpoint is set.
fn provider(component: &str) -> Result<Option<SdkTracerProvider>, String> {
    if !exporting() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: the OTLP exporter cannot start: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(format!("qfrefund-{component}"));
    }
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build()))
}

/// Installs the process's logging and, when configured, trace export. `filter` is the default
/// `RUST_LOG`; `ansi` colours pretty logs.
pub fn init(component: &str, filter: &str, format: LogFormat, ansi: bool) -> Result<Guard, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Pretty => fmt.with_ansi(ansi).boxed(),
    };
    let provider = provider(component)?;
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("qfrefund")));
    tracing_subscriber::registry().with(filter).with(fmt).with(otel).init();
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
        ACTIVE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(Guard(provider))
}

/// Makes the trace of `traceparent` (a W3C trace context) the parent of `span`; a malformed
/// value is ignored. Returns the trace id, for the span's `trace_id` field.
pub fn join_trace(span: &tracing::Span, traceparent: &str) -> Option<String> {
    let carrier: HashMap<String, String> = [("traceparent".to_owned(), traceparent.to_owned())].into();
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    let _ = span.set_parent(cx);
    Some(sc.trace_id().to_string())
}

/// The W3C `traceparent` of `span`, when it is part of a trace being exported.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// A layer exporting spans to `provider` (for tests with an in-memory exporter).
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    ACTIVE.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing_opentelemetry::layer().with_tracer(provider.tracer("qfrefund"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_joins_the_trace_of_a_traceparent() {
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber = tracing_subscriber::registry().with(layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            // Joined before it is first entered (a span's parent is fixed once it has begun).
            let span = tracing::info_span!("refund");
            let id = join_trace(&span, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
            assert_eq!(id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
            span.in_scope(|| tracing::info_span!("child").in_scope(|| {}));
            drop(span);
        });
        let spans = exporter.get_finished_spans().unwrap();
        let refund = spans.iter().find(|s| s.name == "refund").unwrap();
        assert_eq!(refund.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(refund.parent_span_id.to_string(), "00f067aa0ba902b7");
    }
}
