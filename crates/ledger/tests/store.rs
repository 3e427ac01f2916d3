//! The ledger against a real redis-server: every guarantee its scripts state, exercised.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ledger::machine::{SubmitResult, after_submit};
use ledger::{Accepted, Claim, Enqueued, Ledger, LedgerConfig, LedgerError, NewRefund, Policy, State};
use qfpay::RefundResponse;
use testkit::{TestRedis, unique_namespace};

async fn ledger(name: &str) -> (TestRedis, Ledger) {
    let redis = TestRedis::start().unwrap();
    let config = LedgerConfig { namespace: unique_namespace(name), ..LedgerConfig::default() };
    let l = Ledger::connect(&redis.url(), config).await.unwrap();
    (redis, l)
}

fn policy(lease_ms: u64) -> Policy {
    Policy { lease: Duration::from_millis(lease_ms), syssn_busy_wait: Duration::from_millis(1), ..Policy::default() }
}

fn answer(code: &str) -> SubmitResult {
    SubmitResult::Answer(RefundResponse { respcd: Some(code.into()), syssn: Some("R1".into()), ..Default::default() })
}

#[tokio::test]
async fn enqueue_is_idempotent_and_conflicts_name_the_differences() {
    let (_r, l) = ledger("enqueue").await;
    let req = NewRefund { orig_txamt: Some(1000), ..NewRefund::new("123", "RF1", 100) };
    let created = l.enqueue(req.clone()).await.unwrap();
    assert!(matches!(&created, Enqueued::Created(r) if r.state == State::Queued && r.txamt == 100));
    assert_eq!(l.enqueue(req.clone()).await.unwrap(), Enqueued::Duplicate(created.record().clone()));
    match l.enqueue(NewRefund { txamt: 200, ..req.clone() }).await {
        Err(LedgerError::Conflict { differences, existing, .. }) => {
            assert_eq!(differences, ["txamt: existing \"100\", requested \"200\""]);
            assert_eq!(existing.txamt, 100);
        }
        other => panic!("{other:?}"),
    }
    // Another refund of the same payment claiming another paid amount is refused.
    let other = NewRefund { orig_txamt: Some(999), ..NewRefund::new("123", "RF2", 1) };
    assert!(matches!(l.enqueue(other).await, Err(LedgerError::PaidMismatch { .. })));
    assert!(l.get("RF2").await.unwrap().is_none(), "nothing half-written");
    // Invalid input names the field and writes nothing.
    match l.enqueue(NewRefund::new("123", "RF 3", 1)).await {
        Err(LedgerError::Invalid(e)) => assert_eq!(e.field, "out_trade_no"),
        other => panic!("{other:?}"),
    }
    let events = l.events("0", 100).await.unwrap();
    assert_eq!(events.len(), 1, "one event: the creation");
    assert_eq!(events[0].state, "queued");
}

#[tokio::test]
async fn claim_persists_submitting_before_any_send_and_fences_stale_writers() {
    let (_r, l) = ledger("claim").await;
    l.enqueue(NewRefund::new("123", "RF1", 100)).await.unwrap();
    let rec = l.get("RF1").await.unwrap().unwrap();
    let p = policy(200);
    let claim = l.claim(&rec, "w1", &p, "2026-01-02 03:04:05", false).await.unwrap();
    assert_eq!(claim, Claim::Submit { fence: 1, txdtm: "2026-01-02 03:04:05".into() });
    let stored = l.get("RF1").await.unwrap().unwrap();
    assert_eq!((stored.state, stored.submits, stored.fence), (State::Submitting, 1, 1));
    assert_eq!(stored.txdtm.as_deref(), Some("2026-01-02 03:04:05"));
    // While the lease lives nobody else gets it.
    assert!(matches!(l.claim(&stored, "w2", &p, "x", false).await.unwrap(), Claim::Skip(s) if s.starts_with("leased")));
    // The holder stalls past its lease; another worker finds `submitting`: it enquires, never resends.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(l.claim(&stored, "w2", &p, "x", false).await.unwrap(), Claim::Enquire { fence: 2 });
    let taken = l.get("RF1").await.unwrap().unwrap();
    assert_eq!((taken.state, taken.submits, taken.enquiries), (State::Pending, 1, 1));
    assert_eq!(taken.txdtm.as_deref(), Some("2026-01-02 03:04:05"), "txdtm of the first submit is kept");
    // The stalled worker wakes up with QFPay's answer: its write is refused by the fence.
    let late = after_submit(&stored, &answer("0000"), &p, 0, 0.5);
    assert!(!l.transition(&stored, State::Submitting, 1, &late).await.unwrap());
    assert_eq!(l.get("RF1").await.unwrap().unwrap().state, State::Pending);
}

