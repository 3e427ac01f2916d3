//! The ledger as an apalis backend: fetching is claiming.
//!
//! [`LedgerBackend`] implements apalis-core's [`Backend`]: when the worker has room, it claims up
//! to that many due refunds in one call ([`Processor::fetch`] → `Ledger::claim_due`) and hands each
//! claim to apalis as a task; completing the task is the refund's transition. There is no second
//! queue and no heartbeat: a worker that dies leaves leases that expire, and the refund is due
//! again for whoever fetches next.
//!
//! When nothing is due, the backend waits — for a producer's wake-up, for one of this worker's
//! own steps to finish (it may have scheduled the next step soon), or until the earliest refund in
//! the due-index is due, whichever comes first; never on a fixed poll.
//!
//! A Redis error while fetching never ends the stream (apalis would then drop the steps in
//! flight): the backend logs it, backs off and fetches again. Each step runs on a task of its own
//! (see `runner`), so nothing that has claimed is ever cancelled by the runtime.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::{Backend, BackendConfig, finalize::Ephemeral};
use apalis_core::task::Task;
use apalis_core::task::task_id::RandomId;
use apalis_core::worker::context::WorkerContext;
use ledger::{LedgerError, Waiter};
use tokio::sync::Mutex;
use tracing::warn;

use crate::job::Job;
use crate::processor::{Batch, Processor};

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

enum Phase {
    /// Fetch when polled.
    Idle,
    Fetching(Boxed<Result<Batch, LedgerError>>),
    Waiting(Boxed<()>),
    /// Shutting down: releasing claims apalis never took.
    Closing(Boxed<()>),
}

/// How the backend fetches.
#[derive(Debug, Clone, Copy)]
pub struct FetchPolicy {
    /// At most this many steps in flight (the worker's concurrency).
    pub concurrency: usize,
    /// At most this many claims per fetch (one script call).
    pub batch: usize,
    /// The longest an idle backend waits before it looks again, whatever else happens (a safety
    /// net for a lost wake-up; due times and wake-ups normally end a wait much sooner).
    pub idle_wait: Duration,
}

/// The apalis backend over the ledger. See the module notes.
pub struct LedgerBackend {
    processor: Arc<Processor>,
    policy: FetchPolicy,
    in_flight: Arc<AtomicUsize>,
    ready: VecDeque<Job>,
    phase: Phase,
    waiter: Arc<Mutex<Waiter>>,
    backoff: Duration,
}

impl std::fmt::Debug for LedgerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerBackend")
            .field("policy", &self.policy)
            .field("in_flight", &self.in_flight.load(Ordering::SeqCst))
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl LedgerBackend {
    pub fn new(processor: Arc<Processor>, policy: FetchPolicy) -> Self {
        let waiter = Arc::new(Mutex::new(processor.ledger.waiter()));
        Self {
            processor,
            policy,
            in_flight: Arc::new(AtomicUsize::new(0)),
            ready: VecDeque::new(),
            phase: Phase::Idle,
            waiter,
            backoff: Duration::from_millis(100),
        }
    }

    /// Steps claimed and not yet finished (or never started).
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    fn room(&self) -> usize {
        let busy = self.in_flight.load(Ordering::SeqCst);
        self.policy.concurrency.saturating_sub(busy).min(self.policy.batch).max(1)
    }

    /// Waits until `due` (ms, the earliest refund in the due-index), a wake-up or a nudge.
    fn wait_until(&self, due: Option<i64>) -> Boxed<()> {
        let ledger_now = self.processor.ledger.now_ms();
        let cap = self.policy.idle_wait;
        let wait = due.map_or(cap, |at| Duration::from_millis((at - ledger_now).max(1) as u64).min(cap));
        let (waiter, nudge) = (self.waiter.clone(), self.processor.nudge());
        Box::pin(async move {
            waiter.lock().await.wait(wait, &nudge).await;
        })
    }
}

impl Backend for LedgerBackend {
    type Task = Task<Job>;
    type Error = std::convert::Infallible;

    fn poll_ready(&mut self, _: &mut Context<'_>, _: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, _: &WorkerContext) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        loop {
            if let Some(job) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(Task::new(job))));
            }
            match &mut self.phase {
                Phase::Idle => {
                    let (processor, room) = (self.processor.clone(), self.room());
                    self.phase = Phase::Fetching(Box::pin(async move { processor.fetch(room).await }));
                }
                Phase::Fetching(f) => {
                    let fetched = std::task::ready!(f.as_mut().poll(cx));
                    self.phase = match fetched {
                        Ok(batch) => {
                            self.backoff = Duration::from_millis(100);
                            let more = batch.looked_at >= batch.limit;
                            for claimed in batch.tasks {
                                let job = Job::new(claimed, &self.in_flight);
                                self.ready.push_back(job);
                            }
                            // Looked at as many as it could take: more may be due now.
                            if more { Phase::Idle } else { Phase::Waiting(self.wait_until(batch.next_due)) }
                        }
                        Err(e) => {
                            warn!(error = %e, retry_in = ?self.backoff, "fetching due refunds failed; trying again");
                            let delay = self.backoff;
                            self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                            Phase::Waiting(Box::pin(tokio::time::sleep(delay)))
                        }
                    };
                }
                Phase::Waiting(f) => {
                    std::task::ready!(f.as_mut().poll(cx));
                    self.phase = Phase::Idle;
                }
                Phase::Closing(_) => return Poll::Pending,
            }
        }
    }

    /// Claims apalis never took (it stopped asking during a shutdown) are released at once —
    /// a submit never sent goes back to be sent, an enquiry is due again — instead of waiting for
    /// their leases to expire.
    fn poll_close(&mut self, cx: &mut Context<'_>, _: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        if !matches!(self.phase, Phase::Closing(_)) {
            let left: Vec<Job> = self.ready.drain(..).collect();
            let processor = self.processor.clone();
            self.phase = Phase::Closing(Box::pin(async move { processor.release(left).await }));
        }
        match &mut self.phase {
            Phase::Closing(f) => f.as_mut().poll(cx).map(Ok),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl BackendConfig for LedgerBackend {
    type Args = Job;
    type Id = RandomId;
    type Kind = Ephemeral;
    type Config = FetchPolicy;
    type Layer = tower::layer::util::Identity;

    fn config(&self) -> &Self::Config {
        &self.policy
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        tower::layer::util::Identity::new()
    }
}
