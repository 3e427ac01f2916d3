//! `qfrefund ping`: the container health check.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

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
                let ledger = crate::connect::open_producer(config).await?;
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
