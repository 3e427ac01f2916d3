//! The producer library reads the workers' settings with code of its own (it must not compile
//! the CLI, the worker or an HTTP client). This holds it to the settings tree: every top-level
//! setting `qfrefund config show` lists is one the producer reads, under the same variable and
//! file key, with the same default and the same value once set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;

use qfrefund_e2e::{Scratch, qfrefund_bin};
use qfrefund_producer::ProducerConfig;

/// Each top-level setting: a value other than its default, as written in the environment (and,
/// TOML-quoted where needed, in the file).
const SAMPLES: [(&str, &str); 11] = [
    ("redis_url", "redis://10.1.2.3:6390/2"),
    ("redis_ca_file", "/etc/qfrefund/ca.pem"),
    ("namespace", "shop"),
    ("queue_tag", "eu"),
    ("shards", "4"),
    ("merchant_shards", "big=0,small=0"),
    ("require_aof", "off"),
    ("redis_wait_replicas", "1"),
    ("redis_wait_timeout_ms", "2500"),
    ("redis_response_timeout_ms", "7000"),
    ("events_maxlen", "250000"),
];

/// The producer's value of a setting, written as `config show` writes it.
fn produced(c: &ProducerConfig, key: &str) -> String {
    match key {
        "redis_url" => c.redis_url.clone(),
        "redis_ca_file" => c.redis_ca_file.as_ref().map_or("null".into(), |p| p.display().to_string()),
        "namespace" => c.namespace.clone(),
        "queue_tag" => c.queue_tag.clone(),
        "shards" => c.shards.to_string(),
        "merchant_shards" => c.merchant_shards.iter().map(|(m, s)| format!("{m}={s}")).collect::<Vec<_>>().join(","),
        "require_aof" => if c.require_aof { "on" } else { "off" }.into(),
        "redis_wait_replicas" => c.wait_replicas.to_string(),
        "redis_wait_timeout_ms" => c.wait_timeout.as_millis().to_string(),
        "redis_response_timeout_ms" => c.response_timeout.as_millis().to_string(),
        "events_maxlen" => c.events_maxlen.to_string(),
        other => {
            panic!("the producer does not read {other:?}: read it (crates/producer/src/config/env.rs) and add it here")
        }
    }
}

