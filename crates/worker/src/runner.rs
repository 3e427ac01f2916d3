//! Running a worker process: the apalis worker under a supervisor, the feeder, the janitor, and
//! graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BackendExt, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use apalis_redis::{Config as ApalisConfig, RedisStorage};
use ledger::Ledger;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::WorkerConfig;
use crate::feeder::{self, Job};
use crate::processor::Processor;

/// A shutdown signal every task of the process can wait on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Pulls the [`Shutdown`] signal.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when shutdown is triggered (at once if it was).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|t| *t).await;
    }

    /// Sleeps for `d`, or less if shutdown comes first.
    pub async fn sleep(&self, d: Duration) {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = self.wait() => {}
        }
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A process-unique worker identity: apalis-redis refuses a name it saw within the last heartbeat
/// window, even after a clean stop.
pub fn unique_worker_id(base: &str) -> String {
    format!("{base}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// The apalis-redis configuration a worker runs with (also what `make bench` measures bare apalis with).
pub fn apalis_config(config: &WorkerConfig, queue: &str) -> ApalisConfig {
    ApalisConfig::default()
        .queue(queue)
        .batch_size(config.fetch_batch)
        .heartbeat_interval(config.heartbeat)
        .missed_heartbeats(config.missed_heartbeats)
        // The ledger's lease and fence decide who may act on a refund; apalis' own task locking
        // would add an O(backlog) LREM per job and guard nothing more.
        .lock_tasks(false)
        .emit_events(false)
        // Needed: it is what acknowledges a job.
        .persist_results(true)
        // Set explicitly (None is sent as EXPIRE 0). qfrefund does not use apalis idempotency keys:
        // duplicate deliveries are harmless because the claim script admits one holder.
        .idempotency_ttl(Some(config.feed_hold))
}

async fn handle(job: serde_json::Value, processor: Data<Arc<Processor>>) -> Result<(), BoxDynError> {
    let Some(job) = Job::from_json(&job) else {
        warn!(%job, "job without an out_trade_no: dropped (the ledger's due-index is the source of truth)");
        return Ok(());
    };
    // Never an Err: apalis' own retries (linear, whole seconds, hard-coded) are not ours; a failed
    // step leaves the refund in the due-index, which brings it back.
    if let Err(e) = processor.process(&job).await {
        warn!(out_trade_no = %job.otn, error = %e, "step failed; the refund stays due");
    }
    Ok(())
}

/// Runs a worker until `shutdown`, then drains in-flight refunds within the grace period.
pub async fn run(config: WorkerConfig, shutdown: Shutdown) -> Result<(), RunError> {
    config.validate().map_err(RunError::Config)?;
    let ledger = Ledger::connect(&config.redis_url, config.ledger.clone()).await?;
    // The same checks as every producer: refusals stop the worker, weaker durability is a WARN.
    let server = match ledger.check_server(config.require_aof).await {
        Ok(server) => server,
        Err(ledger::NotUsable::Refused(why)) => return Err(RunError::Config(why)),
        Err(ledger::NotUsable::Ledger(e)) => return Err(e.into()),
    };
    // Redis ≥ 7.2 can fsync on demand: each claim reaches the AOF before its refund is sent, so a
    // Redis crash cannot roll a sent refund back to queued. Older Redis relies on appendfsync.
    let durable = server.aof_enabled && server.waitaof;
    info!(redis = %server.version, aof = server.aof_enabled, durable_claims = durable, "Redis checked");
    let worker_id = unique_worker_id(&config.worker_name);
    let processor = Arc::new(
        Processor::new(ledger.clone(), &config, worker_id.clone())
            .map_err(|e| RunError::Config(e.to_string()))?
            .with_durable_claims(durable),
    );
    let apalis_con = ledger.connect_again().await?;
    let queue = ledger.keys().apalis_queue();
    let storage: RedisStorage<serde_json::Value, ledger::RedisConn> =
        RedisStorage::new(apalis_con.clone()).with_config(apalis_config(&config, &queue));
    info!(worker = %worker_id, queue, concurrency = config.concurrency, "worker starting");

    let metrics_server = match &config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| RunError::Config(format!("metrics_listen {addr}: {e}")))?;
            info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics on /metrics");
            Some(tokio::spawn(serve_metrics(listener, ledger.clone(), processor.metrics(), shutdown.clone())))
        }
        None => None,
    };
    let hooks: std::collections::HashMap<String, crate::webhooks::Webhook> =
        config.merchants.values().filter_map(|m| m.webhook.clone().map(|w| (m.name.clone(), w))).collect();
    let webhooks = (!hooks.is_empty()).then(|| {
        info!(merchants = hooks.len(), "delivering final outcomes to webhooks");
        tokio::spawn(crate::webhooks::run(
            ledger.clone(),
            hooks,
            config.webhooks.clone(),
            worker_id.clone(),
            processor.metrics().webhooks.clone(),
            shutdown.clone(),
        ))
    });
    let announcer = tokio::spawn(announce_served(ledger.clone(), &config, shutdown.clone()));
    let feeder =
        tokio::spawn(feeder::run(ledger.clone(), storage.clone(), processor.clone(), config.clone(), shutdown.clone()));
    let janitor = tokio::spawn(janitor(apalis_con, storage.get_config().clone(), shutdown.clone()));

    let mut restarts = 0u32;
    let mut delay = Duration::from_millis(200);
    while !shutdown.is_triggered() {
        let name = format!("{worker_id}-r{restarts}");
        let worker = WorkerBuilder::new(name.as_str())
            .backend(storage.clone().poll_with_interval(config.poll_interval))
            .concurrency(config.concurrency)
            .data(processor.clone())
            .build(handle);
        let stop = shutdown.clone();
        let signal = async move {
            stop.wait().await;
            Ok::<(), std::io::Error>(())
        };
        let run = worker.run_until(signal);
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => r,
            () = async {
                shutdown.wait().await;
                tokio::time::sleep(config.drain_grace).await;
            } => {
                warn!(grace = ?config.drain_grace, "drain grace elapsed with refunds in flight; their leases will expire and another worker will enquire them");
                break;
            }
        };
        match result {
            Ok(()) => break,
            Err(e) => {
                restarts += 1;
                error!(error = %e, restarts, "apalis worker stopped; restarting");
                shutdown.sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    let _ = feeder.await;
    if let Some(w) = webhooks {
        let _ = w.await;
    }
    janitor.abort();
    announcer.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    info!(worker = %worker_id, "worker stopped");
    Ok(())
}

/// Announces the merchants this worker holds credentials for, every heartbeat, so that producers
/// without credentials can refuse a refund nobody can send (see `ledger::merchants`).
fn announce_served(
    ledger: Ledger,
    config: &WorkerConfig,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = ()> + use<> {
    let mut merchants: Vec<String> = config.merchants.keys().cloned().collect();
    merchants.sort();
    let every = config.heartbeat;
    let ttl = every * (config.missed_heartbeats.max(1) as u32 + 1);
    async move {
        while !shutdown.is_triggered() {
            if let Err(e) = ledger.announce_served(&merchants, ttl).await {
                warn!(error = %e, "announcing the merchants this worker serves failed");
            }
            shutdown.sleep(every).await;
        }
    }
}

/// `/metrics`: this process' counters and the ledger's gauges; `/healthz`: the process is up.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    ledger: Ledger,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: Shutdown,
) {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" })).route(
        "/metrics",
        axum::routing::get(move || {
            let (ledger, metrics) = (ledger.clone(), metrics.clone());
            async move {
                let mut out = String::new();
                metrics.render(&mut out);
                let stats = match ledger.stats().await {
                    Ok(s) => s,
                    Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")).into_response(),
                };
                stats.to_prometheus(&mut out);
                let merchants = match (
                    ledger.served_merchants().await,
                    ledger.unserved_refunds(ledger::merchants::METRICS_SCAN).await,
                ) {
                    (Ok(served), Ok(unserved)) => Some((served, unserved)),
                    _ => None,
                };
                ledger::gauges::render_extra(merchants.as_ref().map(|(s, u)| (s.as_slice(), u)), &mut out);
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
            }
        }),
    );
    let stop = async move { shutdown.wait().await };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        warn!(error = %e, "metrics server stopped");
    }
}

/// Deletes finished apalis jobs (apalis-redis keeps every job's data and result until vacuumed;
/// its own vacuum reads the whole data hash in one script). Bounded work per call.
async fn janitor(mut con: ledger::RedisConn, queue: ApalisConfig, shutdown: Shutdown) {
    let script = redis::Script::new(include_str!("janitor.lua"));
    while !shutdown.is_triggered() {
        let mut removed = 1000;
        while removed >= 1000 {
            removed = match script
                .key(queue.done_jobs_set())
                .key(queue.job_data_hash())
                .arg(queue.job_meta_hash())
                .arg(1000)
                .invoke_async::<u64>(&mut con)
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "janitor failed");
                    0
                }
            };
        }
        shutdown.sleep(Duration::from_secs(5)).await;
    }
}
