//! Retention under crashes: a worker archives final refunds past the retention, then removes
//! them from Redis; killed on purpose right after the archive write, then right after the
//! removal, and restarted, it loses nothing and archives nothing twice. After it, the same
//! request is a duplicate with its outcome and another under the same out_trade_no a conflict.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ledger::{Enqueued, LedgerError, NewRefund, State};
use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{Scratch, WorkerProcess, env_for, ledger, qfrefund_bin, wait_count};
use testkit::{RedisServer, SimConfig, SimHandle, unique_namespace};

const N: u64 = 30;

fn refund(i: u64) -> NewRefund {
    NewRefund::new(&generated_syssn(i), &format!("RF-A{i}"), 100)
}

/// How many lines of the archive hold each out_trade_no (the manifests verified first).
fn archived(dir: &std::path::Path) -> HashMap<String, u32> {
    let sink = archive::file::FileSink::new(dir.to_owned());
    let verified = sink.verify().unwrap();
    let mut out = HashMap::new();
    for v in verified.into_iter().filter(|v| !v.file.to_string_lossy().contains("/audit/")) {
        let bytes = std::fs::read(&v.file).unwrap();
        let text = zstd_lines(&bytes);
        for line in text.lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            *out.entry(r["out_trade_no"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    out
}

/// Runs `qfrefund <args>` with `env`; its standard output (it must succeed).
fn qfrefund(env: &HashMap<String, String>, args: &[&str]) -> String {
    let out = std::process::Command::new(qfrefund_bin()).args(args).env_clear().envs(env).output().unwrap();
    assert!(out.status.success(), "qfrefund {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn zstd_lines(bytes: &[u8]) -> String {
    // The e2e crate reads the archive as any consumer would: `zstd -dc`.
    let mut child = std::process::Command::new("zstd")
        .args(["-dc", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd (make deps installs it)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_archiving_and_removing_loses_and_duplicates_nothing() {
    let scratch = Scratch::new("retention");
    let redis = RedisServer::start().unwrap();
    let sim = SimHandle::start_local(SimConfig::demo(N)).await.unwrap();
    let ns = unique_namespace("retention");
    let base = env_for(&redis.url(), &ns, &sim.url());
    let l = ledger(&redis.url(), &ns).await;
    for i in 1..=N {
        l.enqueue(refund(i)).await.unwrap();
    }
    let mut w = WorkerProcess::spawn(&base, scratch.path("settle.log"));
    wait_count(&l, State::Succeeded, N, Duration::from_secs(60)).await;
    assert!(w.terminate());

    // Each request's evidence: what was sent (never the key) and what QFPay answered.
    let shown: serde_json::Value = serde_json::from_str(&qfrefund(&base, &["status", "RF-A1", "--attempts"])).unwrap();
    let first = &shown["attempts"][0];
    assert_eq!((first["call"].as_str(), first["http_status"].as_u64()), (Some("refund"), Some(200)), "{shown}");
    assert_eq!(first["params"]["out_trade_no"], "RF-A1", "{shown}");
    assert!(first["sign_sha256"].as_str().is_some_and(|s| s.len() == 64), "{shown}");
    assert!(first["body"].as_str().is_some_and(|b| b.contains("respcd")), "{shown}");
    assert!(!shown.to_string().contains(qfpay_sim::args::DEMO_CLIENT_KEY), "the key is never evidence");

    // Two operator actions for the audit trail.
    qfrefund(&base, &["pause", "default", "--reason", "audit me", "--by", "ann"]);
    qfrefund(&base, &["resume", "default", "--reason", "done", "--by", "ann"]);

    let dir = scratch.path("archive");
    let mut env = base.clone();
    env.insert("QFREFUND_ARCHIVE".into(), format!("file://{}", dir.display()));
    env.insert("QFREFUND_RETENTION_S".into(), "1".into());
    env.insert("QFREFUND_AUDIT_RETENTION_S".into(), "1".into());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // What retention would archive now, said without touching anything.
    let out = qfrefund(&env, &["prune", "--dry-run"]);
    let total: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!((total["would_archive"].as_u64(), total["removes"].as_bool()), (Some(N), Some(true)), "{out}");
    let stats: serde_json::Value = serde_json::from_str(&qfrefund(&env, &["stats"])).unwrap();
    assert!(stats["memory"]["primaries"][0]["used_memory"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["memory"]["refunds"].as_u64(), Some(N), "{stats}");
    let live = |l: ledger::Ledger| async move {
        let mut n = 0;
        for i in 1..=N {
            n += u64::from(l.get("default", &format!("RF-A{i}")).await.unwrap().is_some());
        }
        n
    };
    // Killed after each step, in turn: nothing is lost (every refund in Redis, the archive or
    // both), nothing is archived twice.
    for (round, point) in ["archive-written", "archive-removed"].iter().enumerate() {
        let mut e = env.clone();
        e.insert("QFREFUND_FAILPOINT".into(), (*point).into());
        let mut w = WorkerProcess::spawn(&e, scratch.path(&format!("crash-{round}.log")));
        let status = w.wait_exit(Duration::from_secs(30));
        assert!(status.is_some_and(|s| !s.success()), "round {round}: the worker crashed at {point}: {}", w.output());
        let lines = archived(&dir);
        assert!(lines.values().all(|n| *n == 1), "round {round}: a refund archived twice: {lines:?}");
        let in_redis = live(l.clone()).await;
        for i in 1..=N {
            let otn = format!("RF-A{i}");
            let here = l.get("default", &otn).await.unwrap().is_some();
            assert!(here || lines.contains_key(&otn), "round {round}: {otn} is neither in Redis nor archived");
        }
        assert!(in_redis < N || !lines.is_empty() || round == 0, "round {round}: progress");
    }
    // A worker left alone finishes (its retention round begun before it is asked to stop).
    let mut w = WorkerProcess::spawn(&env, scratch.path("finish.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while live(l.clone()).await > 0 || !w.output().contains("archiving final refunds") {
        assert!(Instant::now() < deadline, "not all removed: {}", w.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The audit trail too: archived, then trimmed.
    while !l.audit("0", 10).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the audit trail was not archived: {}", w.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w.terminate());
    let audit: u64 = archive::file::FileSink::new(dir.clone())
        .verify()
        .unwrap()
        .iter()
        .filter(|v| v.file.to_string_lossy().contains("/audit/"))
        .map(|v| v.lines)
        .sum();
    assert_eq!(audit, 2, "the pause and the resume");
    let lines = archived(&dir);
    assert_eq!(lines.len() as u64, N, "{lines:?}");
    assert!(lines.values().all(|n| *n == 1), "{lines:?}");
    assert_eq!(sim.audit()["totals"]["recorded"].as_u64(), Some(N), "QFPay holds one refund each");

    // After retention: the same request is a duplicate with its outcome; another is a conflict.
    match l.enqueue(refund(1)).await.unwrap() {
        Enqueued::Duplicate(r) => assert_eq!((r.state, r.archived), (State::Succeeded, true)),
        other => panic!("{other:?}"),
    }
    let other = NewRefund { txamt: 99, ..refund(2) };
    assert!(matches!(l.enqueue(other).await, Err(LedgerError::Conflict { .. })));
    let t = l.tombstone("default", "RF-A3").await.unwrap().unwrap();
    assert_eq!((t.state, t.respcd.as_deref()), (State::Succeeded, Some("0000")));
    // `status` answers from the archive, marked archived, with the refund's whole timeline.
    let shown: serde_json::Value = serde_json::from_str(&qfrefund(&env, &["status", "RF-A3"])).unwrap();
    assert_eq!((shown["archived"].as_bool(), shown["state"].as_str()), (Some(true), Some("succeeded")), "{shown}");
    assert_eq!(shown["fields"]["txamt"], "100", "{shown}");
    let states: Vec<&str> = shown["timeline"].as_array().unwrap().iter().filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(states.first().copied(), Some("queued"), "{shown}");
    assert_eq!(states.last().copied(), Some("succeeded"), "{shown}");
    assert_eq!(shown["attempts"][0]["params"]["out_trade_no"], "RF-A3", "the evidence travels with it: {shown}");
    let raw: String = std::fs::read_dir(dir.join("shard-0"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| zstd_lines(&std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    assert!(!raw.contains(qfpay_sim::args::DEMO_CLIENT_KEY), "the key is never archived");
}

/// The same with the PostgreSQL archive: every refund ends up a row (with its events), none
/// twice, none left in Redis; `status` reads it back from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_archive_into_postgres_and_status_reads_it_back() {
    let scratch = Scratch::new("retention-pg");
    let redis = RedisServer::start().unwrap();
    let pg = testkit::PostgresServer::start().unwrap();
    let sim = SimHandle::start_local(SimConfig::demo(N)).await.unwrap();
    let ns = unique_namespace("retention-pg");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("QFREFUND_ARCHIVE".into(), pg.url());
    env.insert("QFREFUND_RETENTION_S".into(), "1".into());
    let l = ledger(&redis.url(), &ns).await;
    for i in 1..=N {
        l.enqueue(refund(i)).await.unwrap();
    }
    let mut w = WorkerProcess::spawn(&env, scratch.path("w.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut left = 0;
        for i in 1..=N {
            left += u64::from(l.get("default", &format!("RF-A{i}")).await.unwrap().is_some());
        }
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} refunds still in Redis: {}", w.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(w.terminate());
    let sql = |q: &str| {
        let out = std::process::Command::new("psql").args([pg.url().as_str(), "-At", "-c", q]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(
        sql("SELECT count(*), count(DISTINCT out_trade_no), min(state), sum(txamt) FROM refunds"),
        format!("{N}|{N}|succeeded|{}", N * 100)
    );
    assert_eq!(sql("SELECT min(n) FROM (SELECT count(*) n FROM refund_events GROUP BY out_trade_no) e"), "3");
    let shown: serde_json::Value = serde_json::from_str(&qfrefund(&env, &["status", "RF-A7"])).unwrap();
    assert_eq!((shown["archived"].as_bool(), shown["fields"]["txamt"].as_str()), (Some(true), Some("100")), "{shown}");
}

/// Succeeded refunds past `summary_after` are archived early (a worker killed right after the
/// archive write, then one left alone): each leaves Redis but for its summary and tombstones,
/// is archived once, still listed and counted as succeeded, shown by `status` with its whole
/// history; at the retention its summary goes and the tombstone answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn succeeded_refunds_are_archived_early_and_leave_a_summary() {
    let scratch = Scratch::new("summary");
    let redis = RedisServer::start().unwrap();
    let sim = SimHandle::start_local(SimConfig::demo(N)).await.unwrap();
    let ns = unique_namespace("summary");
    let dir = scratch.path("archive");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("QFREFUND_ARCHIVE".into(), format!("file://{}", dir.display()));
    env.insert("QFREFUND_SUMMARY_AFTER_S".into(), "1".into());
    let l = ledger(&redis.url(), &ns).await;
    for i in 1..=N {
        l.enqueue(refund(i)).await.unwrap();
    }
    let mut crash = env.clone();
    crash.insert("QFREFUND_FAILPOINT".into(), "archive-written".into());
    let mut w = WorkerProcess::spawn(&crash, scratch.path("crash.log"));
    let status = w.wait_exit(Duration::from_secs(60));
    assert!(status.is_some_and(|s| !s.success()), "the worker crashed after its first archive write: {}", w.output());
    let mut w = WorkerProcess::spawn(&env, scratch.path("w.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while l.summary_count(l.shard_of("default")).await.unwrap() < N {
        assert!(Instant::now() < deadline, "not all summarised: {}", w.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w.terminate());
    let lines = archived(&dir);
    assert_eq!(lines.len() as u64, N, "{lines:?}");
    assert!(lines.values().all(|n| *n == 1), "none archived twice: {lines:?}");
    assert_eq!(sim.audit()["totals"]["recorded"].as_u64(), Some(N), "QFPay holds one refund each");
    for i in 1..=N {
        let otn = format!("RF-A{i}");
        assert_eq!(l.get("default", &otn).await.unwrap(), None, "{otn}: no whole record left");
        let s = l.summary("default", &otn).await.unwrap().unwrap();
        assert_eq!((s.state, s.txamt, s.respcd.as_deref(), s.archived), (State::Succeeded, 100, Some("0000"), true));
        assert!(s.refund_syssn.is_some(), "{s:?}");
    }
    assert_eq!(l.list(State::Succeeded, 0, 100).await.unwrap().len() as u64, N);
    assert!(l.counts().await.unwrap().contains(&(State::Succeeded, N)));
    let shown: serde_json::Value = serde_json::from_str(&qfrefund(&env, &["status", "RF-A5"])).unwrap();
    assert_eq!((shown["archived"].as_bool(), shown["fields"]["txamt"].as_str()), (Some(true), Some("100")), "{shown}");
    assert_eq!(shown["attempts"][0]["params"]["out_trade_no"], "RF-A5", "the evidence is in the archive: {shown}");
    match l.enqueue(refund(5)).await.unwrap() {
        Enqueued::Duplicate(r) => assert_eq!((r.state, r.archived), (State::Succeeded, true)),
        other => panic!("{other:?}"),
    }

    // At the retention the summaries go, nothing is archived again; the tombstones answer.
    env.insert("QFREFUND_RETENTION_S".into(), "1".into());
    let mut w = WorkerProcess::spawn(&env, scratch.path("expire.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while l.summary_count(l.shard_of("default")).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "summaries kept past the retention: {}", w.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w.terminate());
    assert!(archived(&dir).values().all(|n| *n == 1));
    assert!(matches!(l.enqueue(refund(5)).await.unwrap(), Enqueued::Duplicate(_)));
    assert!(l.counts().await.unwrap().contains(&(State::Succeeded, 0)));
}
