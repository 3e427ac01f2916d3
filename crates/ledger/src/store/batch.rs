//! Batch enqueues (imports) whose every line is reported as what it is: in the ledger, refused, or
//! of unknown fate — never "refused" when it may have been written.
//!
//! [`Ledger::enqueue_batch`] sends each chunk as one pipeline; when the pipeline fails part way (a
//! Redis at `maxmemory` answers `OOM` to the scripts after the one that filled it; a timeout
//! leaves some applied and some not) every line of the chunk gets the same error, although some
//! were written. [`Ledger::enqueue_batch_reported`] reads those lines back: a record with the
//! line's very request is in the ledger; no record, when Redis *answered* every command of the
//! pipeline, proves nothing was written; anything else stays [`LineFate::Unknown`].

use std::collections::HashMap;

use crate::store::{Accepted, Ledger, LedgerError};
use crate::{NewRefund, Record};

/// What became of one line of a batch.
#[derive(Debug)]
pub enum LineFate {
    /// Newly in the ledger.
    Created,
    /// The same request was in the ledger already.
    Duplicate,
    /// Its chunk reported an error, yet the ledger holds exactly this request (written before the
    /// pipeline failed, or earlier): it is accepted.
    InLedger,
    /// Not written (invalid, a conflict, or Redis refused before running it): the error says why.
    Refused(LedgerError),
    /// It may or may not have been written: re-run the import (it is idempotent).
    Unknown(String),
}

/// What an unknown line's report says to do.
pub const RERUN_ADVICE: &str = "outcome unknown: re-run the import: it is idempotent";

impl Ledger {
    /// [`Ledger::enqueue_batch`], with every line whose chunk failed settled by reading it back
    /// where that can be known. One result per input, in order.
    pub async fn enqueue_batch_reported(&self, refunds: Vec<NewRefund>) -> Vec<LineFate> {
        let requests: Vec<NewRefund> = refunds.iter().map(|r| r.clone().normalised()).collect();
        let results = self.enqueue_batch(refunds).await;
        let doubtful: Vec<(String, String)> = requests
            .iter()
            .zip(&results)
            .filter(|(_, r)| matches!(r, Err(LedgerError::Redis(_))))
            .map(|(q, _)| (q.merchant().to_owned(), q.out_trade_no.clone()))
            .collect();
        let found = self.read_back(&doubtful).await;
        // A line found in the ledger after its chunk failed was written, but its chunk's wait for
        // replicas / the AOF was lost with the error: make everything durable now, or say unknown.
        let confirmed = match &found {
            Some(f) if !f.is_empty() => self.durable_now().await.unwrap_or(false),
            _ => true,
        };
        requests
            .into_iter()
            .zip(results)
            .map(|(q, result)| match result {
                Ok(Accepted::Created) => LineFate::Created,
                Ok(Accepted::Duplicate) => LineFate::Duplicate,
                Err(LedgerError::Redis(e)) => match settle(&q, e, found.as_ref()) {
                    LineFate::InLedger if !confirmed => LineFate::Unknown(format!(
                        "{RERUN_ADVICE} (in the ledger, but not confirmed durable by the AOF / replicas)"
                    )),
                    fate => fate,
                },
                Err(e) if e.outcome_unknown() => LineFate::Unknown(format!("{RERUN_ADVICE} ({e})")),
                Err(e) => LineFate::Refused(e),
            })
            .collect()
    }

    /// The records of `refunds` (merchant, out_trade_no); `None` when they could not be read
    /// (then nothing is settled). Only after a failed chunk: one read per line is fine.
    async fn read_back(&self, refunds: &[(String, String)]) -> Option<HashMap<(String, String), Record>> {
        let mut out = HashMap::new();
        let mut refunds = refunds.to_vec();
        refunds.sort();
        refunds.dedup();
        for (merchant, otn) in refunds {
            if let Some(r) = self.get(&merchant, &otn).await.ok()? {
                out.insert((merchant, otn), r);
            }
        }
        Some(out)
    }
}

/// Whether Redis answered every command of the failed call (so a missing record was not written,
/// and will not be): a server error, not a timeout or a lost connection.
fn answered(e: &redis::RedisError) -> bool {
    matches!(e.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension) || e.is_connection_refusal()
}

fn settle(q: &NewRefund, e: redis::RedisError, found: Option<&HashMap<(String, String), Record>>) -> LineFate {
    let Some(found) = found else {
        return LineFate::Unknown(format!("{RERUN_ADVICE} (redis: {e}; reading it back failed too)"));
    };
    match found.get(&(q.merchant().to_owned(), q.out_trade_no.clone())) {
        Some(r) if r.same_payload(&q.payload_hash()) => LineFate::InLedger,
        Some(r) => LineFate::Refused(LedgerError::Conflict {
            out_trade_no: q.out_trade_no.clone(),
            differences: q.differences(r),
            existing: Box::new(r.clone()),
        }),
        None if answered(&e) => LineFate::Refused(LedgerError::Redis(e)),
        None => LineFate::Unknown(format!("{RERUN_ADVICE} (redis: {e})")),
    }
}
