//! `qfrefund stats`: the ledger at a glance.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::connect::open_reader;

pub async fn stats(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ledger = open_reader(config).await?;
    let s = ledger.stats().await?;
    let served = ledger.served_merchants().await?;
    let unserved = ledger.unserved_refunds(1_000_000).await?;
    let memory = ledger.memory().await?;
    let by_state: serde_json::Map<String, serde_json::Value> =
        s.by_state.iter().map(|(st, n)| (st.to_string(), json!(n))).collect();
    crate::output::one(&json!({
            "by_state": by_state,
            "oldest_open_age_s": s.oldest_open_age_ms.map(|ms| ms as f64 / 1000.0),
            "due_now": s.due_now,
            "scheduled": s.due_total,
            "paused": s.paused,
            "webhooks_failed": s.webhooks_failed,
            "webhooks_retrying": s.webhooks_retrying,
            "live_workers": s.live_workers,
            "served_merchants": served,
            "unserved_refunds": unserved.refunds,
            "unserved_truncated": unserved.truncated,
            "memory": memory,
    }))?;
    Ok(ExitCode::SUCCESS)
}
