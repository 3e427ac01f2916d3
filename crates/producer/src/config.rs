//! The settings a producer shares with the workers: where the ledger is and how it is laid out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

mod env;

/// Where the ledger is and how it is laid out. Build one with [`ProducerConfig::builder`], or
/// read the workers' settings with [`ProducerConfig::from_env`]. Every value must match the
/// workers' (`namespace`, `queue_tag`, `shards`, `merchant_shards`): a producer laid out
/// otherwise is refused at connect, never left writing where no worker looks — a ledger no
/// worker has laid out yet (a namespace or tag of no fleet) is refused too, unless
/// [`ProducerConfigBuilder::create_ledger`] says this producer may be the first.
///
/// Its `Debug` hides the Redis URL's password.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// `redis://`, `rediss://`, `redis+sentinel://…` or `redis+cluster://…` (as the workers'
    /// `QFREFUND_REDIS_URL`).
    pub redis_url: String,
    /// Key prefix (`QFREFUND_NAMESPACE`).
    pub namespace: String,
    /// The ledger's hash tag (`QFREFUND_QUEUE_TAG`).
    pub queue_tag: String,
    /// Shards of the ledger (`QFREFUND_SHARDS`).
    pub shards: usize,
    /// Merchants placed on a shard by hand (`QFREFUND_MERCHANT_SHARDS`, `name=shard,…`).
    pub merchant_shards: BTreeMap<String, usize>,
    /// Refuse a Redis without an append-only file (`QFREFUND_REQUIRE_AOF`, on).
    pub require_aof: bool,
    /// Replicas that must hold an enqueue before it is accepted (`QFREFUND_REDIS_WAIT_REPLICAS`).
    pub wait_replicas: usize,
    /// PEM file of the CA of the Redis server's certificate (`QFREFUND_REDIS_CA_FILE`).
    pub redis_ca_file: Option<PathBuf>,
    /// A Redis command that takes longer fails (with "outcome unknown" for a write)
    /// (`QFREFUND_REDIS_RESPONSE_TIMEOUT_MS`).
    pub response_timeout: Duration,
    /// How long `wait_replicas` may take to confirm an enqueue (`QFREFUND_REDIS_WAIT_TIMEOUT_MS`).
    pub wait_timeout: Duration,
    /// The outcome stream's approximate cap (`QFREFUND_EVENTS_MAXLEN`), as the workers set it.
    pub events_maxlen: u64,
    /// Merchants the workers hold credentials for (the file's `[merchants.NAME]` sections;
    /// `QFPAY_APP_CODE` in the environment names `default`). A refund for another merchant is
    /// accepted only while a live worker announces it: nothing would ever send it.
    pub merchants: Vec<String>,
    /// Lay out a ledger no worker has laid out yet (off: refused at connect).
    pub create_ledger: bool,
}

impl std::fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("redis_url", &ledger::redact_url(&self.redis_url))
            .field("namespace", &self.namespace)
            .field("queue_tag", &self.queue_tag)
            .field("shards", &self.shards)
            .field("merchant_shards", &self.merchant_shards)
            .field("require_aof", &self.require_aof)
            .field("wait_replicas", &self.wait_replicas)
            .field("redis_ca_file", &self.redis_ca_file)
            .field("response_timeout", &self.response_timeout)
            .field("wait_timeout", &self.wait_timeout)
            .field("events_maxlen", &self.events_maxlen)
            .field("merchants", &self.merchants)
            .field("create_ledger", &self.create_ledger)
            .finish()
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        let l = ledger::LedgerConfig::default();
        Self {
            redis_url: ledger::DEFAULT_REDIS_URL.into(),
            namespace: l.namespace,
            queue_tag: l.tag,
            shards: 1,
            merchant_shards: BTreeMap::new(),
            require_aof: true,
            wait_replicas: l.wait_replicas,
            redis_ca_file: None,
            response_timeout: l.response_timeout,
            wait_timeout: l.wait_timeout,
            events_maxlen: l.events_maxlen,
            merchants: Vec::new(),
            create_ledger: false,
        }
    }
}

