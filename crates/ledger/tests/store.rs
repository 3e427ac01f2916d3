//! The ledger against a real redis-server: every guarantee its scripts state, exercised.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{answer, claimed, ledger, policy};
use qfrefund_ledger::machine::after_submit;
use qfrefund_ledger::{
    Accepted, Claim, ClaimOptions, Enqueued, Ledger, LedgerConfig, LedgerError, NewRefund, Policy, Skipped, State,
};

/// A claim as a worker makes it: no nightly window, the paid amount not asked for.
async fn claim(
    l: &Ledger,
    rec: &qfrefund_ledger::Record,
    worker: &str,
    p: &Policy,
    txdtm: &str,
    want_paid: bool,
) -> Claim {
    let o = ClaimOptions { want_paid, ..ClaimOptions::new(worker, p, txdtm) };
    l.claim(&rec.into(), &o).await.unwrap()
}

/// What a worker's claim takes when nothing in a test says otherwise.
fn options<'a>(worker: &'a str, p: &'a Policy) -> ClaimOptions<'a> {
    ClaimOptions::new(worker, p, "2026-01-01 00:00:00")
}

fn fence_of(c: &Claim) -> u64 {
    match c {
        Claim::Submit { fence, .. } | Claim::Enquire { fence, .. } => *fence,
        other => panic!("not claimed: {other:?}"),
    }
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
    // (Another refund of the same payment claiming another paid amount: tests/fresh.rs.)
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
    let rec = l.get("default", "RF1").await.unwrap().unwrap();
    let p = policy(200);
    let first = claim(&l, &rec, "w1", &p, "2026-01-02 03:04:05", false).await;
    let Claim::Submit { fence, record, .. } = first.clone() else { panic!("{first:?}") };
    let stored = l.get("default", "RF1").await.unwrap().unwrap();
    assert_eq!(*record, stored, "the claim hands back the record as stored");
    assert_eq!((stored.state, stored.submits, stored.fence), (State::Submitting, 1, fence));
    assert!(fence > 1_700_000_000_000, "fences grow with Redis' clock (ms), so a rolled-back record never reuses one");
    assert_eq!(stored.txdtm.as_deref(), Some("2026-01-02 03:04:05"));
    // While the lease lives nobody else gets it.
    assert!(matches!(
        claim(&l, &stored, "w2", &p, "x", false).await,
        Claim::Skip(qfrefund_ledger::Skipped::Leased { .. })
    ));
    // The holder stalls past its lease; another worker finds `submitting`: it enquires, never resends.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = claim(&l, &stored, "w2", &p, "x", false).await;
    assert!(matches!(second, Claim::Enquire { .. }), "{second:?}");
    assert!(fence_of(&second) > fence);
    let taken = l.get("default", "RF1").await.unwrap().unwrap();
    assert!(taken.uncertain, "an orphaned submit may have taken effect");
    assert_eq!((taken.state, taken.submits, taken.enquiries), (State::Pending, 1, 1));
    assert_eq!(taken.txdtm.as_deref(), Some("2026-01-02 03:04:05"), "txdtm of the first submit is kept");
    // The stalled worker wakes up with QFPay's answer: its write is refused by the fence.
    let late = after_submit(&stored, &answer("0000"), &p, 0, 0.5);
    assert!(!l.transition(&stored, State::Submitting, fence, &late, "late-op").await.unwrap());
    assert_eq!(l.get("default", "RF1").await.unwrap().unwrap().state, State::Pending);
}