#[tokio::test]
async fn final_states_are_immutable_and_emit_exactly_one_final_event() {
    let (_r, l) = ledger("final").await;
    l.enqueue(NewRefund::new("123", "RF1", 100)).await.unwrap();
    let rec = l.get("RF1").await.unwrap().unwrap();
    let p = policy(5_000);
    let Claim::Submit { fence, .. } = l.claim(&rec, "w1", &p, "t", false).await.unwrap() else { panic!() };
    let d = after_submit(&rec, &answer("0000"), &p, 0, 0.5);
    assert!(l.transition(&rec, State::Submitting, fence, &d).await.unwrap());
    let done = l.get("RF1").await.unwrap().unwrap();
    assert_eq!(done.state, State::Succeeded);
    assert_eq!(done.refund_syssn.as_deref(), Some("R1"));
    assert_eq!(l.due_len().await.unwrap(), 0, "final refunds leave the due-index");
    // Nothing moves it again, even with the right fence.
    let back = after_submit(&rec, &answer("1155"), &p, 0, 0.5);
    assert!(!l.transition(&done, State::Succeeded, fence, &back).await.unwrap());
    assert!(matches!(l.claim(&done, "w2", &p, "t", false).await.unwrap(), Claim::Skip(_)));
    let events = l.events("0", 100).await.unwrap();
    let states: Vec<&str> = events.iter().map(|e| e.state.as_str()).collect();
    assert_eq!(states, ["queued", "submitting", "succeeded"]);
    assert_eq!(events.iter().filter(|e| e.is_final()).count(), 1);
    assert_eq!(events[2].refund_syssn, "R1");
}

#[tokio::test]
async fn one_refund_in_flight_per_payment_and_never_more_than_paid() {
    let (_r, l) = ledger("paid").await;
    let p = policy(5_000);
    for (otn, amt) in [("RF1", 600), ("RF2", 600), ("RF3", 400)] {
        l.enqueue(NewRefund { orig_txamt: Some(1000), ..NewRefund::new("123", otn, amt) }).await.unwrap();
    }
    let r1 = l.get("RF1").await.unwrap().unwrap();
    let Claim::Submit { fence, .. } = l.claim(&r1, "w", &p, "t", false).await.unwrap() else { panic!() };
    // RF2 waits while RF1 is in flight.
    let r2 = l.get("RF2").await.unwrap().unwrap();
    assert!(
        matches!(l.claim(&r2, "w", &p, "t", false).await.unwrap(), Claim::Deferred { why, .. } if why.contains("RF1"))
    );
    let d = after_submit(&r1, &answer("0000"), &p, 0, 0.5);
    assert!(l.transition(&r1, State::Submitting, fence, &d).await.unwrap());
    // 600 + 600 > 1000: RF2 fails without ever being sent.
    tokio::time::sleep(Duration::from_millis(5)).await;
    match l.claim(&r2, "w", &p, "t", false).await.unwrap() {
        Claim::Failed(why) => assert!(why.contains("never sent"), "{why}"),
        other => panic!("{other:?}"),
    }
    let r2 = l.get("RF2").await.unwrap().unwrap();
    assert_eq!((r2.state, r2.submits), (State::Failed, 0));
    // 600 + 400 = 1000 fits exactly.
    let r3 = l.get("RF3").await.unwrap().unwrap();
    assert!(matches!(l.claim(&r3, "w", &p, "t", false).await.unwrap(), Claim::Submit { .. }));
}

