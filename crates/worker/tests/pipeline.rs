//! The pipeline end to end, in-process: ledger in a real redis-server, QFPay simulated over HTTP.
//! Every test checks the simulator's audit, not only the ledger.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Env, Worker, otns};
use ledger::State;
use testkit::Faults;

const FINAL: &[State] = &[State::Succeeded, State::Failed];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_every_refund_succeeds_once() {
    let env = Env::start("happy", 30, Faults::default()).await;
    let ids = otns("RF-H", 30);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 1_000 + i as u64).await;
    }
    let w = env.worker();
    let recs = env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(20)).await;
    for r in &recs {
        assert_eq!((r.submits, r.enquiries), (1, 0));
        assert!(r.refund_syssn.is_some());
    }
    env.assert_audit_agrees(&ids).await;
    assert_eq!(env.sim.audit()["totals"]["succeeded"], 30);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_answers_are_settled_by_enquiry() {
    let env = Env::start("processing", 5, Faults { processing: 1.0, processing_ms: 400, ..Faults::default() }).await;
    let ids = otns("RF-P", 5);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 500).await;
    }
    let w = env.worker();
    for r in env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(20)).await {
        assert_eq!(r.submits, 1, "never resent");
        assert!(r.enquiries >= 1);
    }
    env.assert_audit_agrees(&ids).await;
    // The outcome stream tells the story of each: queued, submitting, pending…, succeeded — once.
    let events = env.ledger.events("0", 10_000).await.unwrap();
    for o in &ids {
        let mine: Vec<&str> = events.iter().filter(|e| &e.out_trade_no == o).map(|e| e.state.as_str()).collect();
        assert_eq!(&mine[..3], ["queued", "submitting", "pending"], "{o}: {mine:?}");
        assert_eq!(mine.iter().filter(|s| **s == "succeeded").count(), 1, "{o}: {mine:?}");
        assert_eq!(mine.last(), Some(&"succeeded"));
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_that_ends_failed_is_failed() {
    let faults = Faults { processing: 1.0, processing_ms: 200, processing_fail: 1.0, ..Faults::default() };
    let env = Env::start("procfail", 1, faults).await;
    env.enqueue(1, "RF-PF", 500).await;
    let w = env.worker();
    let r = &env.wait_for(&["RF-PF".into()], FINAL, Duration::from_secs(20)).await[0];
    assert_eq!((r.state, r.respcd.as_deref()), (State::Failed, Some("1155")));
    env.assert_audit_agrees(&["RF-PF".into()]).await;
    w.stop().await;
}

/// A refund QFPay applied but whose answer never arrived: the enquiry finds it. Never twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_then_drop_and_apply_then_hang_are_found_by_enquiry_never_resent() {
    for (name, faults) in [
        ("drop", Faults { drop_after_apply: 1.0, ..Faults::default() }),
        ("hang", Faults { hang_after_apply: 1.0, hang_ms: 3_000, ..Faults::default() }),
    ] {
        let env = Env::start(name, 4, faults).await;
        let ids = otns(&format!("RF-{name}-"), 4);
        for (i, o) in ids.iter().enumerate() {
            env.enqueue(i as u64 + 1, o, 700).await;
        }
        let w = env.worker();
        for r in env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(20)).await {
            assert_eq!(r.submits, 1, "{name}: an unknown outcome is enquired, never resent");
            assert!(r.enquiries >= 1);
        }
        env.assert_audit_agrees(&ids).await;
        w.stop().await;
    }
}

