//! Operator commands through the `qfrefund` binary: what they refuse, and that each is audited
//! with who and why.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use ledger::{ClaimOptions, Decision, Ledger, LedgerConfig, NewRefund, Policy, State};
use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{env_for, qfrefund_bin};
use testkit::{RedisServer, unique_namespace};

fn run(env: &HashMap<String, String>, args: &[&str]) -> Output {
    Command::new(qfrefund_bin()).args(args).env_clear().envs(env).output().unwrap()
}

fn audit(env: &HashMap<String, String>) -> Vec<serde_json::Value> {
    let out = run(env, &["audit"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Claims `otn` as a worker would and records `state` for it (a refund that was sent).
async fn put_in(l: &Ledger, otn: &str, state: State) {
    let p = Policy { lease: Duration::from_secs(5), ..Policy::default() };
    let rec = l.get("default", otn).await.unwrap().unwrap();
    let o = ClaimOptions::new("w", &p, "2025-11-25 10:00:00");
    let fence = match l.claim(&(&rec).into(), &o).await.unwrap() {
        ledger::Claim::Submit { fence, .. } => fence,
        other => panic!("{other:?}"),
    };
    let rec = l.get("default", otn).await.unwrap().unwrap();
    let d = Decision { state, next_at: None, reason: "test".into(), pause_merchant: false, set: vec![] };
    assert!(l.transition(&rec, State::Submitting, fence, &d, "op").await.unwrap());
}

#[tokio::test]
async fn resolve_force_accepts_a_success_past_the_paid_amount_and_audits_it_as_forced() {
    let redis = RedisServer::start().unwrap();
    let ns = unique_namespace("cli-force");
    let env = env_for(&redis.url(), &ns, "http://127.0.0.1:1");
    let l = Ledger::connect(
        &redis.url(),
        LedgerConfig { namespace: ns, ..LedgerConfig::default().with_shards(testkit::test_shards()) },
    )
    .await
    .unwrap();
    for otn in ["RF-F1", "RF-F2", "RF-F3"] {
        l.enqueue(NewRefund::new("PAY-F", otn, 600)).await.unwrap();
    }
    put_in(&l, "RF-F1", State::Succeeded).await;
    put_in(&l, "RF-F2", State::NeedsReview).await;
    let rec = l.get("default", "RF-F2").await.unwrap().unwrap();
    l.set_paid(&(&rec).into(), 1_000).await.unwrap();

    let resolve = |otn: &str, force: bool| {
        let mut args = vec!["resolve", otn, "--state", "succeeded", "--reason", "QFPay ticket 42", "--by", "ann"];
        if force {
            args.push("--force");
        }
        run(&env, &args)
    };
    let refused = resolve("RF-F2", false);
    assert_eq!(refused.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("1200 of 1000"));
    let forced = resolve("RF-F2", true);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    let rec: serde_json::Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(rec["state"], "succeeded");

    // Never sent: refused even when forced.
    let rec = l.get("default", "RF-F3").await.unwrap().unwrap();
    l.defer(&rec, 0, "waited too long", Duration::ZERO).await.unwrap();
    let never = resolve("RF-F3", true);
    assert_eq!(never.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&never.stderr).contains("never sent"));

    let trail = audit(&env);
    assert!(
        trail.iter().any(|a| a["out_trade_no"] == "RF-F2"
            && a["action"] == "resolve --force"
            && a["who"] == "ann"
            && a["outcome"] == "ok"),
        "{trail:?}"
    );
}

/// `pause ""` used to pause a merchant no refund names, silently; every pause and resume is now in
/// the audit trail with who and why.
#[test]
fn pause_refuses_a_merchant_name_no_refund_could_carry_and_pause_and_resume_are_audited() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("cli-pause"), "http://127.0.0.1:1");
    for bad in ["", "two words", "a:b"] {
        let out = run(&env, &["pause", bad, "--reason", "x"]);
        assert_eq!(out.status.code(), Some(2), "pause {bad:?} is refused");
        assert!(String::from_utf8_lossy(&out.stderr).contains("merchant"), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(run(&env, &["resume", ""]).status.code(), Some(2));
    let stats = run(&env, &["stats"]);
    assert!(!String::from_utf8_lossy(&stats.stdout).contains("\"\":"), "nothing was paused");

    let paused = run(&env, &["pause", "default", "--reason", "QFPay maintenance", "--by", "ann"]);
    assert!(paused.status.success(), "{}", String::from_utf8_lossy(&paused.stderr));
    let resumed = run(&env, &["resume", "default", "--reason", "maintenance over", "--by", "bob"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let trail = audit(&env);
    let actions: Vec<(&str, &str, &str, &str)> = trail
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["merchant"].as_str().unwrap_or(""),
                a["who"].as_str().unwrap(),
                a["why"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [("pause", "default", "ann", "QFPay maintenance"), ("resume", "default", "bob", "maintenance over")],
        "{trail:?}"
    );
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn fresh_enqueues_switch_off_before_a_rollback_and_on_again() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("cli-fresh"), "http://127.0.0.1:1");
    let s = generated_syssn(1);
    assert!(run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-F1", "--amount", "100"]).status.success());
    // A new ledger enqueues fresh; switched off, what is still fresh waits to be taken.
    let off = json_of(&run(&env, &["enable-retention", "--no-compact-queue"]));
    assert_eq!((&off["had_compact_queue"], &off["compact_queue"]), (&true.into(), &false.into()), "{off}");
    assert_eq!((&off["fresh_waiting"], &off["hashes_restored"]), (&1.into(), &1.into()), "{off}");
    // The same request again is a duplicate (exit 0): the record has its whole hash back.
    assert!(run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-F1", "--amount", "100"]).status.success());
    // (This process enqueues the old way at once: it read the layout as it started.)
    assert!(run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-F2", "--amount", "100"]).status.success());
    let still = json_of(&run(&env, &["enable-retention"]));
    assert_eq!((&still["compact_queue"], &still["fresh_waiting"]), (&false.into(), &1.into()), "{still}");
    let on = json_of(&run(&env, &["enable-retention", "--compact-queue"]));
    assert_eq!((&on["had_compact_queue"], &on["compact_queue"]), (&false.into(), &true.into()), "{on}");
    let both = run(&env, &["enable-retention", "--compact-queue", "--no-compact-queue"]);
    assert_eq!(both.status.code(), Some(2), "refused: they contradict each other");
}
