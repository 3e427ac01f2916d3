//! The refund worker. It holds no refund state in memory: the ledger is the truth and the queue;
//! apalis runs the steps.
//!
//! # Layout
//! - [`config`]: [`WorkerConfig`] and [`Merchant`] (credentials per merchant, never printed).
//! - [`backend`]: [`LedgerBackend`], apalis-core's `Backend` over the ledger: fetching is claiming
//!   (up to K due refunds in one call), completing a task is the transition; idle workers wait for
//!   producers' wake-ups and the earliest due time, never on a fixed poll.
//! - [`job`]: [`Job`], the apalis task (a claim, and its slot of the worker's concurrency).
//! - [`processor`]: [`Processor::run`], the step: act on the claim (submit or enquire), classify
//!   QFPay's answer, apply the transition under the fence. Never sleeps for a retry: every "later"
//!   is a `next_at` in the ledger. Inside: `send` (submit and enquire within the lease, then the
//!   transition) and `detours` (no credentials, the payment's amount to learn, a request that
//!   cannot be built — each ends somewhere visible).
//! - [`requests`]: the QFPay requests a step sends, and how results are described.
//! - [`guard`]: a request never started once its lease is spent.
//! - [`runner`]: the apalis worker over the backend, each step on a task of its own (nothing
//!   claimed is cancelled by the runtime), and graceful shutdown.
//! - [`shutdown`]: [`Shutdown`], the signal every task waits on.
//! - [`webhooks`]: final outcomes POSTed to each merchant's URL, signed, retried durably: the
//!   outcome stream read through one consumer group per merchant (`webhooks/dispatch.rs`) and the
//!   retry schedule (`webhooks/retry.rs`), over the ledger's named operations
//!   (the ledger's `store/streams.rs` and `store/webhooks.rs`). No module here speaks Redis.
//! - [`reconcile`]: the ledger against QFPay's enquiry for a time window (a CSV for finance).
//! - [`metrics`]: what the process counted, served with the ledger's gauges on `metrics_listen`.

pub mod backend;
pub mod config;
pub mod guard;
pub mod job;
pub mod metrics;
pub mod processor;
pub mod reconcile;
pub mod requests;
pub mod retention;
pub mod runner;
pub mod shutdown;
pub mod webhooks;

pub use backend::{FetchPolicy, LedgerBackend};
pub use config::{Merchant, WorkerConfig};
pub use job::Job;
pub use processor::{Processor, Step};
pub use runner::run;
pub use shutdown::{Shutdown, ShutdownTrigger};

/// A crash on purpose, for the crash tests: when `QFREFUND_FAILPOINT` names `point`, the process
/// aborts there (no clean-up, no flush: as a kill -9 would leave it). Unset in production.
pub(crate) fn failpoint(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT.get_or_init(|| std::env::var("QFREFUND_FAILPOINT").ok()).as_deref() == Some(point) {
        std::process::abort();
    }
}