/// 5xx before applying, 429: nothing happened at QFPay, so after enquiries prove it (5xx) or at
/// once (429) the same out_trade_no is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_5xx_and_429_lead_to_a_resend_with_the_same_out_trade_no() {
    for (name, faults) in [
        ("5xx", Faults { error_5xx: 1.0, ..Faults::default() }),
        ("429", Faults { rate_limit_429: 1.0, ..Faults::default() }),
    ] {
        let env = Env::start(name, 2, faults).await;
        let ids = otns(&format!("RF-{name}-"), 2);
        for (i, o) in ids.iter().enumerate() {
            env.enqueue(i as u64 + 1, o, 700).await;
        }
        let w = env.worker();
        // While the fault lasts nothing succeeds and nothing is applied.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        for o in &ids {
            assert_eq!(env.audit_of(o).0, 0);
            let r = env.record(o).await;
            assert!(!r.state.is_final(), "{name}: {r:?}");
        }
        env.sim.set_faults(Faults::default()).unwrap();
        for r in env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(20)).await {
            assert!(r.submits >= 2, "{name}: resent ({} submits)", r.submits);
            if name == "5xx" {
                assert!(r.enquiries >= 3, "a 5xx may have applied it: enquire first ({} enquiries)", r.enquiries);
            }
        }
        env.assert_audit_agrees(&ids).await;
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_1269_waits_hours_before_resending_and_moves_no_money() {
    let env = Env::start("1269", 1, Faults { code_1269: 1.0, ..Faults::default() }).await;
    env.enqueue(1, "RF-1269", 700).await;
    let w = env.worker();
    let r = &env.wait_for(&["RF-1269".into()], &[State::RetryWait], Duration::from_secs(10)).await[0];
    assert_eq!(r.respcd.as_deref(), Some("1269"));
    assert!(r.next_at >= qfpay::time::unix_now_ms() + 5 * 3600 * 1000, "next try in hours, not seconds");
    assert_eq!(env.audit_of("RF-1269"), (0, 0));
    w.stop().await;
}

/// `1102`: our id is taken. If an earlier attempt of ours took it, the enquiry finds that refund;
/// if another transaction owns it, a person must look — never a new id, never a guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_code_is_resolved_by_enquiry() {
    let env = Env::start("dup", 2, Faults::default()).await;
    // An earlier attempt (say, before a crash wiped our record) already applied RF-D1.
    assert_eq!(env.direct_refund(1, "RF-D1", 300).await, "0000");
    env.enqueue(1, "RF-D1", 300).await;
    // PAY2 is payment 2's own out_trade_no: a clash with another transaction.
    env.enqueue(2, "PAY2", 100).await;
    let w = env.worker();
    let r = &env.wait_for(&["RF-D1".into()], &[State::Succeeded], Duration::from_secs(20)).await[0];
    assert_eq!(r.submits, 1);
    let r = &env.wait_for(&["PAY2".into()], &[State::NeedsReview], Duration::from_secs(20)).await[0];
    assert!(r.reason.as_deref().unwrap().contains("clashes"), "{r:?}");
    assert_eq!(env.audit_of("RF-D1"), (1, 300), "applied once, by the earlier attempt");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_failure_codes_fail_and_reconcile_codes_enquire_first() {
    let env = Env::start("finalfail", 1, Faults::default()).await;
    let mut cfg = env.config.clone();
    cfg.learn_paid = false; // let QFPay's own remainder check (1272) answer
    // 1136: no such payment. 1272: more than the payment's remainder (reconcile code).
    env.ledger.enqueue(ledger::NewRefund::new("99999", "RF-F1", 100)).await.unwrap();
    env.enqueue(1, "RF-F2", 100_001).await;
    let w = common::Worker::start(cfg);
    let recs = env.wait_for(&["RF-F1".into(), "RF-F2".into()], FINAL, Duration::from_secs(20)).await;
    assert_eq!((recs[0].state, recs[0].respcd.as_deref(), recs[0].enquiries), (State::Failed, Some("1136"), 0));
    assert_eq!((recs[1].state, recs[1].enquiries), (State::Failed, 1), "1272 is confirmed by one enquiry");
    assert!(recs[1].reason.as_deref().unwrap().contains("1272"));
    env.assert_audit_agrees(&["RF-F1".into(), "RF-F2".into()]).await;
    w.stop().await;
}

