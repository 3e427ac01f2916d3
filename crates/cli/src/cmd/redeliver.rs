//! `qfrefund redeliver`: given-up webhook deliveries back on the schedule.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::connect::open;

/// Puts given-up webhook deliveries back on the schedule.
pub async fn redeliver(
    config: Option<&Path>,
    ids: Vec<String>,
    all: bool,
    reason: &str,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    if ids.is_empty() && !all {
        return Err(crate::exit::invalid(anyhow::anyhow!(
            "name event ids (from `qfrefund list --webhook-failed`) or pass --all"
        )));
    }
    if reason.trim().is_empty() {
        return Err(crate::exit::invalid(anyhow::anyhow!("--reason must say why")));
    }
    let who = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into());
    let mut ids = ids;
    ids.sort();
    ids.dedup();
    let ledger = open(config).await?;
    let n = ledger.redeliver_webhooks(&ids, &who, reason.trim()).await?;
    let missing = if all { 0 } else { ids.len().saturating_sub(n) };
    crate::output::one(&json!({"rescheduled": n, "not_found": missing}))?;
    if missing > 0 {
        // Not found is exit 3, as everywhere: a named delivery that is not given up.
        eprintln!(
            "{missing} of the {} named deliveries are not given up (unknown ids, or already back on the schedule): \
             see `qfrefund list --webhook-failed`",
            ids.len()
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
