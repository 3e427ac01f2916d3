//! `qfrefund list`: refunds found by state, merchant, payment, respcd, amount and time, as JSON
//! lines, a page at a time (`--cursor`) or all of them (`--all`); never silently cut short.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use ledger::store::search::Search;
use ledger::{PageCursor, State};

use crate::connect::open_reader;
use crate::exit::invalid;
use crate::output::Rows;

/// What a table or CSV shows of each refund (JSON shows every field).
pub const COLUMNS: &[(&str, usize)] = &[
    ("merchant", 12),
    ("out_trade_no", 24),
    ("state", 12),
    ("txamt", 10),
    ("respcd", 6),
    ("created_at", 24),
    ("updated_at", 24),
    ("reason", 0),
];
use crate::cmd::reconcile::bound_flag as bound;

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this state (queued, submitting, pending, retry_wait, succeeded, failed, needs_review, cancelled).
    #[arg(long)]
    state: Option<State>,
    /// Only this merchant's refunds.
    #[arg(long)]
    merchant: Option<String>,
    /// Only the refunds of this payment (QFPay's syssn of the original payment).
    #[arg(long)]
    syssn: Option<String>,
    /// Only refunds whose last QFPay answer carried this respcd.
    #[arg(long)]
    respcd: Option<String>,
    /// Created at or after this time: YYYY-MM-DD, YYYY-MM-DD HH:MM:SS (UTC+8, QFPay's time) or unix ms.
    #[arg(long)]
    created_from: Option<String>,
    /// Created at or before this time (a date alone: the end of that day).
    #[arg(long)]
    created_to: Option<String>,
    /// Last changed at or after this time.
    #[arg(long)]
    updated_from: Option<String>,
    /// Last changed at or before this time.
    #[arg(long)]
    updated_to: Option<String>,
    /// Newest first (default: oldest first).
    #[arg(long)]
    newest_first: bool,
    /// At most this many refunds (1–1000); when more match, the cursor to go on from is printed
    /// to stderr.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
    /// Go on from where a previous page ended (the cursor it printed).
    #[arg(long, conflicts_with = "all")]
    cursor: Option<String>,
    /// Every matching refund, page after page.
    #[arg(long)]
    all: bool,
    /// List webhook deliveries that were given up instead (event id, out_trade_no, attempts,
    /// last error); `qfrefund redeliver` puts them back on the schedule.
    #[arg(long, conflicts_with_all = ["state", "merchant", "syssn", "respcd", "cursor"])]
    webhook_failed: bool,
}

pub async fn list(config: Option<&Path>, a: ListArgs) -> anyhow::Result<ExitCode> {
    let search = Search {
        state: a.state,
        merchant: a.merchant.clone(),
        syssn: a.syssn.clone(),
        respcd: a.respcd.clone(),
        created_from: bound(a.created_from.as_ref(), "--created-from", false)?,
        created_to: bound(a.created_to.as_ref(), "--created-to", true)?,
        updated_from: bound(a.updated_from.as_ref(), "--updated-from", false)?,
        updated_to: bound(a.updated_to.as_ref(), "--updated-to", true)?,
        newest_first: a.newest_first,
        ..Search::default()
    };
    let mut cursor = match &a.cursor {
        Some(c) => Some(
            PageCursor::decode(c)
                .ok_or_else(|| invalid(anyhow::anyhow!("--cursor {c:?}: not a cursor `qfrefund list` printed")))?,
        ),
        None => None,
    };
    let ledger = open_reader(config).await?;
    let limit = usize::try_from(a.limit).unwrap_or(1_000);
    if a.webhook_failed {
        let mut failed =
            Rows::new(&[("event_id", 40), ("merchant", 12), ("out_trade_no", 24), ("attempts", 8), ("error", 0)]);
        let given_up = ledger.failed_webhooks(if a.all { isize::MAX as usize } else { limit }).await?;
        for f in &given_up {
            failed.print(f)?;
        }
        if !a.all && given_up.len() >= limit {
            eprintln!("{limit} given-up deliveries shown; there may be more: raise --limit or pass --all");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Rows::new(COLUMNS);
    let mut printed = 0usize;
    loop {
        // A search page may come back short with a cursor (it reads a bounded number of index
        // entries per call): ask on until the page is full or nothing is left.
        let found = ledger.search(&search, cursor.as_ref(), if a.all { 1_000 } else { limit - printed }).await?;
        for r in &found.items {
            rows.print(r)?;
        }
        printed += found.items.len();
        cursor = found.next;
        match &cursor {
            None => return Ok(ExitCode::SUCCESS),
            Some(c) if !a.all && printed >= limit => {
                eprintln!("more refunds match: go on with --cursor {} (or list them all with --all)", c.encode());
                return Ok(ExitCode::SUCCESS);
            }
            Some(_) => {}
        }
    }
}