/// Promise 3: with the paid amount known (given, or learned by enquiring the payment), refunds
/// of one payment never exceed it; the one that would is failed and never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_paid() {
    let env = Env::start("paid", 2, Faults::default()).await;
    let syssn = |n| qfpay_sim::args::generated_syssn(n);
    // Payment 1: paid amount given by the producer. Payment 2: learned by enquiry (100 000).
    for (otn, payment, amount, orig) in [
        ("RF-A1", 1, 60_000, Some(100_000)),
        ("RF-A2", 1, 30_000, Some(100_000)),
        ("RF-A3", 1, 20_000, Some(100_000)),
        ("RF-B1", 2, 70_000, None),
        ("RF-B2", 2, 40_000, None),
    ] {
        let r = ledger::NewRefund { orig_txamt: orig, ..ledger::NewRefund::new(&syssn(payment), otn, amount) };
        env.ledger.enqueue(r).await.unwrap();
    }
    let w = env.worker();
    let ids: Vec<String> = ["RF-A1", "RF-A2", "RF-A3", "RF-B1", "RF-B2"].map(String::from).to_vec();
    let recs = env.wait_for(&ids, FINAL, Duration::from_secs(20)).await;
    for payment in [1, 2] {
        let p = &env.sim.audit()["by_payment"][syssn(payment)];
        assert!(p["refunded"].as_u64().unwrap() <= p["paid"].as_u64().unwrap(), "{p}");
    }
    let failed: Vec<&ledger::Record> = recs.iter().filter(|r| r.state == State::Failed).collect();
    assert_eq!(failed.len(), 2, "one refund per payment does not fit");
    for r in failed {
        assert_eq!(r.submits, 0, "{}: refused before sending", r.out_trade_no);
        assert!(r.reason.as_deref().unwrap().contains("never sent"));
    }
    env.assert_audit_agrees(&ids).await;
    w.stop().await;
}

/// Promise 1 at the producer's side: the same request any number of times is one refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_enqueues_refund_once_and_conflicts_are_refused() {
    let env = Env::start("dupenq", 1, Faults::default()).await;
    let w = env.worker();
    let req = ledger::NewRefund::new(&qfpay_sim::args::generated_syssn(1), "RF-E", 500);
    let mut handles = Vec::new();
    for _ in 0..20 {
        let l = env.ledger.clone();
        let r = req.clone();
        handles
            .push(tokio::spawn(async move { l.enqueue(r).await.map(|e| matches!(e, ledger::Enqueued::Created(_))) }));
    }
    let mut created = 0;
    for h in handles {
        created += u32::from(h.await.unwrap().unwrap());
    }
    assert_eq!(created, 1, "exactly one enqueue created it");
    let conflict = ledger::NewRefund { txamt: 501, ..req.clone() };
    assert!(matches!(env.ledger.enqueue(conflict).await, Err(ledger::LedgerError::Conflict { .. })));
    env.wait_for(&["RF-E".into()], &[State::Succeeded], Duration::from_secs(20)).await;
    for _ in 0..3 {
        env.ledger.enqueue(req.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.audit_of("RF-E"), (1, 500));
    w.stop().await;
}

/// Max age: a refund that never settles goes to a person, visibly, and stops being polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_leads_to_needs_review() {
    let env = Env::start("maxage", 1, Faults { processing: 1.0, processing_ms: 600_000, ..Faults::default() }).await;
    let mut cfg = env.config.clone();
    cfg.policy.max_age = Duration::from_millis(1_500);
    env.enqueue(1, "RF-OLD", 100).await;
    let w = common::Worker::start(cfg);
    let r = &env.wait_for(&["RF-OLD".into()], &[State::NeedsReview], Duration::from_secs(20)).await[0];
    assert!(r.reason.as_deref().unwrap().contains("max age"), "{r:?}");
    assert_eq!(env.ledger.due_len().await.unwrap(), 0, "no longer polled");
    w.stop().await;
}

