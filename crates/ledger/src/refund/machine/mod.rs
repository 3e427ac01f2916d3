//! The refund state machine as pure functions: given a record, what just happened and
//! the time, what the record must become. No I/O; the store applies a [`Decision`] with one atomic
//! compare-and-set on `(state, fence)`.
//!
//! The rule that keeps promise 4 ("never guessed"): only QFPay's answer moves a refund to
//! `succeeded` or `failed`. A transport error, a processing code, a duplicate code, a code we do
//! not know — all lead to an enquiry, and an enquiry that cannot settle it leads to a person.

pub mod claim;
mod enquiry;
pub use enquiry::after_enquiry;
pub mod payment_check;

use std::time::Duration;

use qfpay::respcd::{Class, classify, is_duplicate_code, lookup, may_have_applied};
use qfpay::time::{DEFAULT_OFFSET_SECS, after_refund_blackout};
use qfpay::{ClientError, EnquiryResponse, RefundResponse, Txdtm};

use crate::refund::record::Record;
use crate::refund::schedule::Policy;
use crate::refund::state::State;

/// What a submit produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // built once per submit, never stored in bulk
pub enum SubmitResult {
    /// QFPay's business answer.
    Answer(RefundResponse),
    /// The request provably never left (connection not established).
    NotSent(String),
    /// It may have reached QFPay; no usable answer.
    Unknown(String),
    /// HTTP 429: not processed.
    RateLimited(Option<Duration>),
    /// Our client is misconfigured; nothing was sent.
    Misconfigured(String),
}

impl From<Result<RefundResponse, ClientError>> for SubmitResult {
    fn from(r: Result<RefundResponse, ClientError>) -> Self {
        match r {
            Ok(a) => SubmitResult::Answer(a),
            Err(ClientError::NotSent { reason }) => SubmitResult::NotSent(reason),
            Err(ClientError::RateLimited { retry_after }) => SubmitResult::RateLimited(retry_after),
            Err(ClientError::Config(reason)) => SubmitResult::Misconfigured(reason),
            Err(e) => SubmitResult::Unknown(e.to_string()),
        }
    }
}

/// What an enquiry produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum EnquiryResult {
    Answer(EnquiryResponse),
    Failed(ClientError),
}

/// The pseudo-field of [`Decision::set`] that carries an attempt's evidence (see
/// [`Decision::with_evidence`]).
pub const EVIDENCE: &str = "evidence";

/// The record's next state and everything that changes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: State,
    /// When a worker should act next (`None` for final states and `needs_review`).
    pub next_at: Option<i64>,
    /// Why, in words, for operators and the outcome stream.
    pub reason: String,
    /// A configuration error: stop this merchant's queue until someone resumes it.
    pub pause_merchant: bool,
    /// Fields to write (an empty value clears the field).
    pub set: Vec<(&'static str, String)>,
}

impl Decision {
    fn new(state: State, next_at: Option<i64>, reason: impl Into<String>) -> Self {
        Self { state, next_at, reason: reason.into(), pause_merchant: false, set: Vec::new() }
    }
    /// Also writes `field` (an empty value clears it).
    pub fn with(mut self, field: &'static str, value: impl Into<String>) -> Self {
        self.set.push((field, value.into()));
        self
    }
    /// Also keeps the evidence of the request this decision answers: appended to the refund's
    /// attempts (`<prefix>:e:<id>`, see `store/common.lua`), never a field of the record.
    pub fn with_evidence(self, evidence: &qfpay::Evidence) -> Self {
        let json = serde_json::to_string(evidence).unwrap_or_default();
        self.with(EVIDENCE, json)
    }
    fn pause(mut self) -> Self {
        self.pause_merchant = true;
        self
    }
    /// Records QFPay's answer fields on the record.
    fn answer(self, respcd: &str, resperr: Option<&str>) -> Self {
        self.with("respcd", respcd).with("resperr", resperr.unwrap_or(""))
    }
}

/// What a worker does with a record it found in `state` (the claim script implements exactly this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Submit,
    Enquire,
    Nothing,
}

