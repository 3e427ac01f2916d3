//! Money-safety promises of the worker end to end: a real redis-server, the simulator over HTTP.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Env;
use ledger::State;
use testkit::Faults;

/// A.10: the first attempt's answer is lost (HTTP 500), QFPay has no record of it, and the resend
/// is refused "transaction does not exist" (1136). The lost attempt could have been applied only
/// if the payment existed: QFPay is asked for the payment itself, and as it has no such payment,
/// the refund is `failed` with that evidence instead of waiting for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_of_a_payment_qfpay_does_not_know_fails_with_evidence_not_review() {
    let env = Env::start("no-payment", 1, Faults { error_5xx: 1.0, ..Faults::default() }).await;
    // Payment 999 does not exist at the simulator.
    env.enqueue(999, "RF-GHOST", 100).await;
    let w = env.worker();
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.record("RF-GHOST").await.submits == 0 || env.record("RF-GHOST").await.state != State::Pending {
        assert!(Instant::now() < deadline, "the first attempt never went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.sim.set_faults(Faults::default()).unwrap();
    let recs =
        env.wait_for(&["RF-GHOST".to_owned()], &[State::Failed, State::NeedsReview], Duration::from_secs(30)).await;
    let rec = &recs[0];
    assert_eq!(rec.state, State::Failed, "{:?}", rec.reason);
    // The record keeps the reason's first 64 bytes; the outcome entry (and the timeline) all of it.
    assert!(rec.reason.as_deref().unwrap_or("").starts_with("respcd 1136"), "{:?}", rec.reason);
    let events = env.ledger.events("0", 10_000).await.unwrap();
    let last = events.iter().rev().find(|e| e.out_trade_no == "RF-GHOST").unwrap();
    assert!(last.reason.contains("does not exist at QFPay"), "{:?}", last.reason);
    assert!(rec.submits >= 2, "the first attempt and the resend were both sent: {}", rec.submits);
    assert_eq!(env.sim.audit()["totals"]["succeeded"], 0);
    w.stop().await;
}