/// A configuration error (wrong key → 1108) parks the refund for review and pauses the merchant
/// (audited): its other refunds wait instead of failing the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_pause_the_merchant() {
    let env = Env::start("cfgerr", 3, Faults::default()).await;
    let mut cfg = env.config.clone();
    cfg.merchants.get_mut("default").unwrap().key = qfpay::ClientKey::new("WRONG-KEY");
    cfg.concurrency = 1;
    for (i, o) in otns("RF-C", 3).iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    let w = common::Worker::start(cfg);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let recs: Vec<_> = futures_lite(&env, &otns("RF-C", 3)).await;
    assert_eq!(recs.iter().filter(|r| r.state == State::NeedsReview).count(), 1, "{recs:#?}");
    assert_eq!(recs.iter().filter(|r| r.state == State::Queued).count(), 2);
    assert!(env.ledger.paused().await.unwrap().contains_key("default"));
    // The pause is in the audit trail, once, by the worker that paused it and why.
    let audit = env.ledger.audit("0", 100).await.unwrap();
    let pauses: Vec<_> = audit.iter().filter(|a| a.action == "pause" && a.merchant == "default").collect();
    assert_eq!(pauses.len(), 1, "{audit:?}");
    assert!(pauses[0].who.starts_with("worker ") && pauses[0].why.contains("1108"), "{audit:?}");
    assert_eq!(env.sim.audit()["totals"]["recorded"], 0);
    w.stop().await;
}

async fn futures_lite(env: &Env, ids: &[String]) -> Vec<ledger::Record> {
    let mut out = Vec::new();
    for o in ids {
        out.push(env.record(o).await);
    }
    out
}

/// The enquiry schedule is the configured curve, and it is durable: a new worker continues it
/// from the counters stored on the record, it does not start over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_schedule_follows_the_configured_curve_across_a_worker_restart() {
    let env = Env::start("backoff", 1, Faults { processing: 1.0, processing_ms: 5_000, ..Faults::default() }).await;
    let mut cfg = env.config.clone();
    cfg.policy.enquiry_first = Duration::from_millis(100);
    cfg.policy.enquiry_base = Duration::from_millis(300);
    cfg.policy.enquiry_cap = Duration::from_millis(1_200);
    let policy = cfg.policy.clone();
    env.enqueue(1, "RF-B", 100).await;
    let w = common::Worker::start(cfg.clone());
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    w.stop().await;
    let restarted_at = qfpay::time::unix_now_ms();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let w = common::Worker::start(cfg);
    env.wait_for(&["RF-B".into()], &[State::Succeeded], Duration::from_secs(30)).await;
    w.stop().await;

    let events = env.ledger.events("0", 1_000).await.unwrap();
    let pending: Vec<_> = events.iter().filter(|e| e.out_trade_no == "RF-B" && e.state == "pending").collect();
    assert!(pending.len() >= 5, "{pending:#?}");
    let num = |s: &str| s.parse::<i64>().unwrap();
    let ms = |d: Duration| d.as_millis() as i64;
    let mut after_restart = 0;
    for (i, e) in pending.iter().enumerate() {
        let k: u32 = e.enquiries.parse().unwrap();
        let delay = num(&e.next_at) - num(&e.at);
        // `at` is stamped when the transition is written, a few ms after the decision was taken.
        if k == 0 {
            let first = ms(policy.enquiry_first);
            assert!((first - 50..=first).contains(&delay), "first enquiry after the submit: {delay} ms");
        } else {
            assert!(delay >= ms(policy.enquiry_base / 2) - 50, "enquiry {k}: {delay} ms below the floor");
            assert!(delay <= ms(policy.enquiry_delay_max(k)) + 1, "enquiry {k}: {delay} ms above the curve");
        }
        if let Some(next) = pending.get(i + 1) {
            assert!(num(&next.at) >= num(&e.next_at), "an enquiry never comes before its time");
            assert!(num(&next.enquiries) > num(&e.enquiries), "counters only grow");
        }
        if num(&e.at) > restarted_at {
            after_restart += 1;
            assert!(k >= 3, "after the restart the schedule continues (enquiry {k})");
        }
    }
    assert!(after_restart >= 1, "the second worker enquired too");
}

/// Redis killed (kill -9) and restarted from its AOF twice while refunds are in flight: nothing
/// lost, nothing applied twice, one final event per refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_run_with_aof() {
    let faults =
        Faults { processing: 0.3, processing_ms: 300, latency_ms: 10, drop_after_apply: 0.05, ..Faults::default() };
    let mut env =
        Env::start_with("redis-restart", testkit::SimConfig { faults, ..testkit::SimConfig::demo(200) }, true).await;
    let ids = otns("RF-R", 200);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    let w = env.worker();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        env.redis.restart().unwrap();
    }
    let recs = env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(60)).await;
    assert_eq!(recs.len(), 200);
    env.assert_audit_agrees(&ids).await;
    let events = env.ledger.events("0", 100_000).await.unwrap();
    for o in &ids {
        let finals = events.iter().filter(|e| &e.out_trade_no == o && e.is_final()).count();
        assert_eq!(finals, 1, "{o}");
    }
    w.stop().await;
}

