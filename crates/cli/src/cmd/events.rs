//! `qfrefund events`: the outcome stream, all of it or what the filters keep, followed or not.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::cmd::reconcile::bound_flag;
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
    /// Only the events of refunds of this payment (QFPay's syssn of the original payment).
    #[arg(long)]
    syssn: Option<String>,
    /// Only events whose QFPay answer carried this respcd.
    #[arg(long)]
    respcd: Option<String>,
    /// Only events at or after this time: YYYY-MM-DD, YYYY-MM-DD HH:MM:SS (UTC+8, QFPay's time)
    /// or unix ms; the stream is read from there.
    #[arg(long, conflicts_with = "from")]
    since: Option<String>,
    /// Only events at or before this time (a date alone: the end of that day); reading stops there.
    #[arg(long, conflicts_with = "follow")]
    until: Option<String>,
    /// Stop after this many events (default: all there are; with --follow, for ever).
    #[arg(long)]
    limit: Option<usize>,
}

/// Prints the outcome stream, as --output says; each entry's `id` is where to resume (`--from`).
pub async fn events(config: Option<&Path>, a: EventsArgs) -> anyhow::Result<ExitCode> {
    let (since, until) =
        (bound_flag(a.since.as_ref(), "--since", false)?, bound_flag(a.until.as_ref(), "--until", true)?);
    let ledger = open_reader(config).await?;
    let mut after = match (&a.from, since, a.follow) {
        (Some(id), _, _) => id.clone(),
        // Stream ids are Redis' time of the entry, and `at` the ledger's time of the transition,
        // the same clock but not the same instant: start a minute early, filter on `at`.
        (None, Some(ms), _) if ms > ID_SLACK_MS => format!("{}-{}", ms - ID_SLACK_MS - 1, u64::MAX),
        (None, _, false) => "0".into(),
        // Following from now: the newest id, so only what happens from here on is printed.
        (None, _, true) => ledger.last_event_id().await?.unwrap_or_else(|| "0".into()),
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
            let at: i64 = e.at.parse().unwrap_or(0);
            if until.is_some_and(|u| id_ms(&e.id) > u.saturating_add(ID_SLACK_MS)) {
                return Ok(ExitCode::SUCCESS);
            }
            let wanted = (!a.final_only || e.is_final())
                && a.out_trade_no.as_ref().is_none_or(|o| &e.out_trade_no == o)
                && merchant.as_ref().is_none_or(|m| &e.merchant == m)
                && a.syssn.as_ref().is_none_or(|s| &e.syssn == s)
                && a.respcd.as_ref().is_none_or(|c| &e.respcd == c)
                && since.is_none_or(|s| at >= s)
                && until.is_none_or(|u| at <= u);
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

/// The milliseconds of a stream id (`<ms>-<seq>`).
fn id_ms(id: &str) -> i64 {
    id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0)
}

/// How far a stream id's time may be from its entry's `at` (see [`events`]).
const ID_SLACK_MS: i64 = 60_000;
