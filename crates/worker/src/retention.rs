//! The workers' retention: final refunds older than `retention` are archived into the sink,
//! then removed from Redis (leaving tombstones, see `ledger::store::retention`), shard by shard,
//! in bounded batches; tombstones older than `idempotency_retention` are swept. One worker
//! archives a shard at a time (a lease in the shard); the others skip it. Succeeded refunds go
//! earlier, after `summary_after`, leaving a summary besides their tombstones (see
//! `ledger::store::summary`); summaries go at the retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use archive::{ArchivedRefund, Sink};
use ledger::Ledger;
use ledger::refund::tombstone::{date_of_day, day_of};
use tracing::{info, warn};

use crate::shutdown::Shutdown;

/// Refunds read, archived and removed per step.
const BATCH: usize = 500;
/// How long a worker holds a shard's archiving without renewing it (after a crash, another
/// worker takes the shard over this long after).
const LEASE: Duration = Duration::from_secs(10);
/// Sweep calls per shard per round (each looks at a few dozen tombstone buckets).
const SWEEPS_PER_ROUND: usize = 100;

/// What retention does, and where it archives.
#[derive(Clone)]
pub struct Retention {
    /// Final refunds older than this are archived, then removed from Redis.
    pub retention: Duration,
    /// How long a removed refund's tombstone answers for it.
    pub idempotency_retention: Duration,
    /// Audit-trail entries older than this are archived, then trimmed from the stream.
    pub audit_retention: Duration,
    /// The archive sink's setting (`file:///path`); `None`: nothing is ever removed.
    pub archive: Option<String>,
    /// Final refunds older than this are archived, then replaced in Redis by a summary and their
    /// tombstones (as the ledger's layout allows: see `ledger::store::summary`); `None` (or not
    /// under `retention`): they stay whole until `retention`.
    pub summary_after: Option<Duration>,
}

impl std::fmt::Debug for Retention {
    // The archive's URL may hold a database password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("retention", &self.retention)
            .field("idempotency_retention", &self.idempotency_retention)
            .field("audit_retention", &self.audit_retention)
            .field("summary_after", &self.summary_after)
            .field("archive", &self.archive.as_deref().map(archive::postgres::redact))
            .finish()
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 86_400),
            idempotency_retention: Duration::from_secs(400 * 86_400),
            audit_retention: Duration::from_secs(400 * 86_400),
            archive: None,
            summary_after: Some(Duration::from_secs(3600)),
        }
    }
}

