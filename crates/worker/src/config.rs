//! Worker settings. Loading them (file, environment) is the CLI's job; this is what they mean.

use std::collections::HashMap;
use std::time::Duration;

use ledger::{LedgerConfig, Policy};
use qfpay::{ClientConfig, ClientKey, SignAlg};

/// One merchant's QFPay account. `Debug` shows no key.
#[derive(Debug, Clone)]
pub struct Merchant {
    /// The name refunds refer to (`merchant` field; `default` when they name none).
    pub name: String,
    pub app_code: String,
    pub key: ClientKey,
    /// Sent on every call when QFPay issued one (agents' sub-merchants).
    pub mchid: Option<String>,
    /// Credentials are region-specific, so the base URL belongs to the merchant (API §1.1).
    pub base_url: String,
    pub alg: SignAlg,
    /// Where its final outcomes are POSTed, if anywhere.
    pub webhook: Option<crate::webhooks::Webhook>,
}

impl Merchant {
    /// Every field the QFPay requests and the client need, checked once at load: a request that
    /// cannot be built is a configuration error naming the merchant and the field, never a refund
    /// that waits for ever.
    pub fn validate(&self) -> Result<(), String> {
        validate_merchant_fields(&self.name, Some(&self.app_code), self.mchid.as_deref(), Some(&self.base_url))?;
        if self.key.is_empty() {
            return Err(format!("merchant {}: client key is empty", self.name));
        }
        Ok(())
    }
}

/// The checks of [`Merchant::validate`] that need no credentials (what producers, which may hold
/// no client key, can check of a configuration): the name as refunds carry it, the app code (an
/// HTTP header), `mchid` (sent on every request), the base URL.
pub fn validate_merchant_fields(
    name: &str,
    app_code: Option<&str>,
    mchid: Option<&str>,
    base_url: Option<&str>,
) -> Result<(), String> {
    let err = |field: &str, rule: String| Err(format!("merchant {name}: {field}: {rule}"));
    if let Err(e) = qfpay::request::validate_id("merchant", name, 64) {
        return Err(format!("merchant {name:?}: the name {}", e.rule));
    }
    if let Some(app) = app_code {
        if app.trim().is_empty() {
            return err("app_code", "is empty".into());
        }
        if !app.bytes().all(|b| b.is_ascii_graphic()) {
            return err("app_code", "may contain only visible ASCII characters (it is sent as an HTTP header)".into());
        }
    }
    if let Some(m) = mchid.map(str::trim).filter(|m| !m.is_empty()) {
        // The same rule the refund and enquiry builders apply (`with_mchid`).
        if let Err(e) = qfpay::request::validate_mchid(m) {
            return err("mchid", e.rule);
        }
    }
    if let Some(url) = base_url {
        let url = url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return err("base_url", format!("must start with http:// or https:// (got {url:?})"));
        }
        if let Err(e) = reqwest::Url::parse(url) {
            return err("base_url", format!("is not a URL: {e}"));
        }
    }
    Ok(())
}

/// Everything a worker process needs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub redis_url: String,
    pub ledger: LedgerConfig,
    pub policy: Policy,
    pub merchants: HashMap<String, Merchant>,
    pub http: ClientConfig,
    /// Refunds handled at once by this process.
    pub concurrency: usize,
    /// How often this worker announces the merchants it serves (an announcement counts for three
    /// of these).
    pub heartbeat: Duration,
    /// At most this many refunds claimed per fetch (one script call).
    pub fetch_batch: usize,
    /// The longest an idle worker waits before it looks at the due-index again when no producer
    /// wakes it and nothing is due sooner (a safety net: wake-ups and due times end waits first).
    pub idle_wait: Duration,
    /// Per-merchant token bucket shared by every worker (QFPay: 100/s and 400/min per merchant,
    /// shared with its payments).
    pub rate_per_sec: f64,
    pub rate_burst: u32,
    /// The quiet window: defer submits 23:25–00:35 UTC+8 (QFPay's 23:30–00:30 refund blackout
    /// with five minutes' margin each side; see [`qfpay::time::near_refund_blackout`]).
    pub quiet_window: bool,
    /// Enquire the payment for its amount when the producer did not give `orig_txamt`.
    pub learn_paid: bool,
    /// After SIGTERM: how long in-flight refunds may take to finish.
    pub drain_grace: Duration,
    /// Worker identity; unique per process (a pid and a random suffix are added).
    pub worker_name: String,
    /// Refuse to start against a Redis without AOF (on by default; off only for throwaway setups).
    pub require_aof: bool,
    /// Webhook retries and limits.
    pub webhooks: crate::webhooks::WebhookPolicy,
    /// Serve `/metrics` (Prometheus) and `/healthz` here (e.g. `0.0.0.0:9464`); `None`: do not.
    pub metrics_listen: Option<String>,
    /// The shards this worker fetches from; `None`: every shard of the ledger.
    pub serve_shards: Option<Vec<usize>>,
    /// Outcome-stream entries older than this are trimmed (never one a consumer group has not
    /// finished with), by the workers of the shards they serve.
    pub events_retention: Duration,
    /// Archiving final refunds and removing them from Redis.
    pub retention: crate::retention::Retention,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            redis_url: ledger::DEFAULT_REDIS_URL.into(),
            ledger: LedgerConfig::default(),
            policy: Policy::default(),
            merchants: HashMap::new(),
            http: ClientConfig::default(),
            concurrency: 32,
            heartbeat: Duration::from_secs(2),
            fetch_batch: 32,
            idle_wait: Duration::from_secs(5),
            rate_per_sec: 5.0,
            rate_burst: 20,
            quiet_window: true,
            learn_paid: true,
            drain_grace: Duration::from_secs(20),
            worker_name: "qfrefund".into(),
            metrics_listen: None,
            serve_shards: None,
            events_retention: Duration::from_secs(7 * 24 * 3600),
            retention: crate::retention::Retention::default(),
            require_aof: true,
            webhooks: crate::webhooks::WebhookPolicy::default(),
        }
    }
}

