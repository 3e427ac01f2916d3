//! The state machine under arbitrary sequences of events: whatever QFPay and the network do, no
//! sequence breaks the four promises' invariants. The store's effects (counters, fields) are
//! modelled as the Lua scripts apply them.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use qfpay::{ClientError, EnquiryResponse, RefundResponse};
use qfrefund_ledger::machine::{Action, EnquiryResult, SubmitResult, action_for, after_enquiry, after_submit};
use qfrefund_ledger::{Decision, Policy, Record, State};

const T0: i64 = 1_800_000_000_000;

#[derive(Debug, Clone)]
enum Event {
    Answer(&'static str),
    Unknown,
    NotSent,
    RateLimited,
    Found(&'static str),
    FoundForeign,
    NotFound,
    EnquiryFailed,
    EnquiryRefused(&'static str),
}

const CODES: &[&str] = &[
    "0000", "1143", "1145", "1102", "2011", "1272", "1264", "1136", "1155", "1265", "1269", "1296", "1297", "1108",
    "1104", "7777", "1295", "1298", "1205", "1263",
];

fn event() -> impl Strategy<Value = Event> {
    let code = proptest::sample::select(CODES);
    prop_oneof![
        code.clone().prop_map(Event::Answer),
        Just(Event::Unknown),
        Just(Event::NotSent),
        Just(Event::RateLimited),
        code.clone().prop_map(Event::Found),
        Just(Event::FoundForeign),
        Just(Event::NotFound),
        Just(Event::EnquiryFailed),
        code.prop_map(Event::EnquiryRefused),
    ]
}

fn record() -> Record {
    Record {
        txdtm: Some("2026-01-01 12:00:00".into()),
        ..Record::queued(&qfrefund_ledger::NewRefund::new("123", "RF1", 100), T0)
    }
}

fn enquiry(json: String) -> EnquiryResult {
    EnquiryResult::Answer(EnquiryResponse::parse(json.as_bytes()).unwrap())
}

/// What the store does with a decision (transition.lua): the state, the fields, the schedule.
fn apply(rec: &mut Record, d: &Decision) {
    rec.state = d.state;
    rec.next_at = d.next_at.unwrap_or(0);
    for (k, v) in &d.set {
        let opt = (!v.is_empty()).then(|| v.clone());
        match *k {
            "respcd" => rec.respcd = opt,
            "refund_syssn" => rec.refund_syssn = opt,
            "submit_code" => rec.submit_code = opt,
            "reconcile_code" => rec.reconcile_code = opt,
            "unknown_code" => rec.unknown_code = opt,
            "uncertain" => rec.uncertain = v == "1",
            "not_found" => rec.not_found = v.parse().unwrap(),
            "retries" => rec.retries = v.parse().unwrap(),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn no_sequence_of_events_breaks_an_invariant(events in proptest::collection::vec(event(), 1..40), gaps in proptest::collection::vec(0i64..120_000, 40)) {
        let policy = Policy::default();
        let mut rec = record();
        let mut now = T0;
        let mut ever_uncertain = false;
        for (i, ev) in events.iter().enumerate() {
            if rec.state.is_final() || rec.state == State::NeedsReview {
                break;
            }
            now += gaps[i];
            // What the claim script does first.
            let action = action_for(rec.state);
            prop_assert!(action != Action::Nothing);
            let submitting = action == Action::Submit;
            let d = if submitting {
                rec.state = State::Submitting;
                rec.submits += 1;
                rec.last_submit_at = Some(now);
                rec.not_found = 0;
                let result = match ev {
                    Event::Answer(c) | Event::Found(c) | Event::EnquiryRefused(c) => {
                        SubmitResult::Answer(RefundResponse { respcd: Some((*c).into()), syssn: Some("S9".into()), ..Default::default() })
                    }
                    Event::Unknown | Event::FoundForeign => SubmitResult::Unknown("reset".into()),
                    Event::NotSent | Event::NotFound => SubmitResult::NotSent("refused".into()),
                    Event::RateLimited | Event::EnquiryFailed => SubmitResult::RateLimited(None),
                };
                let d = after_submit(&rec, &result, &policy, now, 0.5);
                // Invariants of a submit.
                if let SubmitResult::Answer(a) = &result {
                    if d.state == State::Succeeded {
                        prop_assert_eq!(a.respcd(), "0000");
                    }
                    if d.state == State::Failed {
                        prop_assert!(!rec.uncertain, "a refusal after an unseen attempt is never final");
                    }
                } else {
                    prop_assert!(!d.state.is_final(), "no transport result is an outcome: {:?}", result);
                }
                if matches!(result, SubmitResult::Unknown(_)) {
                    prop_assert_eq!(d.state, State::Pending, "an unknown outcome is enquired, never resent");
                }
                d
            } else {
                rec.state = State::Pending;
                rec.enquiries += 1;
                let lookup = |code: &str, orig: &str| format!(
                    r#"{{"respcd":"0000","data":[{{"out_trade_no":"RF1","order_type":"refund","respcd":"{code}","syssn":"S9","origssn":"{orig}","txamt":"100"}}]}}"#
                );
                let result = match ev {
                    Event::Found(c) | Event::Answer(c) => enquiry(lookup(c, "123")),
                    Event::FoundForeign => enquiry(lookup("0000", "OTHER")),
                    Event::NotFound | Event::NotSent => enquiry(r#"{"respcd":"0000","data":[]}"#.into()),
                    Event::EnquiryRefused(c) => enquiry(format!(r#"{{"respcd":"{c}"}}"#)),
                    Event::Unknown | Event::EnquiryFailed | Event::RateLimited => {
                        EnquiryResult::Failed(ClientError::OutcomeUnknown { reason: "t".into(), status: Some(502) })
                    }
                };
                let d = after_enquiry(&rec, &result, &policy, now, 0.5);
                match ev {
                    Event::Found("0000") | Event::Answer("0000") => prop_assert_eq!(d.state, State::Succeeded),
                    _ => prop_assert!(d.state != State::Succeeded, "only a 0000 record of ours is success: {:?}", ev),
                }
                if matches!(ev, Event::FoundForeign) {
                    prop_assert_eq!(d.state, State::NeedsReview);
                }
                if matches!(result, EnquiryResult::Failed(_)) {
                    prop_assert!(!d.state.is_final());
                }
                if d.state == State::RetryWait {
                    // A resend only after enough misses, long enough after the last submit.
                    prop_assert!(rec.not_found + 1 >= policy.not_found_min || !matches!(ev, Event::NotFound | Event::NotSent));
                    let since = now - rec.last_submit_at.unwrap();
                    prop_assert!(since >= policy.not_found_grace.as_millis() as i64 || !matches!(ev, Event::NotFound | Event::NotSent));
                    prop_assert!(rec.submit_code.as_deref().is_none_or(|c| !qfpay::respcd::is_duplicate_code(c)) || !matches!(ev, Event::NotFound | Event::NotSent));
                }
                d
            };
            // Every decision is a move the state machine allows (the transition script refuses others).
            prop_assert!(rec.state.can_go(d.state), "{} -> {} is not in State::EDGES", rec.state, d.state);
            // Every decision: a schedule exactly when there is more to do, never in the past.
            let workable = d.state.is_workable();
            prop_assert_eq!(d.next_at.is_some(), workable, "{:?}", d);
            if let Some(at) = d.next_at {
                prop_assert!(at >= now);
            }
            ever_uncertain |= rec.uncertain;
            apply(&mut rec, &d);
            if rec.uncertain {
                ever_uncertain = true;
            }
            // Once uncertain, always uncertain (until final): nothing forgets an unseen attempt.
            prop_assert!(!ever_uncertain || rec.uncertain || rec.state.is_final() || rec.state == State::NeedsReview);
        }
    }
}
