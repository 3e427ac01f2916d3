//! The `qfrefund` command-line contract that scripts depend on: output shapes and exit codes.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Output};

use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{Scratch, env_for, qfrefund_bin};
use testkit::{RedisServer, unique_namespace};

fn run(env: &HashMap<String, String>, args: &[&str]) -> Output {
    Command::new(qfrefund_bin()).args(args).env_clear().envs(env).output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn enqueue_status_list_and_their_exit_codes() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("cli"), "http://127.0.0.1:1");
    let s = generated_syssn(1);
    let out =
        run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-C1", "--amount", "1500", "--orig-amount", "2000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rec = json(&out);
    assert_eq!((rec["state"].as_str(), rec["txamt"].as_u64()), (Some("queued"), Some(1500)));
    // The same request again: the same record, exit 0.
    let again =
        run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-C1", "--amount", "1500", "--orig-amount", "2000"]);
    assert!(again.status.success());
    assert_eq!(json(&again)["created_at"], rec["created_at"]);
    // Another amount under the same id: a conflict naming the field, exit 1.
    let conflict = run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-C1", "--amount", "1600"]);
    assert_eq!(conflict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("txamt"));
    // Invalid input names the field.
    let bad = run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF C2", "--amount", "5"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("out_trade_no"), "{}", String::from_utf8_lossy(&bad.stderr));
    let bad = run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-C2", "--amount", "-5"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("amount"));
    // status: the record; exit 3 when unknown.
    let st = run(&env, &["status", "RF-C1"]);
    assert!(st.status.success());
    for field in [
        "out_trade_no",
        "syssn",
        "txamt",
        "state",
        "respcd",
        "resperr",
        "refund_syssn",
        "submits",
        "enquiries",
        "updated_at",
    ] {
        assert!(json(&st).get(field).is_some(), "status has {field}");
    }
    assert_eq!(run(&env, &["status", "RF-NOPE"]).status.code(), Some(3));
    // list: JSON lines, filterable by state.
    let list = run(&env, &["list", "--state", "queued"]);
    let lines: Vec<&str> = std::str::from_utf8(&list.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(serde_json::from_str::<serde_json::Value>(lines[0]).unwrap()["out_trade_no"], "RF-C1");
    assert!(run(&env, &["list", "--state", "succeeded"]).stdout.is_empty());
    assert!(!run(&env, &["list", "--state", "done"]).status.success());
}

