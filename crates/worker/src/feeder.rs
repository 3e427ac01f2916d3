//! Feeds apalis from the ledger's due-index.
//!
//! Why not schedule each next step as a delayed apalis job? Because apalis-redis 1.0 puts every
//! job, immediate or delayed, in one scheduled set and promotes *all* due ones with a single Lua
//! `unpack`: 8 000 due at once (a 20k import, or enquiries piling up during an outage) crash every
//! worker for good. So the due-index (a sorted set we own) is the schedule, and this feeder hands
//! apalis what is due in chunks, never letting more than `feed_high_water` jobs wait there. A fed
//! refund is held for `feed_hold`; if its job is lost it becomes due again — nothing depends on an
//! apalis job surviving.

use std::time::Duration;

use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use ledger::{Ledger, RefundRef};
use tracing::{debug, warn};

use crate::config::WorkerConfig;
use crate::runner::Shutdown;

/// The apalis job: which refund to look at, and its payment and merchant so the claim can name
/// every key it touches without reading the record first. Carried as plain JSON so no payload can
/// fail to decode (apalis-redis stops the whole worker on a codec error); jobs written before the
/// payment and merchant were added still work (the processor reads the record for them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub otn: String,
    pub syssn: Option<String>,
    pub merchant: Option<String>,
}

impl Job {
    pub fn to_json(r: &RefundRef) -> serde_json::Value {
        serde_json::json!({ "otn": r.out_trade_no, "syssn": r.syssn, "merchant": r.merchant })
    }

    /// `None`: the payload names no refund.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty()).map(str::to_owned);
        Some(Self { otn: field("otn")?, syssn: field("syssn"), merchant: field("merchant") })
    }
}

/// At most this many refunds run straight from the feeder at once (see [`run`]).
const DIRECT_MAX: usize = 8;

/// Runs until shutdown: feed what is due, then wait for a producer's wake-up or `feed_idle`.
///
/// A small feed (≤ `DIRECT_MAX` refunds) that finds apalis empty is processed here, by this
/// process, instead of being pushed through apalis: apalis-redis 1.0 intermittently leaves a
/// pushed job unfetched for up to one heartbeat interval (measured: idle pickup outliers of
/// 0.2–0.85 s with a 2 s heartbeat, ~7 s with 10 s), which is the latency a single refund
/// enqueued into a quiet system would otherwise see. Nothing else changes: the claim still decides
/// who acts, and a refund whose process dies comes back when its feed hold expires, exactly as a
/// lost apalis job would. Bulk work still flows through apalis.
pub async fn run(
    ledger: Ledger,
    mut storage: RedisStorage<serde_json::Value, ledger::RedisConn>,
    processor: std::sync::Arc<crate::processor::Processor>,
    config: WorkerConfig,
    shutdown: Shutdown,
) {
    let direct = std::sync::Arc::new(tokio::sync::Semaphore::new(DIRECT_MAX));
    let mut running = tokio::task::JoinSet::new();
    let queue = storage.get_config().clone();
    let (active, scheduled) = (queue.active_jobs_list(), queue.scheduled_jobs_set());
    let wake_key = ledger.keys().wake();
    let mut waker: Option<redis::aio::MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(100);
    let mut clock_synced = std::time::Instant::now();
    while !shutdown.is_triggered() {
        if clock_synced.elapsed() > Duration::from_secs(10) {
            clock_synced = std::time::Instant::now();
            if let Err(e) = ledger.sync_clock().await {
                debug!(error = %e, "could not read Redis' clock");
            }
        }
        let fed = async {
            // Room left in apalis: ready jobs plus scheduled ones already due.
            let now_s = ledger.now_ms() / 1000;
            let (ready, due): (usize, usize) = redis::pipe()
                .llen(&active)
                .zcount(&scheduled, "-inf", now_s)
                .query_async(&mut ledger.connection())
                .await?;
            let room = config.feed_high_water.saturating_sub(ready + due).min(config.feed_batch);
            if room == 0 {
                return Ok::<Option<usize>, FeedError>(None);
            }
            let mut ids = ledger.feed(room, config.feed_hold).await?;
            // Quiet system: run a small feed here rather than wait on apalis' fetch.
            if !ids.is_empty() && ids.len() <= DIRECT_MAX && ready + due == 0 {
                let permits: Vec<_> = (0..ids.len()).map_while(|_| direct.clone().try_acquire_owned().ok()).collect();
                let local: Vec<RefundRef> = ids.drain(..permits.len()).collect();
                for (r, permit) in local.into_iter().zip(permits) {
                    let processor = processor.clone();
                    running.spawn(async move {
                        let _permit = permit;
                        let job = Job { otn: r.out_trade_no, syssn: Some(r.syssn), merchant: Some(r.merchant) };
                        if let Err(e) = processor.process(&job).await {
                            warn!(out_trade_no = %job.otn, error = %e, "step failed; the refund stays due");
                        }
                    });
                }
                while running.try_join_next().is_some() {}
            }
            if !ids.is_empty() {
                let n = ids.len();
                storage
                    .push_bulk(ids.iter().map(Job::to_json).collect())
                    .await
                    .map_err(|e| FeedError::Apalis(e.to_string()))?;
                debug!(fed = n, "fed due refunds to apalis");
            }
            // Filled apalis up to the high-water mark: wait for the workers, do not spin.
            if ids.len() == room && room < config.feed_batch {
                return Ok(None);
            }
            Ok(Some(ids.len()))
        }
        .await;
        match fed {
            Ok(Some(n)) if n >= config.feed_batch => continue, // more is due: feed again at once
            Ok(Some(_)) => backoff = Duration::from_millis(100),
            // apalis has all it can take: let the workers eat into it.
            Ok(None) => {
                shutdown.sleep(config.poll_interval).await;
                continue;
            }
            Err(e) => {
                warn!(error = %e, "feeding failed; retrying");
                shutdown.sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        // Idle: block on the wake list (a dedicated connection: a blocking command would stall
        // every other command multiplexed on the shared one).
        if waker.is_none() {
            waker = open_waker(&config).await;
        }
        // Wait no longer than until the next refund is due.
        let wait = match ledger.next_due().await {
            Ok(Some(at)) => {
                Duration::from_millis((at - ledger.now_ms()).clamp(1, config.feed_idle.as_millis() as i64) as u64)
            }
            _ => config.feed_idle,
        };
        match waker.as_mut() {
            Some(con) => {
                let secs = wait.as_secs_f64().max(0.001);
                let woke: Result<Option<(String, String)>, _> =
                    redis::cmd("BLPOP").arg(&wake_key).arg(secs).query_async(con).await;
                if woke.is_err() {
                    waker = None;
                } else if woke.is_ok_and(|w| w.is_some()) {
                    // Drain the other wake-ups: one feed serves them all.
                    let _: Result<(), _> = redis::cmd("DEL").arg(&wake_key).query_async(con).await;
                }
            }
            None => shutdown.sleep(wait).await,
        }
    }
    // Shutting down: let the refunds running here finish, within the drain grace.
    let _ = tokio::time::timeout(config.drain_grace, async { while running.join_next().await.is_some() {} }).await;
}

async fn open_waker(config: &WorkerConfig) -> Option<redis::aio::MultiplexedConnection> {
    // Opened anew after every error: with Sentinel this also finds the current primary.
    let client = ledger::redis_client(&config.redis_url, config.ledger.tls_ca_file.as_deref()).await.ok()?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    client.get_multiplexed_async_connection_with_config(&cfg).await.ok()
}

#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("apalis push: {0}")]
    Apalis(String),
}
