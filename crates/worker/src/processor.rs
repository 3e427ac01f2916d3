//! The handler: one refund, one step. Load → claim (the script decides submit or enquire on the
//! record as it then is) → call QFPay within the lease → classify → transition under the fence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::machine::{EnquiryResult, SubmitResult, after_enquiry, after_submit};
use ledger::payment_check::after_payment_check;
use ledger::{Claim, ClaimOptions, Decision, Ledger, LedgerError, Policy, Record, RefundRef, State};
use qfpay::time::{DEFAULT_OFFSET_SECS, after_refund_blackout, near_refund_blackout};
use qfpay::{Client, ClientError, Credentials, Txdtm};
use tracing::{Instrument, info, info_span, warn};

use crate::config::{Merchant, WorkerConfig};
use crate::feeder::Job;
use crate::guard::{self, Guarded};
use crate::metrics::Metrics;
use crate::requests::{self, class_name, describe_enquiry, describe_submit, enquiry_for};

/// What one step did (for logs, metrics and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Submitted; the record is now in this state.
    Submitted(State),
    /// Enquired; the record is now in this state.
    Enquired(State),
    /// Moved to a later time without a transition (rate limit, nightly window, busy payment, pause).
    Deferred(String),
    /// Failed before sending (over-refund): never sent.
    Refused(String),
    /// It waited past its maximum age (paused merchant, busy payment, no credentials): now in
    /// `needs_review`.
    Review(String),
    /// Our write was refused: another worker holds the refund now.
    Fenced,
    /// Nothing to do (final, held by someone, not due, or unknown).
    Nothing(String),
}

/// Time kept between the end of a request and the end of its lease, for the transition after it.
const LEASE_MARGIN: Duration = Duration::from_millis(300);

/// Everything the handler needs, shared by all in-flight refunds of a process.
pub struct Processor {
    pub(crate) ledger: Ledger,
    pub(crate) policy: Policy,
    clients: HashMap<String, (Client, Option<String>)>,
    pub(crate) worker_id: String,
    rate_per_sec: f64,
    rate_burst: u32,
    quiet_window: bool,
    learn_paid: bool,
    http_timeout: Duration,
    /// Redis can fsync on demand (`WAITAOF`): make each claim durable before sending, so a Redis
    /// crash cannot roll a sent refund back to `queued`.
    durable_claims: bool,
    metrics: Arc<Metrics>,
    /// At most `concurrency` steps at once in this process, whoever delivered them (apalis or the
    /// feeder's direct path).
    gate: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").field("worker_id", &self.worker_id).finish_non_exhaustive()
    }
}

impl Processor {
    /// Builds the per-merchant clients over one connection pool.
    pub fn new(ledger: Ledger, config: &WorkerConfig, worker_id: String) -> Result<Self, ClientError> {
        let pool = Client::pool(&config.http)?;
        let mut clients = HashMap::new();
        for m in config.merchants.values() {
            let Merchant { name, app_code, key, mchid, base_url, alg, .. } = m.clone();
            let client = Client::new(pool.clone(), &base_url, Credentials { app_code, key, alg })?;
            clients.insert(name, (client, mchid));
        }
        Ok(Self {
            ledger,
            policy: config.policy.clone(),
            clients,
            worker_id,
            rate_per_sec: config.rate_per_sec,
            rate_burst: config.rate_burst,
            quiet_window: config.quiet_window,
            learn_paid: config.learn_paid,
            http_timeout: config.http.timeout,
            durable_claims: false,
            metrics: Arc::new(Metrics::default()),
            gate: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
        })
    }

    /// What this process has counted (served on `/metrics`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Waits for each claim to reach the AOF before sending (see [`ledger::ServerInfo::waitaof`]).
    pub fn with_durable_claims(mut self, on: bool) -> Self {
        self.durable_claims = on;
        self
    }

    /// Takes one step on the refund a job names. Errors are Redis errors: the refund stays in the
    /// due-index and comes back; nothing is lost by returning early.
    pub async fn process(&self, job: &Job) -> Result<Step, LedgerError> {
        // The semaphore is never closed; without a permit the step is not taken (it stays due).
        let Ok(_permit) = self.gate.acquire().await else {
            return Ok(Step::Nothing("shutting down".into()));
        };
        let span = info_span!(
            "refund",
            out_trade_no = %job.otn,
            merchant = job.merchant.as_deref().unwrap_or(""),
            attempt = tracing::field::Empty,
            state = tracing::field::Empty,
            worker = %self.worker_id
        );
        self.step(job).instrument(span).await
    }

