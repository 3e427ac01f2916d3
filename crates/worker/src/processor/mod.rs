//! The handler: one refund, one step. Load → claim (the script decides submit or enquire on the
//! record as it then is) → call QFPay within the lease → classify → transition under the fence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ledger::machine::{EnquiryResult, SubmitResult, after_enquiry, after_submit};
use ledger::{Claim, ClaimOptions, Claimed, Ledger, LedgerError, Policy, Record, RefundRef, State};
use qfpay::time::{DEFAULT_OFFSET_SECS, after_refund_blackout, near_refund_blackout};
use qfpay::{Client, ClientError, Credentials, Txdtm};
use tracing::{Instrument, info, info_span, warn};

mod detours;
mod send;

use crate::config::{Merchant, WorkerConfig};
use crate::job::Job;
use crate::metrics::Metrics;

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
pub(super) const LEASE_MARGIN: Duration = Duration::from_millis(300);

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
    /// The merchants this worker holds credentials for, `\n`-separated (what claims check).
    served: String,
    /// The shards this worker fetches from, and where the next fetch starts (round robin, so a
    /// busy shard never starves another).
    shards: Vec<usize>,
    next_shard: std::sync::atomic::AtomicUsize,
    /// Notified when a step ends: an idle fetcher looks again (the step may have scheduled its
    /// refund's next step before anything else was due).
    nudge: Arc<tokio::sync::Notify>,
}

/// What one fetch brought: the claims to run, and what the fetcher needs to know to go on.
#[derive(Debug)]
pub struct Batch {
    /// Claims that hand this worker a request to send.
    pub tasks: Vec<Claimed>,
    /// Refunds the fetch looked at (tasks, and those it deferred, refused or sent to review): as
    /// many as it asked for means more may be due.
    pub looked_at: usize,
    /// When the earliest refund left in the due-index is due (ms).
    pub next_due: Option<i64>,
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
        let ledger_shards = ledger.shard_count();
        let mut served: Vec<&str> = config.merchants.keys().map(String::as_str).collect();
        served.sort_unstable();
        let served = served.join("\n");
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
            served,
            shards: config.serve_shards.clone().unwrap_or_else(|| (0..ledger_shards).collect()),
            next_shard: std::sync::atomic::AtomicUsize::new(0),
            nudge: Arc::new(tokio::sync::Notify::new()),
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

    pub(crate) fn nudge(&self) -> Arc<tokio::sync::Notify> {
        self.nudge.clone()
    }

    /// The shards this worker fetches from.
    pub fn shards(&self) -> &[usize] {
        &self.shards
    }

