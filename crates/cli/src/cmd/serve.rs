//! `qfrefund serve`: the HTTP API (and, when asked, its metrics on a listener of their own).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::connect::wait_for_signal;

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
    // (Not through `out!`: a server whose standard output is closed keeps serving.)
    let _ = writeln!(std::io::stdout(), "listening on http://{addr}");
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
            let _ = writeln!(std::io::stdout(), "metrics on http://{}/metrics", l.local_addr()?);
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