/// An idle worker starts a new refund within ~100 ms (apalis-redis alone would wait for its 30 s
/// heartbeat): the producer's wake-up reaches the idle fetcher at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_picks_up_a_new_refund_at_once() {
    let env = Env::start("idle", 5, Faults::default()).await;
    let w = env.worker();
    tokio::time::sleep(Duration::from_millis(1_500)).await; // idle
    let mut worst = Duration::ZERO;
    for i in 1..=5u64 {
        let otn = format!("RF-I{i}");
        let started = std::time::Instant::now();
        env.enqueue(i, &otn, 100).await;
        loop {
            if env.record(&otn).await.state != State::Queued {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // ~100 ms is the target (`make bench` measures p99); a debug build on a shared 2-core machine
    // gets slack here, but nowhere near apalis-redis' 30 s.
    assert!(worst < Duration::from_millis(750), "slowest pickup {worst:?}");
    w.stop().await;
}

/// Several merchants, each with its own credentials (and mchid); a refund naming a merchant this
/// worker has no credentials for waits, visibly, instead of being sent with the wrong ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refund_is_signed_with_its_merchants_credentials() {
    use qfpay_sim::{Merchant as SimMerchant, PaymentSeed};
    let mut sim = testkit::SimConfig::demo(1);
    sim.merchants.push(SimMerchant {
        app_code: "SHOP2".into(),
        key: qfpay::ClientKey::new("KEY-OF-SHOP2"),
        mchid: Some("M2".into()),
    });
    sim.payments.push(PaymentSeed { app_code: Some("SHOP2".into()), ..qfpay_sim::args::generated_payment(2, 5_000) });
    let env = Env::start_with("merchants", sim, false).await;
    let mut cfg = env.config.clone();
    let shop2 = qfrefund_worker::Merchant {
        name: "shop2".into(),
        app_code: "SHOP2".into(),
        key: qfpay::ClientKey::new("KEY-OF-SHOP2"),
        mchid: Some("M2".into()),
        base_url: env.sim.url(),
        alg: qfpay::SignAlg::Sha256,
        webhook: None,
    };
    cfg.merchants.insert("shop2".into(), shop2);
    let syssn = qfpay_sim::args::generated_syssn;
    env.ledger.enqueue(ledger::NewRefund::new(&syssn(1), "RF-M1", 100)).await.unwrap();
    let r2 = ledger::NewRefund { merchant: Some("shop2".into()), ..ledger::NewRefund::new(&syssn(2), "RF-M2", 200) };
    env.ledger.enqueue(r2).await.unwrap();
    let r3 = ledger::NewRefund { merchant: Some("shop3".into()), ..ledger::NewRefund::new(&syssn(2), "RF-M3", 300) };
    env.ledger.enqueue(r3).await.unwrap();
    let w = common::Worker::start(cfg);
    env.wait_for(&["RF-M1".into(), "RF-M2".into()], &[State::Succeeded], Duration::from_secs(20)).await;
    let refunds = env.sim.audit()["refunds"].as_array().unwrap().clone();
    let by = |otn: &str| refunds.iter().find(|r| r["out_trade_no"] == otn).unwrap()["app_code"].clone();
    assert_eq!((by("RF-M1"), by("RF-M2")), ("QFSIMAPPCODE".into(), "SHOP2".into()));
    let r3 = env.record("RF-M3").await;
    assert_eq!((r3.state, r3.submits), (State::Queued, 0));
    assert!(r3.reason.as_deref().unwrap().contains("no credentials for merchant \"shop3\""), "{r3:?}");
    w.stop().await;
}

/// The per-merchant token bucket paces submits across the whole fleet; nothing is lost to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merchant_rate_limit_paces_submits() {
    let env = Env::start("ratelimit", 12, Faults::default()).await;
    let mut cfg = env.config.clone();
    cfg.rate_per_sec = 10.0;
    cfg.rate_burst = 2;
    let ids = otns("RF-RL", 12);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    let started = std::time::Instant::now();
    let (w1, w2) = (common::Worker::start(cfg.clone()), common::Worker::start(cfg));
    env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(20)).await;
    // 12 requests at 10/s after a burst of 2: at least a second, whatever the number of workers.
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
    env.assert_audit_agrees(&ids).await;
    w1.stop().await;
    w2.stop().await;
}