/// Builds a [`ProducerConfig`], starting from the defaults the workers have. Its `Debug` hides
/// the Redis URL's password.
#[derive(Clone, Default)]
pub struct ProducerConfigBuilder(ProducerConfig);

impl std::fmt::Debug for ProducerConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProducerConfigBuilder").field(&self.0).finish()
    }
}

impl ProducerConfigBuilder {
    /// The ledger's Redis.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.0.redis_url = url.into();
        self
    }
    /// The key prefix.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.0.namespace = namespace.into();
        self
    }
    /// The ledger's hash tag.
    pub fn queue_tag(mut self, tag: impl Into<String>) -> Self {
        self.0.queue_tag = tag.into();
        self
    }
    /// The ledger's shard count.
    pub fn shards(mut self, shards: usize) -> Self {
        self.0.shards = shards;
        self
    }
    /// Places `merchant` on `shard` by hand.
    pub fn merchant_shard(mut self, merchant: impl Into<String>, shard: usize) -> Self {
        self.0.merchant_shards.insert(merchant.into(), shard);
        self
    }
    /// Whether a Redis without an append-only file is refused.
    pub fn require_aof(mut self, require: bool) -> Self {
        self.0.require_aof = require;
        self
    }
    /// Replicas that must hold an enqueue.
    pub fn wait_replicas(mut self, replicas: usize) -> Self {
        self.0.wait_replicas = replicas;
        self
    }
    /// The CA file of a `rediss://` server with a private CA.
    pub fn redis_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.redis_ca_file = Some(path.into());
        self
    }
    /// How long one Redis command may take.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.0.response_timeout = timeout;
        self
    }
    /// How long `wait_replicas` may take to confirm an enqueue.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.0.wait_timeout = timeout;
        self
    }
    /// The outcome stream's approximate cap (the workers' `events_maxlen`).
    pub fn events_maxlen(mut self, entries: u64) -> Self {
        self.0.events_maxlen = entries;
        self
    }
    /// A merchant the workers hold credentials for (see [`ProducerConfig::merchants`]).
    pub fn merchant(mut self, name: impl Into<String>) -> Self {
        self.0.merchants.push(name.into());
        self
    }
    /// Whether this producer may lay out a ledger no worker has laid out yet (its shard count
    /// and pins become the ledger's for good). Off by default: a namespace or tag no fleet uses
    /// is refused at connect rather than filled with refunds nobody sends.
    pub fn create_ledger(mut self, create: bool) -> Self {
        self.0.create_ledger = create;
        self
    }
    /// The configuration, every value checked.
    pub fn build(self) -> Result<ProducerConfig, Error> {
        self.0.checked()
    }
}

pub(crate) fn bad(setting: &str, problem: impl Into<String>) -> Error {
    Error::Config { setting: setting.into(), problem: problem.into() }
}

impl ProducerConfig {
    /// A builder starting from the defaults; `build` checks every value.
    ///
    /// ```
    /// use qfrefund_producer::ProducerConfig;
    ///
    /// let config = ProducerConfig::builder().namespace("shop").shards(4).merchant_shard("big", 3).build().unwrap();
    /// assert_eq!((config.namespace.as_str(), config.shards), ("shop", 4));
    /// // A merchant pinned past the last shard is refused, naming the settings.
    /// let e = ProducerConfig::builder().shards(2).merchant_shard("big", 3).build().unwrap_err();
    /// assert!(e.to_string().contains("merchant_shards"), "{e}");
    /// ```
    pub fn builder() -> ProducerConfigBuilder {
        ProducerConfigBuilder::default()
    }

