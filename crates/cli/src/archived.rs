//! A refund archived and removed from Redis, as `status` shows it: the archive's line when the
//! archive can be read here, else its summary (a final refund archived early) or what its
//! tombstone keeps; `"archived": true` either way.

use std::path::Path;

use anyhow::Context;
use ledger::Ledger;

use crate::config::Config;

/// `merchant`'s refund `out_trade_no` if it was archived, as JSON.
pub async fn find(
    config: Option<&Path>,
    ledger: &Ledger,
    merchant: &str,
    out_trade_no: &str,
) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(tomb) = ledger.tombstone(merchant, out_trade_no).await? else { return Ok(None) };
    let mut out = match ledger.summary(merchant, out_trade_no).await? {
        Some(summary) => serde_json::to_value(&summary)?,
        None => serde_json::to_value(&tomb)?,
    };
    if let Some(setting) = Config::load(config)?.archive() {
        let sink = archive::Sink::from_setting(&setting)?;
        let shard = ledger.shard_of(merchant);
        let line = sink
            .find(shard, &tomb.archived_on, merchant, out_trade_no)
            .await
            .with_context(|| format!("reading the archive {}", sink.describe()))?;
        match line {
            Some(line) => {
                out = serde_json::to_value(&line)?;
                out["archived"] = true.into();
            }
            None => out["archive"] = format!("not found in {} (another worker's archive?)", sink.describe()).into(),
        }
    }
    Ok(Some(out))
}
