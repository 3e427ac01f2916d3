//! `qfrefund audit`: the trail of operator actions.

use std::path::Path;
use std::process::ExitCode;

use crate::connect::open_reader;
use crate::output::Rows;

/// Prints the audit trail of operator actions as JSON lines.
pub async fn audit(config: Option<&Path>, from: Option<String>) -> anyhow::Result<ExitCode> {
    let ledger = open_reader(config).await?;
    let mut after = from.unwrap_or_else(|| "0".into());
    let mut rows = Rows::new(&[
        ("id", 16),
        ("at", 24),
        ("who", 12),
        ("action", 10),
        ("merchant", 12),
        ("out_trade_no", 24),
        ("from", 12),
        ("to", 12),
        ("outcome", 10),
        ("why", 0),
    ]);
    loop {
        let batch = ledger.audit(&after, 500).await?;
        for e in &batch {
            after.clone_from(&e.id);
            rows.print(e)?;
        }
        if batch.len() < 500 {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
