//! The producer and operator commands.

use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ledger::{Accepted, Enqueued, Ledger, LedgerError, NewRefund, State};
use serde_json::json;

use crate::config::Config;
use ledger::import::{Format, Lines};

pub(crate) async fn open(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let c = Config::load(config)?;
    Ledger::connect(&c.redis_url, c.ledger.clone())
        .await
        .with_context(|| format!("connecting to Redis at {}", redact_url(&c.redis_url)))
}

/// A Redis URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

pub async fn worker(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let c = Config::load(config)?;
    let wc = c.worker()?;
    let (trigger, shutdown) = worker::Shutdown::new();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: no new refunds are taken; draining in-flight ones");
        trigger.trigger();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now (leases of unfinished refunds will expire and be enquired)");
        std::process::exit(130);
    });
    worker::run(wc, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[derive(Args, Debug)]
pub struct EnqueueArgs {
    /// The original payment's QFPay syssn.
    #[arg(long)]
    syssn: String,
    /// Your id for this refund: enqueueing it again never refunds twice.
    #[arg(long)]
    out_trade_no: String,
    /// Refund amount in minor units (100 = 1.00).
    #[arg(long)]
    amount: String,
    /// What the payment was for, in minor units (otherwise learned by enquiry).
    #[arg(long)]
    orig_amount: Option<String>,
    #[arg(long)]
    mchid: Option<String>,
    #[arg(long)]
    udid: Option<String>,
    /// Which configured merchant's credentials to use.
    #[arg(long)]
    merchant: Option<String>,
}

pub async fn enqueue(config: Option<&Path>, a: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let txamt = qfpay::request::parse_txamt("amount", &a.amount)?;
    let orig = a.orig_amount.as_deref().map(|v| qfpay::request::parse_txamt("orig_amount", v)).transpose()?;
    let refund = NewRefund {
        syssn: a.syssn,
        out_trade_no: a.out_trade_no,
        txamt,
        orig_txamt: orig,
        mchid: a.mchid,
        udid: a.udid,
        merchant: a.merchant,
    };
    refund.clone().normalised().validate()?;
    let ledger = open(config).await?;
    match ledger.enqueue(refund).await {
        Ok(e) => {
            println!("{}", serde_json::to_string(e.record())?);
            if matches!(e, Enqueued::Duplicate(_)) {
                eprintln!(
                    "note: {} was enqueued before with the same request; this is that record",
                    e.record().out_trade_no
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    file: PathBuf,
    /// csv or jsonl (default: from the file's first line).
    #[arg(long, value_parser = ["csv", "jsonl"])]
    format: Option<String>,
    /// Check every line and report, enqueue nothing (Redis is not contacted).
    #[arg(long)]
    dry_run: bool,
}

pub async fn import(config: Option<&Path>, a: ImportArgs) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let format = match a.format.as_deref() {
        Some("csv") => Some(Format::Csv),
        Some("jsonl") => Some(Format::Jsonl),
        _ => None,
    };
    let mut lines = Lines::new(BufReader::with_capacity(1 << 20, file), format);
    if a.dry_run {
        return dry_run(&mut lines);
    }
    let ledger = open(config).await?;
    let (mut accepted, mut duplicates, mut conflicts) = (0u64, 0u64, 0u64);
    let mut invalid = Vec::new();
    let mut conflicting = Vec::new();
    let progress = std::io::stderr().is_terminal();
    let mut done = false;
    while !done {
        let mut batch: Vec<(usize, NewRefund)> = Vec::with_capacity(2_000);
        while batch.len() < 2_000 {
            match lines.next_record() {
                None => {
                    done = true;
                    break;
                }
                Some(Ok(r)) => batch.push(r),
                Some(Err(e)) => invalid.push(json!({"line": e.line, "error": e.error})),
            }
        }
        let (numbers, refunds): (Vec<usize>, Vec<NewRefund>) = batch.into_iter().unzip();
        for (line, result) in numbers.into_iter().zip(ledger.enqueue_batch(refunds).await) {
            match result {
                Ok(Accepted::Created) => accepted += 1,
                Ok(Accepted::Duplicate) => duplicates += 1,
                Err(LedgerError::Conflict { out_trade_no, differences, .. }) => {
                    conflicts += 1;
                    if conflicting.len() < 1_000 {
                        conflicting
                            .push(json!({"line": line, "out_trade_no": out_trade_no, "differences": differences}));
                    }
                }
                Err(e) => invalid.push(json!({"line": line, "error": e.to_string()})),
            }
        }
        if progress {
            eprint!(
                "\r{} accepted, {duplicates} duplicates, {conflicts} conflicts, {} invalid",
                accepted,
                invalid.len()
            );
            let _ = std::io::stderr().flush();
        }
    }
    if progress {
        eprintln!();
    }
    let ok = conflicts == 0 && invalid.is_empty();
    println!(
        "{}",
        json!({"accepted": accepted, "duplicates": duplicates, "conflicts": conflicts, "invalid": invalid, "conflicting": conflicting})
    );
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Validates every line as an import would (including duplicates and conflicts within the file)
/// and prints the same summary, without touching Redis.
fn dry_run<R: std::io::BufRead>(lines: &mut Lines<R>) -> anyhow::Result<ExitCode> {
    use std::collections::HashMap;
    let mut seen: HashMap<String, (usize, String)> = HashMap::new();
    let (mut valid, mut duplicates, mut conflicts) = (0u64, 0u64, 0u64);
    let (mut invalid, mut conflicting) = (Vec::new(), Vec::new());
    while let Some(item) = lines.next_record() {
        match item {
            Err(e) => invalid.push(json!({"line": e.line, "error": e.error})),
            Ok((line, r)) => {
                let r = r.normalised();
                if let Err(e) = r.validate() {
                    invalid.push(json!({"line": line, "error": format!("invalid refund: {e}")}));
                    continue;
                }
                match seen.get(&r.out_trade_no) {
                    Some((_, hash)) if *hash == r.payload_hash() => duplicates += 1,
                    Some((first, _)) => {
                        conflicts += 1;
                        conflicting
                            .push(json!({"line": line, "out_trade_no": r.out_trade_no, "conflicts_with_line": first}));
                    }
                    None => {
                        valid += 1;
                        seen.insert(r.out_trade_no.clone(), (line, r.payload_hash()));
                    }
                }
            }
        }
    }
    let ok = conflicts == 0 && invalid.is_empty();
    println!(
        "{}",
        json!({"dry_run": true, "valid": valid, "duplicates_in_file": duplicates, "conflicts_in_file": conflicts,
               "invalid": invalid, "conflicting": conflicting,
               "note": "checked against the file only: refunds already in the ledger are reported when imported"})
    );
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn status(config: Option<&Path>, out_trade_no: &str) -> anyhow::Result<ExitCode> {
    let ledger = open(config).await?;
    match ledger.get(out_trade_no).await? {
        Some(r) => {
            println!("{}", serde_json::to_string(&r)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("no refund with out_trade_no {out_trade_no:?}");
            Ok(ExitCode::from(3))
        }
    }
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this state (queued, submitting, pending, retry_wait, succeeded, failed, needs_review, cancelled).
    #[arg(long)]
    state: Option<State>,
    /// At most this many records.
    #[arg(long, default_value_t = 1_000)]
    limit: usize,
    /// List webhook deliveries that were given up instead (event id, out_trade_no, attempts,
    /// last error); `qfrefund redeliver` puts them back on the schedule.
    #[arg(long, conflicts_with = "state")]
    webhook_failed: bool,
}

pub async fn list(config: Option<&Path>, a: ListArgs) -> anyhow::Result<ExitCode> {
    let ledger = open(config).await?;
    if a.webhook_failed {
        let mut out = std::io::stdout().lock();
        for f in worker::webhooks::failed(&ledger, a.limit).await? {
            writeln!(out, "{}", serde_json::to_string(&f)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let states: Vec<State> = a.state.map_or_else(|| State::ALL.to_vec(), |s| vec![s]);
    let mut out = std::io::stdout().lock();
    let mut left = a.limit;
    for state in states {
        let mut offset = 0isize;
        while left > 0 {
            let page = left.min(500) as isize;
            let ids = ledger.list(state, offset, page).await?;
            for id in &ids {
                if let Some(r) = ledger.get(id).await? {
                    writeln!(out, "{}", serde_json::to_string(&r)?)?;
                    left -= 1;
                }
            }
            if (ids.len() as isize) < page {
                break;
            }
            offset += page;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn pause(config: Option<&Path>, merchant: &str, reason: Option<&str>) -> anyhow::Result<ExitCode> {
    let ledger = open(config).await?;
    match reason {
        Some(why) => {
            ledger.pause(merchant, why).await?;
            println!("{}", json!({"merchant": merchant, "paused": true, "reason": why}));
        }
        None => {
            let was = ledger.resume(merchant).await?;
            println!("{}", json!({"merchant": merchant, "paused": false, "was_paused": was}));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct OperatorArgs {
    out_trade_no: String,
    /// Why (kept on the record and in the outcome stream).
    #[arg(long)]
    reason: String,
    /// Who (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

pub async fn operate(config: Option<&Path>, a: OperatorArgs, op: ledger::Operation) -> anyhow::Result<ExitCode> {
    if a.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why");
    }
    let who = a.by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into());
    let ledger = open(config).await?;
    match ledger.operate(&a.out_trade_no, op, &who, &a.reason).await? {
        Ok(_) => {
            let rec = ledger.get(&a.out_trade_no).await?.context("record vanished")?;
            println!("{}", serde_json::to_string(&rec)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("refused: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Puts given-up webhook deliveries back on the schedule.
pub async fn redeliver(config: Option<&Path>, ids: Vec<String>, all: bool) -> anyhow::Result<ExitCode> {
    if ids.is_empty() && !all {
        anyhow::bail!("name event ids (from `qfrefund list --webhook-failed`) or pass --all");
    }
    let ledger = open(config).await?;
    let n = worker::webhooks::redeliver(&ledger, &ids).await?;
    println!("{}", json!({"rescheduled": n}));
    Ok(ExitCode::SUCCESS)
}
