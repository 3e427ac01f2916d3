//! The apalis task: one refund a fetch claimed for this worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ledger::Claimed;

/// A claimed refund on its way through the worker: what the claim said, and a slot of the
/// worker's concurrency that is given back when the job is dropped (its step finished, or the job
/// was never run), so the backend never claims more than the worker can start at once.
#[derive(Debug)]
pub struct Job {
    pub claimed: Claimed,
    pub(crate) slot: Slot,
}

impl Job {
    pub(crate) fn new(claimed: Claimed, in_flight: &Arc<AtomicUsize>) -> Self {
        in_flight.fetch_add(1, Ordering::SeqCst);
        Self { claimed, slot: Slot(in_flight.clone()) }
    }
}

#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
