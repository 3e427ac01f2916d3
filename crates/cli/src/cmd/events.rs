//! `qfrefund events`: the outcome stream as JSON lines, all of it or one refund's, followed or not.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::connect::open_reader;
use crate::output::Rows;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Start after this stream id (`0`: from the beginning; default: from the beginning, or with
    /// --follow from now).
    #[arg(long)]
    from: Option<String>,
    /// Keep printing new events as they come (until interrupted).
    #[arg(long)]
    follow: bool,
    /// Only final outcomes (succeeded, failed, cancelled).
    #[arg(long)]
    final_only: bool,
    /// Only this refund's events (with --merchant for another merchant's).
    #[arg(long)]
    out_trade_no: Option<String>,
    /// Only this merchant's events.
    #[arg(long)]
    merchant: Option<String>,
    /// Stop after this many events (default: all there are; with --follow, for ever).
    #[arg(long)]
    limit: Option<usize>,
}

/// Prints the outcome stream as JSON lines; each line's `id` is where to resume (`--from`).
pub async fn events(config: Option<&Path>, a: EventsArgs) -> anyhow::Result<ExitCode> {
    let ledger = open_reader(config).await?;
    let mut after = match (&a.from, a.follow) {
        (Some(id), _) => id.clone(),
        (None, false) => "0".into(),
        // Following from now: the newest id, so only what happens from here on is printed.
        (None, true) => ledger.last_event_id().await?.unwrap_or_else(|| "0".into()),
    };
    // A refund named without a merchant is the default merchant's.
    let merchant = a.merchant.clone().or_else(|| a.out_trade_no.as_ref().map(|_| ledger::DEFAULT_MERCHANT.to_owned()));
    let mut rows = Rows::new(&[
        ("id", 16),
        ("merchant", 12),
        ("out_trade_no", 24),
        ("prev_state", 12),
        ("state", 12),
        ("txamt", 10),
        ("respcd", 6),
        ("at", 24),
        ("reason", 0),
    ]);
    let mut printed = 0usize;
    loop {
        let batch = ledger.events(&after, 500).await?;
        for e in &batch {
            after.clone_from(&e.id);
            let wanted = (!a.final_only || e.is_final())
                && a.out_trade_no.as_ref().is_none_or(|o| &e.out_trade_no == o)
                && merchant.as_ref().is_none_or(|m| &e.merchant == m);
            if !wanted {
                continue;
            }
            rows.print(e)?;
            printed += 1;
            if a.limit.is_some_and(|l| printed >= l) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if batch.len() < 500 {
            if !a.follow {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
