//! `qfrefund pause` and `qfrefund resume`: a merchant's submits stopped or started, audited.

use std::path::Path;
use std::process::ExitCode;

use ledger::LedgerError;
use serde_json::json;

use crate::connect::open;

/// Pauses (`pause`) or resumes a merchant, audited with who and why.
pub async fn pause(
    config: Option<&Path>,
    merchant: &str,
    pause: bool,
    why: &str,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    if why.trim().is_empty() {
        return Err(crate::exit::invalid(anyhow::anyhow!("--reason must say why")));
    }
    let who = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into());
    let ledger = open(config).await?;
    let done = if pause { ledger.pause(merchant, &who, why).await } else { ledger.resume(merchant, &who, why).await };
    let changed = match done {
        Ok(changed) => changed,
        Err(LedgerError::Invalid(e)) => {
            return Err(crate::exit::invalid(anyhow::anyhow!("no such merchant name {merchant:?}: {e}")));
        }
        Err(e) => return Err(e.into()),
    };
    if pause {
        crate::output::one(&json!({"merchant": merchant, "paused": true, "reason": why}))?;
    } else {
        crate::output::one(&json!({"merchant": merchant, "paused": false, "was_paused": changed}))?;
    }
    Ok(ExitCode::SUCCESS)
}
