//! `qfrefund list` and `qfrefund events` never cut a listing short without saying so: pages with
//! cursors, `--all`, filters, and one refund's events.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Output};

use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{env_for, qfrefund_bin};
use testkit::{RedisServer, unique_namespace};

fn run(env: &HashMap<String, String>, args: &[&str]) -> Output {
    Command::new(qfrefund_bin()).args(args).env_clear().envs(env).output().unwrap()
}

fn otns(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["out_trade_no"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn list_pages_with_cursors_filters_and_all_and_events_follow_one_refund() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("list"), "http://127.0.0.1:1");
    let (a, b) = (generated_syssn(1), generated_syssn(2));
    for i in 0..7 {
        let syssn = if i < 5 { &a } else { &b };
        let otn = format!("RF-L{i}");
        let out = run(&env, &["enqueue", "--syssn", syssn, "--out-trade-no", &otn, "--amount", "10"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // A page, and the cursor to go on from on stderr.
    let first = run(&env, &["list", "--limit", "3"]);
    assert!(first.status.success());
    assert_eq!(otns(&first).len(), 3);
    let note = String::from_utf8_lossy(&first.stderr).to_string();
    let cursor = note.split("--cursor ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let rest = run(&env, &["list", "--limit", "10", "--cursor", &cursor]);
    let mut seen = otns(&first);
    seen.extend(otns(&rest));
    assert!(rest.stderr.is_empty(), "the last page says nothing more: {}", String::from_utf8_lossy(&rest.stderr));
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 7, "every refund once across the pages: {seen:?}");
    // --all, oldest first by default; --newest-first reverses it.
    let all = otns(&run(&env, &["list", "--all"]));
    assert_eq!(all.len(), 7);
    let mut newest = otns(&run(&env, &["list", "--all", "--newest-first"]));
    newest.reverse();
    assert_eq!(all, newest);
    // Filters.
    let of_b = otns(&run(&env, &["list", "--syssn", &b]));
    assert_eq!(of_b, ["RF-L5", "RF-L6"]);
    assert_eq!(otns(&run(&env, &["list", "--state", "queued", "--merchant", "default"])).len(), 7);
    assert!(otns(&run(&env, &["list", "--state", "succeeded"])).is_empty());
    assert!(otns(&run(&env, &["list", "--created-from", "2099-01-01"])).is_empty());
    assert_eq!(otns(&run(&env, &["list", "--created-to", "2099-01-01"])).len(), 7);
    // Refused at the door, naming what is wrong.
    let bad = run(&env, &["list", "--cursor", "nonsense"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--cursor"));
    let bad = run(&env, &["list", "--created-from", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--created-from"));
    assert_eq!(run(&env, &["list", "--limit", "0"]).status.code(), Some(2));
    assert_eq!(run(&env, &["list", "--limit", "1001"]).status.code(), Some(2));
    // One refund's events.
    let events = run(&env, &["events", "--out-trade-no", "RF-L3"]);
    assert_eq!(otns(&events), ["RF-L3"]);
    assert!(otns(&run(&env, &["events", "--out-trade-no", "RF-L3", "--merchant", "other"])).is_empty());
    assert_eq!(otns(&run(&env, &["events"])).len(), 7);
    // The events' filters: payment, answer, time (read from `--since`, stopped at `--until`).
    assert_eq!(otns(&run(&env, &["events", "--syssn", &b])), ["RF-L5", "RF-L6"]);
    assert!(otns(&run(&env, &["events", "--respcd", "0000"])).is_empty(), "no QFPay answer yet");
    let an_hour_ago = (qfpay::time::unix_now_ms() - 3_600_000).to_string();
    assert_eq!(otns(&run(&env, &["events", "--since", &an_hour_ago, "--until", "2099-01-01"])).len(), 7);
    assert!(otns(&run(&env, &["events", "--since", "2099-01-01"])).is_empty());
    assert!(otns(&run(&env, &["events", "--until", "2000-01-01"])).is_empty());
    // On the very millisecond: --since and --until are inclusive.
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&run(&env, &["events", "--limit", "1"]).stdout).trim()).unwrap();
    let at = first["at"].as_i64().unwrap().to_string();
    let first_otn = first["out_trade_no"].as_str().unwrap().to_owned();
    assert!(otns(&run(&env, &["events", "--since", &at])).contains(&first_otn), "--since its own at");
    assert!(otns(&run(&env, &["events", "--until", &at])).contains(&first_otn), "--until its own at");
    let after = (first["at"].as_i64().unwrap() + 1).to_string();
    assert!(!otns(&run(&env, &["events", "--since", &after, "--out-trade-no", &first_otn])).contains(&first_otn));
    let bad = run(&env, &["events", "--since", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
    // The list's other filters.
    assert!(otns(&run(&env, &["list", "--merchant", "other"])).is_empty());
    assert!(otns(&run(&env, &["list", "--respcd", "0000"])).is_empty());
    assert!(otns(&run(&env, &["list", "--updated-from", "2099-01-01"])).is_empty());
    assert_eq!(otns(&run(&env, &["list", "--updated-to", "2099-01-01"])).len(), 7);
}

#[test]
fn output_is_json_lines_by_default_off_a_terminal_or_a_table_or_csv_when_asked() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("formats"), "http://127.0.0.1:1");
    let s = generated_syssn(3);
    let out = run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-F,1", "--amount", "10"]);
    assert_eq!(out.status.code(), Some(2), "a comma is no out_trade_no");
    assert!(run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-F1", "--amount", "10"]).status.success());
    let json: serde_json::Value = serde_json::from_slice(&run(&env, &["status", "RF-F1"]).stdout).unwrap();
    let ms = json["created_at"].as_i64().unwrap();
    let rfc = json["created_at_rfc3339"].as_str().unwrap();
    assert!(rfc.ends_with('Z') && rfc.len() == 24, "{rfc}");
    assert_eq!(&rfc[20..23], format!("{:03}", ms % 1000), "the same instant: {rfc} {ms}");
    // Events: numbers are numbers.
    let event: serde_json::Value = serde_json::from_slice(&run(&env, &["events"]).stdout).unwrap();
    assert_eq!((event["txamt"].as_u64(), event["submits"].as_u64()), (Some(10), Some(0)), "{event}");
    let csv = String::from_utf8(run(&env, &["list", "--output", "csv"]).stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("merchant,out_trade_no,state,txamt,respcd,created_at,updated_at,reason"));
    assert_eq!(lines.next().unwrap(), format!("default,RF-F1,queued,10,,{rfc},{rfc},"));
    let table = String::from_utf8(run(&env, &["list", "--output", "table"]).stdout).unwrap();
    assert!(table.starts_with("MERCHANT") && table.contains("RF-F1") && table.contains(rfc), "{table}");
    let one = String::from_utf8(run(&env, &["status", "RF-F1", "--output", "table"]).stdout).unwrap();
    assert!(one.lines().any(|l| l.starts_with("state") && l.ends_with("queued")), "{one}");
    assert_eq!(run(&env, &["list", "--output", "yaml"]).status.code(), Some(2));
}
