//! The producer and operator commands.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ledger::{Enqueued, Ledger, LedgerError, NewRefund};
use serde_json::json;

use crate::config::Config;

pub(crate) async fn open(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let c = Config::load(config)?;
    Ledger::connect(&c.redis_url, c.ledger.clone())
        .await
        .with_context(|| format!("connecting to Redis at {}", redact_url(&c.redis_url)))
}

/// The ledger for a command that only reads (status, list, events, audit, stats, reconcile): it
/// checks this configuration's shards against the ledger's, and never records them in a ledger
/// that has none yet (that is for the workers and producers).
pub(crate) async fn open_reader(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let c = Config::load(config)?;
    let ledger = ledger::LedgerConfig { record_layout: false, ..c.ledger.clone() };
    Ledger::connect(&c.redis_url, ledger)
        .await
        .with_context(|| format!("connecting to Redis at {}", redact_url(&c.redis_url)))
}

/// The ledger for a command that writes refunds (enqueue, import, operator actions, ping):
/// refused, as workers refuse it, when the Redis set-up would lose refunds — an evicting
/// `maxmemory-policy` always, no AOF unless `QFREFUND_REQUIRE_AOF=off`.
pub(crate) async fn open_producer(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let c = Config::load(config)?;
    match Ledger::connect_producer(&c.redis_url, c.ledger.clone(), c.require_aof).await {
        Ok(l) => Ok(l),
        Err(ledger::NotUsable::Refused(why)) => anyhow::bail!("refusing this Redis: {why}"),
        Err(e) => Err(anyhow::Error::new(e).context(format!("connecting to Redis at {}", redact_url(&c.redis_url)))),
    }
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
    #[arg(long, allow_negative_numbers = true)]
    amount: String,
    /// What the payment was for, in minor units (otherwise learned by enquiry).
    #[arg(long, allow_negative_numbers = true)]
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
        // A trace this command runs in (`TRACEPARENT`, as tools that start one set it): the
        // workers' spans for the refund join it.
        traceparent: std::env::var("TRACEPARENT").ok().filter(|t| ledger::producer::valid_traceparent(t)),
    };
    refund.clone().normalised().validate()?;
    let ledger = open_producer(config).await?;
    let known = Config::load(config)?.merchant_names();
    if let Err(unknown) = ledger.check_refund_merchant(&refund, &known).await? {
        return Err(crate::exit::invalid(anyhow::anyhow!("{unknown}")));
    }
    match ledger.enqueue(refund).await {
        Ok(e) => {
            crate::output::one(e.record())?;
            if matches!(e, Enqueued::Duplicate(_)) {
                eprintln!(
                    "note: {} was enqueued before with the same request; this is that record",
                    e.record().out_trade_no
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => write_failed(e),
    }
}

/// Exit status of a producer or operator command whose write may or may not have been applied
/// (Redis timed out or dropped the connection after the request was sent): run the same command
/// again — it is idempotent. 75 is EX_TEMPFAIL.
pub(crate) const EXIT_OUTCOME_UNKNOWN: u8 = crate::exit::UNAVAILABLE;

/// Reports a failed write: exit 75 when its outcome is unknown, else the error (exit 1).
pub(crate) fn write_failed(e: LedgerError) -> anyhow::Result<ExitCode> {
    let (code, message) = write_failure(&e);
    match code {
        Some(code) => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(code))
        }
        None => Err(anyhow::Error::new(e).context(message)),
    }
}

/// The exit status (None: the default 1) and the message for a failed write.
fn write_failure(e: &LedgerError) -> (Option<u8>, String) {
    if e.outcome_unknown() {
        (Some(EXIT_OUTCOME_UNKNOWN), format!("{} ({e})", ledger::OUTCOME_UNKNOWN_ADVICE))
    } else if e.is_retryable() {
        (None, "nothing was written: retry later with the same out_trade_no".into())
    } else {
        (None, "refused".into())
    }
}

pub async fn status(
    config: Option<&Path>,
    merchant: &str,
    out_trade_no: &str,
    attempts: bool,
) -> anyhow::Result<ExitCode> {
    let ledger = open_reader(config).await?;
    match ledger.get(merchant, out_trade_no).await? {
        Some(r) => {
            let mut shown = serde_json::to_value(&r)?;
            if attempts {
                shown["attempts"] = serde_json::to_value(ledger.attempts(merchant, out_trade_no).await?)?;
            }
            crate::output::one(&shown)?;
            Ok(ExitCode::SUCCESS)
        }
        None => match crate::archived::find(config, &ledger, merchant, out_trade_no).await? {
            Some(archived) => {
                crate::output::one(&archived)?;
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no refund with out_trade_no {out_trade_no:?} for merchant {merchant:?}");
                Ok(ExitCode::from(crate::exit::NOT_FOUND))
            }
        },
    }
}

