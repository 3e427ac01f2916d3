//! `qfrefund worker`: process refunds until SIGTERM/SIGINT, draining in-flight ones.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::connect::wait_for_signal;

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
