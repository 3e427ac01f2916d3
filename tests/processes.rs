//! The promises under real process failures: `qfrefund worker` processes killed with SIGKILL,
//! frozen with SIGSTOP past their lease, and a 20k-refund import drained by two of them.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use ledger::{NewRefund, State};
use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{Scratch, WorkerProcess, env_for, ledger, qfrefund_bin, wait_count};
use testkit::{Faults, RedisServer, SimConfig, SimHandle, unique_namespace};

fn audit_records(sim: &SimHandle, otn: &str) -> u64 {
    sim.audit()["by_out_trade_no"][otn]["records"].as_u64().unwrap_or(0)
}

/// Promise 1 and 2: a worker killed (SIGKILL) while its refunds are at QFPay — applied there, not
/// yet recorded here. Another worker picks them up within seconds of their leases expiring,
/// enquires (never resends) and finishes every one; QFPay applied each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_submit_is_finished_by_another_without_a_second_refund() {
    let scratch = Scratch::new("kill9");
    let redis = RedisServer::start_with_aof().unwrap();
    let faults = Faults { hang_after_apply: 1.0, hang_ms: 1_500, ..Faults::default() };
    let sim = SimHandle::start_local(SimConfig { faults, ..SimConfig::demo(12) }).await.unwrap();
    let ns = unique_namespace("kill9");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("QFREFUND_HTTP_TIMEOUT_MS".into(), "2000".into());
    env.insert("QFREFUND_LEASE_MS".into(), "3000".into());
    let l = ledger(&redis.url(), &ns).await;
    let ids: Vec<String> = (1..=12).map(|i| format!("RF-K{i}")).collect();
    for (i, o) in ids.iter().enumerate() {
        l.enqueue(NewRefund::new(&generated_syssn(i as u64 + 1), o, 100)).await.unwrap();
    }
    let mut a = WorkerProcess::spawn(&env, scratch.path("a.log"));
    // Wait until A has sent them all (QFPay applied them; A waits for the hung answers).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.audit()["totals"]["recorded"].as_u64().unwrap() < 12 {
        assert!(Instant::now() < deadline, "A did not send: {}", a.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut in_submitting = 0;
    for o in &ids {
        in_submitting += u32::from(l.get("default", o).await.unwrap().unwrap().state == State::Submitting);
    }
    assert!(in_submitting > 0, "some refunds are mid-submit when A dies");
    a.kill9();
    let killed_at = Instant::now();
    sim.set_faults(Faults::default()).unwrap();
    let mut b = WorkerProcess::spawn(&env, scratch.path("b.log"));
    let took = wait_count(&l, State::Succeeded, 12, Duration::from_secs(30)).await;
    assert!(killed_at.elapsed() < Duration::from_secs(12), "recovered in {took:?}: {}", b.output());
    for o in &ids {
        let r = l.get("default", o).await.unwrap().unwrap();
        assert_eq!(r.submits, 1, "{o}: found mid-submit, enquired, never resent");
        assert!(r.enquiries >= 1, "{o}");
        assert_eq!(audit_records(&sim, o), 1, "{o}: exactly one refund at QFPay");
    }
    assert!(b.terminate(), "B drains and exits cleanly on SIGTERM");
}