/// QFPay applied the refund, the answer was lost, and its records lag: enquiries miss it for a
/// while, the worker resends the *same* out_trade_no, QFPay calls it a duplicate, and the
/// enquiry that follows finds the one refund. Never twice, never a new id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_record_after_a_lost_answer_is_found_not_refunded_again() {
    let faults = Faults { drop_after_apply: 1.0, visibility_lag_ms: 2_500, ..Faults::default() };
    let env = Env::start("lag", 2, faults).await;
    let ids = otns("RF-LAG", 2);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 400).await;
    }
    let w = env.worker();
    // Let the first answers be lost, then stop dropping (the lag stays).
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.sim.set_faults(Faults { visibility_lag_ms: 2_500, ..Faults::default() }).unwrap();
    for r in env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(30)).await {
        assert!(r.uncertain);
        assert!(r.enquiries >= 3, "{r:?}");
    }
    env.assert_audit_agrees(&ids).await;
    for o in &ids {
        assert_eq!(env.audit_of(o), (1, 400));
    }
    w.stop().await;
}

/// Our out_trade_no already names someone else's refund at QFPay (another system reused it): the
/// duplicate answer is enquired, the record found is not ours (other payment), and a person
/// decides — it is never taken for our success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_refund_under_our_id_goes_to_review() {
    let env = Env::start("foreign", 2, Faults::default()).await;
    assert_eq!(env.direct_refund(2, "RF-X", 300).await, "0000");
    env.enqueue(1, "RF-X", 300).await;
    let w = env.worker();
    let r = &env.wait_for(&["RF-X".into()], &[State::NeedsReview], Duration::from_secs(20)).await[0];
    assert!(r.reason.as_deref().unwrap().contains("another refund"), "{r:?}");
    assert_eq!(env.sim.audit()["by_payment"][qfpay_sim::args::generated_syssn(1)]["refunded"], serde_json::Value::Null);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_its_metrics_and_the_ledgers() {
    let env = Env::start("metrics", 5, Faults::default()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = env.config.clone();
    config.metrics_listen = Some(format!("127.0.0.1:{port}"));
    let ids = otns("RF-M", 5);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    let w = Worker::start(config);
    env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(20)).await;
    let get = |path: &'static str| async move {
        let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    assert_eq!(get("/healthz").await, (200, "ok".to_owned()));
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "qfrefund_settled_total{state=\"succeeded\",class=\"success\"} 5",
        "qfrefund_qfpay_request_seconds_count{call=\"refund\"} 5",
        "qfrefund_refunds{state=\"succeeded\"} 5",
        "qfrefund_due_backlog 0",
        "qfrefund_time_to_final_seconds_count 5",
        "qfrefund_fence_rejections_total 0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(!text.contains("RF-M"), "no refund ids in metrics");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_outcomes_reach_the_webhook_signed_and_retried_until_accepted() {
    use qfrefund_worker::webhooks::{Webhook, WebhookPolicy};
    let env = Env::start("webhooks", 5, Faults::default()).await;
    let (url, got) = common::hook_receiver_failing(3).await;
    let hook = Webhook::new(&url, "whsec-test-0123456789").unwrap();
    let mut config = env.config.clone();
    if let Some(m) = config.merchants.get_mut("default") {
        m.webhook = Some(hook.clone());
    }
    config.webhooks = WebhookPolicy {
        retry_base: Duration::from_millis(100),
        retry_cap: Duration::from_millis(400),
        ..WebhookPolicy::default()
    };
    let w = Worker::start(config);
    common::wait_group(&env, "default").await;
    let ids = otns("RF-W", 3);
    for (i, o) in ids.iter().enumerate() {
        env.enqueue(i as u64 + 1, o, 100).await;
    }
    env.wait_for(&ids, &[State::Succeeded], Duration::from_secs(20)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let accepted: std::collections::HashSet<String> = {
            let g = got.lock().unwrap();
            g.iter().skip(3).map(|(id, _, _, _)| id.clone()).collect()
        };
        if accepted.len() == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not all delivered: {accepted:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = got.lock().unwrap().clone();
    let mut per_refund = std::collections::HashMap::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for (id, sig, body, standard) in &g {
        assert_eq!(sig, &hook.signature(body), "every delivery is signed over its raw body");
        // Standard Webhooks: the event id, a fresh timestamp, the signature of id.timestamp.body.
        let at: i64 = standard.timestamp.parse().unwrap();
        assert!((now - at).abs() < 300, "webhook-timestamp is the attempt's: {standard:?}");
        assert_eq!(&standard.id, id);
        assert_eq!(standard.signature, hook.standard_signature(id, at, body));
        assert!(standard.user_agent.starts_with("qfrefund/"), "{standard:?}");
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["type"], "refund.succeeded");
        assert_eq!(&v["id"], id, "the event id header matches the body");
        for number in ["txamt", "submits", "enquiries", "fence", "at"] {
            assert!(v[number].is_u64(), "{number} is a JSON integer in the body: {v}");
        }
        per_refund.entry(v["out_trade_no"].as_str().unwrap().to_owned()).or_insert_with(Vec::new).push(id.clone());
    }
    assert_eq!(per_refund.len(), 3);
    for (otn, ids) in &per_refund {
        assert!(ids.iter().all(|i| i == &ids[0]), "{otn}: a redelivery keeps the event id: {ids:?}");
    }
    let stats = env.ledger.stats().await.unwrap();
    assert_eq!((stats.webhooks_failed, stats.webhooks_retrying), (0, 0));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_never_answers_is_given_up_visibly_and_can_be_redelivered() {
    use qfrefund_worker::webhooks::{Webhook, WebhookPolicy};
    let env = Env::start("webhooks-fail", 2, Faults::default()).await;
    let (url, got) = common::hook_receiver_failing(usize::MAX).await;
    let mut config = env.config.clone();
    if let Some(m) = config.merchants.get_mut("default") {
        m.webhook = Some(Webhook::new(&url, "whsec-test-0123456789").unwrap());
    }
    config.webhooks = WebhookPolicy {
        retry_base: Duration::from_millis(50),
        retry_cap: Duration::from_millis(100),
        max_attempts: 3,
        ..WebhookPolicy::default()
    };
    let w = Worker::start(config);
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.enqueue(1, "RF-WF", 100).await;
    env.wait_for(&["RF-WF".to_owned()], &[State::Succeeded], Duration::from_secs(20)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while env.ledger.stats().await.unwrap().webhooks_failed < 1 {
        assert!(std::time::Instant::now() < deadline, "never given up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = env.ledger.failed_webhooks(10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].out_trade_no.as_str(), failed[0].attempts), ("RF-WF", 3));
    assert_eq!(failed[0].last_error, "HTTP 500");
    assert_eq!(got.lock().unwrap().len(), 3, "exactly max_attempts tries");
    assert_eq!(env.ledger.redeliver_webhooks(&[], "ops", "receiver back").await.unwrap(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "not redelivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_refuses_a_redis_that_may_evict_refunds() {
    let redis = testkit::RedisServer::builder().arg("--maxmemory-policy").arg("allkeys-lru").start().unwrap();
    let mut config = common::fast_config(&redis.url(), "http://127.0.0.1:1", "evict");
    config.require_aof = false;
    let (_trigger, shutdown) = qfrefund_worker::Shutdown::new();
    match qfrefund_worker::run(config, shutdown).await {
        Err(qfrefund_worker::runner::RunError::Config(why)) => assert!(why.contains("noeviction"), "{why}"),
        other => panic!("{other:?}"),
    }
}
