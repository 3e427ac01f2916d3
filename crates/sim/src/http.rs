//! The HTTP face of the simulator: QFPay's two paths, the admin paths under `/_sim/`, and a
//! serve loop that can drop a connection on purpose (the "apply then drop" fault needs the socket
//! closed with no answer at all, which a handler alone cannot do).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use qfpay::time::unix_now_ms;
use qfpay::{Params, SignAlg};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::admin::{add_payments, audit, get_faults, patch_faults, set_clock, stats};
use crate::bank::{Apply, Bank, Merchant, PaymentSeed};
use crate::faults::{Faults, Rng};

/// Everything a simulator starts with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub merchants: Vec<Merchant>,
    pub payments: Vec<PaymentSeed>,
    pub faults: Faults,
    /// Seed of the fault generator.
    pub seed: u64,
    /// Refuse refunds in 23:30–00:30 (UTC+8) with `1265`, as QFPay does.
    pub quiet_window: bool,
}

pub(crate) struct Shared {
    bank: Mutex<Bank>,
    faults: Mutex<Faults>,
    rng: Mutex<Rng>,
    /// Added to the real clock: lets a test move the simulator into the nightly window.
    pub(crate) clock_offset_ms: AtomicI64,
    paused: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn now_ms(&self) -> i64 {
        unix_now_ms() + self.clock_offset_ms.load(Ordering::Relaxed)
    }
    pub(crate) fn bank(&self) -> MutexGuard<'_, Bank> {
        self.bank.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn faults(&self) -> Faults {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn draw(&self, p: f64) -> bool {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).chance(p)
    }
    pub(crate) fn set_faults(&self, faults: Faults) -> Result<(), String> {
        faults.validate()?;
        self.paused.send_replace(faults.paused);
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
        Ok(())
    }
    fn count_fault(&self, name: &'static str) {
        *self.bank().stats.faults.entry(name).or_default() += 1;
    }
    /// Holds a request while the simulator is paused (a QFPay that accepts and never answers).
    async fn wait_unpaused(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|paused| !*paused).await;
    }
}

/// A running simulator. Dropping it stops the server and closes every connection.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// Starts the simulator on `listener` (bind port 0 for a free one).
    pub fn start(config: SimConfig, listener: TcpListener) -> anyhow::Result<Self> {
        config.faults.validate().map_err(anyhow::Error::msg)?;
        let addr = listener.local_addr()?;
        let mut bank = Bank::new(config.merchants, config.quiet_window);
        bank.add_payments(config.payments, unix_now_ms()).map_err(anyhow::Error::msg)?;
        let shared = Arc::new(Shared {
            bank: Mutex::new(bank),
            faults: Mutex::new(config.faults),
            rng: Mutex::new(Rng::new(config.seed)),
            clock_offset_ms: AtomicI64::new(0),
            paused: watch::channel(false).0,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, router(shared.clone()), stop_rx));
        Ok(Self { addr, shared, stop, task })
    }

    /// Binds `127.0.0.1:0` and starts.
    pub async fn start_local(config: SimConfig) -> anyhow::Result<Self> {
        Self::start(config, TcpListener::bind("127.0.0.1:0").await?)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for a QFPay client, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The audit (same document as `GET /_sim/audit`).
    pub fn audit(&self) -> serde_json::Value {
        let now = self.shared.now_ms();
        self.shared.bank().audit(now)
    }

    /// Request and fault counters (same document as `GET /_sim/stats`).
    pub fn stats(&self) -> serde_json::Value {
        serde_json::to_value(&self.shared.bank().stats).unwrap_or_default()
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) -> Result<(), String> {
        self.shared.set_faults(faults)
    }

    /// The current fault settings.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Moves the simulator's clock by `offset_ms` from real time (for the nightly-window rule).
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.shared.clock_offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    pub fn add_payments(&self, payments: Vec<PaymentSeed>) -> Result<usize, String> {
        let now = self.shared.now_ms();
        self.shared.bank().add_payments(payments, now)
    }

    /// Stops accepting, closes connections and waits for the server task.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The per-connection switch a handler pulls to close its connection without answering.
#[derive(Clone)]
struct ConnKill(Arc<Notify>);

async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let kill = Arc::new(Notify::new());
                let app = app.clone();
                let conn_kill = ConnKill(kill.clone());
                let svc = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(conn_kill.clone());
                    app.clone().oneshot(req)
                });
                conns.spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(svc));
                    tokio::select! {
                        _ = conn => {}
                        () = kill.notified() => {} // dropping `conn` closes the socket, no answer sent
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    conns.shutdown().await;
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/trade/v1/refund", post(refund))
        .route("/trade/v1/query", post(query))
        .route("/_sim/audit", get(audit))
        .route("/_sim/stats", get(stats))
        .route("/_sim/faults", get(get_faults).post(patch_faults))
        .route("/_sim/payments", post(add_payments))
        .route("/_sim/clock", post(set_clock))
        .route("/_sim/health", get(|| async { "ok" }))
        .with_state(shared)
}

