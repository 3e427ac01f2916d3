//! The HTTP API, and the commands that read the ledger as a whole: `serve`, `events`, `audit`,
//! `stats`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::commands::{open_reader, wait_for_signal};
use crate::config::Config;
use crate::exit::out;
use crate::output::Rows;

/// Serves the API's metrics listener until the process ends.
async fn axum_serve(listener: tokio::net::TcpListener, app: api::Router) {
    if let Err(e) = api::serve(listener, app, std::future::pending()).await {
        tracing::warn!(error = %e, "metrics listener stopped");
    }
}

pub async fn serve(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let c = Config::load(config)?;
    let (listen, api_config) = c.api()?;
    let ledger = ledger::Ledger::connect(&c.redis_url, c.ledger.clone()).await.context("connecting to Redis")?;
    match ledger.check_server(c.require_aof).await {
        Ok(_) => {}
        Err(ledger::NotUsable::Refused(why)) => anyhow::bail!("refusing this Redis: {why}"),
        Err(e) => return Err(e.into()),
    }
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tokens = api_config.tokens.len(), "qfrefund API listening");
    // Scripts and tests read the address from here (the port may have been 0).
    out!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    // A WARN every minute while a Redis primary is above 80% of its maxmemory.
    let watched = ledger.clone();
    let watch = tokio::spawn(async move {
        loop {
            watched.warn_on_memory().await;
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }
    });
    let metrics_listen = c.loaded.settings.api.metrics_listen.clone();
    let (app, metrics_app) = api::apps(ledger, api_config);
    let metrics_server = match metrics_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(&at).await.with_context(|| format!("listening on {at} (metrics)"))?;
            out!("metrics on http://{}/metrics", l.local_addr()?);
            let _ = std::io::stdout().flush();
            Some(tokio::spawn(async move { axum_serve(l, metrics_app).await }))
        }
        None => None,
    };
    api::serve(listener, app, async { wait_for_signal().await }).await?;
    if let Some(m) = metrics_server {
        m.abort();
    }
    watch.abort();
    tracing::info!("API stopped");
    Ok(ExitCode::SUCCESS)
}

/// Prints the audit trail of operator actions as JSON lines.
pub async fn audit(config: Option<&Path>, from: Option<String>) -> anyhow::Result<ExitCode> {
    let ledger = open_reader(config).await?;
    let mut after = from.unwrap_or_else(|| "0".into());
    let mut rows = Rows::new(&[
        ("id", 16),
        ("at", 24),
        ("who", 12),
        ("action", 10),
        ("merchant", 12),
        ("out_trade_no", 24),
        ("from", 12),
        ("to", 12),
        ("outcome", 10),
        ("why", 0),
    ]);
    loop {
        let batch = ledger.audit(&after, 500).await?;
        for e in &batch {
            after.clone_from(&e.id);
            rows.print(e)?;
        }
        if batch.len() < 500 {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Counts by state, the oldest non-final refund's age, the due backlog and paused merchants, as
/// one JSON object.
/// `qfrefund workers`: one JSON line per live worker.
pub async fn workers(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ledger = open_reader(config).await?;
    let mut rows = Rows::new(&[
        ("name", 16),
        ("host", 16),
        ("version", 8),
        ("concurrency", 11),
        ("in_flight", 9),
        ("started_at", 24),
        ("heartbeat_at", 24),
    ]);
    for w in ledger.live_workers().await? {
        rows.print(&w)?;
    }
    Ok(ExitCode::SUCCESS)
}

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

/// Exit 0 when Redis (or the given URL) answers within 3 s.
pub async fn ping(config: Option<&Path>, http: Option<&str>) -> anyhow::Result<ExitCode> {
    let check = async {
        match http {
            Some(url) => {
                let resp = reqwest::Client::new().get(url).send().await.with_context(|| format!("GET {url}"))?;
                anyhow::ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
                Ok(())
            }
            None => {
                // Ready means a refund can be written now, not merely that Redis answers.
                let ledger = crate::commands::open_producer(config).await?;
                ledger.writable().await.context("Redis does not take writes (a refund could not be enqueued now)")
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => {
            eprintln!("unhealthy: {e:#}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            eprintln!("unhealthy: no answer within 3 s");
            Ok(ExitCode::FAILURE)
        }
    }
}

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
            out!("{}", serde_json::to_string(&s)?);
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
