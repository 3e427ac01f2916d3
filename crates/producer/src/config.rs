//! The settings a producer shares with the workers: where the ledger is and how it is laid out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

/// Where the ledger is and how it is laid out. Build one with [`ProducerConfig::builder`], or
/// read the workers' settings with [`ProducerConfig::from_env`]. Every value must match the
/// workers' (`namespace`, `queue_tag`, `shards`, `merchant_shards`): a producer laid out
/// otherwise is refused at connect, never left writing where no worker looks.
#[derive(Clone, Debug, PartialEq)]
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
    /// A Redis command that takes longer fails (with "outcome unknown" for a write).
    pub response_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        let l = ledger::LedgerConfig::default();
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            namespace: l.namespace,
            queue_tag: l.tag,
            shards: 1,
            merchant_shards: BTreeMap::new(),
            require_aof: true,
            wait_replicas: l.wait_replicas,
            redis_ca_file: None,
            response_timeout: l.response_timeout,
        }
    }
}

/// Builds a [`ProducerConfig`], starting from the defaults the workers have.
#[derive(Clone, Debug, Default)]
pub struct ProducerConfigBuilder(ProducerConfig);

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
    /// The configuration, every value checked.
    pub fn build(self) -> Result<ProducerConfig, Error> {
        self.0.checked()
    }
}

fn bad(setting: &str, problem: impl Into<String>) -> Error {
    Error::Config { setting: setting.into(), problem: problem.into() }
}

impl ProducerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ProducerConfigBuilder {
        ProducerConfigBuilder::default()
    }

    /// The workers' settings: the file `QFREFUND_CONFIG` names, if any (its top-level keys
    /// `redis_url`, `redis_ca_file`, `namespace`, `queue_tag`, `shards`, `[merchant_shards]`,
    /// `require_aof`, `redis_wait_replicas`), then the environment over it (`QFREFUND_REDIS_URL`,
    /// `QFREFUND_REDIS_CA_FILE`, `QFREFUND_NAMESPACE`, `QFREFUND_QUEUE_TAG`, `QFREFUND_SHARDS`,
    /// `QFREFUND_MERCHANT_SHARDS`, `QFREFUND_REQUIRE_AOF`, `QFREFUND_REDIS_WAIT_REPLICAS`).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut c = ProducerConfig::default();
        if let Some(path) = env("QFREFUND_CONFIG").filter(|p| !p.trim().is_empty()) {
            let text = std::fs::read_to_string(&path).map_err(|e| bad("QFREFUND_CONFIG", format!("{path}: {e}")))?;
            c.apply_file(&text).map_err(|e| match e {
                Error::Config { setting, problem } => bad(&setting, format!("{problem} (in {path})")),
                other => other,
            })?;
        }
        let text = |k: &str| env(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(v) = text("QFREFUND_REDIS_URL") {
            c.redis_url = v;
        }
        if let Some(v) = text("QFREFUND_REDIS_CA_FILE") {
            c.redis_ca_file = Some(v.into());
        }
        if let Some(v) = text("QFREFUND_NAMESPACE") {
            c.namespace = v;
        }
        if let Some(v) = text("QFREFUND_QUEUE_TAG") {
            c.queue_tag = v;
        }
        if let Some(v) = text("QFREFUND_SHARDS") {
            c.shards = number("QFREFUND_SHARDS", &v)?;
        }
        if let Some(v) = text("QFREFUND_MERCHANT_SHARDS") {
            c.merchant_shards = pins(&v)?;
        }
        if let Some(v) = text("QFREFUND_REQUIRE_AOF") {
            c.require_aof = switch("QFREFUND_REQUIRE_AOF", &v)?;
        }
        if let Some(v) = text("QFREFUND_REDIS_WAIT_REPLICAS") {
            c.wait_replicas = number("QFREFUND_REDIS_WAIT_REPLICAS", &v)?;
        }
        c.checked()
    }

    fn apply_file(&mut self, text: &str) -> Result<(), Error> {
        #[derive(serde::Deserialize)]
        struct File {
            redis_url: Option<String>,
            redis_ca_file: Option<PathBuf>,
            namespace: Option<String>,
            queue_tag: Option<String>,
            shards: Option<usize>,
            merchant_shards: Option<BTreeMap<String, usize>>,
            require_aof: Option<toml::Value>,
            redis_wait_replicas: Option<usize>,
        }
        // Other sections and keys are the workers' and the API's.
        let f: File = toml::from_str(text).map_err(|e| bad("QFREFUND_CONFIG", e.message().to_owned()))?;
        self.redis_url = f.redis_url.unwrap_or(std::mem::take(&mut self.redis_url));
        self.redis_ca_file = f.redis_ca_file.or(self.redis_ca_file.take());
        self.namespace = f.namespace.unwrap_or(std::mem::take(&mut self.namespace));
        self.queue_tag = f.queue_tag.unwrap_or(std::mem::take(&mut self.queue_tag));
        self.shards = f.shards.unwrap_or(self.shards);
        self.merchant_shards = f.merchant_shards.unwrap_or(std::mem::take(&mut self.merchant_shards));
        self.wait_replicas = f.redis_wait_replicas.unwrap_or(self.wait_replicas);
        match f.require_aof {
            None => {}
            Some(toml::Value::Boolean(b)) => self.require_aof = b,
            Some(toml::Value::String(s)) => self.require_aof = switch("require_aof", &s)?,
            Some(other) => return Err(bad("require_aof", format!("on or off, got {other:?}"))),
        }
        Ok(())
    }

    fn checked(self) -> Result<Self, Error> {
        if self.redis_url.trim().is_empty() {
            return Err(bad("redis_url", "is empty"));
        }
        if self.namespace.is_empty() || self.namespace.contains(['{', '}', ' ']) {
            return Err(bad(
                "namespace",
                format!("must be non-empty, without braces or spaces (got {:?})", self.namespace),
            ));
        }
        if self.queue_tag.is_empty() || self.queue_tag.contains(['{', '}', ' ']) {
            return Err(bad(
                "queue_tag",
                format!("must be non-empty, without braces or spaces (got {:?})", self.queue_tag),
            ));
        }
        ledger::refund::placement::Placement::new(self.shards, self.merchant_shards.clone())
            .map_err(|e| bad("shards / merchant_shards", e))?;
        Ok(self)
    }

    /// The ledger's URL, configuration and whether AOF is required.
    pub(crate) fn into_parts(self) -> Result<(String, ledger::LedgerConfig, bool), Error> {
        let placement = ledger::refund::placement::Placement::new(self.shards, self.merchant_shards)
            .map_err(|e| bad("shards / merchant_shards", e))?;
        let config = ledger::LedgerConfig {
            namespace: self.namespace,
            tag: self.queue_tag,
            placement,
            response_timeout: self.response_timeout,
            tls_ca_file: self.redis_ca_file,
            wait_replicas: self.wait_replicas,
            ..ledger::LedgerConfig::default()
        };
        Ok((self.redis_url, config, self.require_aof))
    }
}

