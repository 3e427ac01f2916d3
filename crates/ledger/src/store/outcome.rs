//! What a failed ledger call tells its caller about the write it attempted.
//!
//! A write sent to Redis whose answer never came back (a timeout, a dropped connection, a server
//! frozen mid-request) may have been applied: Redis runs what it has read from the socket even
//! when the client has given up on the answer. Such an error must never be reported as "nothing
//! was written" — a producer that believes it and retries under a *new* `out_trade_no` refunds
//! twice. The rule for producers: **on any error that is [`LedgerError::is_retryable`], retry the
//! same request with the same `out_trade_no`** (enqueue is idempotent); only an error that is not
//! retryable means the request itself must change.

use crate::LedgerError;

/// What a failed write did, as far as the caller can know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFate {
    /// Nothing was written: refused before it ran (invalid, conflict, connection refused, a
    /// server error answered before the script ran).
    NotWritten,
    /// It may or may not have been written: retry the same request (it is idempotent).
    Unknown,
}

/// Server error codes Redis answers *before* running a command (so nothing of it was applied).
const REFUSED_BEFORE_RUNNING: [&str; 12] = [
    "OOM",
    "NOSCRIPT",
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "NOREPLICAS",
    "MISCONF",
    "BUSY",
    "NOAUTH",
    "NOPERM",
    "WRONGPASS",
    "CLUSTERDOWN",
];

/// Codes of a Redis that refuses this client's credentials or rights: no retry mends them.
const CREDENTIALS_REFUSED: [&str; 3] = ["NOAUTH", "WRONGPASS", "NOPERM"];

/// Whether a Redis error proves the command was never applied.
pub fn redis_not_applied(e: &redis::RedisError) -> bool {
    if e.is_connection_refusal() {
        return true;
    }
    match e.kind() {
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig => true,
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => {
            e.code().is_some_and(|c| REFUSED_BEFORE_RUNNING.contains(&c) || c == "TRYAGAIN" || c == "MOVED")
        }
        _ => false,
    }
}

/// Text every "outcome unknown" answer carries (API, CLI, logs).
pub const OUTCOME_UNKNOWN_ADVICE: &str = "outcome unknown: retry with the same out_trade_no — it is idempotent";

impl LedgerError {
    /// What the failed call did to the ledger. Errors of calls that write nothing (reads) are
    /// classified as if they had written: callers only consult this after a write.
    pub fn write_fate(&self) -> WriteFate {
        match self {
            LedgerError::Invalid(_)
            | LedgerError::Conflict { .. }
            | LedgerError::PaidMismatch { .. }
            | LedgerError::TlsCa { .. }
            // Refused by the layout check before any script ran.
            | LedgerError::Layout(_) => WriteFate::NotWritten,
            LedgerError::Redis(e) if redis_not_applied(e) => WriteFate::NotWritten,
            // A timeout or lost connection after sending; written but not confirmed by replicas;
            // an unexpected script answer or unreadable record after the script ran.
            _ => WriteFate::Unknown,
        }
    }

    /// The write may have happened: the caller cannot know. Retry with the same `out_trade_no`.
    pub fn outcome_unknown(&self) -> bool {
        self.write_fate() == WriteFate::Unknown
    }

    /// Retrying the same request (same `out_trade_no`, same fields) may succeed: Redis was
    /// unavailable, slow, refusing writes for now, or the write was not confirmed. Not retryable:
    /// the request itself is wrong (invalid, a conflict, a paid-amount mismatch) or the setup is
    /// (TLS, authentication or ACL rights, a layout this configuration disagrees with, a corrupt
    /// record).
    pub fn is_retryable(&self) -> bool {
        match self {
            LedgerError::Invalid(_)
            | LedgerError::Conflict { .. }
            | LedgerError::PaidMismatch { .. }
            | LedgerError::TlsCa { .. }
            | LedgerError::Layout(_)
            | LedgerError::Corrupt(_) => false,
            LedgerError::Redis(e) => {
                !matches!(
                    e.kind(),
                    redis::ErrorKind::AuthenticationFailed
                        | redis::ErrorKind::InvalidClientConfig
                        | redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
                ) && !e.code().is_some_and(|c| CREDENTIALS_REFUSED.contains(&c))
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> LedgerError {
        LedgerError::Redis(redis::RedisError::from(std::io::Error::new(kind, "test")))
    }

    #[test]
    fn an_error_after_sending_is_unknown_and_a_refusal_before_is_not_written() {
        for k in [std::io::ErrorKind::TimedOut, std::io::ErrorKind::ConnectionReset, std::io::ErrorKind::BrokenPipe] {
            let e = io(k);
            assert!(e.outcome_unknown() && e.is_retryable(), "{k:?}");
        }
        let refused = io(std::io::ErrorKind::ConnectionRefused);
        assert!(!refused.outcome_unknown() && refused.is_retryable());
        assert!(LedgerError::NotReplicated(1).outcome_unknown());
        let invalid = LedgerError::Invalid(qfpay::FieldError::new("txamt", "bad"));
        assert!(!invalid.outcome_unknown() && !invalid.is_retryable());
        let layout = LedgerError::Layout("misplaced".into());
        assert!(!layout.outcome_unknown() && !layout.is_retryable());
    }
}