fn qfpay_json(body: serde_json::Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

fn reject(respcd: &str, resperr: &str) -> Response {
    qfpay_json(serde_json::json!({"respcd": respcd, "resperr": resperr, "respmsg": "", "syssn": null, "txamt": null}))
}

/// Checks `X-QF-APPCODE` / `X-QF-SIGN` / `X-QF-SIGNTYPE` and the `mchid` rule (API §2, §3.1).
/// The error is the `(respcd, resperr)` QFPay would answer.
fn authenticate(shared: &Shared, headers: &HeaderMap, p: &Params) -> Result<String, (&'static str, &'static str)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let app_code = header("x-qf-appcode").filter(|s| !s.is_empty()).ok_or(("1104", "missing X-QF-APPCODE(1104)"))?;
    let alg = match header("x-qf-signtype") {
        None => SignAlg::Md5,
        Some(v) => v.parse().map_err(|_| ("1104", "X-QF-SIGNTYPE must be MD5 or SHA256(1104)"))?,
    };
    let bank = shared.bank();
    let merchant = bank.merchant(app_code).ok_or(("1108", "Signature error: unknown app code(1108)"))?;
    if !qfpay::sign::verify(p, &merchant.key, alg, header("x-qf-sign").unwrap_or("")) {
        return Err(("1108", "Signature error(1108)"));
    }
    match (merchant.mchid.as_deref(), p.get("mchid")) {
        (Some(a), Some(b)) if a == b => {}
        (None, None) => {}
        (Some(_), None) => return Err(("1104", "mchid is required for this app code(1104)")),
        (_, Some(_)) => return Err(("1104", "mchid is not valid for this app code(1104)")),
    }
    Ok(merchant.app_code.clone())
}

