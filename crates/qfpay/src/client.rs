//! The HTTP client for `/trade/v1/refund` and `/trade/v1/query`.
//!
//! Its error type exists to answer one question for the worker: *could this request have moved
//! money?* [`ClientError::NotSent`] is the only "no" (the connection was never established, so no
//! byte of the body left this process); everything after the first byte is
//! [`ClientError::OutcomeUnknown`] and must be settled by enquiry; a `429` is
//! [`ClientError::RateLimited`] (QFPay did not process it, API §1.2).

use std::fmt;
use std::time::{Duration, Instant};

use crate::evidence::Evidence;
use crate::params::Params;
use crate::request::{EnquiryRequest, RefundRequest};
use crate::response::{EnquiryResponse, ParseError, RefundResponse};
use crate::secret::ClientKey;
use crate::sign::{SignAlg, sign};

/// Path of the refund call (API §4).
pub const REFUND_PATH: &str = "/trade/v1/refund";
/// Path of the transaction enquiry call (API §5).
pub const QUERY_PATH: &str = "/trade/v1/query";

/// The default whole-exchange timeout of every QFPay call (ms): workers, `reconcile` and
/// `qfrefund qfpay` alike (`QFREFUND_HTTP_TIMEOUT_MS`).
pub const DEFAULT_TIMEOUT_MS: u64 = 6_000;
/// The default connect timeout of every QFPay call (ms) (`QFREFUND_HTTP_CONNECT_TIMEOUT_MS`).
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;

/// Transport settings, shared by every merchant's client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Establishing the TCP (and TLS) connection. A failure inside it is provably "not sent".
    pub connect_timeout: Duration,
    /// The whole exchange. Past it the outcome is unknown: QFPay may have applied the refund.
    pub timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            pool_max_idle_per_host: 64,
        }
    }
}

/// Who is calling: QFPay's app code, the client key and the digest to sign with.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub app_code: String,
    pub key: ClientKey,
    pub alg: SignAlg,
}

pub use crate::call::ClientError;

