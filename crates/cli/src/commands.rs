//! The producer and operator commands.

use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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
    #[arg(long, conflicts_with = "report")]
    dry_run: bool,
    /// After enqueueing, wait until every accepted line's refund is final (or needs review) and
    /// write one CSV row per line with its outcome here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Longest wait for --report, in seconds; the report is written with the states reached
    /// (exit 2) when it runs out.
    #[arg(long, default_value_t = 3_600)]
    report_timeout: u64,
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
    // For --report: (line, out_trade_no, what the import did, error).
    let mut lines_seen: Vec<(usize, String, &'static str, String)> = Vec::new();
    let want_report = a.report.is_some();
    let mut done = false;
    // Parsing the next batch overlaps with Redis working on the previous ones (at most two in
    // flight): the two are the import's costs, and they run on different cores.
    let mut in_flight = std::collections::VecDeque::new();
    while !done || !in_flight.is_empty() {
        if !done && in_flight.len() < 2 {
            let mut batch: Vec<(usize, NewRefund)> = Vec::with_capacity(2_000);
            while batch.len() < 2_000 {
                match lines.next_record() {
                    None => {
                        done = true;
                        break;
                    }
                    Some(Ok(r)) => batch.push(r),
                    Some(Err(e)) => {
                        if want_report {
                            lines_seen.push((e.line, String::new(), "invalid", e.error.to_string()));
                        }
                        invalid.push(json!({"line": e.line, "error": e.error}))
                    }
                }
            }
            let (numbers, refunds): (Vec<usize>, Vec<NewRefund>) = batch.into_iter().unzip();
            let ids: Vec<String> = refunds.iter().map(|r| r.out_trade_no.clone()).collect();
            let l = ledger.clone();
            in_flight.push_back((numbers, ids, tokio::spawn(async move { l.enqueue_batch(refunds).await })));
            continue;
        }
        let Some((numbers, ids, handle)) = in_flight.pop_front() else { break };
        let results = handle.await.context("enqueue task")?;
        for ((line, result), otn) in numbers.into_iter().zip(results).zip(ids) {
            if want_report {
                let (what, err) = match &result {
                    Ok(Accepted::Created) => ("accepted", String::new()),
                    Ok(Accepted::Duplicate) => ("duplicate", String::new()),
                    Err(LedgerError::Conflict { .. }) => {
                        ("conflict", result.as_ref().err().map(|e| e.to_string()).unwrap_or_default())
                    }
                    Err(e) => ("invalid", e.to_string()),
                };
                lines_seen.push((line, otn, what, err));
            }
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
    invalid.sort_by_key(|v| v["line"].as_u64());
    lines_seen.sort_by_key(|l| l.0);
    if progress {
        eprintln!();
    }
    let ok = conflicts == 0 && invalid.is_empty();
    println!(
        "{}",
        json!({"accepted": accepted, "duplicates": duplicates, "conflicts": conflicts, "invalid": invalid, "conflicting": conflicting})
    );
    if let Some(path) = &a.report {
        let complete = write_report(&ledger, &lines_seen, path, Duration::from_secs(a.report_timeout)).await?;
        if !complete {
            eprintln!("report written with refunds still in flight: --report-timeout ran out");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Waits until every refund the import accepted (or found) is final or needs a person, then writes
/// one CSV row per input line. Returns whether everything settled before `timeout`.
async fn write_report(
    ledger: &Ledger,
    lines: &[(usize, String, &'static str, String)],
    path: &Path,
    timeout: Duration,
) -> anyhow::Result<bool> {
    use std::collections::HashMap;
    let wanted: Vec<String> = {
        let mut v: Vec<String> = lines
            .iter()
            .filter(|l| matches!(l.2, "accepted" | "duplicate" | "conflict"))
            .map(|l| l.1.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let deadline = std::time::Instant::now() + timeout;
    let settled = |r: &ledger::Record| r.state.is_final() || r.state == State::NeedsReview;
    let mut records: HashMap<String, ledger::Record> = HashMap::new();
    let mut pending: Vec<String> = wanted.clone();
    let progress = std::io::stderr().is_terminal();
    loop {
        let mut still = Vec::new();
        for chunk in pending.chunks(500) {
            for r in ledger.get_many(chunk).await? {
                if !settled(&r) {
                    still.push(r.out_trade_no.clone());
                }
                records.insert(r.out_trade_no.clone(), r);
            }
        }
        pending = still;
        if progress {
            eprint!("\rwaiting for {} refunds to be final ", pending.len());
        }
        if pending.is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if progress {
        eprintln!();
    }
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
    };
    writeln!(f, "line,out_trade_no,import,state,respcd,resperr,refund_syssn,txamt,reason,import_error")?;
    for (line, otn, what, err) in lines {
        let r = records.get(otn);
        let cols = [
            line.to_string(),
            otn.clone(),
            (*what).to_owned(),
            r.map(|r| r.state.to_string()).unwrap_or_default(),
            r.and_then(|r| r.respcd.clone()).unwrap_or_default(),
            r.and_then(|r| r.resperr.clone()).unwrap_or_default(),
            r.and_then(|r| r.refund_syssn.clone()).unwrap_or_default(),
            r.map(|r| r.txamt.to_string()).unwrap_or_default(),
            r.and_then(|r| r.reason.clone()).unwrap_or_default(),
            err.clone(),
        ];
        writeln!(f, "{}", cols.iter().map(|c| field(c)).collect::<Vec<_>>().join(","))?;
    }
    f.flush()?;
    Ok(pending.is_empty())
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
