//! `qfrefund reconcile`: every refund of a window against QFPay's enquiry, as a CSV report.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::connect::open_reader;

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// Refunds created from this time: `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`, QFPay's local time
    /// (UTC+8), or unix milliseconds.
    #[arg(long)]
    from: String,
    /// …up to this time (a date alone means the end of that day).
    #[arg(long)]
    to: String,
    /// Write the CSV report here (default: standard output; the summary goes to stderr).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// An optional time flag (`--created-from`, `--since`, …) parsed as [`parse_bound`]; an error
/// names the flag and is invalid input (exit 2).
pub fn bound_flag(value: Option<&String>, flag: &str, end_of_day: bool) -> anyhow::Result<Option<i64>> {
    value.map(|v| parse_bound(v, end_of_day).map_err(|e| crate::exit::invalid(e.context(flag.to_owned())))).transpose()
}

/// Parses a report bound: a date (start or end of day), a QFPay-local date-time, or unix ms.
pub fn parse_bound(s: &str, end_of_day: bool) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let full = if s.len() == 10 {
        format!("{s} {}", if end_of_day { "23:59:59" } else { "00:00:00" })
    } else {
        s.replace('T', " ")
    };
    let t: qfpay::Txdtm = full
        .parse()
        .map_err(|e| anyhow::anyhow!("{s:?}: expected YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or unix ms ({e})"))?;
    let ms = t.to_unix(qfpay::time::DEFAULT_OFFSET_SECS) * 1000;
    Ok(if end_of_day && s.len() == 10 { ms + 999 } else { ms })
}

/// Compares every refund created in the window with QFPay's enquiry; exit 1 when any disagrees
/// or could not be checked.
pub async fn reconcile(config: Option<&Path>, a: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let from = parse_bound(&a.from, false).context("--from").map_err(crate::exit::invalid)?;
    let to = parse_bound(&a.to, true).context("--to").map_err(crate::exit::invalid)?;
    if from > to {
        return Err(crate::exit::invalid(anyhow::anyhow!("--from is after --to")));
    }
    let c = Config::load(config)?;
    let wc = c.worker()?;
    let ledger = open_reader(config).await?;
    let summary = match &a.out {
        Some(path) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
            );
            let s = worker::reconcile::run(&ledger, &wc, from, to, &mut f).await?;
            f.flush()?;
            crate::output::one(&s)?;
            s
        }
        None => {
            let mut out = std::io::stdout().lock();
            let s = worker::reconcile::run(&ledger, &wc, from, to, &mut out).await?;
            eprintln!("{}", serde_json::to_string(&s)?);
            s
        }
    };
    Ok(if summary.disagree == 0 && summary.unknown == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
