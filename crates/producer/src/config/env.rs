//! [`ProducerConfig::from_env`]: the workers' file (`QFREFUND_CONFIG`), then the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{ProducerConfig, bad};
use crate::Error;

/// The process's environment, and the directory `QFREFUND_SECRETS_DIR` names (a mounted
/// Kubernetes Secret: one file per variable, read when the variable itself is not set), as the
/// workers read them.
pub(super) fn from_process() -> Result<ProducerConfig, Error> {
    with_secrets_dir(|k| std::env::var(k).ok())
}

/// [`from_lookup`] over `env`, and the files of the directory `env` names as `QFREFUND_SECRETS_DIR`.
pub(super) fn with_secrets_dir(env: impl Fn(&str) -> Option<String>) -> Result<ProducerConfig, Error> {
    const DIR: &str = "QFREFUND_SECRETS_DIR";
    let nonblank = |v: String| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    let dir = env(DIR).and_then(nonblank).map(PathBuf::from);
    if let Some(d) = dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(bad(DIR, format!("{} is not a directory", d.display())));
    }
    let failed = std::cell::RefCell::new(None);
    let config = from_lookup(|k| {
        if let Some(v) = env(k).and_then(nonblank) {
            return Some(v);
        }
        let path = dir.as_ref()?.join(k);
        match std::fs::read_to_string(&path) {
            Ok(text) => nonblank(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                failed.borrow_mut().get_or_insert_with(|| bad(k, format!("reading {} ({DIR}): {e}", path.display())));
                None
            }
        }
    });
    match failed.into_inner() {
        Some(e) => Err(e),
        None => config,
    }
}