impl WorkerConfig {
    /// Checks what would otherwise fail later and obscurely.
    pub fn validate(&self) -> Result<(), String> {
        if self.merchants.is_empty() {
            return Err("no merchant configured: set QFPAY_APP_CODE, QFPAY_CLIENT_KEY and QFPAY_BASE_URL, or [merchants.*] in the config file".into());
        }
        let mut names: Vec<&String> = self.merchants.keys().collect();
        names.sort();
        let mut accounts: HashMap<(&str, &str, Option<&str>), &str> = HashMap::new();
        for m in names.into_iter().filter_map(|n| self.merchants.get(n)) {
            m.validate()?;
            // out_trade_no is unique per QFPay account, and so is the ledger's idempotency and its
            // over-refund guard per merchant: two names for one account would split both.
            let account = (m.base_url.trim_end_matches('/'), m.app_code.as_str(), m.mchid.as_deref());
            if let Some(other) = accounts.insert(account, &m.name) {
                return Err(format!(
                    "merchants {other:?} and {:?} are one QFPay account (same base_url, app_code and mchid): \
                     configure each account once",
                    m.name
                ));
            }
        }
        // reqwest's timeout covers the whole exchange, connecting included; the margin covers the
        // claim and the transition around it.
        if self.policy.lease < self.http.timeout + Duration::from_millis(500) {
            return Err(format!(
                "lease ({:?}) must exceed the HTTP timeout ({:?}) by at least 500 ms: a live request must never outlast its lease",
                self.policy.lease, self.http.timeout
            ));
        }
        // "Not found" may only lead to a resend once the earlier request can no longer be in
        // flight: it ended (or was cut off) by the end of its lease.
        if self.policy.not_found_grace < self.policy.lease {
            return Err(format!(
                "not_found_grace ({:?}) must be at least the lease ({:?}): a resend must never overlap the request before it",
                self.policy.not_found_grace, self.policy.lease
            ));
        }
        let hour = Duration::from_secs(3600);
        if self.policy.paused_wait < Duration::from_millis(100) || self.policy.paused_wait > hour {
            return Err(
                "paused_wait_ms must be 100..=3600000: shorter looks at a paused merchant's refunds in a hot loop, \
                        longer leaves them waiting that long after a resume"
                    .into(),
            );
        }
        if self.policy.syssn_busy_wait < Duration::from_millis(10) || self.policy.syssn_busy_wait > hour {
            return Err(
                "syssn_busy_wait_ms must be 10..=3600000: shorter spins on a payment with a refund in flight".into()
            );
        }
        // A claim waits up to wait_timeout for its replicas before the request goes out, within
        // the same lease: what is left must still hold the whole QFPay exchange.
        if self.ledger.wait_replicas > 0
            && self.policy.lease < self.http.timeout + self.ledger.wait_timeout + Duration::from_millis(500)
        {
            return Err(format!(
                "lease ({:?}) must exceed the HTTP timeout ({:?}) plus redis_wait_timeout_ms ({:?}) by 500 ms when redis_wait_replicas is set: \
                 a claim's WAIT comes out of the same lease",
                self.policy.lease, self.http.timeout, self.ledger.wait_timeout
            ));
        }
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if self.policy.not_found_min < 2 {
            return Err("not_found_min must be at least 2: one \"not found\" can be QFPay's records lagging behind a refund it took".into());
        }
        self.webhooks.validate()?;
        self.ledger.validate()?;
        if self.fetch_batch == 0 || self.fetch_batch > 500 {
            return Err(format!(
                "fetch_batch must be 1..=500 (got {}): one fetch is one script call",
                self.fetch_batch
            ));
        }
        if let Some(shards) = &self.serve_shards {
            let n = self.ledger.placement.shards();
            if shards.is_empty() {
                return Err("serve_shards names no shard: leave it unset to serve every shard".into());
            }
            if let Some(s) = shards.iter().find(|s| **s >= n) {
                return Err(format!("serve_shards names shard {s}, but the ledger's shards are 0..{}", n - 1));
            }
        }
        if self.events_retention < Duration::from_secs(1) {
            return Err("events_retention must be at least a second".into());
        }
        self.retention.validate()?;
        if self.idle_wait.is_zero() {
            return Err("idle_wait must be more than zero".into());
        }
        if self.rate_per_sec.is_nan() || self.rate_per_sec <= 0.0 || self.rate_burst == 0 {
            return Err("rate_per_sec and rate_burst must be positive".into());
        }
        Ok(())
    }
}
