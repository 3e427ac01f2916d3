//! `qfrefund scope-merchants`: after an upgrade from before merchant-scoped refunds.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::connect::open_producer;

/// `qfrefund scope-merchants`: see `Ledger::scope_merchants`.
pub async fn scope_merchants(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ledger = open_producer(config).await?;
    let was = ledger.scope_merchants().await?;
    crate::output::one(&json!({"merchant_scoped": true, "was_shared": was}))?;
    Ok(ExitCode::SUCCESS)
}
