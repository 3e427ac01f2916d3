//! Sending: a submit or an enquiry within the lease it was claimed under, the decision the pure
//! machine makes of the answer, and the transition that records it under the fence.

use std::time::{Duration, Instant};

use ledger::machine::{EnquiryResult, SubmitResult, after_enquiry, after_submit};
use ledger::payment_check::after_payment_check;
use ledger::{Decision, LedgerError, Record, State};
use qfpay::{Client, ClientError};
use tracing::{Instrument, info, info_span, warn};

use super::{LEASE_MARGIN, Processor, Step, ms};
use crate::guard::{self, Guarded};
use crate::requests::{self, class_name, describe_enquiry, describe_submit, enquiry_for};

/// The evidence of a request the lease cut off (never sent, or dropped in flight): what was
/// about to be sent, and why nothing came back.
fn cut_off<T>(mut e: qfpay::Evidence, answer: &Guarded<T>, sent: Instant) -> qfpay::Evidence {
    match answer {
        Guarded::Done(_) => {}
        Guarded::NotStarted => e.error = Some("the lease ran out before the request was sent".into()),
        Guarded::Expired => {
            e.took_ms = sent.elapsed().as_millis() as u64;
            e.error = Some("the lease ran out while the request was in flight".into());
        }
    }
    e
}

impl Processor {
    /// When (by this process' monotonic clock) a request must be over, with a margin, for the
    /// lease to still cover the transition after it. Taken as soon as the claim has answered, so
    /// a process stopped anywhere after the claim finds its lease spent when it wakes.
    pub(super) fn lease_deadline(&self, rec: &Record) -> Instant {
        let left = rec.lease_until - self.ledger.now_ms() - ms(LEASE_MARGIN);
        Instant::now() + Duration::from_millis(left.max(0) as u64)
    }

    /// Sends `request` if, and only while, the lease covers it (see [`guard::within_lease`]).
    pub(super) fn budget(&self, deadline: Instant) -> Option<Duration> {
        let left = deadline.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then(|| left.min(self.http_timeout))
    }

    /// `durable`: the claim reached the AOF and/or the replicas it had to (see [`ledger::durable`]).
    pub(super) async fn submit(
        &self,
        client: &Client,
        mchid: Option<&str>,
        rec: Record,
        fence: u64,
        durable: bool,
    ) -> Result<Step, LedgerError> {
        let deadline = self.lease_deadline(&rec);
        // The claim (submitting, with its txdtm) must survive a Redis crash or failover before
        // anything is sent: fsynced (WAITAOF) and/or held by replicas (WAIT), as configured.
        let mut evidence = None;
        let result = match requests::refund_request(&rec, mchid) {
            _ if !durable => SubmitResult::NotSent("the claim was not made durable (AOF, replicas) in time".into()),
            // Validated at enqueue and at start-up; if it still cannot be built, nothing was sent.
            Err(e) => SubmitResult::Misconfigured(e),
            Ok(req) => match self.budget(deadline) {
                // Stalled between the claim and here: the lease is spent, so nothing is sent.
                None => SubmitResult::NotSent("the lease ran out before the request was sent".into()),
                Some(within) => {
                    let sent = Instant::now();
                    let mut e = client.evidence("refund", &req.params());
                    let call = client.refund_evidenced(&req, Some(within), &mut e);
                    let call = call.instrument(info_span!("qfpay.refund", submit = rec.submits + 1));
                    let answer = guard::within_lease(deadline, call).await;
                    let took = sent.elapsed();
                    evidence = Some(cut_off(e, &answer, sent));
                    let result = match answer {
                        Guarded::Done(answer) => SubmitResult::from(answer),
                        Guarded::NotStarted => {
                            SubmitResult::NotSent("the lease ran out before the request was sent".into())
                        }
                        Guarded::Expired => {
                            SubmitResult::Unknown("the lease ran out while the request was in flight".into())
                        }
                    };
                    self.metrics.submitted(took, &result);
                    result
                }
            },
        };
        let decision = after_submit(&rec, &result, &self.policy, self.ledger.now_ms(), fastrand::f64());
        let decision = match &evidence {
            Some(e) => decision.with_evidence(e),
            None => decision,
        };
        info!(submit = rec.submits, result = %describe_submit(&result), next = %decision.state, "submitted");
        let ok = self.apply(&rec, State::Submitting, fence, &decision).await?;
        if !ok {
            self.keep_fenced_off(&rec, evidence.as_ref()).await;
        }
        Ok(if ok { Step::Submitted(decision.state) } else { Step::Fenced })
    }

