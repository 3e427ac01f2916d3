//! The qfrefund HTTP API: for platforms not written in Rust (PHP, Java, Node order-cancel handlers),
//! operators, and QFPay's notifications. A thin edge over the ledger: every answer is read from, and
//! every change written to, the same Redis records the workers use; there is no second source of
//! truth.
//!
//! - `POST /v1/refunds` and the look-ups need a bearer token (`read` < `produce` < `operate`);
//!   `401` when it is missing or unknown, `403` when its role is too small.
//! - `/healthz`, `/readyz`, `/openapi.json` and `/metrics` need none; `/v1/qfpay/notify` is
//!   authenticated by QFPay's own signature over the raw body.
//! - Bodies are limited in size, requests in time; the OpenAPI document is generated from the
//!   handlers themselves (utoipa), so it cannot drift from the routes.

mod approvals;
mod archived;
mod auth;
mod bulk;
pub mod console;
mod contract;
mod error;
mod export;
mod fleet;
mod history;
mod hooks;
mod metrics;
mod notify;
mod operate;
mod refunds;
mod scoped;
mod search;
mod strict;

use std::sync::Arc;
use std::time::Duration;

pub use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use ledger::Ledger;
use qfpay::{ClientKey, SignAlg};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use auth::BearerScheme;
pub use auth::{ApiToken, Role};
pub use error::ApiError;
pub use metrics::Metrics;

/// A merchant whose QFPay notifications this API accepts: its key verifies their signature.
#[derive(Clone)]
pub struct NotifyKey {
    pub merchant: String,
    pub key: ClientKey,
    pub alg: SignAlg,
}

impl std::fmt::Debug for NotifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyKey").field("merchant", &self.merchant).finish_non_exhaustive()
    }
}

/// How the API runs.
#[derive(Clone)]
pub struct ApiConfig {
    pub tokens: Vec<ApiToken>,
    pub notify_keys: Vec<NotifyKey>,
    /// Largest request body accepted (bytes).
    pub body_limit: usize,
    /// Longest a request may take before it is answered `408`.
    pub request_timeout: Duration,
    /// Public base URL for the `url` of each refund (default: relative URLs).
    pub base_url: String,
    /// Merchants the configuration knows; a refund for another is refused (`422`, field
    /// `merchant`) unless a live worker serves it.
    pub merchants: Vec<String>,
    /// The workers' archive setting (`file:///path`): an archived refund is answered from it
    /// when this process can read it, else from its tombstone.
    pub archive: Option<String>,
    /// The most (minor units, summed) one operator may retry or cancel in one bulk action;
    /// `None`: no limit.
    pub bulk_max_txamt: Option<u64>,
    /// Resolving a refund as succeeded, and a bulk action above `bulk_max_txamt`, need a second
    /// operator's approval (see `approvals`).
    pub four_eyes: bool,
    /// Who the console believes when a trusted authenticating proxy names the person.
    pub console_proxy: ConsoleProxy,
    /// `/metrics` is served on a listener of its own (see [`apps`]): the API's port answers 404.
    pub metrics_elsewhere: bool,
}

/// A trusted authenticating proxy in front of the console.
#[derive(Debug, Clone, Default)]
pub struct ConsoleProxy {
    /// The proxy's addresses: `X-Forwarded-User` / `X-Forwarded-Email` from any other address
    /// are ignored. Empty: no proxy sign-in.
    pub from: Vec<std::net::IpAddr>,
    /// The people (as the proxy names them) who may act; everyone else it names reads only.
    pub operators: Vec<String>,
}

impl std::fmt::Debug for ApiConfig {
    // Tokens and notification keys print as their own types do; the archive's URL may hold a
    // database password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("tokens", &self.tokens)
            .field("notify_keys", &self.notify_keys)
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("base_url", &self.base_url)
            .field("merchants", &self.merchants)
            .field("archive", &self.archive.as_deref().map(archive::postgres::redact))
            .field("bulk_max_txamt", &self.bulk_max_txamt)
            .field("four_eyes", &self.four_eyes)
            .field("console_proxy", &self.console_proxy)
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            notify_keys: Vec::new(),
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            base_url: String::new(),
            merchants: Vec::new(),
            archive: None,
            bulk_max_txamt: Some(1_000_000),
            four_eyes: true,
            console_proxy: ConsoleProxy::default(),
            metrics_elsewhere: false,
        }
    }
}

/// Shared by every request.
pub(crate) struct AppState {
    pub ledger: Ledger,
    pub config: ApiConfig,
    /// The archive `config.archive` names, if any.
    pub archive: Option<archive::Sink>,
    pub metrics: Metrics,
}

pub(crate) type Shared = Arc<AppState>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "qfrefund",
        description = "Durable QFPay refunds: at most one refund per (merchant, out_trade_no). Every change goes through the same ledger the workers use; outcomes are also published on the outcome stream.",
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "refunds", description = "Enqueue refunds and follow them"),
        (name = "operations", description = "What operators do to refunds that need a person"),
        (name = "qfpay", description = "QFPay's asynchronous notifications"),
        (name = "health", description = "Probes and metrics"),
    )
)]
struct ApiDoc;

