//! Settling "the transaction does not exist" with evidence instead of a person.
//!
//! A refund whose first attempt's answer was lost (HTTP 500, a timeout) and whose resend was
//! refused with `1136` ("transaction does not exist or is not operable") or `1268` ("order does
//! not exist") is uncertain: the lost attempt may have been applied, and the refusal could be the
//! echo of it. But if QFPay has no payment with that `syssn` at all, no refund of it can have moved
//! money. So, before asking a person, the worker enquires the payment itself (by `syssn`, with the
//! same patience as for a refund "not found": QFPay's records lag): no such payment → `failed`
//! ("payment does not exist"); the payment exists → `needs_review`, as before.

use qfpay::EnquiryResponse;

use crate::refund::machine::{Decision, EnquiryResult, age_limit, ms};
use crate::refund::record::Record;
use crate::refund::schedule::Policy;
use crate::refund::state::State;

/// Codes that say the payment may not exist: a payment enquiry can settle them.
pub fn settles(code: &str) -> bool {
    matches!(code.trim(), "1136" | "1268")
}

/// Starts the payment check of an uncertain refund refused with `code`.
pub(crate) fn start(rec: &Record, policy: &Policy, now: i64, unit: f64, code: &str, over: &str) -> Decision {
    Decision {
        state: State::Pending,
        next_at: Some(now + ms(policy.enquiry_delay(0, unit))),
        reason: format!(
            "respcd {code}, and an earlier attempt whose outcome was never seen is not found either ({over}): \
             asking QFPay whether payment {} exists",
            rec.syssn
        ),
        pause_merchant: false,
        set: vec![("payment_check", "1".into()), ("not_found", "0".into())],
    }
}

/// Whether QFPay's answer lists the payment `syssn` (in any state: a payment that exists may have
/// been refunded by the lost attempt).
fn lists_payment(answer: &EnquiryResponse, syssn: &str) -> bool {
    answer.data.iter().any(|r| {
        r.syssn.as_deref() == Some(syssn) && r.order_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("payment"))
    })
}

/// After the payment enquiry of a refund in its payment check (`rec.enquiries` counts it already).
pub fn after_payment_check(rec: &Record, result: &EnquiryResult, policy: &Policy, now: i64, unit: f64) -> Decision {
    let again = |reason: String, set: Vec<(&'static str, String)>| Decision {
        state: State::Pending,
        next_at: Some(now + ms(policy.enquiry_delay(rec.enquiries, unit))),
        reason,
        pause_merchant: false,
        set,
    };
    let code = rec.reconcile_code.clone().unwrap_or_default();
    let d = match result {
        EnquiryResult::Failed(e) => again(format!("payment enquiry failed: {e}"), vec![("last_error", e.to_string())]),
        EnquiryResult::Answer(a) if !a.is_ok() => {
            again(format!("payment enquiry answered respcd {}", a.respcd()), Vec::new())
        }
        EnquiryResult::Answer(a) if lists_payment(a, &rec.syssn) => Decision {
            state: State::NeedsReview,
            next_at: None,
            reason: format!(
                "respcd {code}, an earlier attempt whose outcome was never seen is not found, and payment {} \
                 exists at QFPay: confirm with QFPay before refunding again",
                rec.syssn
            ),
            pause_merchant: false,
            set: vec![("payment_check", String::new()), ("not_found", "0".into())],
        },
        EnquiryResult::Answer(_) => {
            let seen = rec.not_found + 1;
            let since_submit = now - rec.last_submit_at.unwrap_or(rec.created_at);
            if seen < policy.not_found_min || since_submit < ms(policy.not_found_grace) {
                again(format!("payment {} not found ({seen})", rec.syssn), vec![("not_found", seen.to_string())])
            } else {
                Decision {
                    state: State::Failed,
                    next_at: None,
                    reason: format!(
                        "respcd {code}: payment {} does not exist at QFPay ({seen} enquiries over {}s), so no \
                         attempt can have refunded it",
                        rec.syssn,
                        since_submit / 1000
                    ),
                    pause_merchant: false,
                    set: vec![("payment_check", String::new()), ("not_found", "0".into())],
                }
            }
        }
    };
    age_limit(rec, d, policy, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checking() -> Record {
        let mut r = Record::queued(&crate::NewRefund::new("S1", "RF1", 100), 0);
        r.state = State::Pending;
        r.payment_check = true;
        r.uncertain = true;
        r.reconcile_code = Some("1136".into());
        r.last_submit_at = Some(0);
        r
    }

    fn answer(json: &str) -> EnquiryResult {
        EnquiryResult::Answer(EnquiryResponse::parse(json.as_bytes()).unwrap())
    }

    #[test]
    fn a_payment_that_exists_leaves_the_refund_to_a_person() {
        let p = Policy::default();
        let found = answer(r#"{"respcd":"0000","data":[{"syssn":"S1","order_type":"payment","respcd":"0000"}]}"#);
        let d = after_payment_check(&checking(), &found, &p, 1_000, 0.5);
        assert_eq!(d.state, State::NeedsReview);
        assert!(d.reason.contains("exists at QFPay"), "{}", d.reason);
    }

    #[test]
    fn a_payment_qfpay_does_not_know_fails_only_after_the_not_found_patience() {
        let p = Policy::default();
        let none = answer(r#"{"respcd":"0000","data":[]}"#);
        assert_eq!(after_payment_check(&checking(), &none, &p, 1_000, 0.5).state, State::Pending);
        let seen = Record { not_found: p.not_found_min, ..checking() };
        let late = ms(p.not_found_grace) + 1;
        let d = after_payment_check(&seen, &none, &p, late, 0.5);
        assert_eq!(d.state, State::Failed, "{}", d.reason);
        // Someone else's refund under another id is no payment.
        let refund_only = answer(r#"{"respcd":"0000","data":[{"syssn":"S1","order_type":"refund","respcd":"0000"}]}"#);
        assert_eq!(after_payment_check(&seen, &refund_only, &p, late, 0.5).state, State::Failed);
    }
}