/// Checks the refund's parameters as QFPay documents them (API §4.1); violations are `1104`.
fn check_refund_params(p: &Params) -> Result<(), String> {
    use qfpay::request as rq;
    rq::validate_syssn(p.get("syssn").unwrap_or("")).map_err(|e| e.to_string())?;
    rq::validate_out_trade_no(p.get("out_trade_no").unwrap_or("")).map_err(|e| e.to_string())?;
    rq::parse_txamt("txamt", p.get("txamt").unwrap_or("")).map_err(|e| e.to_string())?;
    p.get("txdtm").unwrap_or("").parse::<qfpay::Txdtm>().map_err(|e| format!("txdtm: {e}"))?;
    if let Some(u) = p.get("udid") {
        rq::validate_udid(u).map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn pre_answer(shared: &Shared, faults: &Faults) {
    shared.wait_unpaused().await;
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
}

async fn refund(
    State(shared): State<Arc<Shared>>,
    Extension(kill): Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let faults = shared.faults();
    shared.bank().stats.refund_requests += 1; // counted on arrival, before any latency or pause
    pre_answer(&shared, &faults).await;
    let p = Params::from_form_body(&body);
    let app_code = match authenticate(&shared, &headers, &p) {
        Ok(a) => a,
        Err((respcd, resperr)) => return reject(respcd, resperr),
    };
    if shared.draw(faults.rate_limit_429) {
        shared.count_fault("rate_limit_429");
        return (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
    }
    if shared.draw(faults.error_5xx) {
        shared.count_fault("error_5xx");
        return (StatusCode::INTERNAL_SERVER_ERROR, "<html><body>500 Internal Server Error</body></html>")
            .into_response();
    }
    if let Err(e) = check_refund_params(&p) {
        return reject("1104", &format!("Request parameter error: {e}(1104)"));
    }
    let now = shared.now_ms();
    let apply = if shared.draw(faults.code_1269) {
        Apply::Insufficient
    } else if shared.draw(faults.processing) {
        let final_code =
            if shared.draw(faults.processing_fail) { faults.processing_fail_code.clone() } else { "0000".into() };
        Apply::Processing { until_ms: now + faults.processing_ms as i64, final_code }
    } else {
        Apply::Now
    };
    let answer = {
        let mut bank = shared.bank();
        let answer = bank.refund(&app_code, &p, apply.clone(), now);
        *bank.stats.answers.entry(answer.respcd.clone()).or_default() += 1;
        answer
    };
    if answer.refund.is_some() {
        if matches!(apply, Apply::Processing { .. }) {
            shared.count_fault("processing");
        }
        if shared.draw(faults.drop_after_apply) {
            shared.count_fault("drop_after_apply");
            kill.0.notify_one();
            std::future::pending::<()>().await;
        }
        if shared.draw(faults.hang_after_apply) {
            shared.count_fault("hang_after_apply");
            tokio::time::sleep(Duration::from_millis(faults.hang_ms)).await;
        }
    } else if answer.respcd == "1269" {
        shared.count_fault("code_1269");
    }
    qfpay_json(answer.body())
}

async fn query(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let faults = shared.faults();
    shared.bank().stats.query_requests += 1;
    pre_answer(&shared, &faults).await;
    let p = Params::from_form_body(&body);
    let app_code = match authenticate(&shared, &headers, &p) {
        Ok(a) => a,
        Err((respcd, resperr)) => return reject(respcd, resperr),
    };
    if shared.draw(faults.rate_limit_429) {
        shared.count_fault("rate_limit_429");
        return (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
    }
    if shared.draw(faults.enquiry_5xx) {
        shared.count_fault("enquiry_5xx");
        return (StatusCode::BAD_GATEWAY, "<html><body>502 Bad Gateway</body></html>").into_response();
    }
    let now = shared.now_ms();
    qfpay_json(shared.bank().query(&app_code, &p, now, faults.visibility_lag_ms as i64))
}

impl SimConfig {
    /// One merchant with the demo credentials, `payments` generated payments of 100 000 each,
    /// no faults, nightly window off: the usual start of a test.
    pub fn demo(payments: u64) -> Self {
        Self {
            merchants: vec![Merchant {
                app_code: crate::args::DEMO_APP_CODE.into(),
                key: qfpay::ClientKey::new(crate::args::DEMO_CLIENT_KEY),
                mchid: None,
            }],
            payments: (1..=payments).map(|i| crate::args::generated_payment(i, 100_000)).collect(),
            faults: Faults::default(),
            seed: 1,
            quiet_window: false,
        }
    }

    /// Demo credentials for a client of [`SimConfig::demo`].
    pub fn demo_credentials() -> qfpay::Credentials {
        qfpay::Credentials {
            app_code: crate::args::DEMO_APP_CODE.into(),
            key: qfpay::ClientKey::new(crate::args::DEMO_CLIENT_KEY),
            alg: SignAlg::Md5,
        }
    }
}