/// A record found in `submitting` was being sent by a worker that died or stalled: it may have
/// reached QFPay, so it is enquired, never resent (promise 4).
pub fn action_for(state: State) -> Action {
    match state {
        State::Queued | State::RetryWait => Action::Submit,
        State::Submitting | State::Pending => Action::Enquire,
        State::Succeeded | State::Failed | State::Cancelled | State::NeedsReview => Action::Nothing,
    }
}

pub(crate) fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// When the latest submit was sent, in merchant time (what decides how a `1265` reads).
fn submitted_local(rec: &Record) -> Option<Txdtm> {
    match rec.last_submit_at {
        Some(ms) => Some(Txdtm::from_unix(ms.div_euclid(1000), DEFAULT_OFFSET_SECS)),
        None => rec.txdtm.as_deref().and_then(|t| t.parse().ok()),
    }
}

/// A refusal that would end the refund as `failed`. If an earlier attempt may have taken effect
/// unseen, the refusal does not prove there is no refund: enquire (with the not-found rules of a
/// resend) before concluding, and let a person conclude if it stays unclear.
fn refuse(rec: &Record, enquire_at: i64, code: &str, reason: String) -> Decision {
    if rec.uncertain {
        Decision::new(
            State::Pending,
            Some(enquire_at),
            format!("{reason}; an earlier attempt may have succeeded: enquiring"),
        )
        .with("reconcile_code", code)
    } else {
        Decision::new(State::Failed, None, reason)
    }
}

/// How many resends a retryable code allows.
fn budget(policy: &Policy, cap: Option<u32>) -> u32 {
    cap.map_or(policy.resubmit_budget, |c| c.min(policy.resubmit_budget))
}

/// Retryable: resend at the later of the backoff and the code's own minimum wait, within budget.
/// `uncertain`: this or an earlier attempt may have taken effect: enquire before the resend.
fn retry(
    rec: &Record,
    policy: &Policy,
    now: i64,
    unit: f64,
    code: &str,
    cap: Option<u32>,
    uncertain: bool,
) -> Decision {
    let retries = rec.retries + 1;
    let budget = budget(policy, cap);
    if retries > budget {
        let rec = &Record { uncertain, ..rec.clone() };
        let enquire_at = now + ms(policy.enquiry_delay(0, unit));
        return refuse(rec, enquire_at, code, format!("respcd {code}: retry budget of {budget} spent"))
            .with("retries", retries.to_string());
    }
    let advised = lookup(code).map_or(0, |e| i64::from(e.min_retry_delay_s) * 1000);
    let min_wait = policy.code_delay_cap.map_or(advised, |cap| advised.min(ms(cap)));
    let mut next = now + ms(policy.resubmit_delay(retries - 1, unit)).max(min_wait);
    if code == "1265" {
        // Inside the nightly window: try again after it (00:35 merchant time).
        next = next.max(after_refund_blackout(now / 1000, DEFAULT_OFFSET_SECS) * 1000);
    }
    if uncertain {
        // API §7: enquire first, to rule out that an earlier, unseen attempt succeeded; "not
        // found" then leads to the resend (with the usual patience), not before this wait.
        return Decision::new(
            State::Pending,
            Some(next.max(now + ms(policy.enquiry_delay(0, unit)))),
            format!("respcd {code}: retryable after an unseen attempt: enquiring before resend #{retries}"),
        )
        .with("retries", retries.to_string());
    }
    Decision::new(State::RetryWait, Some(next), format!("respcd {code}: retryable, resend #{retries}"))
        .with("retries", retries.to_string())
}

