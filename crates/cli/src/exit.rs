//! Exit codes, one meaning each for every command, and output that ends quietly when its reader
//! goes away (`qfrefund list | head`).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | failed: the command ran and the answer is no (a check failed, a disagreement, lines refused), or an error not listed below |
//! | 2 | invalid: a usage error, invalid input or configuration; running it again unchanged fails again |
//! | 3 | not found |
//! | 4 | conflict: the id is taken by another request, or the refund's state refuses the action |
//! | 75 | unavailable, or the outcome is unknown: retry the same command (it is idempotent) |

use std::fmt;
use std::io::Write;

use ledger::LedgerError;

pub const FAILED: u8 = 1;
pub const INVALID: u8 = 2;
pub const NOT_FOUND: u8 = 3;
pub const CONFLICT: u8 = 4;
pub const UNAVAILABLE: u8 = 75;

/// A context that names the exit code of the error it wraps, and says nothing itself.
#[derive(Debug, Clone, Copy)]
pub struct Coded(pub u8);

impl fmt::Display for Coded {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// `e`, marked as invalid input or configuration (exit 2).
pub fn invalid(e: impl Into<anyhow::Error>) -> anyhow::Error {
    e.into().context(Coded(INVALID))
}

/// The exit code an error means.
pub fn code(e: &anyhow::Error) -> u8 {
    if let Some(Coded(c)) = e.downcast_ref::<Coded>() {
        return *c;
    }
    if e.downcast_ref::<qfpay::request::FieldError>().is_some()
        || e.chain().any(|c| c.downcast_ref::<qfpay::request::FieldError>().is_some())
    {
        return INVALID;
    }
    let ledger = e.downcast_ref::<LedgerError>().or_else(|| e.chain().find_map(|c| c.downcast_ref::<LedgerError>()));
    match ledger {
        Some(LedgerError::Invalid(_) | LedgerError::PaidMismatch { .. }) => INVALID,
        Some(LedgerError::Layout(_) | LedgerError::TlsCa { .. }) => INVALID,
        Some(LedgerError::Conflict { .. }) => CONFLICT,
        Some(l) if l.outcome_unknown() || l.is_retryable() => UNAVAILABLE,
        // Credentials or rights Redis refuses (NOAUTH, WRONGPASS, NOPERM, a failed AUTH):
        // configuration, which fails again unchanged.
        Some(LedgerError::Redis(_)) => INVALID,
        _ => FAILED,
    }
}

/// Whether `e` is a write into a closed pipe.
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Writes one line to stdout; a closed pipe ends the process quietly (exit 0: the reader had
/// what it wanted).
pub fn line(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(i32::from(FAILED));
    }
}

/// `println!`, ending quietly into a closed pipe (see [`line`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::exit::line(format_args!($($arg)*))
    };
}
pub(crate) use out;
