//! `qfrefund prune`: one retention round now, or (`--dry-run`) what it would archive.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::config::Config;
use crate::connect::{open_producer, open_reader};
use crate::output::{Rows, one};

/// The dry run's row for each shard.
const SHARD_COLUMNS: &[(&str, usize)] =
    &[("shard", 5), ("would_archive", 13), ("would_archive_early", 19), ("summaries", 9), ("tombstones", 10)];

pub async fn prune(config: Option<&Path>, dry_run: bool) -> anyhow::Result<ExitCode> {
    let c = Config::load(config)?;
    let r = c.retention()?;
    if dry_run {
        let ledger = open_reader(config).await?;
        let enabled = ledger.retention_enabled().await?;
        let (mut total, mut total_early) = (0, 0);
        let mut rows = Rows::new(SHARD_COLUMNS);
        for shard in 0..ledger.shard_count() {
            let n = ledger.retention_backlog(shard, r.retention).await?;
            let early = match r.summary_after.filter(|a| *a < r.retention) {
                Some(after) if ledger.summaries_enabled().await? => {
                    ledger.summary_backlog(shard, after, r.retention).await?
                }
                _ => 0,
            };
            let tombstones = ledger.tombstone_count(shard).await?;
            let summaries = ledger.summary_count(shard).await?;
            total += n;
            total_early += early;
            rows.print(&json!({"shard": shard, "would_archive": n, "would_archive_early": early,
                               "summaries": summaries, "tombstones": tombstones}))?;
        }
        let archive =
            r.archive.as_deref().map(|a| archive::Sink::from_setting(a).map(|s| s.describe()).unwrap_or_default());
        one(&json!({"would_archive": total, "would_archive_early": total_early, "retention_s": r.retention.as_secs(),
                    "summary_after_s": r.summary_after.map(|a| a.as_secs()), "archive": archive,
                    "removes": r.archive.is_some() && enabled, "retention_enabled": enabled}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(setting) = r.archive.clone() else {
        return Err(crate::exit::invalid(anyhow::anyhow!(
            "no archive configured (QFREFUND_ARCHIVE): nothing is removed from Redis without one"
        )));
    };
    let sink = archive::Sink::from_setting(&setting)?;
    let ledger = open_producer(config).await?;
    let shards: Vec<usize> = (0..ledger.shard_count()).collect();
    let owner = format!("qfrefund-prune-{}", std::process::id());
    let (archived, removed) =
        worker::retention::prune_once(&ledger, &shards, &sink, &r, &owner).await.map_err(anyhow::Error::msg)?;
    one(&json!({"archived": archived, "removed": removed, "archive": sink.describe()}))?;
    Ok(ExitCode::SUCCESS)
}