#[test]
fn import_reports_every_line_and_exits_1_unless_all_were_accepted() {
    let scratch = Scratch::new("cli-import");
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("cli-import"), "http://127.0.0.1:1");
    let (a, b) = (generated_syssn(1), generated_syssn(2));
    let csv = scratch.path("ok.csv");
    std::fs::write(&csv, format!("syssn,out_trade_no,txamt\n{a},RF-I1,100\n{b},RF-I2,200\n{a},RF-I1,100\n")).unwrap();
    let out = run(&env, &["import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let sum = json(&out);
    assert_eq!(
        (sum["accepted"].as_u64(), sum["duplicates"].as_u64(), sum["conflicts"].as_u64()),
        (Some(2), Some(1), Some(0))
    );
    assert_eq!(sum["invalid"].as_array().unwrap().len(), 0);

    let jsonl = scratch.path("mixed.jsonl");
    std::fs::write(
        &jsonl,
        format!(
            "{{\"syssn\":\"{a}\",\"out_trade_no\":\"RF-I3\",\"txamt\":300}}\n{{\"syssn\":\"{a}\",\"out_trade_no\":\"RF-I1\",\"txamt\":999}}\n{{\"syssn\":\"{a}\",\"out_trade_no\":\"RF-I4\",\"txamt\":0}}\nnot json\n"
        ),
    )
    .unwrap();
    let out = run(&env, &["import", jsonl.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let sum = json(&out);
    assert_eq!((sum["accepted"].as_u64(), sum["conflicts"].as_u64()), (Some(1), Some(1)));
    let invalid = sum["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 2);
    assert_eq!(invalid[0]["line"], 3);
    assert!(invalid[0]["error"].as_str().unwrap().starts_with("txamt"), "{invalid:?}");
    assert_eq!(invalid[1]["line"], 4);
    assert_eq!(sum["conflicting"][0]["line"], 2);
    // A rejected line leaves nothing behind; a conflicting one leaves the original untouched.
    assert_eq!(run(&env, &["status", "RF-I4"]).status.code(), Some(3));
    assert_eq!(json(&run(&env, &["status", "RF-I1"]))["txamt"], 100);
}

#[test]
fn the_worker_refuses_to_start_with_a_clear_error_when_misconfigured() {
    let redis = RedisServer::start().unwrap();
    let mut env = env_for(&redis.url(), &unique_namespace("cli-cfg"), "http://127.0.0.1:1");
    env.remove("QFPAY_CLIENT_KEY");
    let out = run(&env, &["worker"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("QFPAY_CLIENT_KEY"));
    let mut env = env_for(&redis.url(), &unique_namespace("cli-cfg"), "http://127.0.0.1:1");
    env.insert("QFREFUND_LEASE_MS".into(), "abc".into());
    let out = run(&env, &["worker"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("QFREFUND_LEASE_MS: expected a whole number"));
    env.insert("QFREFUND_LEASE_MS".into(), "1000".into());
    let out = run(&env, &["worker"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("lease"), "{}", String::from_utf8_lossy(&out.stderr));
    // Nothing printed ever carries the key.
    assert!(!String::from_utf8_lossy(&out.stderr).contains(qfpay_sim::args::DEMO_CLIENT_KEY));
}

#[test]
fn the_example_config_file_loads() {
    let mut env = env_for("redis://127.0.0.1:1", "x", "http://127.0.0.1:1");
    for k in ["QFPAY_BASE_URL", "QFPAY_APP_CODE"] {
        env.remove(k);
    }
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/qfrefund.example.toml");
    // The worker gets as far as connecting to Redis (port 1: refused) — the file itself is valid.
    let out = run(&env, &["--config", example, "worker"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("config file"), "{err}");
    let bad = Scratch::new("badcfg");
    let path = bad.path("bad.toml");
    std::fs::write(&path, "[worker]\nconcurency = 3\n").unwrap();
    let out = run(&env, &["--config", path.to_str().unwrap(), "worker"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field `concurency`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn operators_retry_resolve_and_cancel_with_a_reason() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("cli-ops"), "http://127.0.0.1:1");
    let s = generated_syssn(1);
    assert!(run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-O1", "--amount", "100"]).status.success());
    // A queued refund can be cancelled (with a reason), once; it cannot be resolved.
    assert_eq!(run(&env, &["cancel", "RF-O1"]).status.code(), Some(2), "--reason is required");
    let out = run(&env, &["cancel", "RF-O1", "--reason", "customer kept the goods", "--by", "ann"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rec = json(&out);
    assert_eq!((rec["state"].as_str(), rec["operator"].as_str()), (Some("cancelled"), Some("ann")));
    assert!(rec["reason"].as_str().unwrap().contains("customer kept the goods"));
    let again = run(&env, &["resolve", "RF-O1", "--state", "succeeded", "--reason", "x"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("needs_review"));
    assert_eq!(run(&env, &["retry", "RF-NOPE", "--reason", "x"]).status.code(), Some(1));
}

#[test]
fn a_config_file_error_never_prints_the_client_key() {
    let scratch = Scratch::new("cfgkey");
    let mut env = env_for("redis://127.0.0.1:1", "x", "http://127.0.0.1:1");
    env.remove("QFPAY_CLIENT_KEY");
    let path = scratch.path("bad.toml");
    // An unquoted key is a TOML syntax error on exactly the line that holds it.
    std::fs::write(&path, "[merchants.default]\napp_code = \"A\"\nclient_key = 0E32A59A8B454940A2FF39D7C1B2A3F4\nbase_url = \"http://x\"\n").unwrap();
    let out = run(&env, &["--config", path.to_str().unwrap(), "status", "X"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
    assert!(!err.contains("0E32A59A8B454940A2FF39D7C1B2A3F4"), "{err}");
}