/// A QFPay client for one merchant (base URL + credentials) over a shared connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    creds: Credentials,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("app_code", &self.creds.app_code)
            .field("alg", &self.creds.alg)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The shared connection pool. Build it once per process and hand it to every merchant's client.
    pub fn pool(config: &ClientConfig) -> Result<reqwest::Client, ClientError> {
        reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .user_agent(concat!("qfrefund/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))
    }

    /// A client for the merchant at `base_url` (e.g. `https://openapi-hk.qfapi.com`).
    pub fn new(http: reqwest::Client, base_url: &str, creds: Credentials) -> Result<Self, ClientError> {
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "base URL must start with http:// or https:// (got {base_url:?})"
            )));
        }
        if creds.app_code.trim().is_empty() {
            return Err(ClientError::Config("app code is empty".into()));
        }
        if creds.key.is_empty() {
            return Err(ClientError::Config("client key is empty".into()));
        }
        Ok(Self { http, base_url, creds })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST /trade/v1/refund`. `Ok` is QFPay's business answer, whatever its `respcd`.
    pub async fn refund(&self, req: &RefundRequest) -> Result<RefundResponse, ClientError> {
        self.refund_within(req, None).await
    }

    /// [`Self::refund`], giving up (outcome unknown) after `within` instead of the configured
    /// timeout when that is shorter: a worker never lets a request outlive its lease.
    pub async fn refund_within(
        &self,
        req: &RefundRequest,
        within: Option<Duration>,
    ) -> Result<RefundResponse, ClientError> {
        let mut evidence = self.evidence("refund", &req.params());
        self.refund_evidenced(req, within, &mut evidence).await
    }

    /// What a request with `params` will be sent as (the parameters and the signature), before it
    /// is sent: the caller keeps it even when the request is cut off mid-flight.
    pub fn evidence(&self, call: &str, params: &Params) -> Evidence {
        Evidence {
            call: call.to_owned(),
            sent_at: crate::time::unix_now_ms(),
            took_ms: 0,
            params: params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            sign_sha256: {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(sign(params, &self.creds.key, self.creds.alg).as_bytes());
                digest.iter().map(|b| format!("{b:02x}")).collect()
            },
            sign_type: self.creds.alg.header_value().to_owned(),
            http_status: None,
            body: None,
            body_truncated: false,
            error: None,
            fenced_off: false,
        }
    }

    /// [`Self::refund_within`], recording in `evidence` (from [`Self::evidence`]) what came back.
    pub async fn refund_evidenced(
        &self,
        req: &RefundRequest,
        within: Option<Duration>,
        evidence: &mut Evidence,
    ) -> Result<RefundResponse, ClientError> {
        let answer = match self.post(REFUND_PATH, &req.params(), within, evidence).await {
            Ok(body) => RefundResponse::parse(&body).map_err(unknown_body),
            Err(e) => Err(e),
        };
        if let Err(e) = &answer {
            evidence.error = Some(e.to_string());
        }
        answer
    }

    /// [`Self::enquire_within`], recording in `evidence` (from [`Self::evidence`]) what came back.
    pub async fn enquire_evidenced(
        &self,
        req: &EnquiryRequest,
        within: Option<Duration>,
        evidence: &mut Evidence,
    ) -> Result<EnquiryResponse, ClientError> {
        let answer = match self.post(QUERY_PATH, &req.params(), within, evidence).await {
            Ok(body) => EnquiryResponse::parse(&body).map_err(unknown_body),
            Err(e) => Err(e),
        };
        if let Err(e) = &answer {
            evidence.error = Some(e.to_string());
        }
        answer
    }

    /// `POST /trade/v1/query`. `Ok` is QFPay's answer; check [`EnquiryResponse::is_ok`].
    pub async fn enquire(&self, req: &EnquiryRequest) -> Result<EnquiryResponse, ClientError> {
        self.enquire_within(req, None).await
    }

    /// [`Self::enquire`] with a shorter timeout when `within` is shorter than the configured one.
    pub async fn enquire_within(
        &self,
        req: &EnquiryRequest,
        within: Option<Duration>,
    ) -> Result<EnquiryResponse, ClientError> {
        let mut evidence = self.evidence("query", &req.params());
        self.enquire_evidenced(req, within, &mut evidence).await
    }

    async fn post(
        &self,
        path: &str,
        params: &Params,
        within: Option<Duration>,
        evidence: &mut Evidence,
    ) -> Result<Vec<u8>, ClientError> {
        let started = Instant::now();
        evidence.sent_at = crate::time::unix_now_ms();
        let signature = sign(params, &self.creds.key, self.creds.alg);
        let mut rb = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("X-QF-APPCODE", &self.creds.app_code)
            .header("X-QF-SIGN", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=utf-8")
            .body(params.form_body());
        if self.creds.alg != SignAlg::Md5 {
            rb = rb.header("X-QF-SIGNTYPE", self.creds.alg.header_value());
        }
        if let Some(within) = within {
            rb = rb.timeout(within);
        }
        let sent = rb.send().await;
        evidence.took_ms = started.elapsed().as_millis() as u64;
        let resp = sent.map_err(transport_error)?;
        let status = resp.status();
        evidence.http_status = Some(status.as_u16());
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(ClientError::RateLimited { retry_after });
        }
        if !status.is_success() {
            if let Ok(body) = resp.bytes().await {
                evidence.set_body(&body);
            }
            evidence.took_ms = started.elapsed().as_millis() as u64;
            return Err(ClientError::OutcomeUnknown {
                reason: format!("unexpected status {status}"),
                status: Some(status.as_u16()),
            });
        }
        let body = resp.bytes().await.map_err(transport_error);
        evidence.took_ms = started.elapsed().as_millis() as u64;
        let body = body?;
        evidence.set_body(&body);
        tracing::debug!(
            path,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "qfpay answered"
        );
        Ok(body.to_vec())
    }
}

fn unknown_body(e: ParseError) -> ClientError {
    ClientError::OutcomeUnknown { reason: format!("unusable answer: {e}"), status: None }
}

/// Sorts a reqwest error into "not sent" or "outcome unknown". Only a failure to *connect* proves
/// nothing was sent; hyper retries a pooled connection that closed before the request was written,
/// so a write failure on a reused connection is not mistaken for one here.
fn transport_error(e: reqwest::Error) -> ClientError {
    let reason = error_chain(&e);
    if e.is_builder() {
        ClientError::Config(reason)
    } else if e.is_connect() {
        ClientError::NotSent { reason }
    } else {
        ClientError::OutcomeUnknown { reason, status: e.status().map(|s| s.as_u16()) }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