#[tokio::test]
async fn final_states_are_immutable_and_emit_exactly_one_final_event() {
    let (_r, l) = ledger("final").await;
    l.enqueue(NewRefund::new("123", "RF1", 100)).await.unwrap();
    let rec = l.get("default", "RF1").await.unwrap().unwrap();
    let p = policy(5_000);
    let (fence, rec) = claimed(claim(&l, &rec, "w1", &p, "t", false).await);
    let d = after_submit(&rec, &answer("0000"), &p, 0, 0.5);
    assert!(l.transition(&rec, State::Submitting, fence, &d, "op1").await.unwrap());
    // The same operation again (a retry after a lost reply) lands once: no second event.
    assert!(l.transition(&rec, State::Submitting, fence, &d, "op1").await.unwrap());
    let done = l.get("default", "RF1").await.unwrap().unwrap();
    assert_eq!(done.state, State::Succeeded);
    assert_eq!(done.refund_syssn.as_deref(), Some("R1"));
    assert_eq!(l.due_len().await.unwrap(), 0, "final refunds leave the due-index");
    // Nothing moves it again, even with the right fence.
    let back = after_submit(&rec, &answer("1155"), &p, 0, 0.5);
    assert!(!l.transition(&done, State::Succeeded, fence, &back, "op2").await.unwrap());
    assert!(matches!(claim(&l, &done, "w2", &p, "t", false).await, Claim::Skip(_)));
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
    let r1 = l.get("default", "RF1").await.unwrap().unwrap();
    let (fence, r1) = claimed(claim(&l, &r1, "w", &p, "t", false).await);
    // RF2 waits while RF1 is in flight.
    let r2 = l.get("default", "RF2").await.unwrap().unwrap();
    assert!(matches!(claim(&l, &r2, "w", &p, "t", false).await, Claim::Deferred { why, .. } if why.contains("RF1")));
    let d = after_submit(&r1, &answer("0000"), &p, 0, 0.5);
    assert!(l.transition(&r1, State::Submitting, fence, &d, "op").await.unwrap());
    // 600 + 600 > 1000: RF2 fails without ever being sent.
    tokio::time::sleep(Duration::from_millis(5)).await;
    match claim(&l, &r2, "w", &p, "t", false).await {
        Claim::Failed(why) => assert!(why.contains("never sent"), "{why}"),
        other => panic!("{other:?}"),
    }
    let r2 = l.get("default", "RF2").await.unwrap().unwrap();
    assert_eq!((r2.state, r2.submits), (State::Failed, 0));
    // 600 + 400 = 1000 fits exactly.
    let r3 = l.get("default", "RF3").await.unwrap().unwrap();
    assert!(matches!(claim(&l, &r3, "w", &p, "t", false).await, Claim::Submit { .. }));
}

#[tokio::test]
async fn an_unknown_paid_amount_is_learned_before_the_first_submit() {
    let (_r, l) = ledger("learn").await;
    let p = policy(5_000);
    l.enqueue(NewRefund::new("555", "RF1", 700)).await.unwrap();
    let r = l.get("default", "RF1").await.unwrap().unwrap();
    assert_eq!(claim(&l, &r, "w", &p, "t", true).await, Claim::NeedPaid);
    assert_eq!(l.set_paid(&(&r).into(), 500).await.unwrap(), 500);
    assert_eq!(l.set_paid(&(&r).into(), 900).await.unwrap(), 500, "the first learned amount stands");
    assert!(matches!(claim(&l, &r, "w", &p, "t", true).await, Claim::Failed(_)));
}

#[tokio::test]
async fn paused_merchants_wait_and_config_errors_pause_them() {
    let (_r, l) = ledger("pause").await;
    let p = policy(5_000);
    l.enqueue(NewRefund::new("1", "RF1", 1)).await.unwrap();
    l.enqueue(NewRefund::new("2", "RF2", 1)).await.unwrap();
    let r1 = l.get("default", "RF1").await.unwrap().unwrap();
    let (fence, r1) = claimed(claim(&l, &r1, "w", &p, "t", false).await);
    let d = after_submit(&r1, &answer("1108"), &p, 0, 0.5);
    assert!(d.pause_merchant);
    assert!(l.transition(&r1, State::Submitting, fence, &d, "op").await.unwrap());
    assert_eq!(l.get("default", "RF1").await.unwrap().unwrap().state, State::NeedsReview);
    assert!(l.paused().await.unwrap().contains_key("default"));
    let r2 = l.get("default", "RF2").await.unwrap().unwrap();
    assert!(matches!(claim(&l, &r2, "w", &p, "t", false).await, Claim::Deferred { why, .. } if why.contains("paused")));
    assert!(l.resume("default", "test", "test").await.unwrap());
    let r2 = l.get("default", "RF2").await.unwrap().unwrap();
    l.defer(&r2, 0, "resumed", p.max_age).await.unwrap();
    assert!(matches!(claim(&l, &r2, "w", &p, "t", false).await, Claim::Submit { .. }));
}

