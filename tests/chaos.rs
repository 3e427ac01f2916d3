//! Proof under fire (the four promises of docs/guarantees.md while things break), with real processes:
//! K `qfrefund worker` processes, a redis-server with AOF everysec, and the QFPay simulator with
//! every fault on. Refunds arrive through the CLI import and the Rust producer — duplicates,
//! conflicts, over-refunds, unknown payments, several refunds per payment — while workers are
//! killed (SIGKILL) and restarted, frozen past their lease (SIGSTOP/SIGCONT), Redis is killed and
//! restarted from its AOF twice, and the simulator stalls longer than the HTTP timeout.
//!
//! At the end: nothing applied twice, no payment refunded beyond what was paid, every accepted
//! refund final, ledger and simulator agreeing on every out_trade_no, one final event per refund,
//! and the client key nowhere in the output or in Redis. One figure line is printed.
//!
//! `make test` runs a short, seeded version; `make chaos` runs M = 5 000 refunds, K = 4 workers
//! (`QFREFUND_CHAOS_M`, `QFREFUND_CHAOS_K`, `QFREFUND_CHAOS_SEED`).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use ledger::{Accepted, LedgerError, NewRefund, State};
use qfpay_sim::args::{DEMO_CLIENT_KEY, generated_payment, generated_syssn};
use qfpay_sim::faults::Rng;
use qfrefund_e2e::{Scratch, WorkerProcess, env_for, ledger, qfrefund_bin};
use testkit::{Faults, RedisServer, SimConfig, SimHandle, unique_namespace};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the scenario expects of one refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Fits its payment: must succeed.
    Success,
    /// Would exceed what was paid (amount given at enqueue): must fail without being sent.
    OverRefund,
    /// The payment does not exist: QFPay refuses it (1136).
    UnknownPayment,
}

struct Plan {
    refunds: Vec<(NewRefund, Expect)>,
    payments: u64,
}

