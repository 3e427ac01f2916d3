//! What an enquiry's answer makes of a refund (pure; see the module above).

use qfpay::RefundLookup;
use qfpay::respcd::{Class, classify, is_duplicate_code};

use super::*;

/// After an enquiry that this worker's lease covered (`rec.enquiries` counts it already).
pub fn after_enquiry(rec: &Record, result: &EnquiryResult, policy: &Policy, now: i64, unit: f64) -> Decision {
    let again = |reason: String| {
        Decision::new(State::Pending, Some(now + ms(policy.enquiry_delay(rec.enquiries, unit))), reason)
    };
    let d = match result {
        EnquiryResult::Failed(e) => again(format!("enquiry failed: {e}")).with("last_error", e.to_string()),
        EnquiryResult::Answer(r) if !r.is_ok() => match classify(r.respcd(), None) {
            Class::ConfigError => Decision::new(
                State::NeedsReview,
                None,
                format!("enquiry refused, respcd {}: configuration error, merchant paused", r.respcd()),
            )
            .with("last_error", r.resperr.clone().unwrap_or_default())
            .pause(),
            _ => again(format!("enquiry answered respcd {}", r.respcd()))
                .with("last_error", r.resperr.clone().unwrap_or_default()),
        },
        EnquiryResult::Answer(r) => match r.refund(&rec.out_trade_no, &rec.syssn, rec.txamt) {
            RefundLookup::Succeeded(found) => Decision::new(State::Succeeded, None, "enquiry: refund succeeded")
                .answer("0000", found.errmsg.as_deref())
                .with("refund_syssn", found.syssn.unwrap_or_default())
                .with("sysdtm", found.sysdtm.unwrap_or_default()),
            RefundLookup::InProgress(found) => again(format!("enquiry: still processing ({})", found.respcd()))
                .answer(found.respcd(), found.errmsg.as_deref())
                .with("not_found", "0"),
            RefundLookup::Other(found) => {
                let code = found.respcd().to_owned();
                let base = |state, next, reason: String| {
                    Decision::new(state, next, reason).answer(&code, found.errmsg.as_deref()).with("not_found", "0")
                };
                match classify(&code, submitted_local(rec)) {
                    Class::Success => unreachable_success(rec, &code),
                    Class::InProgress => {
                        again(format!("enquiry: respcd {code}, not final")).answer(&code, found.errmsg.as_deref())
                    }
                    // QFPay holds a failed record for our id: resending it would be a duplicate.
                    Class::FinalFailure { .. } => {
                        base(State::Failed, None, format!("enquiry: refund failed with respcd {code}"))
                    }
                    // A transient refusal is not a failure: resend (same out_trade_no) within the
                    // budget; past it, a person decides, never `failed` by assumption.
                    Class::Retryable { cap } if rec.retries >= budget(policy, cap) => base(
                        State::NeedsReview,
                        None,
                        format!("enquiry: QFPay's record shows retryable respcd {code} and the retry budget is spent"),
                    ),
                    // Resent as is: QFPay's own record says this attempt was refused. An earlier
                    // attempt whose outcome went unseen keeps the record uncertain, so a refusal of
                    // the resend is still enquired, never read as a failure.
                    Class::Retryable { cap } => {
                        let r = retry(rec, policy, now, unit, &code, cap, false);
                        let mut d = base(r.state, r.next_at, format!("enquiry: {}", r.reason));
                        d.set.extend(r.set);
                        d
                    }
                    Class::ManualReview => base(
                        State::NeedsReview,
                        None,
                        format!("enquiry: respcd {code}, QFPay's notes say a person must look"),
                    ),
                    Class::ConfigError => {
                        base(State::NeedsReview, None, format!("enquiry: respcd {code}, configuration error")).pause()
                    }
                    Class::Unknown => base(State::NeedsReview, None, format!("enquiry: unknown respcd {code}")),
                }
            }
            RefundLookup::Foreign(found) => Decision::new(
                State::NeedsReview,
                None,
                format!(
                    "out_trade_no is used by another refund at QFPay (payment {}, amount {}, respcd {}): not ours",
                    found.orig_syssn.as_deref().unwrap_or("?"),
                    found.txamt.as_deref().unwrap_or("?"),
                    found.respcd()
                ),
            ),
            RefundLookup::NotFound => not_found(rec, policy, now, unit),
        },
    };
    age_limit(rec, d, policy, now)
}

fn unreachable_success(rec: &Record, code: &str) -> Decision {
    // `refund()` returns every `0000` record as Succeeded; keep the type total without guessing.
    Decision::new(
        State::NeedsReview,
        None,
        format!("enquiry: record {} answered {code} unexpectedly", rec.out_trade_no),
    )
}

fn not_found(rec: &Record, policy: &Policy, now: i64, unit: f64) -> Decision {
    // A refusal of a first attempt: nothing earlier of ours can be hiding behind it.
    if let Some(code) = rec.reconcile_code.as_deref().filter(|_| !rec.uncertain) {
        return Decision::new(State::Failed, None, format!("respcd {code} confirmed: no refund of ours found"))
            .with("reconcile_code", "");
    }
    // QFPay's records lag (API §8.5): conclude nothing from "not found" until it has been seen
    // often enough, for long enough after the last submit.
    let seen = rec.not_found + 1;
    let since_submit = now - rec.last_submit_at.unwrap_or(rec.created_at);
    if seen < policy.not_found_min || since_submit < ms(policy.not_found_grace) {
        return Decision::new(
            State::Pending,
            Some(now + ms(policy.enquiry_delay(rec.enquiries, unit))),
            format!("not found ({seen})"),
        )
        .with("not_found", seen.to_string());
    }
    let over = format!("{seen} enquiries over {}s", since_submit / 1000);
    // "The transaction does not exist": if QFPay has no such payment, no refund of it moved money.
    if let Some(code) = rec.reconcile_code.as_deref().filter(|c| crate::refund::machine::payment_check::settles(c)) {
        return crate::refund::machine::payment_check::start(rec, policy, now, unit, code, &over);
    }
    if let Some(code) = &rec.reconcile_code {
        return Decision::new(
            State::NeedsReview,
            None,
            format!(
                "respcd {code}, and an earlier attempt whose outcome was never seen is not found either ({over}): \
                 confirm with QFPay before refunding again"
            ),
        );
    }
    if let Some(code) = &rec.unknown_code {
        return Decision::new(State::NeedsReview, None, format!("unknown respcd {code} and no record found ({over})"));
    }
    if rec.submit_code.as_deref().is_some_and(is_duplicate_code) {
        return Decision::new(
            State::NeedsReview,
            None,
            format!(
                "QFPay says the out_trade_no is used, but no refund of ours has it ({over}): it clashes with another transaction"
            ),
        );
    }
    // Not before the wait an operator's "enquire now" cut short would have ended.
    let at = rec.resend_not_before.map_or(now, |t| t.max(now));
    Decision::new(State::RetryWait, Some(at), format!("not found, {over}: resending")).with("not_found", "0")
}
