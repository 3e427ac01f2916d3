//! `qfrefund config show` and `config check`: the effective settings and where each came from,
//! secrets never shown, and a configuration validated without starting anything.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Output};

use qfpay_sim::args::DEMO_CLIENT_KEY;
use qfrefund_e2e::{Scratch, env_for, qfrefund_bin};

fn run(env: &HashMap<String, String>, args: &[&str]) -> Output {
    Command::new(qfrefund_bin()).args(args).env_clear().envs(env).output().unwrap()
}

fn rows(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn row<'a>(rows: &'a [serde_json::Value], key: &str) -> &'a serde_json::Value {
    rows.iter().find(|r| r["key"] == key).unwrap_or_else(|| panic!("no {key} in {rows:?}"))
}

#[test]
fn show_says_each_value_and_where_it_came_from_and_never_a_secret() {
    let dir = Scratch::new("cfg-show");
    let file = dir.path("q.toml");
    std::fs::write(
        &file,
        "[worker]\nlease_ms = 12000\narchive = \"postgres://qf:dbpass@db:5432/a\"\n\
         [merchants.shop]\napp_code = \"A1\"\nclient_key = \"file-key-secret\"\nbase_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let mut env = env_for("redis://:redispass@127.0.0.1:1", "cfg", "http://127.0.0.1:1");
    env.remove("QFREFUND_LEASE_MS");
    env.insert("QFREFUND_CONCURRENCY".into(), "7".into());
    // A number-like app code and mchid stay text (figment's own environment provider would make
    // them numbers and refuse them).
    env.insert("QFPAY_APP_CODE".into(), "12345".into());
    env.insert("QFPAY_MCHID".into(), "0042".into());
    env.insert("QFREFUND_API_TOKENS".into(), "ops:operate:tok-secret-0123456789abcdef".into());
    // An old name still works, and says so.
    env.insert("QFREFUND_API_TIMEOUT_MS".into(), "4000".into());
    let f = file.to_str().unwrap();
    for output in ["json", "table"] {
        let out = run(&env, &["--config", f, "config", "show", "--output", output]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for secret in [DEMO_CLIENT_KEY, "file-key-secret", "tok-secret", "dbpass", "redispass"] {
            assert!(!all.contains(secret), "{secret} shown:\n{all}");
        }
    }
    let out = run(&env, &["--config", f, "config", "show", "--output", "json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("QFREFUND_API_TIMEOUT_MS is deprecated"));
    let r = rows(&out);
    assert_eq!(row(&r, "worker.lease_ms")["value"], "12000");
    assert!(row(&r, "worker.lease_ms")["source"].as_str().unwrap().starts_with("file ("));
    assert_eq!(row(&r, "worker.concurrency")["source"], "environment (QFREFUND_CONCURRENCY)");
    assert_eq!(row(&r, "worker.heartbeat_ms")["source"], "environment (QFREFUND_HEARTBEAT_MS)");
    assert_eq!(row(&r, "worker.drain_grace_ms")["source"], "default");
    assert_eq!(row(&r, "worker.drain_grace_ms")["value"], "20000");
    assert_eq!(row(&r, "worker.archive")["value"], "postgres://qf@db:5432/a");
    assert_eq!(row(&r, "api.request_timeout_ms")["value"], "4000");
    assert_eq!(row(&r, "merchants.default.app_code")["value"], "12345");
    assert_eq!(row(&r, "merchants.default.mchid")["value"], "0042");
    assert_eq!(row(&r, "merchants.default.client_key")["value"], "<redacted>");
    assert_eq!(row(&r, "merchants.shop.client_key")["value"], "<redacted>");
    assert_eq!(row(&r, "api.tokens")["value"], "<redacted>");
    assert!(row(&r, "worker.metrics_listen")["value"].is_null());
}

#[test]
fn check_validates_without_starting_and_names_what_is_wrong() {
    // Redis on port 1: nothing listens, and check never connects.
    let env = env_for("redis://127.0.0.1:1", "cfg", "http://127.0.0.1:1");
    let out = run(&env, &["config", "check", "--for", "worker"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = said.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let found = |part: &str| rows.iter().find(|r| r["part"] == part).map(|r| r["found"].to_string());
    assert!(found("worker").is_some_and(|f| f.starts_with("\"valid")), "{said}");
    assert_eq!(found("configuration").as_deref(), Some("\"valid\""), "{said}");
    // As a table (a terminal's default) and as CSV, like every command.
    let table = run(&env, &["config", "check", "--output", "table"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("PART") && table.contains("\nconfiguration  valid"), "{table}");
    let csv = run(&env, &["config", "check", "--output", "csv"]);
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with("part,found\n"));
    // The API needs a token.
    let out = run(&env, &["config", "check", "--for", "api"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("QFREFUND_API_TOKENS"));
    let mut bad = env.clone();
    bad.insert("QFREFUND_LEASE_MS".into(), "1000".into());
    let out = run(&bad, &["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lease"), "{}", String::from_utf8_lossy(&out.stderr));
    // Values that could only fail later are refused now, each naming its setting.
    for (var, value, named) in [
        ("QFREFUND_NOT_FOUND_MIN", "1", "not_found_min"),
        ("QFREFUND_REDIS_WAIT_REPLICAS", "1", "redis_wait_timeout_ms"),
        ("QFREFUND_WEBHOOK_CLAIM_IDLE_MS", "1000", "webhook_claim_idle_ms"),
        ("QFREFUND_PAUSED_WAIT_MS", "5", "paused_wait_ms"),
        ("QFREFUND_REDIS_RESPONSE_TIMEOUT_MS", "900", "redis_response_timeout_ms"),
    ] {
        let mut bad = env.clone();
        bad.insert(var.into(), value.into());
        let out = run(&bad, &["config", "check", "--for", "worker"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(named), "{var}={value} names {named}: {err}");
    }
    let mut bad = env.clone();
    bad.insert("QFREFUND_QUIET_WINDOW".into(), "sometimes".into());
    let err = String::from_utf8_lossy(&run(&bad, &["config", "check"]).stderr).to_string();
    assert!(err.contains("QFREFUND_QUIET_WINDOW: expected on or off"), "{err}");
    // A worker with no merchant cannot start; check says so before anything is deployed.
    let mut none = env.clone();
    for k in ["QFPAY_APP_CODE", "QFPAY_CLIENT_KEY", "QFPAY_BASE_URL"] {
        none.remove(k);
    }
    let out = run(&none, &["config", "check", "--for", "worker"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a worker needs a merchant"));
    // Half a default merchant names the missing variable.
    let mut half = env;
    half.remove("QFPAY_CLIENT_KEY");
    let err = String::from_utf8_lossy(&run(&half, &["config", "check"]).stderr).to_string();
    assert!(err.contains("QFPAY_CLIENT_KEY"), "{err}");
}

#[test]
fn the_example_file_is_what_config_example_prints() {
    let out = run(&HashMap::new(), &["config", "example"]);
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/qfrefund.example.toml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), file);
}

#[test]
fn api_tokens_from_the_file_name_the_variable_that_holds_each() {
    let dir = Scratch::new("cfg-tokens");
    let file = dir.path("t.toml");
    std::fs::write(&file, "[[api.tokens]]\nname = \"shop\"\nrole = \"produce\"\ntoken_env = \"SHOP_TOKEN\"\n").unwrap();
    let mut env = env_for("redis://127.0.0.1:1", "cfg", "http://127.0.0.1:1");
    let args = ["--config", file.to_str().unwrap(), "config", "check", "--for", "api"];
    let out = run(&env, &args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SHOP_TOKEN is not set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.insert("SHOP_TOKEN".into(), "shop-token-0123456789abcdef".into());
    let out = run(&env, &args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 token(s)"), "{}", String::from_utf8_lossy(&out.stderr));
    // The environment's list replaces the file's.
    env.insert("QFREFUND_API_TOKENS".into(), "a:read:token-a-0123456789abcd,b:operate:token-b-0123456789abcd".into());
    assert!(String::from_utf8_lossy(&run(&env, &args).stdout).contains("2 token(s)"));
}

#[test]
fn secrets_come_from_a_mounted_directory_as_well_as_the_environment() {
    // A Kubernetes Secret mounted as a volume: one file per key, the keys named like variables.
    let dir = Scratch::new("cfg-secrets-dir");
    let secrets = dir.path("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("QFREFUND_REDIS_URL"), "redis://:dir-redis-pass@127.0.0.1:1\n").unwrap();
    std::fs::write(secrets.join("QFPAY_CLIENT_KEY"), format!("{DEMO_CLIENT_KEY}\n")).unwrap();
    std::fs::write(secrets.join("SHOP_B_KEY"), "shop-b-key-from-a-file\n").unwrap();
    let file = dir.path("q.toml");
    std::fs::write(
        &file,
        "[merchants.shop-b]\napp_code = \"B1\"\nclient_key_env = \"SHOP_B_KEY\"\nbase_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let mut env = env_for("redis://127.0.0.1:1", "cfg", "http://127.0.0.1:1");
    env.remove("QFREFUND_REDIS_URL");
    env.remove("QFPAY_CLIENT_KEY");
    env.insert("QFREFUND_SECRETS_DIR".into(), secrets.to_string_lossy().into_owned());
    let f = file.to_str().unwrap();
    let out = run(&env, &["--config", f, "config", "show", "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = String::from_utf8_lossy(&out.stdout).to_string();
    for secret in ["dir-redis-pass", DEMO_CLIENT_KEY, "shop-b-key-from-a-file"] {
        assert!(!all.contains(secret), "{secret} shown:\n{all}");
    }
    let r = rows(&out);
    assert!(row(&r, "redis_url")["value"].as_str().unwrap().ends_with("127.0.0.1:1"), "{r:?}");
    assert_eq!(row(&r, "redis_url")["source"], "environment (QFREFUND_REDIS_URL in QFREFUND_SECRETS_DIR)");
    assert_eq!(row(&r, "merchants.default.client_key")["value"], "<redacted>");
    // Both merchants' keys are found: the default's file, and the one client_key_env names.
    let out = run(&env, &["--config", f, "config", "check", "--for", "worker"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The environment wins over the directory.
    env.insert("QFREFUND_REDIS_URL".into(), "redis://127.0.0.1:2".into());
    let r = rows(&run(&env, &["--config", f, "config", "show", "--output", "json"]));
    assert_eq!(row(&r, "redis_url")["value"], "redis://127.0.0.1:2");
    // A directory that is not one is refused, naming it.
    env.insert("QFREFUND_SECRETS_DIR".into(), dir.path("missing").to_string_lossy().into_owned());
    let out = run(&env, &["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("QFREFUND_SECRETS_DIR"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
