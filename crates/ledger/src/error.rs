//! What can go wrong in the ledger, and a Redis client for callers outside it.

use qfpay::FieldError;

use crate::refund::record::{CorruptRecord, Record};

/// What can go wrong in the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("invalid refund: {0}")]
    Invalid(#[from] FieldError),
    /// The primary took the write but too few replicas confirmed it in time: a failover now could
    /// lose it. Enqueueing again is safe (idempotent) and is how to make sure.
    #[error(
        "the write was not confirmed durable (AOF fsync and/or {0} Redis replica(s)) in time: outcome unknown, \
         retry the same request (it is idempotent)"
    )]
    NotReplicated(usize),
    /// The `out_trade_no` exists with another payload: a conflict, never a second refund.
    #[error("out_trade_no {out_trade_no} already exists with a different request: {}", differences.join("; "))]
    // (Within one merchant: the same out_trade_no under another merchant is another refund.)
    Conflict { out_trade_no: String, differences: Vec<String>, existing: Box<Record> },
    #[error("orig_txamt {given} disagrees with {recorded} recorded for payment {syssn}")]
    PaidMismatch { syssn: String, recorded: String, given: u64 },
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected answer from a ledger script: {0}")]
    Script(String),
    /// The script ran (the refund is recorded, durable as configured), but reading the record back
    /// failed. The same request again answers with the record.
    #[error("the refund was recorded, but reading it back failed ({0}): retry the same request (it is idempotent)")]
    Unread(String),
    #[error("Redis TLS CA file {path}: {error}")]
    TlsCa { path: String, error: String },
    /// The outcome stream has no consumer group of this name (any more: Redis lost the stream,
    /// e.g. restarted without AOF). Creating the group again is the remedy.
    #[error("the outcome stream has no consumer group {0:?}")]
    NoGroup(String),
    /// This process's shards or merchant placement disagree with the ledger's (see
    /// `store::shards`): it would look for refunds where they are not.
    #[error("ledger layout: {0}")]
    Layout(String),
}