    /// The hot path is two round trips to Redis: the claim (which reads the record and takes the
    /// rate-limit token itself), then the transition. The record is read separately only for jobs
    /// from before the feeder named the payment and merchant, and on the rare paths below.
    async fn step(&self, job: &Job) -> Result<Step, LedgerError> {
        self.metrics.step();
        let mut target = match (&job.syssn, &job.merchant) {
            (Some(syssn), Some(merchant)) => {
                RefundRef { out_trade_no: job.otn.clone(), syssn: syssn.clone(), merchant: merchant.clone() }
            }
            _ => match self.ledger.get(&job.otn).await? {
                Some(rec) => RefundRef::from(&rec),
                None => return Ok(Step::Nothing("no such refund".into())),
            },
        };
        let mut want_paid = self.learn_paid;
        // At most: a mismatch re-read, then a payment-amount enquiry, then the claim that counts.
        for _ in 0..3 {
            let Some((client, mchid)) = self.clients.get(&target.merchant) else {
                return self.no_credentials(&target).await;
            };
            let claim = self.claim(&target, want_paid).await?;
            if let Claim::Submit { record, .. } | Claim::Enquire { record, .. } = &claim {
                let span = tracing::Span::current();
                span.record("merchant", record.merchant.as_str());
                span.record("attempt", record.submits + record.enquiries);
                span.record("state", record.state.as_str());
                if let Some(due) = record.due_at {
                    self.metrics.lag(self.ledger.now_ms() - due);
                }
                if let Claim::Enquire { recovered: true, .. } = &claim {
                    info!("found in submitting after its holder's lease expired: enquiring, never resending");
                    self.metrics.orphan_recovered();
                }
            }
            if let Claim::Deferred { cause: ledger::Deferral::RateLimit, .. } = &claim {
                self.metrics.rate_limited();
            }
            return match claim {
                Claim::Submit { fence, record, durable } => {
                    self.submit(client, mchid.as_deref(), *record, fence, durable).await
                }
                Claim::Enquire { fence, record, .. } => self.enquire(client, mchid.as_deref(), *record, fence).await,
                Claim::NeedPaid => {
                    if let Err(why) = self.learn_paid(client, mchid.as_deref(), &target).await? {
                        return self.misconfigured(&target, &why).await;
                    }
                    want_paid = false;
                    continue;
                }
                Claim::Mismatch => match self.ledger.get(&target.out_trade_no).await? {
                    Some(rec) => {
                        target = RefundRef::from(&rec);
                        continue;
                    }
                    None => Ok(Step::Nothing("no such refund".into())),
                },
                Claim::Failed(why) => {
                    info!(%why, "refused before sending");
                    Ok(Step::Refused(why))
                }
                Claim::Blocked(why) => {
                    warn!(%why, "needs review");
                    Ok(Step::Review(why))
                }
                Claim::Deferred { why, .. } => Ok(Step::Deferred(why)),
                Claim::Skip(why) => Ok(Step::Nothing(why)),
            };
        }
        Ok(Step::Nothing("the record kept changing under the claim; it stays due".into()))
    }

    /// The claim decides between submit and enquiry on the record as it is then; the nightly
    /// window only ever holds back a submit.
    async fn claim(&self, target: &RefundRef, want_paid: bool) -> Result<Claim, LedgerError> {
        let now = self.ledger.now_ms();
        let local = Txdtm::from_unix(now.div_euclid(1000), DEFAULT_OFFSET_SECS);
        let submit_not_before = if self.quiet_window && near_refund_blackout(local) {
            after_refund_blackout(now.div_euclid(1000), DEFAULT_OFFSET_SECS) * 1000
        } else {
            0
        };
        let txdtm = local.to_string();
        let options = ClaimOptions {
            worker: &self.worker_id,
            policy: &self.policy,
            txdtm: &txdtm,
            want_paid,
            submit_not_before,
            rate: Some((self.rate_per_sec, self.rate_burst)),
            durable_local: self.durable_claims,
        };
        self.ledger.claim(target, &options).await
    }