/// Promise 1 under a stall: A is frozen (SIGSTOP) mid-request past its lease; B takes the refund
/// over under a new fence and settles it; when A wakes, its late write is refused by the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_workers_late_write_is_rejected_by_the_fence() {
    let scratch = Scratch::new("stall");
    let redis = RedisServer::start().unwrap();
    let faults = Faults { latency_ms: 400, ..Faults::default() };
    let sim = SimHandle::start_local(SimConfig { faults, ..SimConfig::demo(1) }).await.unwrap();
    let ns = unique_namespace("stall");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("QFREFUND_HTTP_TIMEOUT_MS".into(), "1500".into());
    env.insert("QFREFUND_LEASE_MS".into(), "2500".into());
    let l = ledger(&redis.url(), &ns).await;
    l.enqueue(NewRefund::new(&generated_syssn(1), "RF-S", 100)).await.unwrap();
    let a = WorkerProcess::spawn(&env, scratch.path("a.log"));
    // Wait until A's request has reached QFPay (which answers only after 400 ms).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.stats()["refund_requests"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "A never submitted: {}", a.output());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.stop(); // frozen mid-request: QFPay will apply it, A cannot record it
    tokio::time::sleep(Duration::from_millis(2_600)).await; // past A's lease
    let mut b = WorkerProcess::spawn(&env, scratch.path("b.log"));
    wait_count(&l, State::Succeeded, 1, Duration::from_secs(20)).await;
    let settled = l.get("default", "RF-S").await.unwrap().unwrap();
    assert!(settled.fence >= 2, "B took it over under a new fence: {settled:?}");
    assert_eq!((settled.submits, settled.enquiries >= 1), (1, true));
    a.cont();
    // A wakes up with its answer (or its timeout) and tries to record it under the old fence.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !a.output().contains("fenced off") {
        assert!(Instant::now() < deadline, "A's late write was not reported as fenced: {}", a.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = l.get("default", "RF-S").await.unwrap().unwrap();
    assert_eq!(after, settled, "A's late write changed nothing");
    // But what A sent and got is kept, marked: B's attempts, then A's submit.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempts = l.attempts("default", "RF-S").await.unwrap();
        let fenced: Vec<_> = attempts.iter().filter(|e| e.fenced_off).collect();
        if let [a_submit] = fenced.as_slice() {
            assert_eq!(a_submit.call, "refund", "{attempts:?}");
            assert_eq!(a_submit.params.get("out_trade_no").map(String::as_str), Some("RF-S"));
            assert!(attempts.iter().any(|e| !e.fenced_off && e.call == "query"), "B's enquiry: {attempts:?}");
            break;
        }
        assert!(Instant::now() < deadline, "A's evidence was not kept: {attempts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(audit_records(&sim, "RF-S"), 1);
    assert!(b.terminate());
}

/// A 20 000-refund CSV import (far above the 8 000 due jobs that crash a bare apalis-redis
/// worker) drains through two worker processes; every refund is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20k_import_drains_through_two_workers() {
    const N: u64 = 20_000;
    let scratch = Scratch::new("import20k");
    let redis = RedisServer::start_with_aof().unwrap();
    let sim = SimHandle::start_local(SimConfig::demo(N)).await.unwrap();
    let ns = unique_namespace("import20k");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("QFREFUND_CONCURRENCY".into(), "64".into());
    env.insert("RUST_LOG".into(), "warn".into());
    let csv = scratch.path("refunds.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    writeln!(f, "syssn,out_trade_no,txamt,orig_txamt").unwrap();
    for i in 1..=N {
        writeln!(f, "{},RF-BATCH-{i},{},100000", generated_syssn(i), 100 + i % 900).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let mut workers: Vec<WorkerProcess> =
        (0..2).map(|i| WorkerProcess::spawn(&env, scratch.path(&format!("w{i}.log")))).collect();
    let started = Instant::now();
    let out = std::process::Command::new(qfrefund_bin()).arg("import").arg(&csv).envs(&env).output().unwrap();
    let import_took = started.elapsed();
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], N);
    let l = ledger(&redis.url(), &ns).await;
    let drained = wait_count(&l, State::Succeeded, N, Duration::from_secs(240)).await;
    let audit = sim.audit();
    assert_eq!(audit["totals"]["succeeded"], N);
    assert_eq!(audit["totals"]["recorded"], N, "no refund recorded twice");
    assert_eq!(audit["violations"].as_array().unwrap().len(), 0);
    eprintln!(
        "20k import: {import_took:?} to import, {:?} to drain ({:.0} refunds/s through two workers, debug build)",
        started.elapsed(),
        N as f64 / drained.max(import_took).as_secs_f64()
    );
    for w in &mut workers {
        assert!(w.terminate(), "clean exit: {}", w.output());
    }
}

/// SIGTERM stops taking new refunds but lets the ones in flight finish and record their outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_refunds_before_exiting() {
    let scratch = Scratch::new("drain");
    let redis = RedisServer::start().unwrap();
    let sim = SimHandle::start_local(SimConfig {
        faults: Faults { latency_ms: 800, ..Faults::default() },
        ..SimConfig::demo(4)
    })
    .await
    .unwrap();
    let ns = unique_namespace("drain");
    let env = env_for(&redis.url(), &ns, &sim.url());
    let l = ledger(&redis.url(), &ns).await;
    let ids: Vec<String> = (1..=4).map(|i| format!("RF-T{i}")).collect();
    for (i, o) in ids.iter().enumerate() {
        l.enqueue(NewRefund::new(&generated_syssn(i as u64 + 1), o, 100)).await.unwrap();
    }
    let mut w = WorkerProcess::spawn(&env, scratch.path("w.log"));
    wait_count(&l, State::Submitting, 4, Duration::from_secs(20)).await;
    assert!(w.terminate(), "clean exit: {}", w.output());
    for o in &ids {
        let r = l.get("default", o).await.unwrap().unwrap();
        assert_eq!(r.state, State::Succeeded, "{o} finished during the drain: {}", w.output());
        assert_eq!(audit_records(&sim, o), 1);
    }
}

