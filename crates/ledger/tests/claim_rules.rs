//! The claim's decisions: the pure specification (`qfrefund_ledger::claim_rules::decide`), table-tested,
//! and the script that implements it (`claim_one.lua`), run against a real redis-server over every
//! combination of what a claim looks at and compared with the specification.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use qfrefund_ledger::claim_rules::{ClaimRule, ClaimView, PaymentLock, Untouched, decide};
use qfrefund_ledger::{Claim, ClaimOptions, Deferral, NewRefund, RefundRef, Skipped, State};

/// A queued refund of 100 that nothing holds back.
fn clear() -> ClaimView {
    ClaimView {
        state: State::Queued,
        leased: false,
        early: false,
        too_old: false,
        served: true,
        token: true,
        merchant_paused: false,
        quiet_window: false,
        lock: PaymentLock::Free,
        paid: Some(1_000),
        committed: 0,
        txamt: 100,
        want_paid: true,
    }
}

#[test]
fn the_claim_rules_written_out() {
    use ClaimRule::*;
    let c = clear();
    let rows: Vec<(&str, ClaimView, ClaimRule)> = vec![
        ("a clear queued refund is sent", c, Submit),
        ("a retry_wait refund is sent again", ClaimView { state: State::RetryWait, ..c }, Submit),
        (
            "a refund found in submitting is enquired, never resent",
            ClaimView { state: State::Submitting, ..c },
            Enquire { recovered: true },
        ),
        ("a pending refund is enquired", ClaimView { state: State::Pending, ..c }, Enquire { recovered: false }),
        ("past what was paid: failed, never sent", ClaimView { committed: 950, ..c }, OverRefund),
        ("exactly what was paid is allowed", ClaimView { committed: 900, ..c }, Submit),
        (
            "a resend holding the payment's lock is not re-checked",
            ClaimView { committed: 950, lock: PaymentLock::Ours, ..c },
            Submit,
        ),
        (
            "another refund of the payment in flight: wait",
            ClaimView { lock: PaymentLock::Other, ..c },
            Defer(Deferral::PaymentBusy),
        ),
        ("the amount unknown: learn it first", ClaimView { paid: None, ..c }, NeedPaid),
        ("the amount unknown and not asked for: send", ClaimView { paid: None, want_paid: false, ..c }, Submit),
        ("the amount unknown past max age: review", ClaimView { paid: None, too_old: true, ..c }, Review),
        ("a paused merchant: wait", ClaimView { merchant_paused: true, ..c }, Defer(Deferral::MerchantPaused)),
        (
            "a paused merchant holds back no enquiry",
            ClaimView { merchant_paused: true, state: State::Pending, ..c },
            Enquire { recovered: false },
        ),
        ("the nightly window: wait", ClaimView { quiet_window: true, ..c }, Defer(Deferral::QuietWindow)),
        (
            "the nightly window holds back no enquiry",
            ClaimView { quiet_window: true, state: State::Pending, ..c },
            Enquire { recovered: false },
        ),
        ("no token: wait", ClaimView { token: false, ..c }, Defer(Deferral::RateLimit)),
        (
            "no token for an enquiry: wait",
            ClaimView { token: false, state: State::Pending, ..c },
            Defer(Deferral::RateLimit),
        ),
        (
            "no credentials here: wait for a worker that has them",
            ClaimView { served: false, ..c },
            Defer(Deferral::NoCredentials),
        ),
        ("any wait past max age: review", ClaimView { served: false, too_old: true, ..c }, Review),
        (
            "rate-limited past max age: review",
            ClaimView { token: false, too_old: true, state: State::Pending, ..c },
            Review,
        ),
        ("max age does not stop a refund that can go", ClaimView { too_old: true, ..c }, Submit),
        ("over-refund is decided before the token", ClaimView { committed: 950, token: false, ..c }, OverRefund),
        ("someone holds it", ClaimView { leased: true, too_old: true, ..c }, Leave(Untouched::Leased)),
        ("not due yet", ClaimView { early: true, ..c }, Leave(Untouched::Early)),
        ("final", ClaimView { state: State::Succeeded, ..c }, Leave(Untouched::Final)),
        ("waiting for a person", ClaimView { state: State::NeedsReview, ..c }, Leave(Untouched::Review)),
    ];
    for (what, view, want) in rows {
        assert_eq!(decide(&view), want, "{what}: {view:?}");
    }
    assert!(ClaimView { state: State::Submitting, ..c }.marks_uncertain());
    assert!(!ClaimView { state: State::Submitting, leased: true, ..c }.marks_uncertain());
}