pub(super) fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<ProducerConfig, Error> {
    let mut c = ProducerConfig::default();
    if let Some(path) = env("QFREFUND_CONFIG").filter(|p| !p.trim().is_empty()) {
        let text = std::fs::read_to_string(&path).map_err(|e| bad("QFREFUND_CONFIG", format!("{path}: {e}")))?;
        apply_file(&mut c, &text).map_err(|e| match e {
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
        // Merged over the file's pins, as the workers merge them.
        c.merchant_shards.extend(pins(&v)?);
    }
    // The default merchant is one as the workers count it: any of these set defines it.
    let default_in_env = ["QFPAY_APP_CODE", "QFPAY_CLIENT_KEY", "QFPAY_BASE_URL"].iter().any(|k| text(k).is_some());
    if default_in_env && !c.merchants.iter().any(|m| m == ledger::DEFAULT_MERCHANT) {
        c.merchants.push(ledger::DEFAULT_MERCHANT.to_owned());
    }
    if let Some(v) = text("QFREFUND_REQUIRE_AOF") {
        c.require_aof = switch("QFREFUND_REQUIRE_AOF", &v)?;
    }
    if let Some(v) = text("QFREFUND_REDIS_WAIT_REPLICAS") {
        c.wait_replicas = number("QFREFUND_REDIS_WAIT_REPLICAS", &v)?;
    }
    if let Some(v) = text("QFREFUND_REDIS_WAIT_TIMEOUT_MS") {
        c.wait_timeout = Duration::from_millis(number("QFREFUND_REDIS_WAIT_TIMEOUT_MS", &v)?);
    }
    if let Some(v) = text("QFREFUND_REDIS_RESPONSE_TIMEOUT_MS") {
        c.response_timeout = Duration::from_millis(number("QFREFUND_REDIS_RESPONSE_TIMEOUT_MS", &v)?);
    }
    if let Some(v) = text("QFREFUND_EVENTS_MAXLEN") {
        c.events_maxlen = number("QFREFUND_EVENTS_MAXLEN", &v)?;
    }
    c.checked()
}

fn apply_file(c: &mut ProducerConfig, text: &str) -> Result<(), Error> {
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
        redis_wait_timeout_ms: Option<u64>,
        redis_response_timeout_ms: Option<u64>,
        events_maxlen: Option<u64>,
        merchants: Option<BTreeMap<String, BTreeMap<String, toml::Value>>>,
    }
    // Other sections and keys are the workers' and the API's.
    let f: File = toml::from_str(text).map_err(|e| bad("QFREFUND_CONFIG", e.message().to_owned()))?;
    c.redis_url = f.redis_url.unwrap_or(std::mem::take(&mut c.redis_url));
    c.redis_ca_file = f.redis_ca_file.or(c.redis_ca_file.take());
    c.namespace = f.namespace.unwrap_or(std::mem::take(&mut c.namespace));
    c.queue_tag = f.queue_tag.unwrap_or(std::mem::take(&mut c.queue_tag));
    c.shards = f.shards.unwrap_or(c.shards);
    c.merchant_shards = f.merchant_shards.unwrap_or(std::mem::take(&mut c.merchant_shards));
    c.wait_replicas = f.redis_wait_replicas.unwrap_or(c.wait_replicas);
    c.wait_timeout = f.redis_wait_timeout_ms.map_or(c.wait_timeout, Duration::from_millis);
    c.response_timeout = f.redis_response_timeout_ms.map_or(c.response_timeout, Duration::from_millis);
    c.events_maxlen = f.events_maxlen.unwrap_or(c.events_maxlen);
    // A merchant section the workers take credentials from; `[merchants.default]` defines the
    // default merchant only with one of these (the workers' rule: `sign_alg` alone is none).
    const DEFINES: [&str; 4] = ["app_code", "client_key", "client_key_env", "base_url"];
    for (name, fields) in f.merchants.unwrap_or_default() {
        if name != ledger::DEFAULT_MERCHANT || DEFINES.iter().any(|k| fields.contains_key(*k)) {
            c.merchants.push(name);
        }
    }
    match f.require_aof {
        None => {}
        Some(toml::Value::Boolean(b)) => c.require_aof = b,
        Some(toml::Value::String(s)) => c.require_aof = switch("require_aof", &s)?,
        Some(other) => return Err(bad("require_aof", format!("on or off, got {other:?}"))),
    }
    Ok(())
}

fn number<N: std::str::FromStr>(setting: &str, v: &str) -> Result<N, Error> {
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
        if out.insert(name.trim().to_owned(), number(S, shard.trim())?).is_some() {
            return Err(bad(S, format!("merchant {:?} is pinned twice", name.trim())));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<ProducerConfig, Error> {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        from_lookup(|k| vars.get(k).cloned())
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
    fn a_variable_not_in_the_environment_is_read_from_the_secrets_directory() {
        let dir = std::env::temp_dir().join(format!("qfrefund-producer-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("QFREFUND_REDIS_URL"), "redis://:from-file@10.0.0.9:6379\n").unwrap();
        std::fs::write(dir.join("QFPAY_APP_CODE"), "APP\n").unwrap();
        let d = dir.to_string_lossy().into_owned();
        let vars = |extra: &[(&str, &str)]| {
            let mut m: BTreeMap<String, String> = BTreeMap::from([("QFREFUND_SECRETS_DIR".to_owned(), d.clone())]);
            m.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            m
        };
        let m = vars(&[]);
        let c = with_secrets_dir(|k| m.get(k).cloned()).unwrap();
        assert_eq!(c.redis_url, "redis://:from-file@10.0.0.9:6379");
        assert_eq!(c.merchants, vec!["default".to_owned()]);
        // The environment wins over the directory.
        let m = vars(&[("QFREFUND_REDIS_URL", "redis://10.0.0.1:6379")]);
        assert_eq!(with_secrets_dir(|k| m.get(k).cloned()).unwrap().redis_url, "redis://10.0.0.1:6379");
        // A directory that is not one is refused, naming the variable.
        let m = BTreeMap::from([("QFREFUND_SECRETS_DIR".to_owned(), format!("{d}/missing"))]);
        let e = with_secrets_dir(|k| m.get(k).cloned()).unwrap_err().to_string();
        assert!(e.contains("QFREFUND_SECRETS_DIR"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_setting_is_named() {
        let e = with(&[("QFREFUND_SHARDS", "four")]).unwrap_err().to_string();
        assert!(e.contains("QFREFUND_SHARDS") && e.contains("four"), "{e}");
        let e = with(&[("QFREFUND_SHARDS", "2"), ("QFREFUND_MERCHANT_SHARDS", "big=5")]).unwrap_err().to_string();
        assert!(e.contains("merchant_shards"), "{e}");
        let e = with(&[("QFREFUND_SHARDS", "4"), ("QFREFUND_MERCHANT_SHARDS", "a=1,a=2")]).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let e = with(&[("QFREFUND_REQUIRE_AOF", "maybe")]).unwrap_err().to_string();
        assert!(e.contains("QFREFUND_REQUIRE_AOF"), "{e}");
    }

    #[test]
    fn the_file_is_read_and_the_environment_wins() {
        let dir = std::env::temp_dir().join(format!("qfrefund-producer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("qfrefund.toml");
        std::fs::write(
            &file,
            "namespace = \"filed\"\nshards = 4\nrequire_aof = \"off\"\n[merchant_shards]\nbig = 0\n\
             [worker]\nconcurrency = 8\n[merchants.default]\nsign_alg = \"SHA256\"\n[merchants.shop-b]\napp_code = \"X\"\n",
        )
        .unwrap();
        let path = file.to_string_lossy().into_owned();
        let c = with(&[("QFREFUND_CONFIG", &path), ("QFREFUND_SHARDS", "3"), ("QFREFUND_MERCHANT_SHARDS", "small=2")])
            .unwrap();
        assert_eq!((c.namespace.as_str(), c.shards, c.require_aof), ("filed", 3, false));
        // The environment's pins are merged over the file's, as the workers merge them.
        assert_eq!(c.merchant_shards, BTreeMap::from([("big".to_owned(), 0), ("small".to_owned(), 2)]));
        // A [merchants.default] with only sign_alg is no merchant; QFPAY_APP_CODE makes it one.
        assert_eq!(c.merchants, vec!["shop-b".to_owned()]);
        let c = with(&[("QFREFUND_CONFIG", &path), ("QFPAY_APP_CODE", "A")]).unwrap();
        assert_eq!(c.merchants, vec!["shop-b".to_owned(), "default".to_owned()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
