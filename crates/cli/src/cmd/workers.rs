//! `qfrefund workers`: the live workers.

use std::path::Path;
use std::process::ExitCode;

use crate::connect::open_reader;
use crate::output::Rows;

/// Counts by state, the oldest non-final refund's age, the due backlog and paused merchants, as
/// one JSON object.
/// `qfrefund workers`: one JSON line per live worker.
pub async fn workers(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ledger = open_reader(config).await?;
    let mut rows = Rows::new(&[
        ("name", 16),
        ("host", 16),
        ("version", 8),
        ("concurrency", 11),
        ("in_flight", 9),
        ("started_at", 24),
        ("heartbeat_at", 24),
    ]);
    for w in ledger.live_workers().await? {
        rows.print(&w)?;
    }
    Ok(ExitCode::SUCCESS)
}