    /// An enquiry of the refund, or, in its payment check, of its payment (see
    /// [`ledger::payment_check`]).
    pub(super) async fn enquire(
        &self,
        client: &Client,
        mchid: Option<&str>,
        rec: Record,
        fence: u64,
    ) -> Result<Step, LedgerError> {
        let deadline = self.lease_deadline(&rec);
        let request = if rec.payment_check {
            requests::payment_enquiry(&rec.syssn, rec.mchid.as_deref().or(mchid), self.ledger.now_ms())
        } else {
            enquiry_for(&rec, mchid, self.ledger.now_ms())
        };
        let mut evidence = None;
        let result = match (request, self.budget(deadline)) {
            (_, None) => EnquiryResult::Failed(ClientError::NotSent { reason: "the lease ran out".into() }),
            (Ok(req), Some(within)) => {
                let sent = Instant::now();
                let mut e = client.evidence("query", &req.params());
                let call = client.enquire_evidenced(&req, Some(within), &mut e);
                let call = call.instrument(info_span!("qfpay.query", payment_check = rec.payment_check));
                let answer = guard::within_lease(deadline, call).await;
                let took = sent.elapsed();
                evidence = Some(cut_off(e, &answer, sent));
                let result = match answer {
                    Guarded::Done(Ok(answer)) => EnquiryResult::Answer(answer),
                    Guarded::Done(Err(e)) => EnquiryResult::Failed(e),
                    Guarded::NotStarted | Guarded::Expired => {
                        EnquiryResult::Failed(ClientError::NotSent { reason: "the lease ran out".into() })
                    }
                };
                self.metrics.enquired(took, &result);
                result
            }
            (Err(e), _) => EnquiryResult::Failed(ClientError::Config(e)),
        };
        let now = self.ledger.now_ms();
        let decision = if rec.payment_check {
            after_payment_check(&rec, &result, &self.policy, now, fastrand::f64())
        } else {
            after_enquiry(&rec, &result, &self.policy, now, fastrand::f64())
        };
        let decision = match &evidence {
            Some(e) => decision.with_evidence(e),
            None => decision,
        };
        info!(enquiry = rec.enquiries, payment_check = rec.payment_check, result = %describe_enquiry(&rec, &result),
            next = %decision.state, "enquired");
        let ok = self.apply(&rec, State::Pending, fence, &decision).await?;
        if !ok {
            self.keep_fenced_off(&rec, evidence.as_ref()).await;
        }
        Ok(if ok { Step::Enquired(decision.state) } else { Step::Fenced })
    }

    /// A request whose answer was fenced off still happened: its evidence is kept, marked so,
    /// for a dispute (the refund's outcome is the other worker's).
    async fn keep_fenced_off(&self, rec: &Record, evidence: Option<&qfpay::Evidence>) {
        let Some(e) = evidence else { return };
        match self.ledger.keep_fenced_off_evidence(rec, e).await {
            Ok(true) => {}
            Ok(false) => warn!("the fenced-off request's evidence was not kept: the refund is no longer in Redis"),
            Err(err) => warn!(error = %err, "could not keep the fenced-off request's evidence"),
        }
    }

    /// Writes the decision. A Redis hiccup here is retried for a while: the answer we hold is worth
    /// keeping (the same operation id makes a retry land once). If Redis stays away, the lease
    /// expires and another worker enquires — QFPay's records, not our memory, settle it.
    #[tracing::instrument(name = "transition", skip_all, fields(from = %expected, to = %d.state, fence = fence))]
    pub(super) async fn apply(
        &self,
        rec: &Record,
        expected: State,
        fence: u64,
        d: &Decision,
    ) -> Result<bool, LedgerError> {
        let deadline = std::time::Instant::now() + self.policy.lease / 2;
        let mut delay = Duration::from_millis(50);
        let op = format!("{}:{fence}:{:016x}", self.worker_id, fastrand::u64(..));
        loop {
            match self.ledger.transition(rec, expected, fence, d, &op).await {
                Ok(true) => {
                    if d.state == State::NeedsReview {
                        warn!(reason = %d.reason, "needs review");
                    }
                    if d.state.is_final() || d.state == State::NeedsReview {
                        let code = d.set.iter().find(|(k, _)| *k == "respcd").map(|(_, v)| v.as_str());
                        let code = code.or(rec.respcd.as_deref()).filter(|c| !c.is_empty());
                        let age = self.ledger.now_ms() - rec.created_at;
                        self.metrics.settled(d.state.as_str(), class_name(code), age);
                    }
                    return Ok(true);
                }
                Ok(false) => {
                    warn!(fence, "fenced off: another worker took this refund over; our result is dropped");
                    self.metrics.fenced();
                    return Ok(false);
                }
                Err(LedgerError::Redis(e)) if std::time::Instant::now() < deadline => {
                    warn!(error = %e, "could not record the outcome yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
