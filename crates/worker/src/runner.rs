//! Running a worker process: the apalis worker over the ledger backend, the webhook deliverer, the
//! merchants' announcement, metrics, and graceful shutdown.

use std::sync::Arc;

use apalis::prelude::{BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use ledger::Ledger;
use tracing::{error, info, warn};

use crate::backend::{FetchPolicy, LedgerBackend};
use crate::config::WorkerConfig;
use crate::job::Job;
use crate::processor::Processor;
use crate::shutdown::Shutdown;

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
}

/// A process-unique worker identity (leases and the audit trail name it).
pub fn unique_worker_id(base: &str) -> String {
    format!("{base}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// The apalis handler: runs the claimed step on a task of its own, so that nothing the runtime
/// does to the fetch loop (or to this future) can cancel a step between its claim and its
/// transition. Never an Err: apalis' own retries are not ours; every "later" is in the ledger.
async fn handle(job: Job, processor: Data<Arc<Processor>>) -> Result<(), BoxDynError> {
    let processor = Arc::clone(&processor);
    let otn = job.claimed.target.out_trade_no.clone();
    match tokio::spawn(async move { processor.run(job).await }).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!(out_trade_no = %otn, error = %e, "step failed; its lease will expire and it is due again"),
        Err(e) => error!(out_trade_no = %otn, error = %e, "step panicked; its lease will expire and it is due again"),
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
    info!(worker = %worker_id, concurrency = config.concurrency, "worker starting");

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
    let clock = tokio::spawn(follow_clock(ledger.clone(), shutdown.clone()));
    let trimmer = tokio::spawn(trim_streams(
        ledger.clone(),
        processor.shards().to_vec(),
        config.events_retention,
        shutdown.clone(),
    ));
    let retention = match &config.retention.archive {
        Some(setting) => {
            let sink = archive::Sink::from_setting(setting).map_err(|e| RunError::Config(e.to_string()))?;
            Some(tokio::spawn(crate::retention::run(
                ledger.clone(),
                processor.shards().to_vec(),
                std::sync::Arc::new(sink),
                config.retention.clone(),
                worker_id.clone(),
                processor.metrics().retention.clone(),
                shutdown.clone(),
            )))
        }
        None => {
            warn!(
                "no archive configured (QFREFUND_ARCHIVE): final refunds are never removed from Redis, which fills up"
            );
            None
        }
    };
    for warning in config.ledger.name_warnings() {
        warn!("{warning}");
    }

    let backend = LedgerBackend::new(
        processor.clone(),
        FetchPolicy { concurrency: config.concurrency, batch: config.fetch_batch, idle_wait: config.idle_wait },
    );
    let in_flight = backend.in_flight();
    let me = ledger::WorkerInfo {
        name: worker_id.clone(),
        host: host_name(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        concurrency: config.concurrency,
        in_flight: 0,
        merchants: Vec::new(),
        shards: processor.shards().to_vec(),
        started_at: ledger.now_ms(),
        heartbeat_at: 0,
        until: 0,
    };
    let announcer = tokio::spawn(announce_served(ledger.clone(), &config, me, in_flight.clone(), shutdown.clone()));
    let worker = WorkerBuilder::new(worker_id.as_str())
        .backend(backend)
        .concurrency(config.concurrency)
        .data(processor.clone())
        .build(handle);
    let stop = shutdown.clone();
    let run = worker.run_until(async move {
        stop.wait().await;
        Ok::<(), std::io::Error>(())
    });
    tokio::select! {
        r = run => if let Err(e) = r {
            // The backend never fails; this is apalis' own runtime.
            error!(error = %e, "the worker runtime stopped");
        },
        () = async {
            shutdown.wait().await;
            tokio::time::sleep(config.drain_grace).await;
        } => {
            let left = in_flight.load(std::sync::atomic::Ordering::SeqCst);
            warn!(grace = ?config.drain_grace, in_flight = left, "drain grace elapsed with refunds in flight; their leases will expire and another worker will enquire them");
        }
    }
    if let Some(w) = webhooks {
        let _ = w.await;
    }
    if let Some(r) = retention {
        let _ = r.await;
    }
    announcer.abort();
    if let Err(e) = ledger.unregister_worker(&worker_id).await {
        warn!(error = %e, "could not remove this worker from the live workers (it drops out after its TTL)");
    }
    clock.abort();
    trimmer.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    info!(worker = %worker_id, "worker stopped");
    Ok(())
}

/// Keeps this process' idea of Redis' clock current (every 10 s): leases, due times and the
/// not-found grace are all measured on it, and a host clock that steps (NTP, a resumed VM) must not
/// let a request outlive the lease another worker sees.
/// Also WARNs, every minute, when a Redis primary is above 80% of its maxmemory.
async fn follow_clock(ledger: Ledger, shutdown: Shutdown) {
    let mut round = 0u32;
    while !shutdown.is_triggered() {
        if round.is_multiple_of(6) {
            ledger.warn_on_memory().await;
        }
        round = round.wrapping_add(1);
        shutdown.sleep(std::time::Duration::from_secs(10)).await;
        if let Err(e) = ledger.sync_clock().await {
            warn!(error = %e, "could not read Redis' clock; leases keep the last offset");
        }
    }
}

/// Trims the outcome streams of the shards this worker serves by age, now and then (a quarter of
/// the retention, at most a minute apart); a backlog of old entries goes in bounded steps, one
/// right after the other.
async fn trim_streams(ledger: Ledger, shards: Vec<usize>, retention: std::time::Duration, shutdown: Shutdown) {
    let every = (retention / 4).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60));
    while !shutdown.is_triggered() {
        for &shard in &shards {
            loop {
                match ledger.trim_events(shard, retention).await {
                    Ok(n) if n as usize >= ledger::store::trim::TRIM_LIMIT => continue,
                    Ok(_) => break,
                    Err(e) => {
                        warn!(shard, error = %e, "trimming the outcome stream failed; trying again later");
                        break;
                    }
                }
            }
        }
        shutdown.sleep(every).await;
    }
}

/// This host's name (for the live-workers view).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Announces the merchants this worker holds credentials for, every heartbeat, so that producers
/// without credentials can refuse a refund nobody can send (see `ledger::merchants`), and
/// registers the worker itself (`me`, with the refunds in flight now) among the live workers.
fn announce_served(
    ledger: Ledger,
    config: &WorkerConfig,
    me: ledger::WorkerInfo,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = ()> + use<> {
    // Only the merchants of the shards this worker fetches from: it serves no other.
    let shards = config.serve_shards.clone();
    let mut merchants: Vec<String> = config
        .merchants
        .keys()
        .filter(|m| shards.as_ref().is_none_or(|s| s.contains(&ledger.shard_of(m))))
        .cloned()
        .collect();
    merchants.sort();
    let every = config.heartbeat;
    let ttl = every * 3;
    let mut me = ledger::WorkerInfo { merchants: merchants.clone(), ..me };
    async move {
        while !shutdown.is_triggered() {
            if let Err(e) = ledger.announce_served(&merchants, ttl).await {
                warn!(error = %e, "announcing the merchants this worker serves failed");
            }
            me.in_flight = in_flight.load(std::sync::atomic::Ordering::SeqCst);
            if let Err(e) = ledger.register_worker(&me, ttl).await {
                warn!(error = %e, "registering this worker among the live workers failed");
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
    use axum::http::header;
    use axum::response::IntoResponse;
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" })).route(
        "/metrics",
        axum::routing::get(move || {
            let (ledger, metrics) = (ledger.clone(), metrics.clone());
            async move {
                // While Redis is down the process's own series are still served, with
                // qfrefund_ledger_up 0 in place of the ledger's gauges.
                let view = qfrefund_telemetry::LedgerView::read(&ledger).await;
                ([(header::CONTENT_TYPE, qfrefund_telemetry::CONTENT_TYPE)], metrics.render(view.as_ref()))
                    .into_response()
            }
        }),
    );
    let stop = async move { shutdown.wait().await };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        warn!(error = %e, "metrics server stopped");
    }
}