/// The routes and the OpenAPI document describing exactly them.
fn routes() -> (Router<Shared>, serde_json::Value) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(refunds::create, search::list))
        .routes(routes!(export::csv))
        .routes(routes!(refunds::get_one))
        .routes(routes!(operate::retry))
        .routes(routes!(operate::cancel))
        .routes(routes!(operate::resolve))
        .routes(routes!(operate::enquire))
        .routes(routes!(scoped::get_one))
        .routes(routes!(scoped::retry))
        .routes(routes!(scoped::cancel))
        .routes(routes!(scoped::resolve))
        .routes(routes!(scoped::enquire))
        .routes(routes!(history::events))
        .routes(routes!(history::attempts))
        .routes(routes!(fleet::stats))
        .routes(routes!(fleet::audit))
        .routes(routes!(fleet::workers))
        .routes(routes!(fleet::pause))
        .routes(routes!(fleet::resume))
        .routes(routes!(bulk::bulk))
        .routes(routes!(approvals::list))
        .routes(routes!(approvals::approve))
        .routes(routes!(approvals::reject))
        .routes(routes!(hooks::failed))
        .routes(routes!(hooks::redeliver))
        .routes(routes!(notify::notify))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics::metrics))
        .split_for_parts();
    (router, contract::apply(doc))
}

/// The OpenAPI 3 document of this API (what `GET /openapi.json` serves).
pub fn openapi() -> serde_json::Value {
    routes().1
}

/// The whole application: routes, auth, limits, timeouts.
pub fn app(ledger: Ledger, config: ApiConfig) -> Router {
    apps(ledger, config).0
}

/// The application and, for a metrics listener of its own, a router of `/metrics` alone that
/// counts the same traffic (set `ApiConfig::metrics_elsewhere` to take `/metrics` off the first).
pub fn apps(ledger: Ledger, config: ApiConfig) -> (Router, Router) {
    let (router, doc) = routes();
    let doc = Arc::new(doc);
    let timeout = config.request_timeout;
    let limit = config.body_limit;
    // One sink for the process (a database archive keeps its connection).
    let archive = config.archive.as_deref().and_then(|a| match archive::Sink::from_setting(a) {
        Ok(sink) => Some(sink),
        Err(e) => {
            tracing::warn!(error = %e, "the archive setting is unusable: archived refunds are answered from their tombstones");
            None
        }
    });
    let state = Arc::new(AppState { ledger, config, archive, metrics: Metrics::default() });
    let metrics_only = Router::new()
        .route(
            "/metrics",
            get(|axum::extract::State(st): axum::extract::State<Shared>| async move { metrics::serve(&st).await }),
        )
        .with_state(state.clone());
    let main = router
        .merge(console::router())
        .route("/openapi.json", get(move || async move { axum::Json(doc.as_ref().clone()) }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(axum::middleware::from_fn(trace_request))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |req, next| time_limit(timeout, req, next)))
        .layer(axum::middleware::from_fn(strict::contract))
        .with_state(state);
    (main, metrics_only)
}

/// The trace context a refund created by this request is stored with: this request's span when
/// traces are exported, else the caller's `traceparent` as it came.
#[derive(Clone, Debug, Default)]
pub struct TraceParent(pub Option<String>);

/// Each request in a span of its own, joined to the caller's trace (a W3C `traceparent` header),
/// whose trace id its log lines carry.
async fn trace_request(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument;
    let incoming = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| ledger::producer::valid_traceparent(v))
        .map(str::to_owned);
    let span =
        tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), trace_id = tracing::field::Empty);
    if let Some(id) = incoming.as_deref().and_then(|tp| qfrefund_telemetry::traces::join_trace(&span, tp)) {
        span.record("trace_id", tracing::field::display(&id));
    }
    let stored = qfrefund_telemetry::traces::traceparent(&span).or(incoming);
    req.extensions_mut().insert(TraceParent(stored));
    next.run(req).instrument(span).await
}

/// Answers a request that ran out of time: `408` for a read; for a write, which may have been
/// applied while we waited, `504 outcome_unknown` (retry the same request).
async fn time_limit(
    limit: Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let read = matches!(req.method(), &axum::http::Method::GET | &axum::http::Method::HEAD);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) if read => axum::http::StatusCode::REQUEST_TIMEOUT.into_response(),
        Err(_) => ApiError::outcome_unknown("the request ran out of time").into_response(),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer's address is the console's to check a trusted proxy by.
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The process is up (no dependency checked: for liveness probes).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// A refund can be written now: Redis answers *and* takes writes (a tiny write probe; Redis at
/// `maxmemory`, read-only or failing to persist answers `PING` but refuses every enqueue).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Redis takes writes: refunds can be enqueued now", body = String),
        (status = 503, description = "Redis does not answer or refuses writes (e.g. OOM at maxmemory)", body = error::ErrorBody),
    )
)]
async fn readyz(axum::extract::State(st): axum::extract::State<Shared>) -> Result<&'static str, ApiError> {
    match st.ledger.writable().await {
        Ok(()) => Ok("ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: Redis does not take writes");
            Err(ApiError::Unavailable(format!("not ready: Redis does not take writes: {e}")))
        }
    }
}