    /// The workers' settings: the file `QFREFUND_CONFIG` names, if any (its top-level keys
    /// `redis_url`, `redis_ca_file`, `namespace`, `queue_tag`, `shards`, `[merchant_shards]`,
    /// `require_aof`, `redis_wait_replicas`, `redis_wait_timeout_ms`, `redis_response_timeout_ms`,
    /// `events_maxlen`, and the names of its `[merchants.NAME]` sections), then the environment
    /// over it (the same names, upper-cased, with `QFREFUND_` before them;
    /// `QFREFUND_MERCHANT_SHARDS` is merged over the file's pins, and `QFPAY_APP_CODE` makes
    /// `default` a known merchant). A variable not in the environment is read from the file of
    /// its name in the directory `QFREFUND_SECRETS_DIR` names, if any (a Kubernetes Secret
    /// mounted as a volume), as the workers read it.
    pub fn from_env() -> Result<Self, Error> {
        env::from_process()
    }

    /// As [`ProducerConfig::from_env`], with the variables from `lookup` instead of the process's
    /// environment (a configuration service, or a test).
    ///
    /// ```
    /// use qfrefund_producer::ProducerConfig;
    ///
    /// let c = ProducerConfig::from_lookup(|k| (k == "QFREFUND_SHARDS").then(|| "4".to_owned())).unwrap();
    /// assert_eq!(c.shards, 4);
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        env::with_secrets_dir(lookup)
    }

    pub(crate) fn checked(self) -> Result<Self, Error> {
        if self.redis_url.trim().is_empty() {
            return Err(bad("redis_url", "is empty"));
        }
        for m in self.merchant_shards.keys().chain(&self.merchants) {
            qfpay::request::validate_id("merchant", m, 64)
                .map_err(|e| bad("merchant_shards / merchants", format!("merchant {m:?}: {}", e.rule)))?;
        }
        // The ledger's configuration as connect would use it: the placement, then the rest.
        let (_, ledger, _) = self.clone().into_parts()?;
        ledger.validate().map_err(|e| bad("ledger", e))?;
        Ok(self)
    }

    /// The ledger's URL, configuration (which never records a layout: see [`crate::Producer::connect`])
    /// and whether AOF is required.
    pub(crate) fn into_parts(self) -> Result<(String, ledger::LedgerConfig, bool), Error> {
        let placement = ledger::refund::placement::Placement::new(self.shards, self.merchant_shards)
            .map_err(|e| bad("shards / merchant_shards", e))?;
        let config = ledger::LedgerConfig {
            namespace: self.namespace,
            tag: self.queue_tag,
            placement,
            response_timeout: self.response_timeout,
            wait_timeout: self.wait_timeout,
            events_maxlen: self.events_maxlen,
            tls_ca_file: self.redis_ca_file,
            wait_replicas: self.wait_replicas,
            record_layout: false,
            // No `..Default::default()`: a new ledger setting must be decided here too.
        };
        Ok((self.redis_url, config, self.require_aof))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_redis_password() {
        for url in [
            "redis://:s3cret@10.0.0.1:6379",
            "rediss://user:s3cret@redis.example:6380/0",
            "redis+sentinel://:s3cret@s1:26379,s2:26379/mymaster?sentinel_password=s3cret",
            "redis://:s3,cret@h:6379",
            "redis://:s3?cret@h:6379",
            "redis://:s3@cret@h:6379",
            "redis://:s3%40cret@h:6379",
            "redis+sentinel://s1:26379/mymaster?sentinel_password=s3@cret",
        ] {
            let c = ProducerConfig::builder().redis_url(url).build().unwrap();
            let shown = format!("{c:?} {:?}", ProducerConfig::builder().redis_url(url));
            assert!(!shown.contains("s3") && !shown.contains("cret"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        let plain = ProducerConfig::builder().redis_url("redis://10.0.0.1:6379").build().unwrap();
        assert!(format!("{plain:?}").contains("redis://10.0.0.1:6379"));
    }

    #[test]
    fn a_merchant_name_no_request_could_carry_is_refused() {
        let e = ProducerConfig::builder().merchant("bad name!").build().unwrap_err().to_string();
        assert!(e.contains("bad name!"), "{e}");
        let e = ProducerConfig::builder().shards(2).merchant_shard("a b", 1).build().unwrap_err().to_string();
        assert!(e.contains("merchant_shards"), "{e}");
    }
}