/// A seeded mix: most payments get one refund, some get several (within what was paid), some an
/// over-refund, a few refunds name unknown payments.
fn plan(m: usize, rng: &mut Rng) -> Plan {
    let mut refunds = Vec::with_capacity(m);
    let mut payment = 0u64;
    while refunds.len() < m {
        payment += 1;
        let syssn = generated_syssn(payment);
        let kind = rng.range(0, 99);
        let otn = |i: usize| format!("CH-{payment}-{i}");
        let paid = Some(10_000);
        if kind < 60 {
            refunds.push((
                NewRefund { orig_txamt: paid, ..NewRefund::new(&syssn, &otn(0), rng.range(100, 10_000)) },
                Expect::Success,
            ));
        } else if kind < 80 {
            // Several refunds of one payment, together within its amount.
            for i in 0..3 {
                refunds
                    .push((NewRefund { orig_txamt: paid, ..NewRefund::new(&syssn, &otn(i), 3_000) }, Expect::Success));
            }
        } else if kind < 92 {
            // Two refunds of 6 000 against 10 000: exactly one of them can succeed.
            refunds
                .push((NewRefund { orig_txamt: paid, ..NewRefund::new(&syssn, &otn(0), 6_000) }, Expect::OverRefund));
            refunds
                .push((NewRefund { orig_txamt: paid, ..NewRefund::new(&syssn, &otn(1), 6_000) }, Expect::OverRefund));
        } else {
            let unknown = format!("9{:025}", payment);
            refunds.push((NewRefund::new(&unknown, &otn(0), 500), Expect::UnknownPayment));
        }
    }
    Plan { refunds, payments: payment }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let m = env_num("QFREFUND_CHAOS_M", 300) as usize;
    let k = env_num("QFREFUND_CHAOS_K", 3) as usize;
    let seed = env_num("QFREFUND_CHAOS_SEED", 7);
    let mut rng = Rng::new(seed);
    let scratch = Scratch::new("chaos");
    let mut redis = RedisServer::start_with_aof().unwrap();
    let plan = plan(m, &mut rng);
    let faults = Faults {
        latency_ms: 5,
        error_5xx: 0.03,
        drop_after_apply: 0.03,
        hang_after_apply: 0.03,
        hang_ms: 2_500,
        processing: 0.1,
        processing_ms: 800,
        processing_fail: 0.1,
        rate_limit_429: 0.03,
        code_1269: 0.02,
        enquiry_5xx: 0.05,
        visibility_lag_ms: 300,
        ..Faults::default()
    };
    let sim_config = SimConfig {
        faults: faults.clone(),
        seed,
        payments: (1..=plan.payments).map(|i| generated_payment(i, 10_000)).collect(),
        ..SimConfig::demo(0)
    };
    let sim = SimHandle::start_local(sim_config).await.unwrap();
    let ns = unique_namespace("chaos");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    for (k_, v) in [
        ("QFREFUND_HTTP_TIMEOUT_MS", "1500"),
        ("QFREFUND_LEASE_MS", "2500"),
        ("QFREFUND_NOT_FOUND_GRACE_MS", "2500"),
        ("QFREFUND_ENQUIRY_FIRST_MS", "200"),
        ("QFREFUND_BACKOFF_BASE_MS", "200"),
        ("QFREFUND_BACKOFF_CAP_MS", "1000"),
        ("QFREFUND_RESUBMIT_BASE_MS", "200"),
        ("QFREFUND_RESUBMIT_CAP_MS", "1000"),
        ("QFREFUND_CODE_DELAY_CAP_MS", "500"),
        ("QFREFUND_RESUBMIT_BUDGET", "20"),
        ("QFREFUND_CONCURRENCY", "32"),
        ("RUST_LOG", "warn"),
    ] {
        env.insert(k_.into(), v.into());
    }
    let l = ledger(&redis.url(), &ns).await;
    let started = Instant::now();
    let mut workers: Vec<WorkerProcess> =
        (0..k).map(|i| WorkerProcess::spawn(&env, scratch.path(&format!("w{i}-0.log")))).collect();
    let mut generation = vec![0usize; k];

    // Half through the CLI import (with a duplicate and a conflict line), half through the producer.
    let half = plan.refunds.len() / 2;
    let csv = scratch.path("import.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        writeln!(f, "syssn,out_trade_no,txamt,orig_txamt").unwrap();
        for (r, _) in &plan.refunds[..half] {
            writeln!(
                f,
                "{},{},{},{}",
                r.syssn,
                r.out_trade_no,
                r.txamt,
                r.orig_txamt.map(|v| v.to_string()).unwrap_or_default()
            )
            .unwrap();
        }
        let (dup, _) = &plan.refunds[0];
        writeln!(
            f,
            "{},{},{},{}",
            dup.syssn,
            dup.out_trade_no,
            dup.txamt,
            dup.orig_txamt.map(|v| v.to_string()).unwrap_or_default()
        )
        .unwrap();
        writeln!(f, "{},{},{},", dup.syssn, dup.out_trade_no, dup.txamt + 1).unwrap();
    }
    let import = std::process::Command::new(qfrefund_bin()).arg("import").arg(&csv).envs(&env).output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&import.stdout).unwrap();
    assert_eq!(summary["accepted"].as_u64(), Some(half as u64), "{summary}");
    assert_eq!((summary["duplicates"].as_u64(), summary["conflicts"].as_u64()), (Some(1), Some(1)));
    let rest: Vec<NewRefund> = plan.refunds[half..].iter().map(|(r, _)| r.clone()).collect();
    let conflict = NewRefund { txamt: rest[0].txamt + 1, ..rest[0].clone() };

    // The storm: a seeded sequence of failures, while the producer keeps enqueueing in waves (so
    // every failure hits refunds in flight).
    let (mut kills, mut stalls, mut redis_restarts, mut sim_pauses) = (0, 0, 0, 0);
    let storm = ["kill", "stall", "redis", "kill", "pause", "kill", "redis", "stall", "kill"];
    let waves: Vec<Vec<NewRefund>> = rest.chunks(rest.len().div_ceil(storm.len())).map(<[NewRefund]>::to_vec).collect();
    for (i, event) in storm.iter().enumerate() {
        if let Some(wave) = waves.get(i) {
            let mut wave = wave.clone();
            let dups: Vec<NewRefund> = wave.iter().take(3).cloned().collect(); // duplicates through the producer too
            wave.extend(dups);
            for result in l.enqueue_batch(wave).await {
                // A wave may meet Redis mid-restart: the producer retries, as any producer would.
                if let Err(LedgerError::Redis(_)) = result {
                    continue;
                }
                assert!(matches!(result, Ok(Accepted::Created | Accepted::Duplicate)), "{result:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.range(300, 900))).await;
        let w = rng.range(0, k as u64 - 1) as usize;
        match *event {
            "kill" => {
                workers[w].kill9();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                generation[w] += 1;
                workers[w] = WorkerProcess::spawn(&env, scratch.path(&format!("w{w}-{}.log", generation[w])));
            }
            "stall" => {
                workers[w].stop();
                stalls += 1;
                tokio::time::sleep(Duration::from_millis(3_000)).await; // past its 2.5 s lease
                workers[w].cont();
            }
            "redis" => {
                redis.restart().unwrap();
                redis_restarts += 1;
            }
            "pause" => {
                sim.set_faults(Faults { paused: true, ..faults.clone() }).unwrap();
                sim_pauses += 1;
                tokio::time::sleep(Duration::from_millis(2_000)).await; // longer than the HTTP timeout
                sim.set_faults(faults.clone()).unwrap();
            }
            _ => unreachable!(),
        }
    }
    // Whatever a restart interrupted is enqueued again (idempotent), then the conflict is refused.
    let mut retry = rest.clone();
    while !retry.is_empty() {
        let results = l.enqueue_batch(retry.clone()).await;
        retry = retry
            .into_iter()
            .zip(results)
            .filter(|(_, r)| matches!(r, Err(LedgerError::Redis(_))))
            .map(|(r, _)| r)
            .collect();
        for r in &retry {
            assert!(r.validate().is_ok());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(l.enqueue(conflict).await, Err(LedgerError::Conflict { .. })));
    // Calm: no more injected faults, so everything can settle.
    sim.set_faults(Faults::default()).unwrap();

    let deadline = Instant::now() + Duration::from_secs(60 + m as u64 / 20);
    let records = loop {
        let mut recs = HashMap::new();
        for (r, _) in &plan.refunds {
            // The test's own connection also lived through the Redis restarts: retry on errors.
            if let Ok(Some(rec)) = l.get("default", &r.out_trade_no).await {
                recs.insert(r.out_trade_no.clone(), rec);
            }
        }
        let open = recs.values().filter(|r| !r.state.is_final() && r.state != State::NeedsReview).count();
        if open == 0 && recs.len() == plan.refunds.len() {
            break recs;
        }
        assert!(
            Instant::now() < deadline,
            "{open} refunds still open, {} missing; worker log: {}",
            plan.refunds.len() - recs.len(),
            workers[0].output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drained = started.elapsed();

    // Ledger against the simulator, refund by refund.
    let audit = sim.audit();
    let (mut doubled, mut mismatched, mut review, mut guessed) = (0, 0, 0, 0);
    let mut by_payment: BTreeMap<String, Vec<State>> = BTreeMap::new();
    for (r, expect) in &plan.refunds {
        let rec = &records[&r.out_trade_no];
        let at_qfpay = &audit["by_out_trade_no"][&r.out_trade_no];
        let (recorded, refunded) =
            (at_qfpay["records"].as_u64().unwrap_or(0), at_qfpay["refunded"].as_u64().unwrap_or(0));
        doubled += usize::from(recorded > 1);
        // Succeeded ⇔ QFPay refunded exactly this; anything else ⇒ QFPay refunded nothing. A
        // refund left for review must not hide money that moved.
        let agrees = match rec.state {
            State::Succeeded => refunded == r.txamt,
            _ => refunded == 0,
        };
        mismatched += usize::from(!agrees);
        review += usize::from(rec.state == State::NeedsReview);
        // Never guessed: a failure is QFPay's refusal, or our own over-refund guard (never sent).
        if rec.state == State::Failed {
            let by_qfpay = rec.respcd.as_deref().is_some_and(|c| c != "0000");
            let never_sent = rec.submits == 0 && rec.reason.as_deref().is_some_and(|w| w.contains("never sent"));
            guessed += usize::from(!(by_qfpay || never_sent));
        }
        if *expect == Expect::UnknownPayment {
            assert!(matches!(rec.state, State::Failed | State::NeedsReview), "{rec:?}");
        }
        by_payment.entry(r.syssn.clone()).or_default().push(rec.state);
    }
    for (syssn, states) in &by_payment {
        let ok = states.iter().filter(|s| **s == State::Succeeded).count();
        assert!(ok <= 3, "payment {syssn}: {states:?}");
    }
    let over_refunded = audit["violations"].as_array().unwrap().len();
    let succeeded = records.values().filter(|r| r.state == State::Succeeded).count();
    let failed = records.values().filter(|r| r.state == State::Failed).count();

    // One final event per refund in the outcome stream.
    let mut finals: HashMap<String, usize> = HashMap::new();
    let mut after = "0".to_owned();
    loop {
        let batch = l.events(&after, 5_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.id.clone();
        for e in batch.iter().filter(|e| e.is_final()) {
            *finals.entry(e.out_trade_no.clone()).or_default() += 1;
        }
    }
    for (r, _) in &plan.refunds {
        if records[&r.out_trade_no].state.is_final() {
            assert_eq!(finals.get(&r.out_trade_no), Some(&1), "{}: final events", r.out_trade_no);
        }
    }

    // The client key is nowhere: not in any process output, not in any Redis value.
    for w in &workers {
        assert!(!w.output().contains(DEMO_CLIENT_KEY));
    }
    for entry in std::fs::read_dir(&scratch.0).unwrap() {
        let text = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains(DEMO_CLIENT_KEY));
    }
    assert!(!String::from_utf8_lossy(&import.stdout).contains(DEMO_CLIENT_KEY));
    assert!(!String::from_utf8_lossy(&import.stderr).contains(DEMO_CLIENT_KEY));
    let dump = qfrefund_e2e::dump_redis(&redis.url()).await;
    assert!(dump.len() > 1_000, "the dump holds the ledger");
    assert!(!dump.contains(DEMO_CLIENT_KEY), "the client key is stored in Redis");

    let lost = plan.refunds.len() - records.len();
    println!(
        "chaos: refunds={} workers={k} kills={kills} stalls={stalls} redis_restarts={redis_restarts} sim_pauses={sim_pauses} \
         succeeded={succeeded} failed={failed} needs_review={review} lost={lost} doubled={doubled} \
         over_refunded={over_refunded} mismatched={mismatched} guessed={guessed} time_to_drain={:.1}s seed={seed}",
        plan.refunds.len(),
        drained.as_secs_f64()
    );
    assert_eq!((lost, doubled, over_refunded, mismatched, guessed), (0, 0, 0, 0, 0));
    // needs_review is allowed only where the scenario forces it: an attempt whose outcome was never
    // seen, then a refusal — and (checked above) no money moved for it.
    for r in records.values().filter(|r| r.state == State::NeedsReview) {
        assert!(r.uncertain, "{r:?}");
    }
    for w in &mut workers {
        w.terminate();
    }
}