    /// When (by this process' monotonic clock) a request must be over, with a margin, for the
    /// lease to still cover the transition after it. Taken as soon as the claim has answered, so
    /// a process stopped anywhere after the claim finds its lease spent when it wakes.
    fn lease_deadline(&self, rec: &Record) -> Instant {
        let left = rec.lease_until - self.ledger.now_ms() - ms(LEASE_MARGIN);
        Instant::now() + Duration::from_millis(left.max(0) as u64)
    }

    /// Sends `request` if, and only while, the lease covers it (see [`guard::within_lease`]).
    fn budget(&self, deadline: Instant) -> Option<Duration> {
        let left = deadline.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then(|| left.min(self.http_timeout))
    }

    /// `durable`: the claim reached the AOF and/or the replicas it had to (see [`ledger::durable`]).
    async fn submit(
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
        let result = match requests::refund_request(&rec, mchid) {
            _ if !durable => SubmitResult::NotSent("the claim was not made durable (AOF, replicas) in time".into()),
            // Validated at enqueue and at start-up; if it still cannot be built, nothing was sent.
            Err(e) => SubmitResult::Misconfigured(e),
            Ok(req) => match self.budget(deadline) {
                // Stalled between the claim and here: the lease is spent, so nothing is sent.
                None => SubmitResult::NotSent("the lease ran out before the request was sent".into()),
                Some(within) => {
                    let sent = Instant::now();
                    let answer = guard::within_lease(deadline, client.refund_within(&req, Some(within))).await;
                    self.metrics.submitted(sent.elapsed());
                    match answer {
                        Guarded::Done(answer) => SubmitResult::from(answer),
                        Guarded::NotStarted => {
                            SubmitResult::NotSent("the lease ran out before the request was sent".into())
                        }
                        Guarded::Expired => {
                            SubmitResult::Unknown("the lease ran out while the request was in flight".into())
                        }
                    }
                }
            },
        };
        let decision = after_submit(&rec, &result, &self.policy, self.ledger.now_ms(), fastrand::f64());
        info!(submit = rec.submits, result = %describe_submit(&result), next = %decision.state, "submitted");
        self.apply(&rec, State::Submitting, fence, &decision)
            .await
            .map(|ok| if ok { Step::Submitted(decision.state) } else { Step::Fenced })
    }

    /// An enquiry of the refund, or, in its payment check, of its payment (see
    /// [`ledger::payment_check`]).
    async fn enquire(
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
        let result = match (request, self.budget(deadline)) {
            (_, None) => EnquiryResult::Failed(ClientError::NotSent { reason: "the lease ran out".into() }),
            (Ok(req), Some(within)) => {
                let sent = Instant::now();
                let answer = guard::within_lease(deadline, client.enquire_within(&req, Some(within))).await;
                self.metrics.enquired(sent.elapsed());
                match answer {
                    Guarded::Done(Ok(answer)) => EnquiryResult::Answer(answer),
                    Guarded::Done(Err(e)) => EnquiryResult::Failed(e),
                    Guarded::NotStarted | Guarded::Expired => {
                        EnquiryResult::Failed(ClientError::NotSent { reason: "the lease ran out".into() })
                    }
                }
            }
            (Err(e), _) => EnquiryResult::Failed(ClientError::Config(e)),
        };
        let now = self.ledger.now_ms();
        let decision = if rec.payment_check {
            after_payment_check(&rec, &result, &self.policy, now, fastrand::f64())
        } else {
            after_enquiry(&rec, &result, &self.policy, now, fastrand::f64())
        };
        info!(enquiry = rec.enquiries, payment_check = rec.payment_check, result = %describe_enquiry(&rec, &result),
            next = %decision.state, "enquired");
        self.apply(&rec, State::Pending, fence, &decision)
            .await
            .map(|ok| if ok { Step::Enquired(decision.state) } else { Step::Fenced })
    }

    /// Writes the decision. A Redis hiccup here is retried for a while: the answer we hold is worth
    /// keeping (the same operation id makes a retry land once). If Redis stays away, the lease
    /// expires and another worker enquires — QFPay's records, not our memory, settle it.
    async fn apply(&self, rec: &Record, expected: State, fence: u64, d: &Decision) -> Result<bool, LedgerError> {
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

pub(crate) fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}
