//! The state machine, table-tested: (state, what happened) → (next state, when). Pure: no Redis.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use qfpay::{ClientError, EnquiryResponse, RefundResponse};
use qfrefund_ledger::machine::{Action, EnquiryResult, SubmitResult, action_for, after_enquiry, after_submit};
use qfrefund_ledger::{Policy, Record, State};

const NOW: i64 = 1_800_000_000_000;

/// A refund sent half a second ago, its first submit in flight.
fn rec() -> Record {
    Record {
        state: State::Submitting,
        fence: 1,
        submits: 1,
        created_at: NOW - 1_000,
        submitted_at: Some(NOW - 500),
        last_submit_at: Some(NOW - 500),
        txdtm: Some("2026-01-01 12:00:00".into()),
        ..Record::queued(&qfrefund_ledger::NewRefund::new("123", "RF1", 100), NOW - 1_000)
    }
}

fn ans(code: &str) -> SubmitResult {
    SubmitResult::Answer(RefundResponse { respcd: Some(code.into()), ..Default::default() })
}

fn enq(json: &str) -> EnquiryResult {
    EnquiryResult::Answer(EnquiryResponse::parse(json.as_bytes()).unwrap())
}

fn found(code: &str) -> EnquiryResult {
    enq(&format!(
        r#"{{"respcd":"0000","data":[{{"out_trade_no":"RF1","order_type":"refund","respcd":"{code}","syssn":"S9"}}]}}"#
    ))
}

