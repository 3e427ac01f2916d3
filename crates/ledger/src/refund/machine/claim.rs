//! What a claim decides, as a pure function: the specification `store/claim_one.lua` implements.
//!
//! The script cannot call Rust, so the rules live twice: here, where the table tests cover them
//! (`tests/claim_rules.rs`), and in the script, which a conformance test runs against a real
//! Redis over every combination of the inputs below, comparing each answer with [`decide`]. A rule
//! changed in one place and not the other fails that test.

use crate::refund::state::State;

/// Why a claim put a refund off (the script names it, so no caller reads the words of a reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// The merchant's token bucket is empty.
    RateLimit,
    MerchantPaused,
    /// QFPay's nightly refund window (submits only).
    QuietWindow,
    /// Another refund of the same payment is in flight.
    PaymentBusy,
    /// The payment's amount is still to be learned.
    PaidUnknown,
    /// This worker holds no credentials for the refund's merchant.
    NoCredentials,
}

/// Who holds the payment's one in-flight slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentLock {
    Free,
    /// This refund (a resend after `retry_wait` keeps the payment locked).
    Ours,
    /// Another refund of the same payment.
    Other,
}

/// What a claim sees of a refund and its surroundings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimView {
    pub state: State,
    /// Someone's lease has not run out.
    pub leased: bool,
    /// Its `next_at` is still ahead.
    pub early: bool,
    /// It has waited past the maximum age.
    pub too_old: bool,
    /// This worker holds credentials for its merchant (or the claim does not check).
    pub served: bool,
    /// The merchant's token bucket has a token (or there is no limit).
    pub token: bool,
    pub merchant_paused: bool,
    /// QFPay's nightly window is on (submits only).
    pub quiet_window: bool,
    pub lock: PaymentLock,
    /// The payment's amount, if known, and what its succeeded refunds already took.
    pub paid: Option<u64>,
    pub committed: u64,
    pub txamt: u64,
    /// The caller learns an unknown amount before the first submit.
    pub want_paid: bool,
}

/// Why a claim left a refund alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untouched {
    Final,
    Review,
    Leased,
    Early,
}

/// What a claim does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRule {
    /// Nothing: not for this claim.
    Leave(Untouched),
    /// Put off to later, for this reason.
    Defer(Deferral),
    /// It waited past its maximum age: to `needs_review`.
    Review,
    /// Its payment's amount is to be learned first (a token was taken for that enquiry).
    NeedPaid,
    /// It would take the payment past what was paid: `failed`, never sent.
    OverRefund,
    /// Take the lease, persist `submitting`: send it.
    Submit,
    /// Take the lease, to `pending`: enquire it. `recovered`: found in `submitting` after its
    /// holder's lease ran out (it may have been sent: it is enquired, never resent).
    Enquire { recovered: bool },
}

impl ClaimView {
    /// A refund found in `submitting` by a claim is uncertain from then on, whatever the claim
    /// does with it (it may have been sent).
    pub fn marks_uncertain(&self) -> bool {
        self.state == State::Submitting && !self.leased && !self.early
    }
}

/// The claim's decision (see the module notes).
pub fn decide(v: &ClaimView) -> ClaimRule {
    if v.state.is_final() {
        return ClaimRule::Leave(Untouched::Final);
    }
    if v.state == State::NeedsReview {
        return ClaimRule::Leave(Untouched::Review);
    }
    if v.leased {
        return ClaimRule::Leave(Untouched::Leased);
    }
    if v.early {
        return ClaimRule::Leave(Untouched::Early);
    }
    // Every wait counts against the maximum age: past it, a person decides.
    let defer = |why| if v.too_old { ClaimRule::Review } else { ClaimRule::Defer(why) };
    if !v.served {
        return defer(Deferral::NoCredentials);
    }
    if matches!(v.state, State::Submitting | State::Pending) {
        if !v.token {
            return defer(Deferral::RateLimit);
        }
        return ClaimRule::Enquire { recovered: v.state == State::Submitting };
    }
    // Queued or retry_wait: a submit.
    if v.merchant_paused {
        return defer(Deferral::MerchantPaused);
    }
    if v.quiet_window {
        return defer(Deferral::QuietWindow);
    }
    if v.lock == PaymentLock::Other {
        return defer(Deferral::PaymentBusy);
    }
    let Some(paid) = v.paid else {
        if v.want_paid {
            if v.too_old {
                return ClaimRule::Review;
            }
            if !v.token {
                return defer(Deferral::RateLimit);
            }
            return ClaimRule::NeedPaid;
        }
        return if v.token { ClaimRule::Submit } else { defer(Deferral::RateLimit) };
    };
    if v.lock == PaymentLock::Free && v.committed + v.txamt > paid {
        return ClaimRule::OverRefund;
    }
    if !v.token {
        return defer(Deferral::RateLimit);
    }
    ClaimRule::Submit
}