#[tokio::test]
async fn an_unknown_paid_amount_is_learned_before_the_first_submit() {
    let (_r, l) = ledger("learn").await;
    let p = policy(5_000);
    l.enqueue(NewRefund::new("555", "RF1", 700)).await.unwrap();
    let r = l.get("RF1").await.unwrap().unwrap();
    assert_eq!(l.claim(&r, "w", &p, "t", true).await.unwrap(), Claim::NeedPaid);
    assert_eq!(l.set_paid(&r, 500).await.unwrap(), 500);
    assert_eq!(l.set_paid(&r, 900).await.unwrap(), 500, "the first learned amount stands");
    assert!(matches!(l.claim(&r, "w", &p, "t", true).await.unwrap(), Claim::Failed(_)));
}

#[tokio::test]
async fn paused_merchants_wait_and_config_errors_pause_them() {
    let (_r, l) = ledger("pause").await;
    let p = policy(5_000);
    l.enqueue(NewRefund::new("1", "RF1", 1)).await.unwrap();
    l.enqueue(NewRefund::new("2", "RF2", 1)).await.unwrap();
    let r1 = l.get("RF1").await.unwrap().unwrap();
    let Claim::Submit { fence, .. } = l.claim(&r1, "w", &p, "t", false).await.unwrap() else { panic!() };
    let d = after_submit(&r1, &answer("1108"), &p, 0, 0.5);
    assert!(d.pause_merchant);
    assert!(l.transition(&r1, State::Submitting, fence, &d).await.unwrap());
    assert_eq!(l.get("RF1").await.unwrap().unwrap().state, State::NeedsReview);
    assert!(l.paused().await.unwrap().contains_key("default"));
    let r2 = l.get("RF2").await.unwrap().unwrap();
    assert!(
        matches!(l.claim(&r2, "w", &p, "t", false).await.unwrap(), Claim::Deferred { why, .. } if why.contains("paused"))
    );
    assert!(l.resume("default").await.unwrap());
    let r2 = l.get("RF2").await.unwrap().unwrap();
    l.defer(&r2, 0, "resumed").await.unwrap();
    assert!(matches!(l.claim(&r2, "w", &p, "t", false).await.unwrap(), Claim::Submit { .. }));
}

#[tokio::test]
async fn feeding_holds_what_it_hands_out_until_the_hold_expires() {
    let (_r, l) = ledger("feed").await;
    for i in 0..5 {
        l.enqueue(NewRefund::new("1", &format!("RF{i}"), 1)).await.unwrap();
    }
    let first = l.feed(3, Duration::from_millis(150)).await.unwrap();
    assert_eq!(first.len(), 3);
    let second = l.feed(10, Duration::from_millis(150)).await.unwrap();
    assert_eq!(second.len(), 2);
    assert!(l.feed(10, Duration::from_millis(150)).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(l.feed(10, Duration::from_millis(150)).await.unwrap().len(), 5, "lost deliveries come back");
}

#[tokio::test]
async fn the_token_bucket_allows_a_burst_then_paces() {
    let (_r, l) = ledger("rate").await;
    for _ in 0..5 {
        assert_eq!(l.take_token("m", 10.0, 5).await.unwrap(), 0);
    }
    let wait = l.take_token("m", 10.0, 5).await.unwrap();
    assert!((1..=100).contains(&wait), "{wait}");
    assert_eq!(l.take_token("other", 10.0, 5).await.unwrap(), 0, "buckets are per merchant");
}

#[tokio::test]
async fn batches_are_pipelined_and_report_each_line() {
    let (_r, l) = ledger("batch").await;
    let mut batch: Vec<NewRefund> = (0..1200).map(|i| NewRefund::new("9", &format!("RF{i}"), 1)).collect();
    batch.push(NewRefund::new("9", "RF5", 1)); // duplicate
    batch.push(NewRefund::new("9", "RF6", 2)); // conflict
    batch.push(NewRefund::new("9", "", 1)); // invalid
    let results = l.enqueue_batch(batch).await;
    assert_eq!(results.len(), 1203);
    assert_eq!(results.iter().filter(|r| matches!(r, Ok(Accepted::Created))).count(), 1200);
    assert!(matches!(results[1200], Ok(Accepted::Duplicate)));
    assert!(matches!(results[1201], Err(LedgerError::Conflict { .. })));
    assert!(matches!(&results[1202], Err(LedgerError::Invalid(e)) if e.field == "out_trade_no"));
    let counts = l.counts().await.unwrap();
    assert_eq!(counts[0], (State::Queued, 1200));
}