fn number(setting: &str, v: &str) -> Result<usize, Error> {
    v.parse().map_err(|_| bad(setting, format!("must be a whole number, got {v:?}")))
}

fn switch(setting: &str, v: &str) -> Result<bool, Error> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(bad(setting, format!("on or off, got {v:?}"))),
    }
}

/// `name=shard,…`
fn pins(v: &str) -> Result<BTreeMap<String, usize>, Error> {
    const S: &str = "QFREFUND_MERCHANT_SHARDS";
    let mut out = BTreeMap::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, shard) = part.split_once('=').ok_or_else(|| bad(S, format!("expected name=shard, got {part:?}")))?;
        out.insert(name.trim().to_owned(), number(S, shard.trim())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<ProducerConfig, Error> {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        ProducerConfig::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn the_environment_names_are_the_workers() {
        let c = with(&[
            ("QFREFUND_REDIS_URL", "redis://10.0.0.1:6380"),
            ("QFREFUND_NAMESPACE", "shop"),
            ("QFREFUND_SHARDS", "4"),
            ("QFREFUND_MERCHANT_SHARDS", "big=0, small=3"),
            ("QFREFUND_REQUIRE_AOF", "off"),
            ("QFREFUND_REDIS_WAIT_REPLICAS", "1"),
        ])
        .unwrap();
        assert_eq!((c.redis_url.as_str(), c.namespace.as_str(), c.shards), ("redis://10.0.0.1:6380", "shop", 4));
        assert_eq!(c.merchant_shards.get("small"), Some(&3));
        assert!(!c.require_aof);
        assert_eq!(c.wait_replicas, 1);
        assert_eq!(with(&[]).unwrap(), ProducerConfig::default());
    }

    #[test]
    fn a_bad_setting_is_named() {
        let e = with(&[("QFREFUND_SHARDS", "four")]).unwrap_err().to_string();
        assert!(e.contains("QFREFUND_SHARDS") && e.contains("four"), "{e}");
        let e = with(&[("QFREFUND_SHARDS", "2"), ("QFREFUND_MERCHANT_SHARDS", "big=5")]).unwrap_err().to_string();
        assert!(e.contains("merchant_shards"), "{e}");
        let e = with(&[("QFREFUND_REQUIRE_AOF", "maybe")]).unwrap_err().to_string();
        assert!(e.contains("QFREFUND_REQUIRE_AOF"), "{e}");
    }

    #[test]
    fn the_file_is_read_and_the_environment_wins() {
        let dir = std::env::temp_dir().join(format!("qfrefund-producer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("qfrefund.toml");
        std::fs::write(&file, "namespace = \"filed\"\nshards = 2\nrequire_aof = \"off\"\n[worker]\nconcurrency = 8\n")
            .unwrap();
        let path = file.to_string_lossy().into_owned();
        let c = with(&[("QFREFUND_CONFIG", &path), ("QFREFUND_SHARDS", "3")]).unwrap();
        assert_eq!((c.namespace.as_str(), c.shards, c.require_aof), ("filed", 3, false));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
