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
    assert_eq!(conflict.status.code(), Some(4), "a conflict");
    assert!(String::from_utf8_lossy(&conflict.stderr).contains("txamt"));
    // Invalid input names the field.
    let bad = run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF C2", "--amount", "5"]);
    assert_eq!(bad.status.code(), Some(2), "invalid input");
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
    assert_eq!(out.status.code(), Some(2), "a configuration error");
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
        String::from_utf8_lossy(&out.stderr).contains("unknown field: found `concurency`"),
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
    assert_eq!(again.status.code(), Some(4), "refused by the refund's state");
    assert!(String::from_utf8_lossy(&again.stderr).contains("needs_review"));
    assert_eq!(run(&env, &["retry", "RF-NOPE", "--reason", "x"]).status.code(), Some(3), "not found");
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

#[test]
fn events_stats_audit_and_a_dry_run_import() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("cli-ops"), "http://127.0.0.1:1");
    let scratch = Scratch::new("cli-ops");
    // A dry run checks every line, reports in-file duplicates and conflicts, and writes nothing.
    let csv = scratch.path("batch.csv");
    let (s1, s2) = (generated_syssn(1), generated_syssn(2));
    std::fs::write(
        &csv,
        format!(
            "syssn,out_trade_no,txamt,orig_txamt\n{s1},RF-D1,100,1000\n{s1},RF-D1,100,1000\n{s1},RF-D1,200,1000\n\
             {s2},RF D2,100,1000\n{s2},RF-D3,100,1000\n"
        ),
    )
    .unwrap();
    let dry = run(&env, &["import", "--dry-run", csv.to_str().unwrap()]);
    assert_eq!(dry.status.code(), Some(1), "a conflict and an invalid line");
    let report = json(&dry);
    assert_eq!(
        (&report["valid"], &report["duplicates_in_file"], &report["conflicts_in_file"]),
        (&serde_json::json!(2), &serde_json::json!(1), &serde_json::json!(1))
    );
    assert_eq!(report["invalid"][0]["line"], 5);
    assert!(report["invalid"][0]["error"].as_str().unwrap().contains("out_trade_no"));
    assert_eq!(report["conflicting"][0]["conflicts_with_line"], 2);
    let stats = json(&run(&env, &["stats"]));
    assert_eq!(stats["by_state"]["queued"], 0, "the dry run wrote nothing: {stats}");

    for otn in ["RF-E1", "RF-E2"] {
        let out = run(&env, &["enqueue", "--syssn", &s1, "--out-trade-no", otn, "--amount", "100"]);
        assert!(out.status.success());
    }
    let cancel = run(&env, &["cancel", "RF-E2", "--reason", "customer kept the order", "--by", "ann"]);
    assert!(cancel.status.success(), "{}", String::from_utf8_lossy(&cancel.stderr));
    let stats = json(&run(&env, &["stats"]));
    assert_eq!(
        (&stats["by_state"]["queued"], &stats["by_state"]["cancelled"]),
        (&serde_json::json!(1), &serde_json::json!(1))
    );
    assert_eq!(stats["due_now"], 1);
    assert!(stats["oldest_open_age_s"].as_f64().is_some());

    // The outcome stream: one JSON line per transition, each with the id to resume after.
    let all = run(&env, &["events"]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&all.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let states: Vec<(&str, &str)> =
        lines.iter().map(|e| (e["out_trade_no"].as_str().unwrap(), e["state"].as_str().unwrap())).collect();
    assert_eq!(states, [("RF-E1", "queued"), ("RF-E2", "queued"), ("RF-E2", "cancelled")]);
    let rest = run(&env, &["events", "--from", lines[0]["id"].as_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&rest.stdout).lines().count(), 2);
    let finals = run(&env, &["events", "--final-only"]);
    assert_eq!(String::from_utf8_lossy(&finals.stdout).lines().count(), 1);

    let audit = run(&env, &["audit"]);
    let entry: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&audit.stdout).trim()).unwrap();
    assert_eq!(
        (entry["who"].as_str(), entry["action"].as_str(), entry["to"].as_str()),
        (Some("ann"), Some("cancel"), Some("cancelled"))
    );
    assert_eq!(entry["why"], "customer kept the order");
}

#[test]
fn every_command_has_complete_help() {
    let env = HashMap::new();
    let top = run(&env, &["--help"]);
    assert!(top.status.success());
    let text = String::from_utf8_lossy(&top.stdout).to_string();
    // Every command the binary lists (the definition itself is checked by clap's debug_assert in
    // the cli crate's unit tests).
    // The commands come in groups ("Run:", "Operate:", …), before the options.
    let groups: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Usage:"))
        .take_while(|l| !l.starts_with("Options:"))
        .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
        .collect();
    assert!(groups.len() >= 4 && groups.contains(&"Run:") && groups.contains(&"Operate:"), "{text}");
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Usage:"))
        .take_while(|l| !l.starts_with("Options:"))
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 20 && commands.contains(&"worker") && commands.contains(&"man"), "{text}");
    for c in commands {
        let help = run(&env, &[c, "--help"]);
        assert!(help.status.success(), "{c} --help");
        let h = String::from_utf8_lossy(&help.stdout);
        assert!(h.lines().next().is_some_and(|l| l.len() > 10), "{c} --help starts with what it does:\n{h}");
    }
}

