//! The ledger as an apalis backend: fetching is claiming.
//!
//! [`LedgerBackend`] implements apalis-core's [`Backend`]: when the worker has room, it claims up
//! to that many due refunds in one call ([`Processor::fetch`] → `Ledger::claim_due`) and hands each
//! claim to apalis as a task; completing the task is the refund's transition. There is no second
//! queue and no heartbeat: a worker that dies leaves leases that expire, and the refund is due
//! again for whoever fetches next. A few fetches may be in flight at once, each reserving the room
//! it asked for, so a busy worker's claims overlap their round trips while every script call stays
//! short (at most `batch` claims).
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
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use ledger::{LedgerError, Waiter};
use tokio::sync::Mutex;
use tracing::warn;

use crate::job::Job;
use crate::processor::{Batch, Processor};

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// At most this many fetches in flight at once.
const MAX_FETCHES: usize = 4;

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
    /// Fetches in flight, each with the room it reserved.
    fetches: FuturesUnordered<Boxed<(usize, Result<Batch, LedgerError>)>>,
    reserved: usize,
    /// The last fetch found nothing more due now: wait (for `next_due`, a wake-up or a nudge).
    drained: bool,
    next_due: Option<i64>,
    waiting: Option<Boxed<()>>,
    closing: Option<Boxed<()>>,
    waiter: Arc<Mutex<Waiter>>,
    backoff: Duration,
}

impl std::fmt::Debug for LedgerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerBackend")
            .field("policy", &self.policy)
            .field("in_flight", &self.in_flight.load(Ordering::SeqCst))
            .field("ready", &self.ready.len())
            .field("fetches", &self.fetches.len())
            .finish_non_exhaustive()
    }
}

impl LedgerBackend {
    pub fn new(processor: Arc<Processor>, policy: FetchPolicy) -> Self {
        let waiter = Arc::new(Mutex::new(processor.ledger.waiter(processor.shards())));
        Self {
            processor,
            policy,
            in_flight: Arc::new(AtomicUsize::new(0)),
            ready: VecDeque::new(),
            fetches: FuturesUnordered::new(),
            reserved: 0,
            drained: false,
            next_due: None,
            waiting: None,
            closing: None,
            waiter,
            backoff: Duration::from_millis(100),
        }
    }

    /// Steps claimed and not yet finished (or never started).
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    /// Slots neither running a step nor reserved by a fetch in flight.
    fn room(&self) -> usize {
        let busy = self.in_flight.load(Ordering::SeqCst) + self.reserved;
        self.policy.concurrency.saturating_sub(busy)
    }

    /// Starts a fetch of up to `limit` claims, reserving that room until it answers.
    fn start_fetch(&mut self, limit: usize) {
        let processor = self.processor.clone();
        self.reserved += limit;
        self.fetches.push(Box::pin(async move { (limit, processor.fetch(limit).await) }));
    }

    /// Takes in what a fetch brought.
    fn took(&mut self, limit: usize, fetched: Result<Batch, LedgerError>) {
        self.reserved = self.reserved.saturating_sub(limit);
        match fetched {
            Ok(batch) => {
                self.backoff = Duration::from_millis(100);
                // It looked at fewer than it could take: nothing more is due now.
                self.drained = batch.looked_at < limit;
                self.next_due = batch.next_due;
                for claimed in batch.tasks {
                    let job = Job::new(claimed, &self.in_flight);
                    self.ready.push_back(job);
                }
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?self.backoff, "fetching due refunds failed; trying again");
                let delay = self.backoff;
                self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                self.drained = true;
                self.waiting = Some(Box::pin(tokio::time::sleep(delay)));
            }
        }
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
            if self.closing.is_some() {
                return Poll::Pending;
            }
            if let Poll::Ready(Some((limit, fetched))) = self.fetches.poll_next_unpin(cx) {
                self.took(limit, fetched);
                continue;
            }
            if let Some(w) = self.waiting.as_mut() {
                std::task::ready!(w.as_mut().poll(cx));
                self.waiting = None;
                self.drained = false;
                continue;
            }
            if self.drained {
                if self.fetches.is_empty() {
                    self.waiting = Some(self.wait_until(self.next_due));
                    continue;
                }
                return Poll::Pending;
            }
            // More may be due: fetch into the free room. Another fetch joins those in flight only
            // when it is worth a script call (a full batch); alone, it takes whatever room there is.
            let room = self.room();
            let worth = room >= self.policy.batch || (self.fetches.is_empty() && room > 0);
            if worth && self.fetches.len() < MAX_FETCHES {
                self.start_fetch(room.min(self.policy.batch));
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Claims apalis never took (it stopped asking during a shutdown) are released at once —
    /// a submit never sent goes back to be sent, an enquiry is due again — instead of waiting for
    /// their leases to expire. Fetches still in flight are awaited and released the same way.
    fn poll_close(&mut self, cx: &mut Context<'_>, _: &WorkerContext) -> Poll<Result<(), Self::Error>> {
        while let Poll::Ready(Some((limit, fetched))) = self.fetches.poll_next_unpin(cx) {
            self.took(limit, fetched);
        }
        if !self.fetches.is_empty() {
            return Poll::Pending;
        }
        if self.closing.is_none() {
            let left: Vec<Job> = self.ready.drain(..).collect();
            let processor = self.processor.clone();
            self.closing = Some(Box::pin(async move { processor.release(left).await }));
        }
        match self.closing.as_mut() {
            Some(f) => f.as_mut().poll(cx).map(Ok),
            None => Poll::Ready(Ok(())),
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