/// Pauses (`pause`) or resumes a merchant, audited with who and why.
pub async fn pause(
    config: Option<&Path>,
    merchant: &str,
    pause: bool,
    why: &str,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    if why.trim().is_empty() {
        return Err(crate::exit::invalid(anyhow::anyhow!("--reason must say why")));
    }
    let who = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into());
    let ledger = open(config).await?;
    let done = if pause { ledger.pause(merchant, &who, why).await } else { ledger.resume(merchant, &who, why).await };
    let changed = match done {
        Ok(changed) => changed,
        Err(LedgerError::Invalid(e)) => {
            return Err(crate::exit::invalid(anyhow::anyhow!("no such merchant name {merchant:?}: {e}")));
        }
        Err(e) => return Err(e.into()),
    };
    if pause {
        crate::output::one(&json!({"merchant": merchant, "paused": true, "reason": why}))?;
    } else {
        crate::output::one(&json!({"merchant": merchant, "paused": false, "was_paused": changed}))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct OperatorArgs {
    out_trade_no: String,
    /// The refund's merchant (out_trade_no is unique per merchant).
    #[arg(long, env = "QFREFUND_MERCHANT", default_value = ledger::DEFAULT_MERCHANT)]
    merchant: String,
    /// Why (kept on the record and in the outcome stream).
    #[arg(long)]
    reason: String,
    /// Who (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

pub async fn operate(config: Option<&Path>, a: OperatorArgs, op: ledger::Operation) -> anyhow::Result<ExitCode> {
    if a.reason.trim().is_empty() {
        return Err(crate::exit::invalid(anyhow::anyhow!("--reason must say why")));
    }
    let who = a.by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into());
    let ledger = open_producer(config).await?;
    let done = match ledger.operate(&a.merchant, &a.out_trade_no, op, &who, &a.reason).await {
        Ok(done) => done,
        Err(e) => return write_failed(e),
    };
    match done {
        Ok(_) => {
            let rec = ledger.get(&a.merchant, &a.out_trade_no).await?.context("record vanished")?;
            crate::output::one(&rec)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("refused: {why}");
            Ok(ExitCode::from(match why {
                ledger::Refusal::NoSuchRefund(_) => crate::exit::NOT_FOUND,
                ledger::Refusal::Refused(_) => crate::exit::CONFLICT,
            }))
        }
    }
}

/// Puts given-up webhook deliveries back on the schedule.
pub async fn redeliver(
    config: Option<&Path>,
    ids: Vec<String>,
    all: bool,
    reason: &str,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    if ids.is_empty() && !all {
        return Err(crate::exit::invalid(anyhow::anyhow!(
            "name event ids (from `qfrefund list --webhook-failed`) or pass --all"
        )));
    }
    if reason.trim().is_empty() {
        return Err(crate::exit::invalid(anyhow::anyhow!("--reason must say why")));
    }
    let who = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into());
    let ledger = open(config).await?;
    let n = ledger.redeliver_webhooks(&ids, &who, reason.trim()).await?;
    crate::output::one(&json!({"rescheduled": n}))?;
    Ok(ExitCode::SUCCESS)
}

/// `qfrefund scope-merchants`: see `Ledger::scope_merchants`.
pub async fn scope_merchants(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ledger = open_producer(config).await?;
    let was = ledger.scope_merchants().await?;
    crate::output::one(&json!({"merchant_scoped": true, "was_shared": was}))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enqueue_of_unknown_outcome_exits_75_and_says_retry_the_same_out_trade_no() {
        let timeout = LedgerError::Redis(redis_io(std::io::ErrorKind::TimedOut));
        let (code, msg) = write_failure(&timeout);
        assert_eq!(code, Some(EXIT_OUTCOME_UNKNOWN));
        assert!(msg.contains("outcome unknown: retry with the same out_trade_no — it is idempotent"), "{msg}");
        let refused = LedgerError::Redis(redis_io(std::io::ErrorKind::ConnectionRefused));
        let (code, msg) = write_failure(&refused);
        assert_eq!(code, None, "exit 1");
        assert!(msg.contains("nothing was written"), "{msg}");
    }

    fn redis_io(kind: std::io::ErrorKind) -> redis::RedisError {
        std::io::Error::new(kind, "test").into()
    }
}
