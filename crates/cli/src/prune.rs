//! `qfrefund prune`: one retention round now, or (`--dry-run`) what it would archive.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::commands::{open_producer, open_reader};
use crate::config::Config;
use crate::exit::out;
use ledger::store::retention::TombstoneForm;

pub async fn prune(config: Option<&Path>, dry_run: bool) -> anyhow::Result<ExitCode> {
    let c = Config::load(config)?;
    let r = c.retention()?;
    if dry_run {
        let ledger = open_reader(config).await?;
        let enabled = ledger.retention_enabled().await?;
        let (mut total, mut total_early) = (0, 0);
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
            out!(
                "{}",
                json!({"shard": shard, "would_archive": n, "would_archive_early": early, "summaries": summaries,
                       "tombstones": tombstones})
            );
        }
        out!(
            "{}",
            json!({"would_archive": total, "would_archive_early": total_early, "retention_s": r.retention.as_secs(),
                   "summary_after_s": r.summary_after.map(|a| a.as_secs()), "archive": r.archive.as_deref().map(|a| archive::Sink::from_setting(a).map(|s| s.describe()).unwrap_or_default()),
                   "removes": r.archive.is_some() && enabled, "retention_enabled": enabled})
        );
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
    out!("{}", json!({"archived": archived, "removed": removed, "archive": sink.describe()}));
    Ok(ExitCode::SUCCESS)
}

pub async fn enable(
    config: Option<&Path>,
    compact: bool,
    summaries: bool,
    compact_queue: Option<bool>,
) -> anyhow::Result<ExitCode> {
    let ledger = open_producer(config).await?;
    let before = ledger.enable_retention(compact).await?;
    let now = ledger.tombstone_form().await?;
    let had_summaries = if summaries { ledger.enable_summaries().await? } else { ledger.summarised_states().await? };
    let summaries_now = ledger.summarised_states().await?;
    let names = |states: &[ledger::State]| states.iter().map(|s| s.as_str()).collect::<Vec<_>>();
    let had_compact_queue = match compact_queue {
        Some(on) => ledger.set_compact_queue(on).await?,
        None => ledger.compact_queue_enabled().await?,
    };
    let compact_queue_now = ledger.compact_queue_enabled().await?;
    let fresh_waiting = ledger.ready_total().await?;
    // Going back: the requests enqueued fresh get their whole hashes back (see
    // `Ledger::restore_whole_hashes`), so an older version answers them again as duplicates.
    let hashes_restored = if compact_queue == Some(false) { Some(ledger.restore_whole_hashes().await?) } else { None };
    out!(
        "{}",
        json!({"retention_enabled": true, "compact_tombstones": now == TombstoneForm::Compact,
               "was_enabled": before != TombstoneForm::Disabled, "was_compact": before == TombstoneForm::Compact,
               "summaries": !summaries_now.is_empty(), "had_summaries": !had_summaries.is_empty(),
               "archived_early": names(summaries_now), "had_archived_early": names(had_summaries),
               "compact_queue": compact_queue_now, "had_compact_queue": had_compact_queue,
               "fresh_waiting": fresh_waiting, "hashes_restored": hashes_restored})
    );
    Ok(ExitCode::SUCCESS)
}
