//! Configuration: defaults < TOML file (`--config` or `QFREFUND_CONFIG`) < environment.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use ledger::LedgerConfig;
use qfpay::{ClientKey, SignAlg};
use serde::Deserialize;
use worker::{Merchant, WorkerConfig};

/// The TOML file. Every field is optional; see `deploy/qfrefund.example.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    redis_url: Option<String>,
    redis_ca_file: Option<std::path::PathBuf>,
    namespace: Option<String>,
    queue_tag: Option<String>,
    /// Shards of the ledger (each its own hash tag; fixed for a ledger's life).
    shards: Option<usize>,
    /// Merchants given a shard by hand (`name = shard`).
    #[serde(default)]
    merchant_shards: HashMap<String, usize>,
    /// Refuse to run against a Redis without AOF (default true).
    require_aof: Option<bool>,
    /// Replicas that must confirm an enqueue and a claim (Sentinel setups: 1).
    redis_wait_replicas: Option<usize>,
    #[serde(default)]
    worker: WorkerSection,
    #[serde(default)]
    merchants: HashMap<String, MerchantSection>,
    #[serde(default)]
    api: ApiSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    listen: Option<String>,
    body_limit_bytes: Option<usize>,
    request_timeout_ms: Option<u64>,
    base_url: Option<String>,
    bulk_max_txamt: Option<u64>,
    four_eyes: Option<bool>,
    console_proxy_from: Option<String>,
    console_operators: Option<String>,
    #[serde(default)]
    tokens: Vec<TokenSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSection {
    name: String,
    role: String,
    /// The name of an environment variable holding the token (tokens are not written in files).
    token_env: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerSection {
    concurrency: Option<usize>,
    http_timeout_ms: Option<u64>,
    http_connect_timeout_ms: Option<u64>,
    enquiry_first_ms: Option<u64>,
    backoff_base_ms: Option<u64>,
    backoff_cap_ms: Option<u64>,
    resubmit_base_ms: Option<u64>,
    resubmit_cap_ms: Option<u64>,
    resubmit_budget: Option<u32>,
    code_delay_cap_ms: Option<u64>,
    not_found_grace_ms: Option<u64>,
    max_age_s: Option<u64>,
    lease_ms: Option<u64>,
    quiet_window: Option<String>,
    rate_per_sec: Option<f64>,
    rate_burst: Option<u32>,
    idle_wait_ms: Option<u64>,
    fetch_batch: Option<usize>,
    heartbeat_ms: Option<u64>,
    drain_grace_ms: Option<u64>,
    learn_paid: Option<bool>,
    name: Option<String>,
    metrics_listen: Option<String>,
    serve_shards: Option<Vec<usize>>,
    events_retention_s: Option<u64>,
    archive: Option<String>,
    retention_s: Option<u64>,
    idempotency_retention_s: Option<u64>,
    audit_retention_s: Option<u64>,
    summary_after_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MerchantSection {
    app_code: String,
    /// The key itself (keep the file private), or…
    client_key: Option<ClientKey>,
    /// …the name of an environment variable holding it.
    client_key_env: Option<String>,
    mchid: Option<String>,
    base_url: String,
    sign_alg: Option<String>,
    /// Final outcomes are POSTed here, signed with the secret in `webhook_secret_env`.
    webhook_url: Option<String>,
    webhook_secret_env: Option<String>,
}

mod read;
mod retention;
mod shards;
use read::{config_error, env, env_num, ms};

/// The loaded configuration.
#[derive(Debug)]
pub struct Config {
    pub redis_url: String,
    pub ledger: LedgerConfig,
    /// Refuse to run against a Redis without AOF.
    pub require_aof: bool,
    file: FileConfig,
}

impl Config {
    /// Loads the file (if any) and the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = path.map(Path::to_path_buf).or_else(|| env("QFREFUND_CONFIG").map(Into::into));
        let file: FileConfig = match &path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("reading config file {}", p.display()))?;
                toml::from_str(&text).map_err(|e| config_error(p, &text, &e))?
            }
            None => FileConfig::default(),
        };
        let redis_url = env("QFREFUND_REDIS_URL")
            .or_else(|| file.redis_url.clone())
            .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        let mut ledger = LedgerConfig::default();
        if let Some(ns) = env("QFREFUND_NAMESPACE").or_else(|| file.namespace.clone()) {
            ledger.namespace = ns;
        }
        if let Some(tag) = env("QFREFUND_QUEUE_TAG").or_else(|| file.queue_tag.clone()) {
            ledger.tag = tag;
        }
        if let Some(n) =
            env_num::<usize>("QFREFUND_REDIS_WAIT_REPLICAS", "a whole number")?.or(file.redis_wait_replicas)
        {
            ledger.wait_replicas = n;
        }
        ledger.placement = shards::placement(file.shards, &file.merchant_shards)?;
        ledger.tls_ca_file = env("QFREFUND_REDIS_CA_FILE").map(Into::into).or_else(|| file.redis_ca_file.clone());
        let require_aof = match env("QFREFUND_REQUIRE_AOF") {
            Some(v) => match v.as_str() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                other => bail!("QFREFUND_REQUIRE_AOF: expected on or off, got {other:?}"),
            },
            None => file.require_aof.unwrap_or(true),
        };
        // What any command can check without credentials: a merchant no request could be built
        // for is refused here, by producers as much as by workers (which check the key too).
        for (name, m) in &file.merchants {
            let (app, url) = (Some(m.app_code.as_str()), Some(m.base_url.as_str()));
            worker::config::validate_merchant_fields(name, app, m.mchid.as_deref(), url).map_err(anyhow::Error::msg)?;
        }
        let (app, mchid, url) = (env("QFPAY_APP_CODE"), env("QFPAY_MCHID"), env("QFPAY_BASE_URL"));
        worker::config::validate_merchant_fields(
            ledger::DEFAULT_MERCHANT,
            app.as_deref(),
            mchid.as_deref(),
            url.as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(Self { redis_url, ledger, require_aof, file })
    }

    /// The worker's configuration: file, then environment over it.
    /// The archive setting (`QFREFUND_ARCHIVE`, or `archive` in `[worker]`), if any.
    pub fn archive(&self) -> Option<String> {
        self.retention().ok().and_then(|r| r.archive)
    }

    /// Retention and the archive, as the workers run them.
    pub fn retention(&self) -> anyhow::Result<worker::retention::Retention> {
        let w = &self.file.worker;
        let r = retention::retention(
            w.archive.as_ref(),
            w.retention_s,
            w.idempotency_retention_s,
            w.audit_retention_s,
            w.summary_after_s,
        )?;
        r.validate().map_err(anyhow::Error::msg)?;
        Ok(r)
    }

    pub fn worker(&self) -> anyhow::Result<WorkerConfig> {
        let w = &self.file.worker;
        let mut c =
            WorkerConfig { redis_url: self.redis_url.clone(), ledger: self.ledger.clone(), ..WorkerConfig::default() };
        let pick = |env_name: &str, file: Option<u64>| -> anyhow::Result<Option<u64>> {
            Ok(env_num::<u64>(env_name, "a whole number")?.or(file))
        };
        if let Some(v) = env_num::<usize>("QFREFUND_CONCURRENCY", "a whole number")?.or(w.concurrency) {
            c.concurrency = v;
        }
        if let Some(v) = pick("QFREFUND_HTTP_TIMEOUT_MS", w.http_timeout_ms)? {
            c.http.timeout = ms(v);
        }
        if let Some(v) = pick("QFREFUND_HTTP_CONNECT_TIMEOUT_MS", w.http_connect_timeout_ms)? {
            c.http.connect_timeout = ms(v);
        }
        let p = &mut c.policy;
        if let Some(v) = pick("QFREFUND_ENQUIRY_FIRST_MS", w.enquiry_first_ms)? {
            p.enquiry_first = ms(v);
        }
        if let Some(v) = pick("QFREFUND_BACKOFF_BASE_MS", w.backoff_base_ms)? {
            p.enquiry_base = ms(v);
        }
        if let Some(v) = pick("QFREFUND_BACKOFF_CAP_MS", w.backoff_cap_ms)? {
            p.enquiry_cap = ms(v);
        }
        if let Some(v) = pick("QFREFUND_RESUBMIT_BASE_MS", w.resubmit_base_ms)? {
            p.resubmit_base = ms(v);
        }
        if let Some(v) = pick("QFREFUND_RESUBMIT_CAP_MS", w.resubmit_cap_ms)? {
            p.resubmit_cap = ms(v);
        }
        if let Some(v) = env_num::<u32>("QFREFUND_RESUBMIT_BUDGET", "a whole number")?.or(w.resubmit_budget) {
            p.resubmit_budget = v;
        }
        if let Some(v) = pick("QFREFUND_CODE_DELAY_CAP_MS", w.code_delay_cap_ms)? {
            p.code_delay_cap = Some(ms(v));
        }
        if let Some(v) = pick("QFREFUND_NOT_FOUND_GRACE_MS", w.not_found_grace_ms)? {
            p.not_found_grace = ms(v);
        }
        if let Some(v) = pick("QFREFUND_MAX_AGE_S", w.max_age_s)? {
            p.max_age = Duration::from_secs(v);
        }
        if let Some(v) = pick("QFREFUND_LEASE_MS", w.lease_ms)? {
            p.lease = ms(v);
        }
        if let Some(v) = env("QFREFUND_QUIET_WINDOW").or_else(|| w.quiet_window.clone()) {
            c.quiet_window = match v.as_str() {
                "on" => true,
                "off" => false,
                other => bail!("QFREFUND_QUIET_WINDOW / quiet_window: expected on or off, got {other:?}"),
            };
        }
        if let Some(v) = env_num::<f64>("QFREFUND_RATE_PER_SEC", "a number")?.or(w.rate_per_sec) {
            c.rate_per_sec = v;
        }
        if let Some(v) = env_num::<u32>("QFREFUND_RATE_BURST", "a whole number")?.or(w.rate_burst) {
            c.rate_burst = v;
        }
        if let Some(v) = env_num::<usize>("QFREFUND_FETCH_BATCH", "a whole number")?.or(w.fetch_batch) {
            c.fetch_batch = v;
        }
        if let Some(v) = pick("QFREFUND_IDLE_WAIT_MS", w.idle_wait_ms)? {
            c.idle_wait = ms(v);
        }
        if let Some(v) = pick("QFREFUND_HEARTBEAT_MS", w.heartbeat_ms)? {
            c.heartbeat = ms(v);
        }
        if let Some(v) = pick("QFREFUND_DRAIN_GRACE_MS", w.drain_grace_ms)? {
            c.drain_grace = ms(v);
        }
        if let Some(v) = w.learn_paid {
            c.learn_paid = v;
        }
        if let Some(v) = env("QFREFUND_WORKER_NAME").or_else(|| w.name.clone()) {
            c.worker_name = v;
        }
        c.require_aof = self.require_aof;
        c.metrics_listen = env("QFREFUND_METRICS_LISTEN").or_else(|| w.metrics_listen.clone());
        c.merchants = self.merchants()?;
        c.serve_shards = shards::serve_shards(w.serve_shards.as_ref())?;
        if let Some(v) =
            env_num::<u64>("QFREFUND_EVENTS_RETENTION_S", "a whole number of seconds")?.or(w.events_retention_s)
        {
            c.events_retention = Duration::from_secs(v);
        }
        c.retention = self.retention()?;
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }

    /// The HTTP API's configuration and the address to listen on.
    pub fn api(&self) -> anyhow::Result<(String, api::ApiConfig)> {
        let a = &self.file.api;
        let listen = env("QFREFUND_API_LISTEN").or_else(|| a.listen.clone()).unwrap_or_else(|| "127.0.0.1:8080".into());
        let mut c = api::ApiConfig::default();
        if let Some(v) = env_num::<usize>("QFREFUND_API_BODY_LIMIT", "a number of bytes")?.or(a.body_limit_bytes) {
            c.body_limit = v;
        }
        if let Some(v) = env_num::<u64>("QFREFUND_API_TIMEOUT_MS", "a whole number")?.or(a.request_timeout_ms) {
            c.request_timeout = ms(v);
        }
        c.base_url = env("QFREFUND_API_BASE_URL").or_else(|| a.base_url.clone()).unwrap_or_default();
        if let Some(list) = env("QFREFUND_CONSOLE_PROXY_FROM").or_else(|| a.console_proxy_from.clone()) {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let ip = item
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| anyhow::anyhow!("QFREFUND_CONSOLE_PROXY_FROM: {item:?} is not an IP address"))?;
                c.console_proxy.from.push(ip);
            }
        }
        if let Some(list) = env("QFREFUND_CONSOLE_OPERATORS").or_else(|| a.console_operators.clone()) {
            c.console_proxy.operators =
                list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        }
        if let Some(v) = env("QFREFUND_API_FOUR_EYES") {
            c.four_eyes = match v.as_str() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                other => bail!("QFREFUND_API_FOUR_EYES: on or off, got {other:?}"),
            };
        } else if let Some(v) = a.four_eyes {
            c.four_eyes = v;
        }
        if let Some(v) =
            env_num::<u64>("QFREFUND_API_BULK_MAX_TXAMT", "a whole number of minor units")?.or(a.bulk_max_txamt)
        {
            c.bulk_max_txamt = (v > 0).then_some(v);
        }
        for t in &a.tokens {
            let role = t.role.parse::<api::Role>().map_err(|e| anyhow::anyhow!("api token {}: {e}", t.name))?;
            let secret = env(&t.token_env)
                .with_context(|| format!("api token {}: environment variable {} is not set", t.name, t.token_env))?;
            c.tokens.push(api::ApiToken::new(&t.name, role, &secret).map_err(anyhow::Error::msg)?);
        }
        // QFREFUND_API_TOKENS="name:role:token,…" (for containers: one secret variable).
        if let Some(list) = env("QFREFUND_API_TOKENS") {
            for (i, item) in list.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
                let mut parts = item.splitn(3, ':');
                let (Some(name), Some(role), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
                    bail!("QFREFUND_API_TOKENS: entry {} is not name:role:token", i + 1);
                };
                let role = role
                    .parse::<api::Role>()
                    .map_err(|e| anyhow::anyhow!("QFREFUND_API_TOKENS entry {}: {e}", i + 1))?;
                c.tokens.push(api::ApiToken::new(name, role, secret).map_err(anyhow::Error::msg)?);
            }
        }
        // A name is who acts in the audit trail and who may approve another's request: two tokens
        // under one name (in any case), or one secret under two names, would blur that.
        for (i, t) in c.tokens.iter().enumerate() {
            for u in &c.tokens[i + 1..] {
                if t.name.eq_ignore_ascii_case(&u.name) {
                    bail!(
                        "API tokens {:?} and {:?}: two tokens under one name (give each person their own)",
                        t.name,
                        u.name
                    );
                }
                if t.same_secret(u) {
                    bail!("API tokens {:?} and {:?} have the same secret", t.name, u.name);
                }
            }
        }
        if c.tokens.is_empty() {
            bail!(
                "the API needs at least one token: set QFREFUND_API_TOKENS=name:role:token or [[api.tokens]] in the config file"
            );
        }
        c.notify_keys = self
            .merchants()?
            .into_values()
            .map(|m| api::NotifyKey { merchant: m.name, key: m.key, alg: m.alg })
            .collect();
        c.merchants = self.merchant_names();
        c.archive = self.archive();
        Ok((listen, c))
    }

    /// The merchants this configuration names (no credentials needed: what producers check a
    /// refund's `merchant` against, together with those live workers serve).
    pub fn merchant_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.file.merchants.keys().cloned().collect();
        if ["QFPAY_APP_CODE", "QFPAY_CLIENT_KEY", "QFPAY_BASE_URL"].iter().any(|v| env(v).is_some()) {
            names.push(ledger::DEFAULT_MERCHANT.into());
        }
        names.sort();
        names.dedup();
        names
    }

    /// One configured merchant, with its credentials (for `qfrefund qfpay … --merchant NAME`).
    pub fn merchant(&self, name: &str) -> anyhow::Result<Merchant> {
        let mut all = self.merchants()?;
        let mut known: Vec<String> = all.keys().cloned().collect();
        known.sort();
        all.remove(name)
            .with_context(|| format!("no merchant {name:?} in the configuration (known: {})", known.join(", ")))
    }

    /// Merchants from the file, with the default merchant from `QFPAY_*` over it.
    fn merchants(&self) -> anyhow::Result<HashMap<String, Merchant>> {
        let mut out = HashMap::new();
        for (name, m) in &self.file.merchants {
            let key = match (&m.client_key, &m.client_key_env) {
                (Some(k), None) => k.clone(),
                (None, Some(var)) => ClientKey::new(
                    env(var).with_context(|| format!("merchant {name}: environment variable {var} is not set"))?,
                ),
                _ => bail!("merchant {name}: give exactly one of client_key and client_key_env"),
            };
            let alg = m
                .sign_alg
                .as_deref()
                .unwrap_or("MD5")
                .parse::<SignAlg>()
                .map_err(|e| anyhow::anyhow!("merchant {name}: {e}"))?;
            let webhook = match (&m.webhook_url, &m.webhook_secret_env) {
                (None, None) => None,
                (Some(url), Some(var)) => {
                    let secret =
                        env(var).with_context(|| format!("merchant {name}: environment variable {var} is not set"))?;
                    Some(
                        worker::webhooks::Webhook::new(url, &secret)
                            .map_err(|e| anyhow::anyhow!("merchant {name}: {e}"))?,
                    )
                }
                _ => bail!("merchant {name}: give both webhook_url and webhook_secret_env, or neither"),
            };
            out.insert(
                name.clone(),
                Merchant {
                    webhook,
                    name: name.clone(),
                    app_code: m.app_code.clone(),
                    key,
                    mchid: m.mchid.clone().filter(|v| !v.is_empty()),
                    base_url: m.base_url.clone(),
                    alg,
                },
            );
        }
        let default = ledger::DEFAULT_MERCHANT;
        let (app, key, url) = (env("QFPAY_APP_CODE"), env("QFPAY_CLIENT_KEY"), env("QFPAY_BASE_URL"));
        if app.is_some() || key.is_some() || url.is_some() {
            let base = out.remove(default);
            let get = |v: Option<String>, from_file: Option<String>, var: &str| {
                v.or(from_file).with_context(|| format!("{var} is not set (needed for the default merchant)"))
            };
            let alg = match env("QFPAY_SIGN_ALG") {
                Some(a) => a.parse::<SignAlg>().map_err(|e| anyhow::anyhow!("QFPAY_SIGN_ALG: {e}"))?,
                None => base.as_ref().map_or(SignAlg::Md5, |b| b.alg),
            };
            let merchant = Merchant {
                name: default.into(),
                app_code: get(app, base.as_ref().map(|b| b.app_code.clone()), "QFPAY_APP_CODE")?,
                key: match key {
                    Some(k) => ClientKey::new(k),
                    None => base
                        .as_ref()
                        .map(|b| b.key.clone())
                        .context("QFPAY_CLIENT_KEY is not set (needed for the default merchant)")?,
                },
                mchid: env("QFPAY_MCHID").or_else(|| base.as_ref().and_then(|b| b.mchid.clone())),
                base_url: get(url, base.as_ref().map(|b| b.base_url.clone()), "QFPAY_BASE_URL")?,
                alg,
                webhook: match (env("QFREFUND_WEBHOOK_URL"), env("QFREFUND_WEBHOOK_SECRET")) {
                    (Some(u), Some(s)) => Some(
                        worker::webhooks::Webhook::new(&u, &s)
                            .map_err(|e| anyhow::anyhow!("QFREFUND_WEBHOOK_URL: {e}"))?,
                    ),
                    (None, None) => base.as_ref().and_then(|b| b.webhook.clone()),
                    _ => bail!("set both QFREFUND_WEBHOOK_URL and QFREFUND_WEBHOOK_SECRET, or neither"),
                },
            };
            out.insert(default.into(), merchant);
        }
        Ok(out)
    }
}
