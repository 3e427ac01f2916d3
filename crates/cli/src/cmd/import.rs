//! `qfrefund import`: every line reported as what it is — accepted, a duplicate, a conflict,
//! invalid, not written (Redis refused it: re-run), or of unknown fate (re-run: it is idempotent).

use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ledger::import::{Format, Lines};
use ledger::{Ledger, LedgerError, LineFate, NewRefund, State};
use serde_json::json;

use crate::connect::{EXIT_OUTCOME_UNKNOWN, open_enqueuer};

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
    /// write one CSV row per line with its outcome here; on a terminal it shows "N final / M,
    /// oldest open Ns", and it warns when no worker is alive.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Longest wait for --report, in seconds; the report is written with the states reached
    /// (exit 75: run the same import again to wait on) when it runs out.
    #[arg(long, default_value_t = 3_600)]
    report_timeout: u64,
}

pub async fn import(config: Option<&Path>, a: ImportArgs) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let format = match a.format.as_deref() {
        Some("csv") => Some(Format::Csv),
        Some("jsonl") => Some(Format::Jsonl),
        _ => None,
    };
    if a.dry_run {
        return dry_run(&mut Lines::new(BufReader::with_capacity(1 << 20, file), format));
    }
    // Connected (and any warning said) before the bar is drawn, so that the two never share a line.
    let ledger = open_enqueuer(config).await?;
    let bar = progress_bar(size);
    let mut lines = Lines::new(BufReader::with_capacity(1 << 20, bar.wrap_read(file)), format);
    // Merchants a refund may name: this configuration's, and those live workers serve now.
    let configured = crate::config::Config::load(config)?.merchant_names();
    let served = ledger.served_merchants().await?;
    let known = |m: &str| configured.iter().chain(&served).any(|k| k == m);
    let (mut accepted, mut duplicates, mut conflicts) = (0u64, 0u64, 0u64);
    let (mut confirmed, mut unknown_n, mut not_written_n) = (0u64, 0u64, 0u64);
    let (mut unknown, mut not_written) = (Vec::new(), Vec::new());
    let mut invalid = Vec::new();
    let mut conflicting = Vec::new();
    let started = std::time::Instant::now();
    // For --report: (line, out_trade_no, what the import did, error).
    // (line, (merchant, out_trade_no), what became of it, the error)
    let mut lines_seen: Vec<(usize, RefundKey, &'static str, String)> = Vec::new();
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
                    Some(Ok((line, r))) if !known(r.clone().normalised().merchant()) => {
                        // Already in the ledger (a re-run after "outcome unknown"): its record
                        // answers, whoever serves the merchant now.
                        let n = r.clone().normalised();
                        if ledger.get(n.merchant(), &n.out_trade_no).await?.is_some()
                            || ledger.summary(n.merchant(), &n.out_trade_no).await?.is_some()
                        {
                            batch.push((line, r));
                            continue;
                        }
                        let why = ledger::merchants::unknown(r.clone().normalised().merchant(), &configured, &served);
                        let error = format!("merchant: {why}");
                        if want_report {
                            lines_seen.push((line, key_of(&r), "invalid", error.clone()));
                        }
                        invalid.push(json!({"line": line, "error": error}));
                    }
                    Some(Ok(r)) => batch.push(r),
                    Some(Err(e)) => {
                        if want_report {
                            lines_seen.push((e.line, RefundKey::default(), "invalid", e.error.to_string()));
                        }
                        invalid.push(json!({"line": e.line, "error": e.error}))
                    }
                }
            }
            let (numbers, refunds): (Vec<usize>, Vec<NewRefund>) = batch.into_iter().unzip();
            let ids: Vec<RefundKey> = refunds.iter().map(key_of).collect();
            let l = ledger.clone();
            in_flight.push_back((numbers, ids, tokio::spawn(async move { l.enqueue_batch_reported(refunds).await })));
            continue;
        }
        let Some((numbers, ids, handle)) = in_flight.pop_front() else { break };
        let results = handle.await.context("enqueue task")?;
        for ((line, fate), otn) in numbers.into_iter().zip(results).zip(ids) {
            let (what, err) = match &fate {
                LineFate::Created | LineFate::InLedger => ("accepted", String::new()),
                LineFate::Duplicate => ("duplicate", String::new()),
                LineFate::Refused(e @ LedgerError::Conflict { .. }) => ("conflict", e.to_string()),
                LineFate::Refused(e @ LedgerError::Redis(_)) => ("not_written", e.to_string()),
                LineFate::Refused(e) => ("invalid", e.to_string()),
                LineFate::Unknown(why) => ("unknown", why.clone()),
            };
            if want_report {
                lines_seen.push((line, otn.clone(), what, err.clone()));
            }
            match fate {
                LineFate::Created => accepted += 1,
                LineFate::InLedger => {
                    accepted += 1;
                    confirmed += 1;
                }
                LineFate::Duplicate => duplicates += 1,
                LineFate::Refused(LedgerError::Conflict { out_trade_no, differences, .. }) => {
                    conflicts += 1;
                    if conflicting.len() < 1_000 {
                        conflicting
                            .push(json!({"line": line, "out_trade_no": out_trade_no, "differences": differences}));
                    }
                }
                LineFate::Refused(LedgerError::Redis(_)) => {
                    if not_written.len() < 1_000 {
                        not_written.push(json!({"line": line, "out_trade_no": otn, "error": err}));
                    }
                    not_written_n += 1;
                }
                LineFate::Refused(e) => invalid.push(json!({"line": line, "error": e.to_string()})),
                LineFate::Unknown(why) => {
                    if unknown.len() < 1_000 {
                        unknown.push(json!({"line": line, "out_trade_no": otn, "error": why}));
                    }
                    unknown_n += 1;
                }
            }
        }
        let rows = accepted + duplicates + conflicts + invalid.len() as u64 + unknown_n + not_written_n;
        let per_s = rows as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{rows} rows ({per_s:.0}/s): {accepted} accepted, {duplicates} duplicates, {conflicts} conflicts, {} invalid",
            invalid.len()
        ));
    }
    bar.finish_and_clear();
    invalid.sort_by_key(|v| v["line"].as_u64());
    lines_seen.sort_by_key(|l| l.0);
    let ok = conflicts == 0 && invalid.is_empty();
    let rerun = unknown_n + not_written_n > 0;
    let mut summary = json!({"accepted": accepted, "duplicates": duplicates, "conflicts": conflicts, "invalid": invalid,
        "conflicting": conflicting, "unknown": unknown_n, "unknown_lines": unknown,
        "not_written": not_written_n, "not_written_lines": not_written});
    if confirmed > 0 {
        summary["confirmed_after_error"] = json!(confirmed);
    }
    if rerun {
        summary["advice"] = json!(ledger::RERUN_ADVICE);
        eprintln!("{unknown_n} line(s) of unknown outcome and {not_written_n} not written: {}", ledger::RERUN_ADVICE);
    }
    crate::output::one(&summary)?;
    if let Some(path) = &a.report {
        let complete = write_report(&ledger, &lines_seen, path, Duration::from_secs(a.report_timeout)).await?;
        if !complete {
            eprintln!(
                "report written with refunds still in flight: --report-timeout ran out (run the same import again to wait longer)"
            );
            return Ok(ExitCode::from(crate::exit::UNAVAILABLE));
        }
    }
    Ok(if rerun {
        ExitCode::from(EXIT_OUTCOME_UNKNOWN)
    } else if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A progress bar on stderr when it is a terminal (the file's bytes read, rows per second in the
/// message, the time left), else nothing.
fn progress_bar(bytes: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(bytes);
    let style = indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg} (ETA {eta})")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Waits until every refund the import accepted (or found) is final or needs a person, then writes
/// one CSV row per input line. Returns whether everything settled before `timeout`.
/// A refund's name: (merchant, out_trade_no).
type RefundKey = (String, String);

fn key_of(r: &NewRefund) -> RefundKey {
    let r = r.clone().normalised();
    (r.merchant().to_owned(), r.out_trade_no)
}

async fn write_report(
    ledger: &Ledger,
    lines: &[(usize, RefundKey, &'static str, String)],
    path: &Path,
    timeout: Duration,
) -> anyhow::Result<bool> {
    use std::collections::HashMap;
    let wanted: Vec<RefundKey> = {
        let mut v: Vec<RefundKey> = lines
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
    let mut records: HashMap<RefundKey, ledger::Record> = HashMap::new();
    let mut pending: Vec<RefundKey> = wanted.clone();
    let progress = std::io::stderr().is_terminal();
    let mut warned = false;
    loop {
        let mut still = Vec::new();
        for (merchant, otn) in &pending {
            // (A final refund archived early reads as its summary.)
            let found = match ledger.get(merchant, otn).await? {
                Some(r) => Some(r),
                None => ledger.summary(merchant, otn).await?,
            };
            if let Some(r) = found {
                if !settled(&r) {
                    still.push((merchant.clone(), otn.clone()));
                }
                records.insert((merchant.clone(), otn.clone()), r);
            }
        }
        pending = still;
        let now = ledger.now_ms();
        let oldest = pending.iter().filter_map(|k| records.get(k)).map(|r| r.created_at).min();
        let open_for = oldest.map_or(String::new(), |t| format!(", oldest open {}s", (now - t).max(0) / 1000));
        let line = format!("{} final / {}{open_for}", wanted.len() - pending.len(), wanted.len());
        if progress {
            eprint!("\r{line}   ");
            let _ = std::io::stderr().flush();
        }
        if !pending.is_empty() && !warned && ledger.live_workers().await?.is_empty() {
            eprintln!("\nwarning: no worker is alive: these refunds wait until one starts (`qfrefund worker`)");
            warned = true;
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
    writeln!(f, "line,out_trade_no,import,state,respcd,resperr,refund_syssn,txamt,reason,import_error,merchant")?;
    for (line, key, what, err) in lines {
        let r = records.get(key);
        let cols = [
            line.to_string(),
            key.1.clone(),
            (*what).to_owned(),
            r.map(|r| r.state.to_string()).unwrap_or_default(),
            r.and_then(|r| r.respcd.clone()).unwrap_or_default(),
            r.and_then(|r| r.resperr.clone()).unwrap_or_default(),
            r.and_then(|r| r.refund_syssn.clone()).unwrap_or_default(),
            r.map(|r| r.txamt.to_string()).unwrap_or_default(),
            r.and_then(|r| r.reason.clone()).unwrap_or_default(),
            err.clone(),
            key.0.clone(),
        ];
        writeln!(f, "{}", cols.iter().map(|c| crate::output::csv_field(c)).collect::<Vec<_>>().join(","))?;
    }
    f.flush()?;
    Ok(pending.is_empty())
}

/// Validates every line as an import would (including duplicates and conflicts within the file)
/// and prints the same summary, without touching Redis.
fn dry_run<R: std::io::BufRead>(lines: &mut Lines<R>) -> anyhow::Result<ExitCode> {
    use std::collections::HashMap;
    let mut seen: HashMap<RefundKey, (usize, String)> = HashMap::new();
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
                let key = (r.merchant().to_owned(), r.out_trade_no.clone());
                match seen.get(&key) {
                    Some((_, hash)) if *hash == r.payload_hash() => duplicates += 1,
                    Some((first, _)) => {
                        conflicts += 1;
                        conflicting
                            .push(json!({"line": line, "out_trade_no": r.out_trade_no, "conflicts_with_line": first}));
                    }
                    None => {
                        valid += 1;
                        seen.insert(key, (line, r.payload_hash()));
                    }
                }
            }
        }
    }
    let ok = conflicts == 0 && invalid.is_empty();
    crate::output::one(
        &json!({"dry_run": true, "valid": valid, "duplicates_in_file": duplicates, "conflicts_in_file": conflicts,
               "invalid": invalid, "conflicting": conflicting,
               "note": "checked against the file only: refunds already in the ledger are reported when imported"}),
    )?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
