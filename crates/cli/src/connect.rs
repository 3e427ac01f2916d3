//! Opening the ledger as each kind of command needs it (reader, producer, worker), waiting for a
//! stop signal, and what a failed write means for the exit code.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use ledger::{Ledger, LedgerError};

use crate::config::Config;

pub(crate) async fn open(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let c = Config::load(config)?;
    Ledger::connect(&c.redis_url, c.ledger.clone())
        .await
        .with_context(|| format!("connecting to Redis at {}", ledger::redact_url(&c.redis_url)))
}

/// The ledger for a command that only reads (status, list, events, audit, stats, reconcile): it
/// checks this configuration's shards against the ledger's, and never records them in a ledger
/// that has none yet (that is for the workers and producers).
pub(crate) async fn open_reader(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let c = Config::load(config)?;
    let ledger = ledger::LedgerConfig { record_layout: false, ..c.ledger.clone() };
    Ledger::connect(&c.redis_url, ledger)
        .await
        .with_context(|| format!("connecting to Redis at {}", ledger::redact_url(&c.redis_url)))
}

/// The ledger for a command that writes refunds (enqueue, import, operator actions, ping):
/// refused, as workers refuse it, when the Redis set-up would lose refunds — an evicting
/// `maxmemory-policy` always, no AOF unless `QFREFUND_REQUIRE_AOF=off`.
pub(crate) async fn open_producer(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let c = Config::load(config)?;
    connect_producer(&c, c.ledger.clone()).await
}

async fn connect_producer(c: &Config, ledger: ledger::LedgerConfig) -> anyhow::Result<Ledger> {
    match Ledger::connect_producer(&c.redis_url, ledger, c.require_aof).await {
        Ok(l) => Ok(l),
        Err(ledger::NotUsable::Refused(why)) => anyhow::bail!("refusing this Redis: {why}"),
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("connecting to Redis at {}", ledger::redact_url(&c.redis_url))))
        }
    }
}

/// [`open_producer`] for `enqueue` and `import`, which say so when they are the first process to
/// use this ledger: if the workers run with another namespace or tag, nothing would ever send what
/// is enqueued here.
pub(crate) async fn open_enqueuer(config: Option<&Path>) -> anyhow::Result<Ledger> {
    let c = Config::load(config)?;
    let probe = connect_producer(&c, ledger::LedgerConfig { record_layout: false, ..c.ledger.clone() }).await?;
    if probe.recorded_layout().await?.0.is_some() {
        return Ok(probe);
    }
    tracing::warn!(
        "no worker has used the ledger {}:{{{}}} on this Redis yet: these refunds wait until a worker with the same \
         namespace and queue_tag (QFREFUND_NAMESPACE, QFREFUND_QUEUE_TAG) starts",
        c.ledger.namespace,
        c.ledger.tag
    );
    connect_producer(&c, c.ledger.clone()).await
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
