//! The settings tree turned into what each part runs on: the ledger's, the workers' and the API's
//! configurations, and the merchants with their credentials.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use ledger::LedgerConfig;
use qfpay::{ClientKey, SignAlg};
use worker::{Merchant, WorkerConfig};

use crate::exit::invalid;
use crate::settings::{self, Loaded, MerchantSettings, Settings, values::Tokens};

mod tokens;

/// The loaded configuration.
pub struct Config {
    pub redis_url: String,
    pub ledger: LedgerConfig,
    /// Refuse to run against a Redis without AOF.
    pub require_aof: bool,
    pub loaded: Loaded,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}

impl Config {
    /// Loads the file (if any) and the environment; an error is a configuration error (exit 2).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::read(path).map_err(invalid)
    }

    fn read(path: Option<&Path>) -> anyhow::Result<Self> {
        let loaded = settings::load(path)?;
        let s = &loaded.settings;
        let mut ledger = LedgerConfig {
            namespace: s.namespace.clone(),
            tag: s.queue_tag.clone(),
            wait_replicas: s.redis_wait_replicas,
            tls_ca_file: s.redis_ca_file.clone(),
            wait_timeout: ms(s.redis_wait_timeout_ms),
            response_timeout: ms(s.redis_response_timeout_ms),
            events_maxlen: s.events_maxlen,
            ..LedgerConfig::default()
        };
        ledger.validate().map_err(anyhow::Error::msg)?;
        ledger::check_redis_url(&s.redis_url).map_err(|e| anyhow::anyhow!("redis_url (QFREFUND_REDIS_URL): {e}"))?;
        for m in s.merchant_shards.keys() {
            qfpay::request::validate_id("merchant", m, 64)
                .map_err(|e| anyhow::anyhow!("merchant_shards: merchant {m:?}: {}", e.rule))?;
        }
        ledger.placement = ledger::refund::placement::Placement::new(s.shards, s.merchant_shards.clone())
            .map_err(|e| anyhow::anyhow!("shards / merchant_shards: {e}"))?;
        // What any command can check without credentials: a merchant no request could be built
        // for is refused here, by producers as much as by workers (which check the key too).
        for (name, m) in merchants_defined(s) {
            worker::config::validate_merchant_fields(
                name,
                m.app_code.as_deref(),
                m.mchid.as_deref(),
                m.base_url.as_deref(),
            )
            .map_err(anyhow::Error::msg)?;
        }
        Ok(Self { redis_url: s.redis_url.clone(), ledger, require_aof: s.require_aof.0, loaded })
    }

    fn settings(&self) -> &Settings {
        &self.loaded.settings
    }

    /// The archive setting (`QFREFUND_ARCHIVE`, or `archive` in `[worker]`), if any.
    pub fn archive(&self) -> Option<String> {
        self.settings().worker.archive.clone()
    }

    /// Retention and the archive, as the workers run them.
    pub fn retention(&self) -> anyhow::Result<worker::retention::Retention> {
        self.retention_settings().map_err(invalid)
    }

    fn retention_settings(&self) -> anyhow::Result<worker::retention::Retention> {
        let w = &self.settings().worker;
        let r = worker::retention::Retention {
            archive: w.archive.clone(),
            retention: secs(w.retention_s),
            idempotency_retention: secs(w.idempotency_retention_s),
            audit_retention: secs(w.audit_retention_s),
            summary_after: (w.summary_after_s > 0).then(|| secs(w.summary_after_s)),
        };
        r.validate().map_err(anyhow::Error::msg)?;
        Ok(r)
    }

    /// The worker's configuration.
    pub fn worker(&self) -> anyhow::Result<WorkerConfig> {
        self.worker_settings().map_err(invalid)
    }

    fn worker_settings(&self) -> anyhow::Result<WorkerConfig> {
        let w = &self.settings().worker;
        let mut c =
            WorkerConfig { redis_url: self.redis_url.clone(), ledger: self.ledger.clone(), ..WorkerConfig::default() };
        c.concurrency = w.concurrency;
        c.http.timeout = ms(w.http_timeout_ms);
        c.http.connect_timeout = ms(w.http_connect_timeout_ms);
        c.http.pool_max_idle_per_host = w.http_pool_max_idle;
        c.webhooks = worker::webhooks::WebhookPolicy {
            timeout: ms(w.webhook_timeout_ms),
            retry_base: ms(w.webhook_retry_base_ms),
            retry_cap: ms(w.webhook_retry_cap_ms),
            max_attempts: w.webhook_max_attempts,
            claim_idle: ms(w.webhook_claim_idle_ms),
        };
        let p = &mut c.policy;
        p.enquiry_first = ms(w.enquiry_first_ms);
        p.enquiry_base = ms(w.backoff_base_ms);
        p.enquiry_cap = ms(w.backoff_cap_ms);
        p.resubmit_base = ms(w.resubmit_base_ms);
        p.resubmit_cap = ms(w.resubmit_cap_ms);
        p.resubmit_budget = w.resubmit_budget;
        p.code_delay_cap = w.code_delay_cap_ms.map(ms);
        p.not_found_grace = ms(w.not_found_grace_ms);
        p.not_found_min = w.not_found_min;
        p.syssn_busy_wait = ms(w.syssn_busy_wait_ms);
        p.paused_wait = ms(w.paused_wait_ms);
        p.max_age = secs(w.max_age_s);
        p.lease = ms(w.lease_ms);
        c.quiet_window = w.quiet_window.0;
        c.rate_per_sec = w.rate_per_sec;
        c.rate_burst = w.rate_burst;
        c.fetch_batch = w.fetch_batch;
        c.idle_wait = ms(w.idle_wait_ms);
        c.heartbeat = ms(w.heartbeat_ms);
        c.drain_grace = ms(w.drain_grace_ms);
        c.learn_paid = w.learn_paid.0;
        c.worker_name = w.name.clone();
        c.require_aof = self.require_aof;
        c.metrics_listen = w.metrics_listen.clone();
        c.merchants = self.merchants()?;
        c.serve_shards = w.serve_shards.as_ref().map(|list| {
            let mut out: Vec<usize> = Vec::new();
            for s in list {
                if !out.contains(s) {
                    out.push(*s);
                }
            }
            out
        });
        c.events_retention = secs(w.events_retention_s);
        c.retention = self.retention()?;
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }

    /// The HTTP API's configuration and the address to listen on.
    pub fn api(&self) -> anyhow::Result<(String, api::ApiConfig)> {
        self.api_settings().map_err(invalid)
    }

    fn api_settings(&self) -> anyhow::Result<(String, api::ApiConfig)> {
        let a = &self.settings().api;
        let mut c = api::ApiConfig {
            body_limit: a.body_limit_bytes,
            request_timeout: ms(a.request_timeout_ms),
            base_url: a.base_url.clone().unwrap_or_default(),
            bulk_max_txamt: (a.bulk_max_txamt > 0).then_some(a.bulk_max_txamt),
            four_eyes: a.four_eyes.0,
            metrics_elsewhere: a.metrics_listen.is_some(),
            ..api::ApiConfig::default()
        };
        for item in list(a.console_proxy_from.as_deref()) {
            let ip = item.parse::<std::net::IpAddr>().map_err(|_| {
                anyhow::anyhow!(
                    "api.console_proxy_from (QFREFUND_API_CONSOLE_PROXY_FROM): {item:?} is not an IP address"
                )
            })?;
            c.console_proxy.from.push(ip);
        }
        c.console_proxy.operators = list(a.console_operators.as_deref()).map(str::to_owned).collect();
        c.tokens = tokens::tokens(&a.tokens)?;
        c.notify_keys = self
            .merchants()?
            .into_values()
            .map(|m| api::NotifyKey { merchant: m.name, key: m.key, alg: m.alg })
            .collect();
        c.merchants = self.merchant_names();
        c.archive = self.archive();
        Ok((a.listen.clone(), c))
    }

    /// The merchants this configuration names (no credentials needed: what producers check a
    /// refund's `merchant` against, together with those live workers serve).
    pub fn merchant_names(&self) -> Vec<String> {
        merchants_defined(self.settings()).map(|(name, _)| name.clone()).collect()
    }

    /// One configured merchant, with its credentials (for `qfrefund qfpay … --merchant NAME`).
    pub fn merchant(&self, name: &str) -> anyhow::Result<Merchant> {
        let mut all = self.merchants()?;
        let mut known: Vec<String> = all.keys().cloned().collect();
        known.sort();
        all.remove(name)
            .with_context(|| format!("no merchant {name:?} in the configuration (known: {})", known.join(", ")))
            .map_err(invalid)
    }

    /// Every merchant, with its credentials.
    pub fn merchants(&self) -> anyhow::Result<HashMap<String, Merchant>> {
        self.merchant_settings().map_err(invalid)
    }

    fn merchant_settings(&self) -> anyhow::Result<HashMap<String, Merchant>> {
        let mut out = HashMap::new();
        for (name, m) in merchants_defined(self.settings()) {
            out.insert(name.clone(), self.merchant_from(name, m)?);
        }
        Ok(out)
    }

    fn merchant_from(&self, name: &str, m: &MerchantSettings) -> anyhow::Result<Merchant> {
        let default = name == ledger::DEFAULT_MERCHANT;
        // What to set, said as this merchant is configured: the default merchant's variables too.
        let field = |key: &str, var: &str| {
            if default {
                format!("{key} of [merchants.{name}] or {var}")
            } else {
                format!("{key} of [merchants.{name}]")
            }
        };
        let from_env = |key: &str| self.set_in_env(&format!("merchants.{name}.{key}"));
        let key = match (&m.client_key, &m.client_key_env) {
            (Some(k), None) => ClientKey::new(k.expose().to_owned()),
            (Some(k), Some(_)) if from_env("client_key") => ClientKey::new(k.expose().to_owned()),
            (None, Some(var)) => ClientKey::new(settings::variable(var)?.with_context(|| {
                format!(
                    "merchant {name}: environment variable {var} is not set (nor a file {var} in {})",
                    settings::SECRETS_DIR
                )
            })?),
            (None, None) => bail!("merchant {name}: no client key: set {}", field("client_key", "QFPAY_CLIENT_KEY")),
            (Some(_), Some(_)) => bail!("merchant {name}: give exactly one of client_key and client_key_env"),
        };
        let alg = match &m.sign_alg {
            Some(a) => a.parse::<SignAlg>().map_err(|e| anyhow::anyhow!("merchant {name}: sign_alg: {e}"))?,
            None => SignAlg::Md5,
        };
        let secret = match (&m.webhook_secret, &m.webhook_secret_env) {
            (Some(s), None) => Some(s.expose().to_owned()),
            (Some(s), Some(_)) if from_env("webhook_secret") => Some(s.expose().to_owned()),
            (None, Some(var)) => Some(settings::variable(var)?.with_context(|| {
                format!(
                    "merchant {name}: environment variable {var} is not set (nor a file {var} in {})",
                    settings::SECRETS_DIR
                )
            })?),
            (None, None) => None,
            (Some(_), Some(_)) => bail!("merchant {name}: give exactly one of webhook_secret and webhook_secret_env"),
        };
        let webhook = match (&m.webhook_url, secret) {
            (None, None) => None,
            (Some(url), Some(secret)) => Some(
                worker::webhooks::Webhook::new(url, &secret).map_err(|e| anyhow::anyhow!("merchant {name}: {e}"))?,
            ),
            _ => bail!(
                "merchant {name}: give both a webhook URL and its secret, or neither ({} and {})",
                field("webhook_url", "QFREFUND_WEBHOOK_URL"),
                field("webhook_secret", "QFREFUND_WEBHOOK_SECRET")
            ),
        };
        let need = |v: &Option<String>, key: &str, var: &str| {
            v.clone().with_context(|| format!("merchant {name}: {key} is not set: set {}", field(key, var)))
        };
        Ok(Merchant {
            name: name.to_owned(),
            app_code: need(&m.app_code, "app_code", "QFPAY_APP_CODE")?,
            key,
            mchid: m.mchid.clone().filter(|v| !v.is_empty()),
            base_url: need(&m.base_url, "base_url", "QFPAY_BASE_URL")?,
            alg,
            webhook,
        })
    }

    /// Whether the value at `path` came from the environment.
    fn set_in_env(&self, path: &str) -> bool {
        self.loaded.figment.find_metadata(path).is_some_and(|m| m.name == settings::ENV)
    }
}

/// The merchants the settings define: every `[merchants.NAME]`, but the default merchant only
/// when its app code, key or base URL is given (a sign algorithm or an mchid alone, as a shared
/// ConfigMap may carry for processes without credentials, defines no merchant).
fn merchants_defined(s: &Settings) -> impl Iterator<Item = (&String, &MerchantSettings)> {
    s.merchants.iter().filter(|(name, m)| {
        name.as_str() != ledger::DEFAULT_MERCHANT
            || m.app_code.is_some()
            || m.client_key.is_some()
            || m.client_key_env.is_some()
            || m.base_url.is_some()
    })
}

fn list(text: Option<&str>) -> impl Iterator<Item = &str> {
    text.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl Tokens {
    /// Whether any token is configured.
    pub fn any(&self) -> bool {
        !matches!(self, Tokens::None)
    }
}