#[test]
fn serve_answers_over_http_with_tokens_from_the_environment() {
    use std::io::{BufRead, BufReader, Read, Write};
    let redis = RedisServer::start().unwrap();
    let mut env = env_for(&redis.url(), &unique_namespace("cli-serve"), "http://127.0.0.1:1");
    env.insert("QFREFUND_API_LISTEN".into(), "127.0.0.1:0".into());
    let missing = run(&env, &["serve"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("QFREFUND_API_TOKENS"), "no tokens: a clear error");
    env.insert("QFREFUND_API_TOKENS".into(), "shop:produce:cli-token-0123456789".into());
    let mut child = Command::new(qfrefund_bin())
        .arg("serve")
        .env_clear()
        .envs(&env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let addr = first.trim().strip_prefix("listening on http://").unwrap().to_owned();
    let body = format!(r#"{{"syssn":"{}","out_trade_no":"RF-H1","txamt":100}}"#, generated_syssn(1));
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/refunds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer cli-token-0123456789\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert!(resp.contains("\"state\":\"queued\""), "{resp}");
    let _ = child.kill();
    let _ = child.wait();
    let st = run(&env, &["status", "RF-H1"]);
    assert!(st.status.success(), "the API wrote to the same ledger the CLI reads");
}

/// `import --report` waits for every line's outcome; `reconcile` finds a refund QFPay made that
/// the ledger says was cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_report_and_reconcile_against_qfpay() {
    use testkit::{SimConfig, SimHandle};
    let redis = RedisServer::start().unwrap();
    let sim = SimHandle::start_local(SimConfig::demo(10)).await.unwrap();
    let env = env_for(&redis.url(), &unique_namespace("cli-recon"), &sim.url());
    let scratch = Scratch::new("cli-recon");
    let mut w = qfrefund_e2e::WorkerProcess::spawn(&env, scratch.path("worker.log"));
    let csv = scratch.path("batch.csv");
    let rows: String = (1..=3).map(|i| format!("{},RF-R{i},{},100000\n", generated_syssn(i), 100 * i)).collect();
    std::fs::write(&csv, format!("syssn,out_trade_no,txamt,orig_txamt\n{rows}{},RF R4,1,100000\n", generated_syssn(4)))
        .unwrap();
    let report = scratch.path("report.csv");
    let (env2, csv2, report2) = (env.clone(), csv.clone(), report.clone());
    let out = tokio::task::spawn_blocking(move || {
        run(&env2, &["import", csv2.to_str().unwrap(), "--report", report2.to_str().unwrap(), "--report-timeout", "60"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "one invalid line: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("line,out_trade_no,import,state,respcd"), "{}", lines[0]);
    for i in 1..=3 {
        let row = lines.iter().find(|l| l.contains(&format!(",RF-R{i},"))).unwrap();
        assert!(row.contains(",accepted,succeeded,0000,"), "{row}");
    }
    assert!(lines.iter().any(|l| l.starts_with("5,RF R4,invalid,,")), "{text}");
    w.terminate();

    // Cancelled in the ledger, yet refunded at QFPay by someone else under the same id.
    let s5 = generated_syssn(5);
    assert!(run(&env, &["enqueue", "--syssn", &s5, "--out-trade-no", "RF-X", "--amount", "50"]).status.success());
    assert!(run(&env, &["cancel", "RF-X", "--reason", "duplicate"]).status.success());
    let client = qfpay::Client::new(
        qfpay::Client::pool(&qfpay::ClientConfig::default()).unwrap(),
        &sim.url(),
        SimConfig::demo_credentials(),
    )
    .unwrap();
    let req = qfpay::RefundRequest::new(&s5, "RF-X", 50, qfpay::Txdtm::now(8 * 3600)).unwrap();
    assert_eq!(client.refund(&req).await.unwrap().respcd(), "0000");

    let recon = scratch.path("recon.csv");
    let to = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 86_400_000)
        .to_string();
    let (env3, recon3) = (env.clone(), recon.clone());
    let out = tokio::task::spawn_blocking(move || {
        run(&env3, &["reconcile", "--from", "0", "--to", &to, "--out", recon3.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "a disagreement: {}", String::from_utf8_lossy(&out.stderr));
    let summary = json(&out);
    assert_eq!((&summary["refunds"], &summary["agree"], &summary["disagree"]), (&4.into(), &3.into(), &1.into()));
    let text = std::fs::read_to_string(&recon).unwrap();
    let x = text.lines().find(|l| l.starts_with("RF-X,")).unwrap();
    assert!(x.contains("cancelled") && x.contains("disagree") && x.contains("money moved"), "{x}");
}

#[test]
fn ping_follow_and_the_webhook_commands() {
    use std::io::{BufRead, BufReader};
    let mut redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("cli-follow"), "http://127.0.0.1:1");
    assert!(run(&env, &["ping"]).status.success());
    // `events --follow` prints what happens after it started.
    let mut follow = Command::new(qfrefund_bin())
        .args(["events", "--follow"])
        .env_clear()
        .envs(&env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let s = generated_syssn(1);
    assert!(run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-F1", "--amount", "100"]).status.success());
    let mut line = String::new();
    BufReader::new(follow.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    let e: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!((e["out_trade_no"].as_str(), e["state"].as_str()), (Some("RF-F1"), Some("queued")));
    // No webhook has failed: nothing listed, nothing to send again.
    let failed = run(&env, &["list", "--webhook-failed"]);
    assert!(failed.status.success() && failed.stdout.is_empty());
    assert_eq!(json(&run(&env, &["redeliver", "--all"]))["rescheduled"], 0);
    assert_eq!(run(&env, &["redeliver"]).status.code(), Some(2), "names ids or --all");
    let unknown = run(&env, &["redeliver", "evt_nobody_knows", "evt_nobody_knows"]);
    assert_eq!(unknown.status.code(), Some(3), "not found, as everywhere");
    assert_eq!((json(&unknown)["rescheduled"].as_u64(), json(&unknown)["not_found"].as_u64()), (Some(0), Some(1)));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not given up"));
    // Redis gone: ping says so, with exit 1.
    redis.kill();
    let down = run(&env, &["ping"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}
