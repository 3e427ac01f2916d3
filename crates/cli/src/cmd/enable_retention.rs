//! `qfrefund enable-retention`: switch on what this version reads and an older one would not.

use std::path::Path;
use std::process::ExitCode;

use ledger::store::retention::TombstoneForm;
use serde_json::json;

use crate::connect::open_producer;

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
    crate::output::one(&json!({"retention_enabled": true, "compact_tombstones": now == TombstoneForm::Compact,
               "was_enabled": before != TombstoneForm::Disabled, "was_compact": before == TombstoneForm::Compact,
               "summaries": !summaries_now.is_empty(), "had_summaries": !had_summaries.is_empty(),
               "archived_early": names(summaries_now), "had_archived_early": names(had_summaries),
               "compact_queue": compact_queue_now, "had_compact_queue": had_compact_queue,
               "fresh_waiting": fresh_waiting, "hashes_restored": hashes_restored}))?;
    Ok(ExitCode::SUCCESS)
}