impl Retention {
    pub fn validate(&self) -> Result<(), String> {
        if self.retention < Duration::from_secs(1) {
            return Err("retention must be at least a second".into());
        }
        if self.audit_retention < Duration::from_secs(1) {
            return Err("audit_retention must be at least a second".into());
        }
        if self.idempotency_retention < self.retention {
            return Err(format!(
                "idempotency_retention ({:?}) must be at least the retention ({:?}): a refund's tombstone must outlive \
                 its record, or the same request could become a second refund",
                self.idempotency_retention, self.retention
            ));
        }
        if let Some(a) = &self.archive {
            Sink::from_setting(a).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// What retention has done in this process, and what waits.
#[derive(Debug, Default)]
pub struct RetentionCounters {
    pub archived: AtomicU64,
    pub removed: AtomicU64,
    /// Final refunds past the retention still in Redis, at the last look (every shard served).
    pub backlog: AtomicU64,
    pub tombstones_swept: AtomicU64,
    /// Final refunds archived early, their summaries kept.
    pub summarised: AtomicU64,
    /// Summaries past the retention removed.
    pub summaries_expired: AtomicU64,
}

/// Runs retention for `shards` until shutdown.
pub async fn run(
    ledger: Ledger,
    shards: Vec<usize>,
    sink: Arc<Sink>,
    cfg: Retention,
    owner: String,
    counters: Arc<RetentionCounters>,
    shutdown: Shutdown,
) {
    let soonest = cfg.summary_after.map_or(cfg.retention, |a| a.min(cfg.retention));
    let every = (soonest / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    info!(
        archive = %sink.describe(),
        retention = ?cfg.retention,
        summary_after = ?cfg.summary_after,
        "archiving final refunds past the retention"
    );
    if cfg.idempotency_retention < Duration::from_secs(366 * 86_400) {
        warn!(
            idempotency_retention = ?cfg.idempotency_retention,
            "idempotency_retention is under a year: QFPay accepts refunds of some payments for 365 days, and once a \
             payment's tombstone is swept its archived refunds no longer count against an over-refund"
        );
    }
    let mut told = false;
    while !shutdown.is_triggered() {
        match ledger.retention_enabled().await {
            Ok(true) => {}
            Ok(false) => {
                if !told {
                    warn!(
                        "retention waits: this ledger predates tombstones. Once no older qfrefund process writes it, run \
                         `qfrefund enable-retention`"
                    );
                    told = true;
                }
                shutdown.sleep(every).await;
                continue;
            }
            Err(e) => {
                warn!(error = %e, "reading whether retention is enabled failed");
                shutdown.sleep(every).await;
                continue;
            }
        }
        let mut backlog = 0;
        for &shard in &shards {
            if let Err(e) = archive_shard(&ledger, shard, &sink, &cfg, &owner, &counters, &shutdown).await {
                warn!(shard, error = %e, "archiving failed; nothing was removed that the archive does not hold; trying again later");
            }
            if let Err(e) = archive_audit(&ledger, shard, &sink, &cfg, &owner, &shutdown).await {
                warn!(shard, error = %e, "archiving the audit trail failed; nothing was trimmed that the archive does not hold");
            }
            match ledger.retention_backlog(shard, cfg.retention).await {
                Ok(n) => backlog += n,
                Err(e) => warn!(shard, error = %e, "reading the retention backlog failed"),
            }
            for _ in 0..SWEEPS_PER_ROUND {
                match ledger.sweep_tombstones(shard, cfg.idempotency_retention).await {
                    Ok((n, round_done)) => {
                        counters.tombstones_swept.fetch_add(n, Ordering::Relaxed);
                        if round_done {
                            break;
                        }
                    }
                    Err(e) => {
                        warn!(shard, error = %e, "sweeping old tombstones failed");
                        break;
                    }
                }
            }
        }
        counters.backlog.store(backlog, Ordering::Relaxed);
        shutdown.sleep(every).await;
    }
    for &shard in &shards {
        let _ = ledger.release_archiver(shard, &owner).await;
    }
}

/// One retention round over `shards` now (what `qfrefund prune` runs): (archived, removed).
pub async fn prune_once(
    ledger: &Ledger,
    shards: &[usize],
    sink: &Sink,
    cfg: &Retention,
    owner: &str,
) -> Result<(u64, u64), String> {
    if !ledger.retention_enabled().await.map_err(|e| e.to_string())? {
        return Err("this ledger predates tombstones: once no older qfrefund process writes it, run \
                    `qfrefund enable-retention`"
            .into());
    }
    let counters = RetentionCounters::default();
    let (_trigger, never) = Shutdown::new();
    for &shard in shards {
        if !ledger.take_archiver(shard, owner, LEASE).await.map_err(|e| e.to_string())? {
            return Err(format!("shard {shard} is being archived by a worker now: try again later"));
        }
        archive_shard(ledger, shard, sink, cfg, owner, &counters, &never).await?;
        let _ = ledger.release_archiver(shard, owner).await;
    }
    Ok((counters.archived.load(Ordering::Relaxed), counters.removed.load(Ordering::Relaxed)))
}

/// Archives and removes `shard`'s final refunds past the retention, then archives its
/// final refunds past `summary_after` and keeps their summaries, then removes the
/// summaries past the retention, a batch at a time, while this worker holds the shard's
/// archiving.
async fn archive_shard(
    ledger: &Ledger,
    shard: usize,
    sink: &Sink,
    cfg: &Retention,
    owner: &str,
    counters: &RetentionCounters,
    shutdown: &Shutdown,
) -> Result<(), String> {
    archive_batches(ledger, shard, sink, cfg.retention, false, owner, counters, shutdown).await?;
    let early = cfg.summary_after.filter(|a| *a < cfg.retention);
    if let Some(after) = early
        && ledger.summaries_enabled().await.map_err(|e| e.to_string())?
    {
        archive_batches(ledger, shard, sink, after, true, owner, counters, shutdown).await?;
    }
    // Summaries go only while this worker holds the shard's archiving (the retention it has is
    // the one the archiver of the shard applies).
    while !shutdown.is_triggered() && ledger.take_archiver(shard, owner, LEASE).await.map_err(|e| e.to_string())? {
        let n = ledger.expire_summaries(shard, cfg.retention, BATCH).await.map_err(|e| e.to_string())?;
        counters.summaries_expired.fetch_add(n, Ordering::Relaxed);
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(())
}

/// Archives `shard`'s refunds past `age`, a batch at a time, then removes them: final ones
/// (`summarise` false), or ones past `summary_after` keeping their summaries.
#[allow(clippy::too_many_arguments)]
async fn archive_batches(
    ledger: &Ledger,
    shard: usize,
    sink: &Sink,
    age: Duration,
    summarise: bool,
    owner: &str,
    counters: &RetentionCounters,
    shutdown: &Shutdown,
) -> Result<(), String> {
    while !shutdown.is_triggered() && ledger.take_archiver(shard, owner, LEASE).await.map_err(|e| e.to_string())? {
        let batch = if summarise {
            ledger.summarising(shard, age, BATCH).await
        } else {
            ledger.retained(shard, age, BATCH).await
        }
        .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            return Ok(());
        }
        let now = ledger.now_ms();
        let lines: Vec<ArchivedRefund> = batch.iter().map(|r| ArchivedRefund::of(r, now)).collect();
        let written = sink.write(shard, &date_of_day(day_of(now)), lines).await.map_err(|e| e.to_string())?;
        counters.archived.fetch_add(written.lines, Ordering::Relaxed);
        crate::failpoint("archive-written");
        // Renewed before removing (the write may have been slow); the removal checks it again,
        // atomically: a worker that lost the shard meanwhile removes nothing.
        if !ledger.take_archiver(shard, owner, LEASE).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        let removed = if summarise {
            ledger.summarise_archived(owner, &batch).await
        } else {
            ledger.remove_archived(owner, &batch).await
        }
        .map_err(|e| e.to_string())?;
        crate::failpoint("archive-removed");
        counters.removed.fetch_add(removed.removed, Ordering::Relaxed);
        if summarise {
            counters.summarised.fetch_add(removed.removed, Ordering::Relaxed);
        }
        tracing::debug!(
            shard,
            archived = written.lines,
            already = written.already,
            removed = removed.removed,
            changed = removed.changed,
            summarised = summarise,
            "archived"
        );
        // No progress (every refund changed since it was read, or the lease lost): this round
        // ends here, rather than reading the same batch again at once.
        if removed.removed == 0 {
            return Ok(());
        }
    }
    Ok(())
}

/// Archives `shard`'s audit-trail entries older than `audit_retention`, then trims them from
/// the stream, a batch at a time, while this worker holds the shard's archiving.
async fn archive_audit(
    ledger: &Ledger,
    shard: usize,
    sink: &Sink,
    cfg: &Retention,
    owner: &str,
    shutdown: &Shutdown,
) -> Result<(), String> {
    while !shutdown.is_triggered() && ledger.take_archiver(shard, owner, LEASE).await.map_err(|e| e.to_string())? {
        let entries = ledger.audit_past(shard, cfg.audit_retention, BATCH).await.map_err(|e| e.to_string())?;
        let Some(last) = entries.last().map(|(id, _)| id.clone()) else { return Ok(()) };
        let lines = entries
            .into_iter()
            .map(|(id, fields)| archive::AuditLine { v: archive::FORMAT, shard, id, fields })
            .collect();
        sink.write_audit(shard, &date_of_day(day_of(ledger.now_ms())), lines).await.map_err(|e| e.to_string())?;
        // What the archive now holds may go; trimming it twice is harmless.
        ledger.trim_audit(shard, &last).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