/// Every combination of the inputs, each set up in Redis and claimed by the script.
#[tokio::test]
async fn the_claim_script_implements_the_rules_for_every_combination() {
    let (r, l) = common::ledger("claim-rules").await;
    let mut raw = testkit::raw_connection(&r.url()).await;
    let max_age = Duration::from_secs(3_600);
    let policy = qfrefund_ledger::Policy { max_age, ..common::policy(60_000) };
    let states =
        [State::Queued, State::RetryWait, State::Submitting, State::Pending, State::NeedsReview, State::Succeeded];
    let locks = [PaymentLock::Free, PaymentLock::Ours, PaymentLock::Other];
    let paids = [None, Some(1_000), Some(150)];
    let mut cases = Vec::new();
    for state in states {
        for bits in 0u32..(1 << 8) {
            for lock in locks {
                for paid in paids {
                    let b = |i: u32| bits & (1 << i) != 0;
                    cases.push(ClaimView {
                        state,
                        leased: b(0),
                        early: b(1),
                        too_old: b(2),
                        served: b(3),
                        token: b(4),
                        merchant_paused: b(5),
                        quiet_window: b(6),
                        want_paid: b(7),
                        lock,
                        paid,
                        committed: 100,
                        txamt: 100,
                    });
                }
            }
        }
    }
    let mut checked = 0;
    for (i, v) in cases.iter().enumerate() {
        let (otn, syssn, merchant) = (format!("C{i}"), format!("S{i}"), format!("m{i}"));
        l.enqueue(NewRefund { merchant: Some(merchant.clone()), ..NewRefund::new(&syssn, &otn, v.txamt) })
            .await
            .unwrap();
        let now = l.now_ms();
        let mut pipe = redis::pipe();
        let k = l.keys_for(&merchant);
        let id = qfrefund_ledger::refund::placement::refund_id(&merchant, &otn);
        pipe.hset_multiple(
            k.record(&id),
            &[
                ("state", v.state.as_str().to_string()),
                ("lease_until", if v.leased { now + 600_000 } else { 0 }.to_string()),
                ("next_at", if v.early { now + 600_000 } else { 0 }.to_string()),
                ("created_at", if v.too_old { now - 2 * max_age.as_millis() as i64 } else { now }.to_string()),
            ],
        );
        pipe.del(k.payment(&syssn)).hset(k.payment(&syssn), "committed", v.committed);
        if let Some(paid) = v.paid {
            pipe.hset(k.payment(&syssn), "paid", paid);
        }
        match v.lock {
            PaymentLock::Free => {}
            PaymentLock::Ours => drop(pipe.hset(k.payment(&syssn), "inflight", &id)),
            PaymentLock::Other => drop(pipe.hset(k.payment(&syssn), "inflight", "someone-else")),
        }
        if v.merchant_paused {
            pipe.hset(k.paused(), &merchant, "test");
        }
        if !v.token {
            pipe.set(k.rate(&merchant), format!("0 {now}"));
        }
        let _: () = pipe.query_async(&mut raw).await.unwrap();
        let served = if v.served { merchant.clone() } else { "another".to_string() };
        let o = ClaimOptions {
            worker: "w",
            policy: &policy,
            txdtm: "2026-01-01 00:00:00",
            want_paid: v.want_paid,
            submit_not_before: if v.quiet_window { now + 600_000 } else { 0 },
            rate: Some((0.001, 1)),
            durable_local: false,
            served: &served,
        };
        let target = RefundRef { id, out_trade_no: otn.clone(), syssn, merchant: merchant.clone() };
        let got = match l.claim(&target, &o).await.unwrap() {
            Claim::Submit { .. } => ClaimRule::Submit,
            Claim::Enquire { recovered, .. } => ClaimRule::Enquire { recovered },
            Claim::NeedPaid => ClaimRule::NeedPaid,
            Claim::Failed(_) => ClaimRule::OverRefund,
            Claim::Blocked(_) => ClaimRule::Review,
            Claim::Deferred { cause, .. } => ClaimRule::Defer(cause),
            Claim::Skip(Skipped::Final(_)) => ClaimRule::Leave(Untouched::Final),
            Claim::Skip(Skipped::Review) => ClaimRule::Leave(Untouched::Review),
            Claim::Skip(Skipped::Leased { .. }) => ClaimRule::Leave(Untouched::Leased),
            Claim::Skip(Skipped::Early { .. }) => ClaimRule::Leave(Untouched::Early),
            other => panic!("case {i} {v:?}: {other:?}"),
        };
        assert_eq!(got, decide(v), "case {i}: {v:?}");
        let after = l.get(&merchant, &otn).await.unwrap().unwrap();
        assert_eq!(after.uncertain, v.marks_uncertain(), "case {i} uncertain: {v:?}");
        checked += 1;
    }
    assert_eq!(checked, 6 * 256 * 3 * 3);
}