/// Fetching is claiming: K due refunds per call, each handed to one worker only, oldest first;
/// a worker that vanishes leaves leases that expire, and the refund is fetched again (as an
/// enquiry: it may have been sent); what has no business in the due-index leaves it.
#[tokio::test]
async fn fetching_claims_each_due_refund_once_and_a_lost_claim_comes_back_when_its_lease_expires() {
    let (r, l) = ledger("fetch").await;
    for i in 0..5 {
        l.enqueue(NewRefund::new(&format!("{i}"), &format!("RF{i}"), 1)).await.unwrap();
    }
    let p = policy(300);
    let o = |worker| options(worker, &p);
    let first = l.claim_due(l.shard_of("default"), 3, &o("w1")).await.unwrap();
    let names: Vec<&str> = first.claims.iter().map(|c| c.target.out_trade_no.as_str()).collect();
    assert_eq!(names, ["RF0", "RF1", "RF2"], "oldest first");
    assert!(first.claims.iter().all(|c| matches!(c.claim, Claim::Submit { .. })));
    let second = l.claim_due(l.shard_of("default"), 10, &o("w2")).await.unwrap();
    let names: Vec<&str> = second.claims.iter().map(|c| c.target.out_trade_no.as_str()).collect();
    assert_eq!(names, ["RF3", "RF4"], "nothing is handed out twice");
    let nothing = l.claim_due(l.shard_of("default"), 10, &o("w3")).await.unwrap();
    assert!(nothing.claims.is_empty());
    let next = nothing.next_due.expect("the leases are in the due-index");
    assert!(next > l.now_ms() && next <= l.now_ms() + 300, "the earliest lease expiry is due next: {next}");
    // w1 and w2 vanish; their leases expire; what they may have sent is enquired, never resent.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let again = l.claim_due(l.shard_of("default"), 10, &o("w3")).await.unwrap();
    assert_eq!(again.claims.len(), 5);
    assert!(again.claims.iter().all(|c| matches!(c.claim, Claim::Enquire { recovered: true, .. })), "{again:?}");
    // A record gone from under its due-index entry is dropped from the index, not fetched forever.
    let mut raw = testkit::raw_connection(&r.url()).await;
    let _: () = redis::cmd("DEL").arg(l.keys_for("default").record("RF0")).query_async(&mut raw).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let last = l.claim_due(l.shard_of("default"), 10, &o("w4")).await.unwrap();
    assert_eq!(last.claims.len(), 5);
    assert!(matches!(last.claims[0].claim, Claim::Skip(_)), "{:?}", last.claims[0]);
    assert_eq!(l.due_len().await.unwrap(), 4);
}

/// A record a claim cannot read (here: its merchant gone) never fails the batch it is in, nor every
/// fetch after it: it goes to a person, visibly, and the refunds behind it are claimed.
#[tokio::test]
async fn a_corrupt_record_at_the_head_of_the_index_goes_to_review_and_blocks_nothing() {
    let (r, l) = ledger("fetch-corrupt").await;
    for i in 0..3 {
        l.enqueue(NewRefund::new(&format!("{i}"), &format!("RF{i}"), 1)).await.unwrap();
    }
    let mut raw = testkit::raw_connection(&r.url()).await;
    let _: () = redis::cmd("HDEL")
        .arg(l.keys_for("default").record("RF0"))
        .arg("merchant")
        .query_async(&mut raw)
        .await
        .unwrap();
    let p = policy(5_000);
    let o = options("w1", &p);
    let got = l.claim_due(l.shard_of("default"), 10, &o).await.unwrap();
    assert!(
        matches!(&got.claims[0].claim, Claim::Skip(qfrefund_ledger::Skipped::Broken(why)) if why.contains("merchant")),
        "{got:?}"
    );
    assert!(got.claims[1..].iter().all(|c| matches!(c.claim, Claim::Submit { .. })), "{got:?}");
    let rec: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(l.keys_for("default").record("RF0")).query_async(&mut raw).await.unwrap();
    assert_eq!(rec.get("state").map(String::as_str), Some("needs_review"));
    assert!(rec.get("reason").is_some_and(|r| r.contains("corrupt record")), "{rec:?}");
    assert!(l.claim_due(l.shard_of("default"), 10, &o).await.unwrap().claims.is_empty(), "nothing is fetched again");
}

