//! What can go wrong, said so that a producer knows whether to retry.

/// A producer's error. It names no type of the Redis client: what matters is whether the
/// refund may have been written, and whether to retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request breaks a rule (which field, what is wrong): it must change.
    #[error("invalid refund: {field}: {problem}")]
    Invalid {
        /// The field in error.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The `out_trade_no` exists under this merchant with other details; nothing was changed.
    #[error("out_trade_no {out_trade_no} already exists with a different request: {}", differences.join("; "))]
    Conflict {
        /// The refund's id.
        out_trade_no: String,
        /// How the request differs from the refund recorded.
        differences: Vec<String>,
        /// The refund recorded under that id.
        existing: Box<ledger::Record>,
    },
    /// The payment's amount given disagrees with the one recorded for it.
    #[error("{0}")]
    PaidMismatch(String),
    /// Nothing was written (Redis refused or could not be reached): retry the same request.
    #[error("nothing was written: {0}; retry the same request with the same out_trade_no")]
    Unavailable(String),
    /// The write was sent but its answer never came, or too few replicas confirmed it in time:
    /// the refund may exist. Retry the same request with the same `out_trade_no` (idempotent).
    #[error("outcome unknown: {0}; retry the same request with the same out_trade_no, never under a new one")]
    OutcomeUnknown(String),
    /// A setting is wrong (which one, and why).
    #[error("setting {setting}: {problem}")]
    Config {
        /// The setting, by its environment variable or file key.
        setting: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The ledger answered something no retry will change (a corrupt record, a layout this
    /// configuration disagrees with, credentials Redis refuses).
    #[error("{0}")]
    Ledger(String),
}

impl Error {
    /// True when the same request, retried later with the same `out_trade_no`, may succeed (and
    /// can never create a second refund).
    ///
    /// ```
    /// use qfrefund_producer::Error;
    ///
    /// assert!(Error::OutcomeUnknown("timed out".into()).is_retryable());
    /// assert!(Error::Unavailable("connection refused".into()).is_retryable());
    /// let invalid = Error::Invalid { field: "txamt".into(), problem: "must be positive".into() };
    /// assert!(!invalid.is_retryable());
    /// assert_eq!(invalid.to_string(), "invalid refund: txamt: must be positive");
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::OutcomeUnknown(_))
    }

    /// True when the refund may or may not have been written.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown(_))
    }
}

impl Error {
    /// An error of a call that writes no refund (connecting, `get`, `events`, a merchant check):
    /// nothing was written, so none is "outcome unknown".
    pub(crate) fn not_a_write(e: ledger::LedgerError) -> Self {
        match Error::from(e) {
            Error::OutcomeUnknown(why) => Error::Unavailable(why),
            other => other,
        }
    }
}

impl From<ledger::LedgerError> for Error {
    fn from(e: ledger::LedgerError) -> Self {
        use ledger::LedgerError as L;
        match e {
            L::Invalid(f) => Error::Invalid { field: f.field.to_owned(), problem: f.rule },
            L::Conflict { out_trade_no, differences, existing } => {
                Error::Conflict { out_trade_no, differences, existing }
            }
            e @ L::PaidMismatch { .. } => Error::PaidMismatch(e.to_string()),
            // A layout this configuration disagrees with stays so however often it is retried.
            e @ (L::Layout(_) | L::TlsCa { .. } | L::Corrupt(_)) => Error::Ledger(e.to_string()),
            e if e.outcome_unknown() => Error::OutcomeUnknown(e.to_string()),
            e if e.is_retryable() => Error::Unavailable(e.to_string()),
            // Credentials or rights Redis refuses (NOAUTH, WRONGPASS, NOPERM): no retry mends them.
            e => Error::Ledger(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_only_what_a_retry_can_mend() {
        let field = ledger::NewRefund::new("P1", "RF-1", 0).validate().unwrap_err();
        let invalid: Error = ledger::LedgerError::Invalid(field).into();
        assert!(!invalid.is_retryable() && !invalid.outcome_unknown());
        let unknown: Error = ledger::LedgerError::NotReplicated(1).into();
        assert!(unknown.is_retryable() && unknown.outcome_unknown());
        let unread: Error = ledger::LedgerError::Unread("gone".into()).into();
        assert!(unread.is_retryable());
        let layout: Error = ledger::LedgerError::Layout("4 shards, not 1".into()).into();
        assert!(!layout.is_retryable());
    }
}
