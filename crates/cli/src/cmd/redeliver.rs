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
    let ledger = open(config).await?;
    let n = ledger.redeliver_webhooks(&ids, &who, reason.trim()).await?;
    crate::output::one(&json!({"rescheduled": n}))?;
    Ok(ExitCode::SUCCESS)
}
