//! The refund worker. It holds no refund state in memory: the ledger is the truth, apalis carries
//! "look at refund X now" from the due-index to a handler.
//!
//! # Layout
//! - [`config`]: [`WorkerConfig`] and [`Merchant`] (credentials per merchant, never printed).
//! - [`processor`]: [`Processor::process`], the handler: load the record, act by state (submit or
//!   enquire), classify QFPay's answer, apply the transition under the fence. Never sleeps for a
//!   retry: every "later" is a `next_at` in the ledger.
//! - `detours` (private): no credentials, the payment's amount to learn, a request that cannot be
//!   built — each ends somewhere visible.
//! - [`requests`]: the QFPay requests a step sends, and how results are described.
//! - [`guard`]: a request never started once its lease is spent.
//! - [`feeder`]: moves due refunds from the ledger's due-index into apalis in bounded chunks
//!   (apalis-redis 1.0 crashes on ≥ 8 000 due jobs at once) and wakes within milliseconds when a
//!   producer enqueues.
//! - [`runner`]: the apalis worker (unique name per process and restart, short heartbeat, polling
//!   interval, no apalis task locking — the ledger's fence guards correctness), its supervisor
//!   (restarts after Redis errors, with backoff), the janitor, and graceful shutdown.
//! - [`webhooks`]: final outcomes POSTed to each merchant's URL, signed, retried durably.
//! - [`reconcile`]: the ledger against QFPay's enquiry for a time window (a CSV for finance).
//! - [`metrics`]: what the process counted, served with the ledger's gauges on `metrics_listen`.

pub mod config;
mod detours;
pub mod feeder;
pub mod guard;
pub mod metrics;
pub mod processor;
pub mod reconcile;
pub mod requests;
pub mod runner;
pub mod webhooks;

pub use config::{Merchant, WorkerConfig};
pub use processor::{Processor, Step};
pub use runner::{Shutdown, run};