fn none_found() -> EnquiryResult {
    enq(r#"{"respcd":"0000","data":[]}"#)
}

#[test]
fn what_a_worker_does_in_each_state() {
    use Action::*;
    let table = [
        (State::Queued, Submit),
        (State::RetryWait, Submit),
        (State::Submitting, Enquire), // its holder died: enquire, never resend
        (State::Pending, Enquire),
        (State::Succeeded, Nothing),
        (State::Failed, Nothing),
        (State::Cancelled, Nothing),
        (State::NeedsReview, Nothing),
    ];
    for (state, action) in table {
        assert_eq!(action_for(state), action, "{state}");
    }
}

#[test]
fn after_a_submit() {
    let p = Policy::default();
    let first = NOW + 4_000;
    let unknown = |e: ClientError| SubmitResult::from(Err(e));
    let table: Vec<(SubmitResult, State, Option<i64>)> = vec![
        (ans("0000"), State::Succeeded, None),
        (ans("1143"), State::Pending, Some(first)),
        (ans("1145"), State::Pending, Some(first)),
        (ans("1295"), State::Pending, Some(first)),
        (ans("1298"), State::Pending, Some(first)),
        (ans("1102"), State::Pending, Some(first)), // duplicate: enquire
        (ans("2011"), State::Pending, Some(first)),
        (ans("1272"), State::Pending, Some(first)), // reconcile code: enquire before failing
        (ans("1264"), State::Pending, Some(first)),
        (ans("1136"), State::Failed, None),
        (ans("1155"), State::Failed, None),
        (ans("1265"), State::Failed, None), // outside the nightly window
        (ans("1108"), State::NeedsReview, None),
        (ans("1104"), State::NeedsReview, None),
        (ans("7777"), State::Pending, Some(first)), // unknown code: one enquiry round
        (unknown(ClientError::OutcomeUnknown { reason: "timeout".into(), status: None }), State::Pending, Some(first)),
        (unknown(ClientError::OutcomeUnknown { reason: "5xx".into(), status: Some(502) }), State::Pending, Some(first)),
        (SubmitResult::Unknown("reset".into()), State::Pending, Some(first)),
        (SubmitResult::Misconfigured("bad url".into()), State::NeedsReview, None),
    ];
    for (result, state, next) in table {
        let d = after_submit(&rec(), &result, &p, NOW, 0.5);
        assert_eq!((d.state, d.next_at), (state, next), "{result:?}");
    }
}

#[test]
fn retryable_answers_resend_later_within_a_budget() {
    let p = Policy::default();
    // Codes refused at QFPay's door: a plain resend is safe.
    for (code, min_wait_ms) in [("1111", 0), ("1269", 6 * 3600 * 1000), ("1100", 300_000), ("1112", 0)] {
        let d = after_submit(&rec(), &ans(code), &p, NOW, 0.0);
        assert_eq!(d.state, State::RetryWait, "{code}");
        assert!(d.next_at.unwrap() >= NOW + min_wait_ms.max(500), "{code}");
    }
    // 1111 allows 3 retries; the 4th answer fails the refund.
    let spent = Record { retries: 3, ..rec() };
    assert_eq!(after_submit(&spent, &ans("1111"), &p, NOW, 0.5).state, State::Failed);
    // A 429 or a connection that never opened resends, without spending the budget.
    let d = after_submit(&spent, &SubmitResult::RateLimited(Some(Duration::from_secs(7))), &p, NOW, 0.0);
    assert_eq!((d.state, d.next_at), (State::RetryWait, Some(NOW + 7_000)));
    let d = after_submit(&spent, &SubmitResult::NotSent("refused".into()), &p, NOW, 0.0);
    assert_eq!(d.state, State::RetryWait);
    assert!(!d.set.iter().any(|(k, _)| *k == "retries"));
}

#[test]
fn code_1265_in_the_nightly_window_waits_for_it_to_end() {
    let p = Policy::default();
    // The first submit was at noon; this one, answered 1265, at 23:40 — the send time decides.
    let now = "2026-01-01 23:45:00".parse::<qfpay::Txdtm>().unwrap().to_unix(8 * 3600) * 1000;
    let r = Record { txdtm: Some("2026-01-01 12:00:00".into()), last_submit_at: Some(now - 5 * 60_000), ..rec() };
    let d = after_submit(&r, &ans("1265"), &p, now, 0.0);
    assert_eq!(d.state, State::RetryWait);
    assert_eq!(d.next_at.unwrap(), now + 50 * 60 * 1000);
}

#[test]
fn after_an_enquiry() {
    let p = Policy::default();
    let pending = Record { state: State::Pending, enquiries: 1, ..rec() };
    let again = |r: &Record| NOW + p.enquiry_delay(r.enquiries, 0.5).as_millis() as i64;
    let table: Vec<(EnquiryResult, State)> = vec![
        (found("0000"), State::Succeeded),
        (found("1145"), State::Pending),
        (found("1143"), State::Pending),
        (found("1155"), State::Failed),
        (found("1263"), State::Failed), // a failed record for our id: resending would be a duplicate
        (found("1296"), State::RetryWait), // a transient refusal on record is no failure: resend
        (found("1101"), State::NeedsReview), // QFPay's notes: manual review
        (found("1108"), State::NeedsReview),
        (found("4242"), State::NeedsReview),
        (none_found(), State::Pending),
        (enq(r#"{"respcd":"1145","data":[]}"#), State::Pending),
        (enq(r#"{"respcd":"1108"}"#), State::NeedsReview),
        (EnquiryResult::Failed(ClientError::NotSent { reason: "refused".into() }), State::Pending),
    ];
    for (result, state) in table {
        let d = after_enquiry(&pending, &result, &p, NOW, 0.5);
        assert_eq!(d.state, state, "{result:?}");
        if state == State::Pending {
            assert_eq!(d.next_at, Some(again(&pending)), "{result:?}");
        }
    }
    let d = after_enquiry(&pending, &found("0000"), &p, NOW, 0.5);
    assert!(d.set.contains(&("refund_syssn", "S9".into())));
}

#[test]
fn not_found_resends_only_after_enough_misses_and_time() {
    let p = Policy::default();
    let base = Record { state: State::Pending, enquiries: 3, not_found: 2, ..rec() };
    // Third miss, but only 0.5 s after the submit: keep enquiring.
    assert_eq!(after_enquiry(&base, &none_found(), &p, NOW, 0.5).state, State::Pending);
    // Third miss a minute after the submit: resend now with the same out_trade_no.
    let later = NOW + 61_000;
    let d = after_enquiry(&base, &none_found(), &p, later, 0.5);
    assert_eq!((d.state, d.next_at), (State::RetryWait, Some(later)));
    // An operator's "enquire now" cut a hold short: the resend still waits for it to end.
    let held = Record { resend_not_before: Some(later + 3_600_000), ..base.clone() };
    let d = after_enquiry(&held, &none_found(), &p, later, 0.5);
    assert_eq!((d.state, d.next_at), (State::RetryWait, Some(later + 3_600_000)));
    // Not found after a duplicate code: maybe only lagging, so keep looking; still not found after
    // the grace period, the id belongs to someone else — a person decides.
    let dup = Record { submit_code: Some("1102".into()), ..base.clone() };
    assert_eq!(after_enquiry(&dup, &none_found(), &p, NOW, 0.5).state, State::Pending);
    assert_eq!(after_enquiry(&dup, &none_found(), &p, later, 0.5).state, State::NeedsReview);
    // Not found after a reconcile code: the refusal stands.
    let rec1272 = Record { reconcile_code: Some("1272".into()), ..base.clone() };
    assert_eq!(after_enquiry(&rec1272, &none_found(), &p, NOW, 0.5).state, State::Failed);
    // …but a success found overrides it.
    assert_eq!(after_enquiry(&rec1272, &found("0000"), &p, NOW, 0.5).state, State::Succeeded);
    // Not found after an unknown code: after the same patience, a person decides.
    let unknown = Record { unknown_code: Some("7777".into()), ..base };
    assert_eq!(after_enquiry(&unknown, &none_found(), &p, NOW, 0.5).state, State::Pending);
    assert_eq!(after_enquiry(&unknown, &none_found(), &p, later, 0.5).state, State::NeedsReview);
}

#[test]
fn past_max_age_anything_unsettled_needs_review() {
    let p = Policy { max_age: Duration::from_secs(60), ..Policy::default() };
    let old = Record { state: State::Pending, created_at: NOW - 61_000, ..rec() };
    assert_eq!(after_enquiry(&old, &found("1145"), &p, NOW, 0.5).state, State::NeedsReview);
    assert_eq!(after_submit(&old, &SubmitResult::Unknown("t".into()), &p, NOW, 0.5).state, State::NeedsReview);
    // A final answer still wins.
    assert_eq!(after_enquiry(&old, &found("0000"), &p, NOW, 0.5).state, State::Succeeded);
}

/// After an attempt whose outcome we never saw, a refusal does not prove there is no refund:
/// enquire with the resend rules, and let a person conclude if it stays unclear (never `failed`).
#[test]
fn refusals_after_an_unseen_attempt_are_never_read_as_failure() {
    let p = Policy::default();
    let unsure = Record { uncertain: true, submits: 2, ..rec() };
    for code in ["1155", "1263", "1136"] {
        let d = after_submit(&unsure, &ans(code), &p, NOW, 0.5);
        assert_eq!(d.state, State::Pending, "{code}");
        assert!(d.set.contains(&("reconcile_code", code.into())), "{code}");
        // Without an unseen earlier attempt the same answer is final.
        assert_eq!(after_submit(&rec(), &ans(code), &p, NOW, 0.5).state, State::Failed, "{code}");
    }
    // Within budget, a retryable answer after an unseen attempt is enquired before the resend.
    let d = after_submit(&unsure, &ans("1296"), &p, NOW, 0.5);
    assert_eq!(d.state, State::Pending);
    assert!(d.reason.contains("enquiring before resend"));
    // Retry budget spent after an unseen attempt: enquire, not fail.
    let spent = Record { retries: 3, ..unsure.clone() };
    assert_eq!(after_submit(&spent, &ans("1147"), &p, NOW, 0.5).state, State::Pending);
    // Reconcile: one miss is not enough; enough misses over the grace period → a person.
    let looking = Record { state: State::Pending, reconcile_code: Some("1263".into()), enquiries: 1, ..unsure };
    assert_eq!(after_enquiry(&looking, &none_found(), &p, NOW, 0.5).state, State::Pending);
    let long_after = Record { not_found: 2, ..looking.clone() };
    let d = after_enquiry(&long_after, &none_found(), &p, NOW + 61_000, 0.5);
    assert_eq!(d.state, State::NeedsReview);
    assert!(d.reason.contains("confirm with QFPay"));
    assert_eq!(after_enquiry(&looking, &found("0000"), &p, NOW, 0.5).state, State::Succeeded);
    // Answers that leave the outcome open mark the record uncertain.
    for r in [ans("1145"), ans("1102"), ans("7777"), SubmitResult::Unknown("t".into())] {
        assert!(after_submit(&rec(), &r, &p, NOW, 0.5).set.contains(&("uncertain", "1".into())), "{r:?}");
    }
    // A refusal of this attempt says nothing about an earlier one (there is none here).
    for code in ["1111", "1272"] {
        assert!(!after_submit(&rec(), &ans(code), &p, NOW, 0.5).set.iter().any(|(k, _)| *k == "uncertain"), "{code}");
    }
}

/// A record carrying our out_trade_no that reverses another payment or amount is someone else's
/// refund: never read as ours.
#[test]
fn someone_elses_refund_under_our_id_is_not_our_success() {
    let p = Policy::default();
    let pending = Record { state: State::Pending, enquiries: 1, ..rec() };
    for (orig, amt) in [("999", "100"), ("123", "250")] {
        let answer = enq(&format!(
            r#"{{"respcd":"0000","data":[{{"out_trade_no":"RF1","order_type":"refund","respcd":"0000","syssn":"X","origssn":"{orig}","txamt":"{amt}"}}]}}"#
        ));
        let d = after_enquiry(&pending, &answer, &p, NOW, 0.5);
        assert_eq!(d.state, State::NeedsReview, "{orig}/{amt}");
        assert!(d.reason.contains("another refund"));
    }
}

/// API §7 for 1296 ("slow network, try again later"): enquire first, then resubmit. The same holds
/// for every retryable code raised where the refund may have been acted on (the bank, the wallet
/// channel): the attempt is uncertain, no resend and no failure follows without an enquiry.
#[test]
fn a_refund_that_may_have_been_applied_is_enquired_before_any_resend() {
    let p = Policy::default();
    for code in ["1296", "1297", "1204", "1147", "1205", "1252"] {
        let d = after_submit(&rec(), &ans(code), &p, NOW, 0.5);
        assert_eq!(d.state, State::Pending, "{code}");
        assert!(d.set.contains(&("uncertain", "1".into())), "{code} marks the attempt uncertain");
        assert!(d.reason.contains("enquiring before resend"), "{code}: {}", d.reason);
        // Budget spent: still an enquiry, never `failed` straight away.
        let spent = Record { retries: 100, ..rec() };
        assert_eq!(after_submit(&spent, &ans(code), &p, NOW, 0.5).state, State::Pending, "{code} spent");
    }
}

/// QFPay's notes send 1101, 1144 and 1146 to a person: never `failed` by assumption.
#[test]
fn codes_that_need_manual_review_go_to_needs_review_not_failed() {
    let p = Policy::default();
    for code in ["1101", "1144", "1146"] {
        let d = after_submit(&rec(), &ans(code), &p, NOW, 0.5);
        assert_eq!(d.state, State::NeedsReview, "{code}");
        assert!(d.set.contains(&("uncertain", "1".into())), "{code}");
    }
}

/// An enquiry record of ours with a retryable code is a transient refusal: resent within the
/// budget, and past it a person decides. Never `failed`.
#[test]
fn an_enquiry_record_with_a_retryable_code_never_ends_failed() {
    let p = Policy::default();
    for code in ["1296", "1297", "1111", "1205"] {
        let pending = Record { state: State::Pending, enquiries: 1, ..rec() };
        let answer = enq(&format!(
            r#"{{"respcd":"0000","data":[{{"out_trade_no":"RF1","order_type":"refund","respcd":"{code}"}}]}}"#
        ));
        let d = after_enquiry(&pending, &answer, &p, NOW, 0.5);
        assert_eq!(d.state, State::RetryWait, "{code}");
        let spent = Record { retries: 100, ..pending };
        let d = after_enquiry(&spent, &answer, &p, NOW, 0.5);
        assert_eq!(d.state, State::NeedsReview, "{code} with the budget spent");
    }
}

/// A 0000 answer that names another out_trade_no, payment or amount is not our success, and is
/// never added to what the payment has had refunded.
#[test]
fn a_submit_answer_for_someone_elses_refund_is_not_booked_as_ours() {
    let p = Policy::default();
    let r = rec();
    for body in [
        r#"{"respcd":"0000","out_trade_no":"OTHER","syssn":"R1"}"#.to_owned(),
        format!(r#"{{"respcd":"0000","orig_syssn":"999","out_trade_no":"{}"}}"#, r.out_trade_no),
        format!(r#"{{"respcd":"0000","txamt":"{}","out_trade_no":"{}"}}"#, r.txamt + 1, r.out_trade_no),
    ] {
        let a = qfpay::RefundResponse::parse(body.as_bytes()).unwrap();
        let d = after_submit(&r, &SubmitResult::Answer(a), &p, NOW, 0.5);
        assert_eq!(d.state, State::NeedsReview, "{body}");
        assert!(d.reason.contains("not booked as ours"), "{}", d.reason);
    }
    // The same answer naming our refund is our success.
    let ours = format!(
        r#"{{"respcd":"0000","orig_syssn":"{}","txamt":"{}","out_trade_no":"{}"}}"#,
        r.syssn, r.txamt, r.out_trade_no
    );
    let a = qfpay::RefundResponse::parse(ours.as_bytes()).unwrap();
    assert_eq!(after_submit(&r, &SubmitResult::Answer(a), &p, NOW, 0.5).state, State::Succeeded);
}

/// An attempt that was never sent is not counted in `submits`.
#[test]
fn an_attempt_never_sent_is_not_counted_as_a_submit() {
    let p = Policy::default();
    let claimed = Record { state: State::Submitting, submits: 1, ..rec() };
    let d = after_submit(&claimed, &SubmitResult::NotSent("lease ran out".into()), &p, NOW, 0.5);
    assert!(d.set.contains(&("submits", "0".into())), "{:?}", d.set);
}