/// `qfrefund config show`'s top-level settings (key → value) with `env` set and nothing else.
fn shown(env: &[(String, String)]) -> BTreeMap<String, String> {
    let out = Command::new(qfrefund_bin())
        .args(["config", "show", "--output", "json"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "config show: {}", String::from_utf8_lossy(&out.stderr));
    let mut top = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap().to_owned();
        if !key.contains('.') {
            let value = match &v["value"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            top.insert(key, value);
        }
    }
    top
}

fn normalised(key: &str, value: &str) -> String {
    // `config show` may space the pins differently (and says null for none); the producer's are
    // sorted.
    if key == "merchant_shards" {
        let value = if value == "null" { "" } else { value };
        let mut pins: Vec<String> = value.split(',').map(|p| p.replace(' ', "")).filter(|p| !p.is_empty()).collect();
        pins.sort();
        return pins.join(",");
    }
    value.to_owned()
}

fn env_name(key: &str) -> String {
    format!("QFREFUND_{}", key.to_ascii_uppercase())
}

#[test]
fn the_producer_reads_every_top_level_setting_as_the_workers_do() {
    // Defaults: the same, for every setting the tree has at the top.
    let defaults = shown(&[]);
    let keys: Vec<&str> = SAMPLES.iter().map(|(k, _)| *k).collect();
    assert_eq!(defaults.keys().map(String::as_str).collect::<Vec<_>>().len(), keys.len(), "{defaults:?}");
    let producer = ProducerConfig::from_lookup(|_| None).unwrap();
    for (key, value) in &defaults {
        assert_eq!(normalised(key, &produced(&producer, key)), normalised(key, value), "the default of {key}");
    }
    // Each setting from the environment, under the same variable.
    for (key, sample) in SAMPLES {
        let env = vec![(env_name(key), sample.to_owned())];
        let workers = shown(&env);
        let theirs = workers.get(key).unwrap_or_else(|| panic!("config show lists no {key}"));
        assert_eq!(normalised(key, theirs), normalised(key, sample), "config show reads {key} from {}", env[0].0);
        let vars: BTreeMap<String, String> = env.into_iter().collect();
        let producer = ProducerConfig::from_lookup(|k| vars.get(k).cloned()).unwrap();
        assert_eq!(normalised(key, &produced(&producer, key)), normalised(key, theirs), "the producer reads {key}");
    }
    // And all of them from the file, under the same keys.
    let dir = Scratch::new("producer-settings");
    let mut toml = String::new();
    let mut pins = String::from("[merchant_shards]\n");
    for (key, sample) in SAMPLES {
        match key {
            "merchant_shards" => {
                for pin in sample.split(',') {
                    let (m, s) = pin.split_once('=').unwrap();
                    pins.push_str(&format!("{m} = {s}\n"));
                }
            }
            k if sample.parse::<u64>().is_ok() => toml.push_str(&format!("{k} = {sample}\n")),
            k => toml.push_str(&format!("{k} = {sample:?}\n")),
        }
    }
    std::fs::write(dir.path("qfrefund.toml"), format!("{toml}{pins}")).unwrap();
    let file = vec![("QFREFUND_CONFIG".to_owned(), dir.path("qfrefund.toml").display().to_string())];
    let workers = shown(&file);
    let vars: BTreeMap<String, String> = file.into_iter().collect();
    let producer = ProducerConfig::from_lookup(|k| vars.get(k).cloned()).unwrap();
    for (key, sample) in SAMPLES {
        assert_eq!(normalised(key, &workers[key]), normalised(key, sample), "config show reads {key} from the file");
        assert_eq!(
            normalised(key, &produced(&producer, key)),
            normalised(key, sample),
            "the producer reads {key} from the file"
        );
    }
}

#[test]
fn what_the_workers_refuse_the_producer_refuses() {
    // Nothing set: both accept it (so that the refusals below are the values' doing).
    let plain =
        Command::new(qfrefund_bin()).args(["config", "check", "--for", "producer"]).env_clear().output().unwrap();
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    assert!(ProducerConfig::from_lookup(|_| None).is_ok());
    for (var, value) in [
        ("QFREFUND_EVENTS_MAXLEN", "50000"),
        ("QFREFUND_REDIS_WAIT_TIMEOUT_MS", "0"),
        ("QFREFUND_REDIS_WAIT_TIMEOUT_MS", "120000"),
        ("QFREFUND_REDIS_RESPONSE_TIMEOUT_MS", "1000"),
        ("QFREFUND_SHARDS", "0"),
    ] {
        let out = Command::new(qfrefund_bin())
            .args(["config", "check", "--for", "producer"])
            .env_clear()
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "config check refuses {var}={value}");
        let e = ProducerConfig::from_lookup(|k| (k == var).then(|| value.to_owned())).unwrap_err();
        assert!(!e.is_retryable(), "{var}={value}: {e}");
    }
}

#[test]
fn an_odd_ledger_name_is_warned_about_not_refused() {
    // A ledger laid out under such a name works; refusing it would strand its refunds.
    let out = Command::new(qfrefund_bin())
        .args(["config", "check", "--for", "producer"])
        .env_clear()
        .env("QFREFUND_QUEUE_TAG", "{eu}")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("queue_tag \\\"{eu}\\\" is empty or holds braces"));
    let c = ProducerConfig::from_lookup(|k| (k == "QFREFUND_QUEUE_TAG").then(|| "{eu}".to_owned())).unwrap();
    assert_eq!(c.queue_tag, "{eu}");
}