/// Redis AUTH: workers, producers and operators all work with a password-protected Redis, and a
/// wrong password is refused with a clear error that does not repeat it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_works_end_to_end() {
    let scratch = Scratch::new("auth");
    let redis = RedisServer::builder().password("s3cret-pw").aof(testkit::Aof::EverySec).start().unwrap();
    let sim = SimHandle::start_local(SimConfig::demo(1)).await.unwrap();
    let ns = unique_namespace("auth");
    let env = env_for(&redis.url(), &ns, &sim.url());
    let enq = std::process::Command::new(qfrefund_bin())
        .args(["enqueue", "--syssn", &generated_syssn(1), "--out-trade-no", "RF-AUTH", "--amount", "100"])
        .envs(&env)
        .output()
        .unwrap();
    assert!(enq.status.success(), "{}", String::from_utf8_lossy(&enq.stderr));
    let mut w = WorkerProcess::spawn(&env, scratch.path("w.log"));
    let l = ledger(&redis.url(), &ns).await;
    wait_count(&l, State::Succeeded, 1, Duration::from_secs(20)).await;
    assert_eq!(audit_records(&sim, "RF-AUTH"), 1);
    assert!(w.terminate());
    let mut wrong = env.clone();
    wrong.insert("QFREFUND_REDIS_URL".into(), redis.url().replace("s3cret-pw", "wrong-pw"));
    let out = std::process::Command::new(qfrefund_bin()).args(["status", "RF-AUTH"]).envs(&wrong).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.to_lowercase().contains("auth") || err.contains("WRONGPASS"), "{err}");
    assert!(!err.contains("wrong-pw"), "{err}");
}

/// TLS (`rediss://`) with a private CA: producers and workers connect, refunds go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_works_end_to_end() {
    let scratch = Scratch::new("tls");
    let redis = RedisServer::builder().tls().password("tls-pw").start().unwrap();
    assert!(redis.url().starts_with("rediss://"));
    let sim = SimHandle::start_local(SimConfig::demo(1)).await.unwrap();
    let ns = unique_namespace("tls");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("QFREFUND_REDIS_CA_FILE".into(), redis.ca_file().display().to_string());
    let enq = std::process::Command::new(qfrefund_bin())
        .args(["enqueue", "--syssn", &generated_syssn(1), "--out-trade-no", "RF-TLS", "--amount", "100"])
        .envs(&env)
        .output()
        .unwrap();
    assert!(enq.status.success(), "{}", String::from_utf8_lossy(&enq.stderr));
    let mut w = WorkerProcess::spawn(&env, scratch.path("w.log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = std::process::Command::new(qfrefund_bin()).args(["status", "RF-TLS"]).envs(&env).output().unwrap();
        let rec: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
        if rec["state"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "{rec} {}", w.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(audit_records(&sim, "RF-TLS"), 1);
    assert!(w.terminate());
    // Without the CA the server's certificate is not trusted: a clear refusal.
    env.remove("QFREFUND_REDIS_CA_FILE");
    let out = std::process::Command::new(qfrefund_bin()).args(["status", "RF-TLS"]).envs(&env).output().unwrap();
    assert!(!out.status.success());
}

/// A running worker is among the live workers (`qfrefund workers`, `stats`) with what it serves,
/// and leaves the view when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registers_itself_and_leaves_when_it_stops() {
    let scratch = Scratch::new("workers");
    let redis = RedisServer::start().unwrap();
    let sim = SimHandle::start_local(SimConfig::demo(1)).await.unwrap();
    let ns = unique_namespace("workers");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("QFREFUND_CONCURRENCY".into(), "7".into());
    let cli = |args: &[&str]| {
        let o = std::process::Command::new(qfrefund_bin()).args(args).env_clear().envs(&env).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let mut w = WorkerProcess::spawn(&env, scratch.path("w.log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let live = loop {
        let out = cli(&["workers"]);
        if let Some(line) = out.lines().next() {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(Instant::now() < deadline, "the worker never registered: {}", w.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((live["concurrency"].as_u64(), live["merchants"][0].as_str()), (Some(7), Some("default")), "{live}");
    assert!(live["name"].as_str().unwrap().starts_with("qfrefund-") && !live["host"].as_str().unwrap().is_empty());
    let stats: serde_json::Value = serde_json::from_str(&cli(&["stats"])).unwrap();
    assert_eq!(stats["live_workers"].as_u64(), Some(1));
    assert!(w.terminate());
    assert_eq!(cli(&["workers"]), "", "a clean stop leaves the view at once");
}