/// After a submit that this worker's lease covered.
pub fn after_submit(rec: &Record, result: &SubmitResult, policy: &Policy, now: i64, unit: f64) -> Decision {
    let enquire_at = now + ms(policy.enquiry_delay(0, unit));
    let resend_at = |n: u32| now + ms(policy.resubmit_delay(n, unit));
    let d = match result {
        SubmitResult::Answer(a) => {
            let code = a.respcd();
            let base = |state, next, reason: String| {
                Decision::new(state, next, reason)
                    .answer(code, a.resperr.as_deref())
                    .with("submit_code", code)
                    .with("not_found", "0")
            };
            // Answers that leave open whether this attempt took effect.
            let unsure = |d: Decision| d.with("uncertain", "1");
            // The answer's fields, with the state, time and reason another rule decided.
            let decided_by = |r: Decision| {
                let mut d = base(r.state, r.next_at, r.reason);
                d.set.extend(r.set);
                d
            };
            match classify(code, submitted_local(rec)) {
                // The answer must name our refund before it is booked (and counted against the
                // payment): the same check the enquiry path applies to QFPay's records.
                Class::Success => match crate::refund::ownership::not_ours(rec, a) {
                    Some(why) => unsure(base(State::NeedsReview, None, why)),
                    None => base(State::Succeeded, None, "refund accepted".into())
                        .with("refund_syssn", a.syssn.clone().unwrap_or_default())
                        .with("sysdtm", a.sysdtm.clone().unwrap_or_default()),
                },
                Class::InProgress if is_duplicate_code(code) => {
                    unsure(base(State::Pending, Some(enquire_at), format!("respcd {code}: id already used, enquiring")))
                }
                Class::InProgress => {
                    unsure(base(State::Pending, Some(enquire_at), format!("respcd {code}: processing")))
                }
                // A code raised where the refund may have been acted on (the bank, the channel, a
                // slow network): the attempt is uncertain, and is enquired before any resend.
                Class::Retryable { cap } if may_have_applied(code) => {
                    unsure(decided_by(retry(rec, policy, now, unit, code, cap, true)))
                }
                Class::Retryable { cap } => decided_by(retry(rec, policy, now, unit, code, cap, rec.uncertain)),
                Class::ManualReview => unsure(base(
                    State::NeedsReview,
                    None,
                    format!("respcd {code}: QFPay's notes say a person must look; the refund may have been applied"),
                )),
                Class::FinalFailure { reconcile: false } => {
                    decided_by(refuse(rec, enquire_at, code, format!("respcd {code}: refused")))
                }
                Class::FinalFailure { reconcile: true } => base(
                    State::Pending,
                    Some(enquire_at),
                    format!("respcd {code}: may echo an earlier success, enquiring before failing"),
                )
                .with("reconcile_code", code),
                Class::ConfigError => {
                    base(State::NeedsReview, None, format!("respcd {code}: configuration error, merchant paused"))
                        .pause()
                }
                Class::Unknown => unsure(
                    base(State::Pending, Some(enquire_at), format!("respcd {code}: unknown code, enquiring"))
                        .with("unknown_code", code),
                ),
            }
        }
        // Never sent: the submit the claim counted did not happen.
        SubmitResult::NotSent(e) => {
            Decision::new(State::RetryWait, Some(resend_at(rec.submits.saturating_sub(1))), "not sent")
                .with("last_error", format!("not sent: {e}"))
                .with("submits", rec.submits.saturating_sub(1).to_string())
        }
        SubmitResult::Unknown(e) => Decision::new(State::Pending, Some(enquire_at), "outcome unknown, enquiring")
            .with("last_error", e.clone())
            .with("not_found", "0")
            .with("uncertain", "1"),
        SubmitResult::RateLimited(after) => {
            let wait = ms(policy.resubmit_delay(rec.submits.saturating_sub(1), unit)).max(after.map_or(0, ms));
            Decision::new(State::RetryWait, Some(now + wait), "rate limited (429)").with("last_error", "HTTP 429")
        }
        // Nothing was sent either.
        SubmitResult::Misconfigured(e) => {
            Decision::new(State::NeedsReview, None, "client misconfigured, merchant paused")
                .with("last_error", e.clone())
                .with("submits", rec.submits.saturating_sub(1).to_string())
                .pause()
        }
    };
    age_limit(rec, d, policy, now)
}

/// Past the maximum age, anything not final goes to a person.
pub(crate) fn age_limit(rec: &Record, d: Decision, policy: &Policy, now: i64) -> Decision {
    if d.state.is_final() || d.state == State::NeedsReview || now - rec.age_from() < ms(policy.max_age) {
        return d;
    }
    let mut review =
        Decision::new(State::NeedsReview, None, format!("max age reached while {}: {}", d.state, d.reason));
    review.set = d.set;
    review
}