/// A worker fetches only refunds of merchants it holds credentials for: the others are put off
/// (for a worker that has them) instead of being claimed, and never block the head of the index.
#[tokio::test]
async fn a_fetch_defers_refunds_of_merchants_it_cannot_serve() {
    // One shard: both refunds in the one fetch.
    let (_r, l) = common::ledger_with("fetch-served", 1).await;
    l.enqueue(NewRefund { merchant: Some("other".into()), ..NewRefund::new("1", "RF1", 1) }).await.unwrap();
    l.enqueue(NewRefund::new("2", "RF2", 1)).await.unwrap();
    let p = policy(5_000);
    let o = ClaimOptions { served: "default\nthird", ..options("w1", &p) };
    let got = l.claim_due(l.shard_of("default"), 10, &o).await.unwrap();
    assert_eq!(got.claims.len(), 2);
    // Both due in the same millisecond or not: find each by its merchant, not its place.
    let of = |m: &str| &got.claims.iter().find(|c| c.target.merchant == m).unwrap().claim;
    assert!(matches!(of("other"), Claim::Deferred { cause: qfrefund_ledger::Deferral::NoCredentials, .. }), "{got:?}");
    assert!(matches!(of("default"), Claim::Submit { .. }), "{got:?}");
    let rec = l.get("other", "RF1").await.unwrap().unwrap();
    assert_eq!(rec.state, State::Queued);
    assert!(rec.lease_owner.is_none(), "not claimed");
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

#[tokio::test]
async fn the_nightly_window_holds_back_submits_not_enquiries() {
    let (_r, l) = ledger("window").await;
    let p = policy(5_000);
    l.enqueue(NewRefund::new("1", "RF1", 1)).await.unwrap();
    let r = l.get("default", "RF1").await.unwrap().unwrap();
    let later = l.now_ms() + 3_600_000;
    let o = ClaimOptions { submit_not_before: later, ..ClaimOptions::new("w", &p, "t") };
    match l.claim(&(&r).into(), &o).await.unwrap() {
        Claim::Deferred { why, next_at, .. } => {
            assert!(why.contains("23:30"));
            assert_eq!(next_at, later);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.get("default", "RF1").await.unwrap().unwrap().submits, 0);
}

/// A refund that waits — for a paused merchant, a busy payment — past its maximum age goes to a
/// person instead of waiting unseen for ever.
#[tokio::test]
async fn waiting_past_max_age_leads_to_needs_review() {
    let (_r, l) = ledger("blocked").await;
    let p = Policy { max_age: Duration::from_millis(50), ..policy(5_000) };
    l.enqueue(NewRefund::new("1", "RF1", 1)).await.unwrap();
    l.enqueue(NewRefund::new("2", "RF2", 1)).await.unwrap();
    l.pause("default", "test", "test").await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let r1 = l.get("default", "RF1").await.unwrap().unwrap();
    assert!(matches!(claim(&l, &r1, "w", &p, "t", false).await, Claim::Blocked(why) if why.contains("paused")));
    let r2 = l.get("default", "RF2").await.unwrap().unwrap();
    assert!(!l.defer(&r2, l.now_ms() + 10, "no credentials", p.max_age).await.unwrap());
    for o in ["RF1", "RF2"] {
        let r = l.get("default", o).await.unwrap().unwrap();
        assert_eq!(r.state, State::NeedsReview, "{o}");
        assert!(r.reason.unwrap().starts_with("max age reached while waiting"));
    }
    assert_eq!(l.due_len().await.unwrap(), 0);
}

/// Operators: retry (enquire first if ever sent), resolve (audited; a success counts against the
/// payment), cancel (never-sent only); anything else is refused with the reason.
#[tokio::test]
async fn operator_actions_are_guarded_and_audited() {
    use qfrefund_ledger::Operation::{Cancel, Resolve, Retry};
    let (_r, l) = ledger("operate").await;
    let p = policy(5_000);
    let r = NewRefund { orig_txamt: Some(1_000), ..NewRefund::new("1", "RF1", 600) };
    l.enqueue(r).await.unwrap();
    l.enqueue(NewRefund { orig_txamt: Some(1_000), ..NewRefund::new("1", "RF2", 600) }).await.unwrap();
    // RF1 sent, then a configuration error: needs_review, payment locked.
    let r1 = l.get("default", "RF1").await.unwrap().unwrap();
    let (fence, r1) = claimed(claim(&l, &r1, "w", &p, "t", false).await);
    let d = after_submit(&r1, &answer("1108"), &p, 0, 0.5);
    assert!(l.transition(&r1, State::Submitting, fence, &d, "op").await.unwrap());
    assert!(l.operate("default", "RF2", Cancel, "ann", "duplicate order").await.unwrap().is_ok());
    assert!(
        l.operate("default", "RF2", Retry, "ann", "x").await.unwrap().unwrap_err().to_string().contains("needs_review")
    );
    assert!(
        l.operate("default", "RF1", Cancel, "ann", "x").await.unwrap().unwrap_err().to_string().contains("never sent")
    );
    // Retry: it was sent, so it is enquired first.
    assert_eq!(l.operate("default", "RF1", Retry, "ann", "key fixed").await.unwrap(), Ok(State::Pending));
    let r1 = l.get("default", "RF1").await.unwrap().unwrap();
    assert_eq!(r1.operator.as_deref(), Some("ann"));
    assert!(r1.reason.as_deref().unwrap().contains("retry by ann: key fixed"));
    assert!(matches!(claim(&l, &r1, "w", &p, "t", false).await, Claim::Enquire { .. }));
    // Back to needs_review by hand, then resolved as succeeded: it counts against the payment.
    let r1 = l.get("default", "RF1").await.unwrap().unwrap();
    let review = qfrefund_ledger::Decision {
        state: State::NeedsReview,
        next_at: None,
        reason: "test".into(),
        pause_merchant: false,
        set: vec![],
    };
    assert!(l.transition(&r1, State::Pending, r1.fence, &review, "op2").await.unwrap());
    assert_eq!(
        l.operate("default", "RF1", Resolve(State::Succeeded), "bob", "QFPay confirmed by phone").await.unwrap(),
        Ok(State::Succeeded)
    );
    l.resume("default", "test", "test").await.unwrap(); // the 1108 paused the merchant
    l.enqueue(NewRefund { orig_txamt: Some(1_000), ..NewRefund::new("1", "RF3", 600) }).await.unwrap();
    let r3 = l.get("default", "RF3").await.unwrap().unwrap();
    assert!(matches!(claim(&l, &r3, "w", &p, "t", false).await, Claim::Failed(_)), "600 + 600 > 1000");
    let events = l.events("0", 100).await.unwrap();
    assert!(
        events.iter().any(|e| e.out_trade_no == "RF1" && e.state == "succeeded" && e.reason.contains("resolve by bob"))
    );
}

/// "Enquire now": only a refund waiting for an enquiry, made due at once; its state, last answer
/// and lease stay; audited; anything else refused with the reason (and audited too).
#[tokio::test]
async fn enquire_now_brings_a_pending_refunds_enquiry_forward_and_nothing_else() {
    use qfrefund_ledger::Operation::EnquireNow;
    let (_r, l) = ledger("enquire-now").await;
    let p = policy(5_000);
    l.enqueue(NewRefund::new("1", "RF1", 600)).await.unwrap();
    l.enqueue(NewRefund::new("2", "RF2", 600)).await.unwrap();
    let refused = l.operate("default", "RF2", EnquireNow, "ann", "customer asks").await.unwrap();
    assert!(refused.unwrap_err().to_string().contains("(it is queued)"));
    // RF1 sent; QFPay says "processing": pending, its enquiry seconds away.
    let r1 = l.get("default", "RF1").await.unwrap().unwrap();
    let (fence, r1) = claimed(claim(&l, &r1, "w", &p, "t", false).await);
    let d = after_submit(&r1, &answer("1143"), &p, l.now_ms(), 0.5);
    assert!(l.transition(&r1, State::Submitting, fence, &d, "op").await.unwrap());
    let before = l.get("default", "RF1").await.unwrap().unwrap();
    assert_eq!(before.state, State::Pending);
    assert!(before.next_at > l.now_ms() + 500, "not due yet: {}", before.next_at - l.now_ms());
    assert_eq!(l.operate("default", "RF1", EnquireNow, "ann", "customer asks").await.unwrap(), Ok(State::Pending));
    let after = l.get("default", "RF1").await.unwrap().unwrap();
    assert!(after.next_at <= l.now_ms(), "due now");
    assert_eq!(after.resend_not_before, Some(before.next_at), "the wait it cut short is kept for a resend");
    assert_eq!(
        (after.state, &after.respcd, &after.reason, after.fence),
        (State::Pending, &before.respcd, &before.reason, before.fence)
    );
    assert_eq!(after.operator.as_deref(), Some("ann"));
    assert!(
        matches!(claim(&l, &after, "w", &p, "t", false).await, Claim::Enquire { .. }),
        "an enquiry, never a resend"
    );
    let audit = l.audit("0", 10).await.unwrap();
    let mine: Vec<_> =
        audit.iter().filter(|a| a.action == "enquire").map(|a| (a.out_trade_no.as_str(), a.outcome.as_str())).collect();
    assert_eq!(mine.len(), 2);
    assert!(mine[0].1.starts_with("refused") && mine[1] == ("RF1", "ok"), "{mine:?}");
    // No outcome-stream entry: nothing changed state.
    assert!(!l.events("0", 100).await.unwrap().iter().any(|e| e.reason.contains("enquire by")));
}

#[tokio::test]
async fn a_claim_takes_a_token_only_when_it_hands_out_a_request() {
    let (_r, l) = ledger("claim-rate").await;
    let p = policy(5_000);
    for i in 0..3 {
        l.enqueue(NewRefund::new(&format!("{i}"), &format!("RF{i}"), 1)).await.unwrap();
    }
    let o = ClaimOptions { rate: Some((0.5, 2)), ..ClaimOptions::new("w", &p, "t") };
    let r0 = l.get("default", "RF0").await.unwrap().unwrap();
    assert!(matches!(l.claim(&(&r0).into(), &o).await.unwrap(), Claim::Submit { .. }));
    // Held by us now: a second delivery takes no token.
    assert!(matches!(l.claim(&(&r0).into(), &o).await.unwrap(), Claim::Skip(_)));
    let r1 = l.get("default", "RF1").await.unwrap().unwrap();
    assert!(matches!(l.claim(&(&r1).into(), &o).await.unwrap(), Claim::Submit { .. }), "the burst has two");
    let r2 = l.get("default", "RF2").await.unwrap().unwrap();
    match l.claim(&(&r2).into(), &o).await.unwrap() {
        Claim::Deferred { why, next_at, .. } => {
            assert!(why.contains("rate limit"), "{why}");
            assert!(next_at > l.now_ms() + 1_000, "one token every 2 s");
        }
        other => panic!("{other:?}"),
    }
    let after = l.get("default", "RF2").await.unwrap().unwrap();
    assert_eq!((after.state, after.submits), (State::Queued, 0), "nothing was taken or counted");
}

#[tokio::test]
async fn a_claim_naming_another_payment_or_merchant_writes_nothing() {
    let (_r, l) = ledger("claim-mismatch").await;
    let p = policy(5_000);
    l.enqueue(NewRefund::new("1", "RF1", 1)).await.unwrap();
    let r = l.get("default", "RF1").await.unwrap().unwrap();
    let o = ClaimOptions::new("w", &p, "t");
    let mut wrong = qfrefund_ledger::RefundRef::from(&r);
    wrong.syssn = "2".into();
    assert_eq!(l.claim(&wrong, &o).await.unwrap(), Claim::Mismatch);
    let mut wrong = qfrefund_ledger::RefundRef::from(&r);
    wrong.merchant = "other".into();
    // Another merchant's shard may be another one: there the refund is not found at all.
    let expected =
        if l.shard_of("other") == l.shard_of("default") { Claim::Mismatch } else { Claim::Skip(Skipped::Missing) };
    assert_eq!(l.claim(&wrong, &o).await.unwrap(), expected);
    assert_eq!(l.get("default", "RF1").await.unwrap().unwrap(), r, "untouched");
    assert!(matches!(l.claim(&(&r).into(), &o).await.unwrap(), Claim::Submit { .. }));
}

#[tokio::test]
async fn a_redis_that_could_lose_refunds_is_refused_with_the_setting_to_change() {
    use testkit::{Aof, RedisServer};
    let check = |r: &RedisServer| {
        let url = r.url();
        async move {
            let l = Ledger::connect(&url, LedgerConfig::default()).await.unwrap();
            l.server_info().await.unwrap()
        }
    };
    let plain = RedisServer::start().unwrap();
    let info = check(&plain).await;
    assert!(info.refusal(true).unwrap().contains("appendonly yes"));
    assert_eq!(info.refusal(false), None, "AOF can be waived for throwaway setups");
    let aof = RedisServer::builder().aof(Aof::EverySec).start().unwrap();
    assert_eq!(check(&aof).await.refusal(true), None);
    for policy in ["allkeys-lru", "volatile-lru", "allkeys-random"] {
        let evicting = RedisServer::builder().aof(Aof::EverySec).arg("--maxmemory-policy").arg(policy).start().unwrap();
        let why = check(&evicting).await.refusal(true).unwrap();
        assert!(why.contains(policy) && why.contains("noeviction"), "{why}");
    }
}