    /// Claims up to `limit` due refunds for this worker (one round trip per shard it looks at;
    /// see `Ledger::claim_due`): from the shard whose turn it is, then the next ones while the
    /// limit is not reached, each shard at most once. What needs no request (deferred, refused,
    /// sent to review) was dealt with by the same call and is only counted and logged here.
    pub async fn fetch(&self, limit: usize) -> Result<Batch, LedgerError> {
        let (txdtm, not_before) = self.submit_time();
        let options = self.options(&txdtm, not_before, self.learn_paid);
        let n = self.shards.len().max(1);
        let first = self.next_shard.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut claims = Vec::new();
        let mut next_due: Option<i64> = None;
        let mut failed = None;
        for turn in 0..n {
            let Some(&shard) = self.shards.get((first + turn) % n) else { break };
            // One shard's error (unreachable, a slot migrating) never costs the claims already
            // taken from the others: they are persisted, and are run.
            let fetched = match self.ledger.claim_due(shard, limit - claims.len(), &options).await {
                Ok(f) => f,
                Err(e) => {
                    warn!(shard, error = %e, "fetching from a shard failed; the other shards go on");
                    failed = Some(e);
                    continue;
                }
            };
            claims.extend(fetched.claims);
            next_due = match (next_due, fetched.next_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if claims.len() >= limit {
                break;
            }
        }
        if claims.is_empty()
            && let Some(e) = failed.take()
        {
            return Err(e);
        }
        // A shard that failed may have refunds due: the fetcher must not take this as drained.
        let looked_at = if failed.is_some() { limit } else { claims.len() };
        let mut tasks = Vec::with_capacity(claims.len());
        for c in claims {
            if c.is_task() {
                tasks.push(c);
            } else {
                let span = info_span!("refund", out_trade_no = %c.target.out_trade_no, merchant = %c.target.merchant);
                let _entered = span.enter();
                self.report(c.claim);
            }
        }
        Ok(Batch { tasks, looked_at, next_due })
    }

    /// Runs the step a fetch claimed. Errors are Redis errors: the refund keeps its lease, which
    /// expires, and it is due again; nothing is lost by returning early.
    pub async fn run(&self, job: Job) -> Result<Step, LedgerError> {
        let Job { claimed, slot } = job;
        let target = &claimed.target;
        let span = info_span!(
            "refund",
            out_trade_no = %target.out_trade_no,
            merchant = %target.merchant,
            attempt = tracing::field::Empty,
            state = tracing::field::Empty,
            worker = %self.worker_id
        );
        let step = self.step(claimed).instrument(span).await;
        drop(slot);
        self.nudge.notify_one();
        step
    }

    /// Gives back claims that were never run (a shutdown between the fetch and the start): a
    /// submit that was never sent is due again to be sent, an enquiry is due again.
    pub(crate) async fn release(&self, jobs: Vec<Job>) {
        for job in jobs {
            let step = match job.claimed.claim {
                Claim::Submit { fence, record, .. } => {
                    let result = SubmitResult::NotSent("the worker shut down before sending it".into());
                    let d = after_submit(&record, &result, &self.policy, self.ledger.now_ms(), fastrand::f64());
                    self.apply(&record, State::Submitting, fence, &d).await
                }
                Claim::Enquire { fence, record, .. } => {
                    // The enquiry the claim counted did not happen.
                    let reason = "the worker shut down before sending it".into();
                    let result = EnquiryResult::Failed(ClientError::NotSent { reason });
                    let not_sent = Record { enquiries: record.enquiries.saturating_sub(1), ..(*record).clone() };
                    let d = after_enquiry(&not_sent, &result, &self.policy, self.ledger.now_ms(), fastrand::f64())
                        .with("enquiries", not_sent.enquiries.to_string());
                    self.apply(&record, State::Pending, fence, &d).await
                }
                _ => Ok(true),
            };
            if let Err(e) = step {
                warn!(out_trade_no = %job.claimed.target.out_trade_no, error = %e,
                    "could not give back an unstarted claim; its lease will expire");
            }
        }
    }

    /// One step on a claimed refund. The hot path is the fetch's claim and then the transition;
    /// a claim is made again only after learning a payment's amount, or when the record changed.
    async fn step(&self, first: Claimed) -> Result<Step, LedgerError> {
        self.metrics.step();
        let Claimed { mut target, mut claim } = first;
        // At most: a payment-amount enquiry, then a mismatch re-read, then the claim that counts.
        for _ in 0..3 {
            let Some((client, mchid)) = self.clients.get(&target.merchant) else {
                return self.no_credentials(&target).await;
            };
            if let Claim::Submit { record, .. } | Claim::Enquire { record, .. } = &claim {
                let span = tracing::Span::current();
                span.record("attempt", record.submits + record.enquiries);
                span.record("state", record.state.as_str());
                if let Some(due) = record.due_at {
                    self.metrics.lag(self.ledger.now_ms() - due);
                }
            }
            claim = match claim {
                Claim::Submit { fence, record, durable } => {
                    let span = attempt_span(&record, "submit", fence);
                    return self.submit(client, mchid.as_deref(), *record, fence, durable).instrument(span).await;
                }
                Claim::Enquire { fence, record, recovered, .. } => {
                    if recovered {
                        info!("found in submitting after its holder's lease expired: enquiring, never resending");
                        self.metrics.orphan_recovered();
                    }
                    let span = attempt_span(&record, "enquire", fence);
                    return self.enquire(client, mchid.as_deref(), *record, fence).instrument(span).await;
                }
                Claim::NeedPaid => {
                    if let Err(why) = self.learn_paid(client, mchid.as_deref(), &target).await? {
                        return self.misconfigured(&target, &why).await;
                    }
                    self.claim(&target, false).await?
                }
                Claim::Mismatch => match self.ledger.get_ref(&target).await? {
                    Some(rec) => {
                        target = RefundRef::from(&rec);
                        self.claim(&target, false).await?
                    }
                    None => return Ok(Step::Nothing("no such refund".into())),
                },
                other => return Ok(self.report(other)),
            };
        }
        Ok(Step::Nothing("the record kept changing under the claim; it stays due".into()))
    }

    /// What a claim that sends nothing means, counted and logged.
    fn report(&self, claim: Claim) -> Step {
        match claim {
            Claim::Failed(why) => {
                info!(%why, "refused before sending");
                Step::Refused(why)
            }
            Claim::Blocked(why) => {
                warn!(%why, "needs review");
                Step::Review(why)
            }
            Claim::Deferred { why, cause, .. } => {
                match cause {
                    ledger::Deferral::RateLimit => self.metrics.rate_limited(),
                    ledger::Deferral::NoCredentials => warn!(%why, "deferred"),
                    _ => {}
                }
                Step::Deferred(why)
            }
            Claim::Skip(why @ ledger::Skipped::Broken(_)) => {
                tracing::error!(reason = %why, "a refund could not be claimed");
                Step::Nothing(why.to_string())
            }
            Claim::Skip(why) => Step::Nothing(why.to_string()),
            other => Step::Nothing(format!("unexpected claim {other:?}")),
        }
    }

    /// The `txdtm` a first submit would record now, and the nightly window: it only ever holds
    /// back a submit.
    fn submit_time(&self) -> (String, i64) {
        let now = self.ledger.now_ms();
        let local = Txdtm::from_unix(now.div_euclid(1000), DEFAULT_OFFSET_SECS);
        let not_before = if self.quiet_window && near_refund_blackout(local) {
            after_refund_blackout(now.div_euclid(1000), DEFAULT_OFFSET_SECS) * 1000
        } else {
            0
        };
        (local.to_string(), not_before)
    }

    fn options<'a>(&'a self, txdtm: &'a str, not_before: i64, want_paid: bool) -> ClaimOptions<'a> {
        ClaimOptions {
            worker: &self.worker_id,
            policy: &self.policy,
            txdtm,
            want_paid,
            submit_not_before: not_before,
            rate: Some((self.rate_per_sec, self.rate_burst)),
            durable_local: self.durable_claims,
            served: &self.served,
        }
    }

    /// Claims one named refund again (after learning its payment's amount, or a changed record).
    async fn claim(&self, target: &RefundRef, want_paid: bool) -> Result<Claim, LedgerError> {
        let (txdtm, not_before) = self.submit_time();
        self.ledger.claim(target, &self.options(&txdtm, not_before, want_paid)).await
    }
}

pub(crate) fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// The span of one attempt on a refund (a submit or an enquiry, and the transition after it):
/// in the producer's trace when the refund came with one (its `traceparent`), so that the
/// claim, the QFPay call and the transition join it and the log lines carry its trace id.
fn attempt_span(record: &Record, kind: &'static str, fence: u64) -> tracing::Span {
    let span = info_span!("attempt", kind, fence, trace_id = tracing::field::Empty);
    // Joined before it is first entered: a span's parent is fixed once it has begun.
    if let Some(trace_id) =
        record.traceparent.as_deref().and_then(|tp| qfrefund_telemetry::traces::join_trace(&span, tp))
    {
        span.record("trace_id", tracing::field::display(&trace_id));
    }
    // What the fetch claimed for this worker, as a step of the attempt.
    span.in_scope(|| drop(info_span!("claim", kind, fence).entered()));
    span
}
